//! `-eC` / `-editChat CHAT`: shows a stored chat and lets the user add messages that wait
//! for the next connection, whichever side then listens.
//!
//! Another process (a running listener) may use the same database at the same time: each
//! message typed is one short immediate transaction (a script's burst of lines, one for up
//! to 512 of them), and the listener picks new messages up.
//!
//! Without a terminal (a script, `--json`) the history is streamed: a chat of any length is
//! printed in constant memory; `--last N` and `--since WHEN` narrow it.
//!
//! On a terminal the view opens at once on the chat's last screenful, whatever its length,
//! with a marker row above the first unread line; PgUp/PgDn (or Shift+Up/Down) read it back
//! page by page and End returns (see [`super::view`]); the chat is never loaded. Lines that
//! another process stores meanwhile (a listener running with `--serve` on the same data
//! directory) are shown as they come, or counted under the page while reading back. `--last`
//! and `--since` print what they select instead of the last screenful.
//!
//! On a terminal, leaving is `quit`, Ctrl-C, Ctrl-D, SIGTERM, SIGHUP, or the terminal going
//! away (end of input, EIO): every message was stored when typed, so each just ends the
//! command with status 0.

use super::view::{opening_rows, ChatPages, Scroll};
use super::{ensure_identity, leave, AppError, Context};
use crate::args::HistoryView;
use crate::store::Database;
use crate::ui::editor::{EditorEvent, LineEditor};
use crate::ui::scrollback::Marker;
use crate::ui::{HistoryEntry, Presenter, Style};
use socketfalco_core::{check_text, DeviceId, Store};
use socketfalco_transport::clock::wall_clock_ms;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a chat view on a terminal looks for lines another process stored.
const FOLLOW_EVERY: Duration = Duration::from_millis(300);

