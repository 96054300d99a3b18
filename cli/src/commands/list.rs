//! `-ls` / `-list`: one row per chat (with its unread and waiting counts, kept by the store so
//! that listing never counts a history), or a JSON array for scripts. The header names this
//! device and its key fingerprint; each row shows the fingerprint of the key pinned for the
//! peer (`-` before the first encrypted connection), so that two people can compare them out
//! of band.

use super::{ensure_identity, AppError, Context};
use crate::ui::Style;
use chrono::{Local, TimeZone};
use serde_json::json;
use socketfalco_core::PublicKey;

/// `--chat-ids`: the stored chats' ids, one per line, most recent first — for the completion
/// scripts, which run it at a Tab press: a data folder with no database prints nothing and is
/// left as it is (no folder, no identity, no prompt).
pub fn chat_ids(ctx: &Context) -> Result<(), AppError> {
    if !ctx.data_dir.join(crate::store::DB_FILE_NAME).is_file() {
        return Ok(());
    }
    for chat in ctx.open_database()?.list_chats()? {
        outln!("{}", chat.peer)?;
    }
    Ok(())
}

/// Prints the chats, most recent first.
pub fn run(ctx: &Context) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    let chats = db.list_chats()?;
    let fingerprint = |key: Option<[u8; 32]>| key.map(|k| PublicKey(k).fingerprint());
    if ctx.style == Style::Json {
        let rows: Vec<_> = chats
            .iter()
            .map(|c| {
                json!({
                    "chat": c.peer.to_string(),
                    "peer_name": c.peer_name,
                    "last_address": c.last_address,
                    "messages": c.messages,
                    "waiting": c.waiting,
                    "unread": c.unread,
                    "last_activity_ms": c.last_activity_ms,
                    "peer_fingerprint": fingerprint(c.peer_key),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    outln!(
        "You are {} ({}), key fingerprint {}",
        me.name,
        me.device,
        me.fingerprint()
    )?;
    if chats.is_empty() {
        outln!("No chats yet. Start one with `socketfalco -l` or `socketfalco -c ADDRESS`.")?;
        return Ok(());
    }
    outln!(
        "{:<36}  {:<15}  {:<24}  {:>8}  {:>6}  {:>7}  {:<16}  PEER KEY FINGERPRINT",
        "CHAT",
        "PEER",
        "LAST ADDRESS",
        "MESSAGES",
        "UNREAD",
        "WAITING",
        "LAST ACTIVITY"
    )?;
    for c in &chats {
        let activity = c
            .last_activity_ms
            .and_then(|ms| Local.timestamp_millis_opt(ms).single())
            .map_or_else(
                || "-".to_owned(),
                |t| t.format("%Y-%m-%d %H:%M").to_string(),
            );
        outln!(
            "{:<36}  {:<15}  {:<24}  {:>8}  {:>6}  {:>7}  {:<16}  {}",
            c.peer.to_string(),
            if c.peer_name.is_empty() {
                "?".to_owned()
            } else {
                crate::ui::sanitize(&c.peer_name)
            },
            c.last_address.as_deref().unwrap_or("-"),
            c.messages,
            c.unread,
            c.waiting,
            activity,
            fingerprint(c.peer_key).unwrap_or_else(|| "-".to_owned())
        )?;
    }
    Ok(())
}
