//! `--fingerprint` and `--trust-new-key CHAT FINGERPRINT`: the two commands of trust on first
//! use.
//!
//! Every connection proves each side's static key; the first one with a peer pins the
//! peer's key to its device id, and a later peer presenting that id with another key is
//! refused (the session shows both fingerprints). When the change is legitimate — the peer
//! reinstalled SocketFalco or lost its key file — the peer reads the user its new
//! fingerprint (its own `--fingerprint`) over another channel (in person, by phone), and the
//! user accepts exactly that key with `--trust-new-key CHAT FINGERPRINT`. The key itself
//! cannot be derived from its fingerprint, so the fingerprint is stored as expected for the
//! chat: the next connection that proves a key with that fingerprint pins it, every other
//! key — the old pinned one included — is refused (see `Database::expect_key`).

use super::{ensure_identity, AppError, Context};
use crate::store::KeyExpectation;
use crate::ui::Style;
use serde_json::json;
use socketfalco_core::{format_fingerprint, PublicKey};

/// Prints this device's id, name and key fingerprint.
pub fn fingerprint(ctx: &Context) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    if ctx.style == Style::Json {
        outln!(
            "{}",
            json!({
                "device": me.device.to_string(),
                "name": me.name,
                "fingerprint": me.fingerprint(),
            })
        )?;
    } else {
        outln!("You are {} ({})", me.name, me.device)?;
        outln!("Key fingerprint: {}", me.fingerprint())?;
        outln!(
            "Your peers see this fingerprint for you in their `socketfalco -ls`; compare it \
             with them over another channel (in person, by phone)."
        )?;
    }
    Ok(())
}

/// Accepts, for the chat `prefix` (a unique prefix of the peer's device id), exactly the key
/// whose fingerprint is `fingerprint`: it is pinned when it connects.
pub fn trust_new_key(ctx: &Context, prefix: &str, fingerprint: [u8; 16]) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    ensure_identity(ctx, &mut db)?;
    let peer = db.find_chat(prefix)?;
    let name = db
        .list_chats()?
        .into_iter()
        .find(|c| c.peer == peer)
        .map(|c| c.peer_name)
        .filter(|n| !n.is_empty());
    let outcome = db.expect_key(peer, fingerprint)?;
    let expected = format_fingerprint(&fingerprint);
    let who = match &name {
        Some(name) => format!("{} ({peer})", crate::ui::sanitize(name)),
        None => peer.to_string(),
    };
    if ctx.style == Style::Json {
        let (status, old, withdrawn) = match outcome {
            KeyExpectation::Expected { old } => {
                ("expected", Some(PublicKey(old).fingerprint()), None)
            }
            KeyExpectation::AlreadyPinned { withdrawn } => (
                "already_pinned",
                None,
                withdrawn.map(|f| format_fingerprint(&f)),
            ),
            KeyExpectation::NothingPinned => ("nothing_pinned", None, None),
        };
        outln!(
            "{}",
            json!({
                "event": "key_expected",
                "status": status,
                "chat": peer.to_string(),
                "peer_name": name,
                "old_fingerprint": old,
                "expected_fingerprint": expected,
                "withdrawn_fingerprint": withdrawn,
            })
        )?;
        return Ok(());
    }
    match outcome {
        KeyExpectation::Expected { old } => {
            outln!("Accepted the key with fingerprint {expected} for {who}.")?;
            outln!(
                "The next connection that proves this key pins it; until then every other key \
                 is refused, the one pinned so far ({}) included.",
                PublicKey(old).fingerprint()
            )?;
            outln!(
                "Check after connecting that `{} -ls` shows {expected} for them.",
                ctx.invocation()
            )?;
        }
        KeyExpectation::AlreadyPinned { withdrawn: None } => {
            outln!("The key pinned for {who} already has the fingerprint {expected}: nothing to change.")?;
        }
        KeyExpectation::AlreadyPinned {
            withdrawn: Some(withdrawn),
        } => {
            outln!(
                "The key pinned for {who} has the fingerprint {expected}: it is accepted again, \
                 and the key awaited instead ({}) no longer is.",
                format_fingerprint(&withdrawn)
            )?;
        }
        KeyExpectation::NothingPinned => {
            outln!(
                "No key is pinned for {who} yet: nothing was changed. The next connection pins \
                 the key it proves; then check that `{} -ls` shows {expected} for them.",
                ctx.invocation()
            )?;
        }
    }
    Ok(())
}