/// Opens the chat named by `prefix` (a unique prefix of the peer's uuid), showing the part
/// of its history `view` asks for.
pub fn run(ctx: &Context, prefix: &str, view: HistoryView) -> Result<(), AppError> {
    let mut db = ctx.open_database_for_lines()?;
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
    let since = view.since.map(|s| s.resolve(wall_clock_ms()));
    // `--last` or `--since` on a terminal: what they select, printed; else the last screenful.
    let explicit = view.last.is_some() || since.is_some();
    let mut lines = Vec::new();
    if ctx.style != Style::Json {
        let waiting = summary.as_ref().map_or(0, |c| c.waiting);
        lines.push(format!(
            "chat with {} ({peer}) — {waiting} message(s) waiting for delivery",
            crate::ui::sanitize(&peer_name)
        ));
    }
    if ctx.style != Style::Terminal {
        // Streamed: printed as read, never held.
        let mut out = io::stdout().lock();
        let mut failed = lines.iter().try_for_each(|l| writeln!(out, "{l}")).err();
        db.for_each_message(peer, view.last, since, |stored| {
            match failed
                .is_none()
                .then(|| writeln!(out, "{}", line_of(&presenter, &me.name, peer, stored)))
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
    } else if explicit {
        db.for_each_message(peer, view.last, since, |stored| {
            lines.push(line_of(&presenter, &me.name, peer, stored));
            true
        })?;
    }
    if ctx.style == Style::Terminal {
        let asked_to_leave = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&asked_to_leave);
        leave::on_leave(move || on_signal.store(true, Ordering::Relaxed));
        let mut editor = LineEditor::start(&format!("{}> ", me.name))?;
        let unread = db.chat_counts(peer)?.map_or(0, |(_, unread)| unread);
        let marker = db.first_unread(peer)?.map(|key| Marker {
            key,
            label: format!("{unread} unread"),
        });
        let opened = Instant::now();
        let note = "(lines are stored, then sent by the next session with this peer — within a \
                    second by a listener running on this data folder; PgUp reads back; \"quit\" \
                    to leave)";
        let mut follow = Follow::new(&db, peer)?;
        // How many rows of the chat's newest lines the opening shows.
        let mut live_rows = 0;
        if explicit {
            for line in &lines {
                editor.print_above(line);
            }
        } else {
            // The last screenful, at once, whatever the chat's length.
            let (width, height) = editor.size();
            let around: usize = lines
                .iter()
                .chain(std::iter::once(&note.to_owned()))
                .map(|l| crate::ui::scrollback::wrap(l, width).len())
                .sum();
            let rows = height.saturating_sub(around + 1).max(1);
            live_rows = rows;
            let mut pages = ChatPages {
                db: &db,
                peer,
                presenter: &presenter,
                me: &me.name,
            };
            let shown =
                opening_rows(&mut pages, rows, width, marker.as_ref()).map_err(AppError::new)?;
            for line in lines.iter().chain(&shown) {
                editor.print_above(line);
            }
        }
        log::debug!("the chat view opened in {:?}", opened.elapsed());
        // The view is open on a terminal with the newest lines shown: the chat is read.
        db.mark_read(peer)?;
        editor.print_above(note);
        let mut scroll = Scroll::new(marker, live_rows);
        let mut looked = Instant::now();
        while !asked_to_leave.load(Ordering::Relaxed) {
            if looked.elapsed() >= FOLLOW_EVERY {
                looked = Instant::now();
                let new = follow.new_lines(&db, peer, &mut presenter, &me.name)?;
                for line in &new {
                    editor.print_above(line);
                }
                if !new.is_empty() && !editor.is_reading() {
                    db.mark_read(peer)?;
                }
            }
            let event = editor.poll(Duration::from_millis(100));
            match event {
                Some(EditorEvent::Line(line)) => {
                    if line.trim() == "quit" {
                        break;
                    }
                    if !line.trim().is_empty() {
                        let shown = match compose(&mut db, peer, &line) {
                            Ok(message) => {
                                follow.shown_own(&message);
                                presenter.history_line(&own_entry(&me.name, peer, message))
                            }
                            Err(e) => presenter.error(&format!("not stored: {e}")),
                        };
                        editor.print_above(&shown);
                    }
                }
                Some(EditorEvent::Interrupt | EditorEvent::Eof | EditorEvent::TerminalGone) => {
                    break
                }
                Some(paging) => {
                    let mut pages = ChatPages {
                        db: &db,
                        peer,
                        presenter: &presenter,
                        me: &me.name,
                    };
                    if scroll.key(&paging, &mut pages, &mut editor) {
                        db.mark_read(peer)?;
                    }
                }
                None => {}
            }
        }
        drop(editor);
        leave::closed();
        return Ok(());
    }
    for line in &lines {
        outln!("{line}")?;
    }
    // A script's lines: one that is not a valid line is refused and the rest go on (the
    // exit status says so); a store that fails stops everything — the next lines would fail
    // the same way — and says how far it got. Lines that are already read ahead (a script
    // that writes faster than a disk commits) go in one transaction, at most
    // SCRIPT_BATCH_LINES, each printed once its transaction is durable; a line that
    // arrives alone is committed alone, at once.
    let (mut stored, mut refused) = (0u64, 0u64);
    let mut input = io::BufReader::with_capacity(SCRIPT_READ_AHEAD, io::stdin().lock());
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut ended = false;
    while !ended {
        let mut batch: Vec<ScriptLine> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        loop {
            number += 1;
            match script_line(super::next_input_line(&mut input, &mut buf)?, number) {
                Read::End => ended = true,
                Read::Blank => {}
                Read::Refused(why) => batch.push(ScriptLine::Refused(why)),
                Read::Text(text) => {
                    batch.push(ScriptLine::Stored(number));
                    texts.push(text);
                }
            }
            // Another line only if it is read ahead whole: never wait for the next line
            // with this one not yet stored.
            if ended || texts.len() >= SCRIPT_BATCH_LINES || !input.buffer().contains(&b'\n') {
                break;
            }
        }
        let mut messages = if texts.is_empty() {
            Vec::new()
        } else {
            db.compose_batch(peer, &texts, wall_clock_ms(), None)
                .map_err(|e| {
                    let first = batch.iter().find_map(|l| match l {
                        ScriptLine::Stored(n) => Some(*n),
                        ScriptLine::Refused(_) => None,
                    });
                    AppError::new(format!(
                        "not stored: {e}; {stored} line(s) were stored before it; line {} and \
                         the rest of the input were not",
                        first.unwrap_or(number)
                    ))
                })?
        }
        .into_iter();
        for line in batch {
            match line {
                ScriptLine::Refused(why) => {
                    refused += 1;
                    outln!("{}", presenter.input_error(&format!("not stored: {why}")))?;
                }
                ScriptLine::Stored(_) => {
                    let Some(message) = messages.next() else {
                        break;
                    };
                    stored += 1;
                    outln!(
                        "{}",
                        presenter.history_line(&own_entry(&me.name, peer, message))
                    )?;
                }
            }
        }
    }
    match refused {
        0 => Ok(()),
        n => Err(AppError::new(format!(
            "{n} line(s) were refused and not stored (see above); {stored} were stored"
        ))),
    }
}

/// Most lines of a script that go in one transaction: a burst commits in few fsyncs, and
/// its first lines are printed (durable) before the rest are read.
const SCRIPT_BATCH_LINES: usize = 512;

/// The read-ahead buffer for a script's lines: the lines wholly in it may join a batch.
const SCRIPT_READ_AHEAD: usize = 256 * 1024;

/// One line of a script, in the order read: stored (its number), or refused (why).
enum ScriptLine {
    Stored(u64),
    Refused(String),
}

/// What one read of a script's input gave.
enum Read {
    /// The end of the input, or `quit`.
    End,
    /// A line with nothing to store.
    Blank,
    /// A line that is not one (why, for the user).
    Refused(String),
    /// A line to store.
    Text(String),
}

/// Classifies what [`super::next_input_line`] read as line `number` of a script.
fn script_line(read: Option<Result<String, String>>, number: u64) -> Read {
    let line = match read {
        None => return Read::End,
        Some(Err(why)) => return Read::Refused(format!("line {number}: {why}")),
        Some(Ok(line)) => line,
    };
    let text = line.trim_end_matches('\r');
    if text.trim() == "quit" {
        Read::End
    } else if text.trim().is_empty() {
        Read::Blank
    } else {
        match check_text(text) {
            Err(e) => Read::Refused(e.to_string()),
            Ok(()) => Read::Text(text.to_owned()),
        }
    }
}

/// Why a line written with `-eC` was not stored.
#[derive(Debug)]
enum NotStored {
    /// The line itself is not one (longer than the limit): the next may be.
    Refused(socketfalco_core::TextError),
    /// The store failed (a full disk, a read-only folder): the next would too.
    Store(crate::store::StoreError),
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStored::Refused(e) => write!(f, "{e}"),
            NotStored::Store(e) => write!(f, "{e}"),
        }
    }
}

