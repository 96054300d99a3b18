//! `-eC` / `-editChat CHAT`: shows a stored chat and lets the user add messages that wait
//! for the next connection, whichever side then listens.
//!
//! Another process (a running listener) may use the same database at the same time: each
//! message is one short immediate transaction, and the listener picks new messages up.
//!
//! Without a terminal (a script, `--json`) the history is streamed: a chat of any length is
//! printed in constant memory; `--last N` and `--since WHEN` narrow it.
//!
//! On a terminal, leaving is `quit`, Ctrl-C, Ctrl-D, SIGTERM, SIGHUP, or the terminal going
//! away (end of input, EIO): every message was stored when typed, so each just ends the
//! command with status 0.

use super::{ensure_identity, leave, AppError, Context};
use crate::args::HistoryView;
use crate::store::Database;
use crate::ui::editor::{EditorEvent, LineEditor};
use crate::ui::{HistoryEntry, Presenter, Style};
use socketfalco_core::{check_text, DeviceId, Store};
use socketfalco_transport::clock::Clock;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Opens the chat named by `prefix` (a unique prefix of the peer's uuid), showing the part
/// of its history `view` asks for.
pub fn run(ctx: &Context, prefix: &str, view: HistoryView) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    let peer = db.find_chat(prefix)?;
    let summary = db.list_chats()?.into_iter().find(|c| c.peer == peer);
    let peer_name = summary
        .as_ref()
        .map(|c| c.peer_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "peer".to_owned());
    let mut presenter = Presenter::new(ctx.style, &me.name);
    presenter.set_peer_name(peer, &peer_name);
    let entry = |m: socketfalco_core::Message, mine: bool, delivered: bool| HistoryEntry {
        author_name: if mine {
            me.name.clone()
        } else {
            peer_name.clone()
        },
        mine,
        delivered,
        message: m,
        peer,
    };
    let since = view.since.map(|s| s.resolve(Clock::new().wall_ms()));
    let mut lines = Vec::new();
    if ctx.style != Style::Json {
        let waiting = summary.as_ref().map_or(0, |c| c.waiting);
        lines.push(format!(
            "chat with {peer_name} ({peer}) — {waiting} message(s) waiting for delivery"
        ));
    }
    let line_of = |stored: crate::store::StoredMessage| -> String {
        presenter.history_line(&entry(stored.message, stored.mine, stored.delivered))
    };
    if ctx.style != Style::Terminal {
        // Streamed: printed as read, never held.
        let mut out = io::stdout().lock();
        let mut failed = lines.iter().try_for_each(|l| writeln!(out, "{l}")).err();
        db.for_each_message(peer, view.last, since, |stored| {
            match failed
                .is_none()
                .then(|| writeln!(out, "{}", line_of(stored)))
            {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    failed = Some(e);
                    false
                }
                None => false,
            }
        })?;
        match failed {
            // A reader that stopped reading (`| head`) is not an error.
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Some(e) => return Err(e.into()),
            None => out.flush()?,
        }
        lines.clear();
    } else {
        db.for_each_message(peer, view.last, since, |stored| {
            lines.push(line_of(stored));
            true
        })?;
    }
    let write = |db: &mut Database, text: &str| -> String {
        match compose(db, peer, text) {
            Ok(message) => presenter.history_line(&entry(message, true, false)),
            Err(e) => presenter.error(&format!("not stored: {}", e.message)),
        }
    };
    if ctx.style == Style::Terminal {
        let asked_to_leave = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&asked_to_leave);
        leave::on_leave(move || on_signal.store(true, Ordering::Relaxed));
        let mut editor = LineEditor::start(&format!("{}> ", me.name))?;
        for line in &lines {
            editor.print_above(line);
        }
        // The view is open on a terminal with the newest lines shown: the chat is read.
        db.mark_read(peer)?;
        editor.print_above("(offline: what you write is stored and delivered at the next connection; \"quit\" or Ctrl-D to leave)");
        while !asked_to_leave.load(Ordering::Relaxed) {
            match editor.poll(Duration::from_millis(200)) {
                Some(EditorEvent::Line(line)) => {
                    if line.trim() == "quit" {
                        break;
                    }
                    if !line.trim().is_empty() {
                        let shown = write(&mut db, &line);
                        editor.print_above(&shown);
                    }
                }
                Some(EditorEvent::Interrupt | EditorEvent::Eof | EditorEvent::TerminalGone) => {
                    break
                }
                None => {}
            }
        }
        drop(editor);
        leave::closed();
        return Ok(());
    }
    for line in &lines {
        println!("{line}");
    }
    for line in io::stdin().lock().lines() {
        let line = line?;
        let text = line.trim_end_matches('\r');
        if text.trim() == "quit" {
            break;
        }
        if !text.trim().is_empty() {
            println!("{}", write(&mut db, text));
        }
    }
    Ok(())
}

fn compose(
    db: &mut Database,
    peer: DeviceId,
    text: &str,
) -> Result<socketfalco_core::Message, AppError> {
    check_text(text)?;
    Ok(db.compose(peer, text, Clock::new().wall_ms())?)
}
