//! `--fingerprint` and `--trust-new-key CHAT`: the two commands of trust on first use.
//!
//! Every connection proves each side's static key; the first one with a peer pins the
//! peer's key to its device id, and a later peer presenting that id with another key is
//! refused (the session shows both fingerprints). When the change is legitimate — the peer
//! reinstalled SocketFalco or lost its key file — the user compares fingerprints with the
//! peer over another channel (in person, by phone) and accepts the new key with
//! `--trust-new-key`: the pinned key is forgotten, and the next connection pins the key it
//! proves.

use super::{ensure_identity, AppError, Context};
use crate::ui::Style;
use serde_json::json;
use socketfalco_core::PublicKey;

/// Prints this device's id, name and key fingerprint.
pub fn fingerprint(ctx: &Context) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    if ctx.style == Style::Json {
        println!(
            "{}",
            json!({
                "device": me.device.to_string(),
                "name": me.name,
                "fingerprint": me.fingerprint(),
            })
        );
    } else {
        println!("You are {} ({})", me.name, me.device);
        println!("Key fingerprint: {}", me.fingerprint());
        println!(
            "Your peers see this fingerprint for you in their `socketfalco -ls`; compare it \
             with them over another channel (in person, by phone)."
        );
    }
    Ok(())
}

/// Forgets the key pinned for the chat `prefix` (a unique prefix of the peer's device id),
/// so that the next connection with that device pins the key it proves.
pub fn trust_new_key(ctx: &Context, prefix: &str) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    ensure_identity(ctx, &mut db)?;
    let peer = db.find_chat(prefix)?;
    let name = db
        .list_chats()?
        .into_iter()
        .find(|c| c.peer == peer)
        .map(|c| c.peer_name)
        .filter(|n| !n.is_empty());
    let old = db.forget_key(peer)?.map(PublicKey);
    let who = match &name {
        Some(name) => format!("{} ({peer})", crate::ui::sanitize(name)),
        None => peer.to_string(),
    };
    if ctx.style == Style::Json {
        println!(
            "{}",
            json!({
                "event": "key_forgotten",
                "chat": peer.to_string(),
                "peer_name": name,
                "old_fingerprint": old.map(|k| k.fingerprint()),
            })
        );
        return Ok(());
    }
    match old {
        Some(old) => {
            println!("Forgot the key pinned for {who}.");
            println!("Old key fingerprint: {}", old.fingerprint());
        }
        None => println!("No key was pinned for {who}; nothing to forget."),
    }
    println!(
        "The next connection with this device id pins the key it proves, whoever it is. \
         Before connecting, ask the peer for their fingerprint (`socketfalco --fingerprint`) \
         over another channel (in person, by phone); after connecting, check that \
         `{} -ls` shows the same one for them.",
        ctx.invocation()
    );
    Ok(())
}