/// Lines another process stores in the chat while the view is open (a listener running with
/// `--serve` on the same data directory), and its deliveries: found by the chat's newest
/// numbers and delivery mark, read by sequence number — the peer's after the newest of theirs
/// shown, this device's after the newest of ours — so a line is shown as it comes wherever it
/// sorts (the peer's written concurrently with one of ours sorts before it), and once.
struct Follow {
    /// The peer's newest line seen.
    peer_seq: u64,
    /// This device's newest numbered line seen.
    own_seq: u64,
    /// Lines written in this view, shown waiting: once the session that sends them numbers
    /// them, they are found again (by time of writing and text) and not shown twice.
    written_here: Vec<(i64, String)>,
    /// The chat's delivery mark when last looked.
    delivered: u64,
    /// Own lines were shown waiting (`⧗`): a delivery that covers them is shown.
    waiting_shown: bool,
}

impl Follow {
    fn new(db: &Database, peer: DeviceId) -> Result<Follow, AppError> {
        let point = db.resume_point(peer)?.unwrap_or_default();
        Ok(Follow {
            peer_seq: point.received_up_to,
            own_seq: point.last_own_seq,
            written_here: Vec::new(),
            delivered: point.delivered_up_to,
            waiting_shown: point.unnumbered > 0 || point.last_own_seq > point.delivered_up_to,
        })
    }

