//! `-ls` / `-list`: one row per chat, or a JSON array for scripts.

use super::{ensure_identity, AppError, Context};
use crate::ui::Style;
use chrono::{Local, TimeZone};
use serde_json::json;

/// Prints the chats, most recent first.
pub fn run(ctx: &Context) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    let chats = db.list_chats()?;
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
                    "last_activity_ms": c.last_activity_ms,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!("You are {} ({})", me.name, me.device);
    if chats.is_empty() {
        println!("No chats yet. Start one with `socketfalco -l` or `socketfalco -c ADDRESS`.");
        return Ok(());
    }
    println!(
        "{:<36}  {:<15}  {:<24}  {:>8}  {:>7}  LAST ACTIVITY",
        "CHAT", "PEER", "LAST ADDRESS", "MESSAGES", "WAITING"
    );
    for c in &chats {
        let activity = c
            .last_activity_ms
            .and_then(|ms| Local.timestamp_millis_opt(ms).single())
            .map_or_else(
                || "-".to_owned(),
                |t| t.format("%Y-%m-%d %H:%M").to_string(),
            );
        println!(
            "{:<36}  {:<15}  {:<24}  {:>8}  {:>7}  {}",
            c.peer.to_string(),
            if c.peer_name.is_empty() {
                "?"
            } else {
                &c.peer_name
            },
            c.last_address.as_deref().unwrap_or("-"),
            c.messages,
            c.waiting,
            activity
        );
    }
    Ok(())
}