    /// An own line was written here and shown, waiting.
    fn shown_own(&mut self, message: &socketfalco_core::Message) {
        self.written_here
            .push((message.sent_at_ms, message.text.clone()));
        self.waiting_shown = true;
    }

    /// The lines stored since the last look, rendered, then the delivery that covers lines
    /// shown waiting.
    fn new_lines(
        &mut self,
        db: &Database,
        peer: DeviceId,
        presenter: &mut Presenter,
        me: &str,
    ) -> Result<Vec<String>, AppError> {
        let mut lines = Vec::new();
        let point = db.resume_point(peer)?.unwrap_or_default();
        if point.received_up_to > self.peer_seq {
            // The peer's new lines come under the name it has now (it may have renamed
            // itself since the view opened: the session that stored them stored that too).
            if let Some(name) = db.peer_name(peer)? {
                presenter.set_peer_name(peer, &name);
            }
        }
        // Only numbered lines are shown as they come (an own line waiting elsewhere is shown
        // once a session numbers it): new ones raise one of the two newest numbers.
        if point.received_up_to > self.peer_seq || point.last_own_seq > self.own_seq {
            loop {
                let found = db.lines_after(peer, self.peer_seq, self.own_seq, 256)?;
                if found.is_empty() {
                    break;
                }
                for stored in found {
                    if stored.mine {
                        self.own_seq = self.own_seq.max(stored.message.seq);
                        let written = (stored.message.sent_at_ms, stored.message.text.clone());
                        if let Some(i) = self.written_here.iter().position(|w| *w == written) {
                            self.written_here.remove(i);
                            continue;
                        }
                        // Written elsewhere (another `-eC`), shown waiting here.
                        self.waiting_shown |= !stored.delivered;
                    } else {
                        self.peer_seq = self.peer_seq.max(stored.message.seq);
                    }
                    lines.push(line_of(presenter, me, peer, stored));
                }
            }
        }
        if point.delivered_up_to > self.delivered {
            self.delivered = point.delivered_up_to;
            if self.waiting_shown {
                lines.push(format!("✓ delivered up to #{}", point.delivered_up_to));
                self.waiting_shown =
                    point.unnumbered > 0 || point.last_own_seq > point.delivered_up_to;
            }
        }
        Ok(lines)
    }
}

/// A stored line as the view shows it: the peer's under the name the presenter knows.
fn line_of(
    presenter: &Presenter,
    me: &str,
    peer: DeviceId,
    stored: crate::store::StoredMessage,
) -> String {
    presenter.history_line(&HistoryEntry {
        author_name: if stored.mine {
            me.to_owned()
        } else {
            presenter.name_of(peer)
        },
        mine: stored.mine,
        delivered: stored.delivered,
        message: stored.message,
        peer,
    })
}

/// A line written here, shown waiting for delivery.
fn own_entry(me: &str, peer: DeviceId, message: socketfalco_core::Message) -> HistoryEntry {
    HistoryEntry {
        author_name: me.to_owned(),
        mine: true,
        delivered: false,
        message,
        peer,
    }
}

fn compose(
    db: &mut Database,
    peer: DeviceId,
    text: &str,
) -> Result<socketfalco_core::Message, NotStored> {
    check_text(text).map_err(NotStored::Refused)?;
    db.compose(peer, text, wall_clock_ms())
        .map_err(NotStored::Store)
}
