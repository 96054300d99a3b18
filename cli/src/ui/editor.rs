//! A small line editor on crossterm that lets incoming messages print above the line being
//! typed without garbling it.
//!
//! Why not rustyline or reedline: both block inside `readline` with no way for another
//! thread to end it, so a session that ends on the network side (peer refused us, store
//! failed) would leave the terminal in raw mode or wait for a key press. Here the main
//! thread owns the terminal's output and polls keys with a timeout, printing network events
//! between polls. It handles what a chat needs: editing keys, history, bracketed paste (a
//! pasted multi-line text stays one message), Ctrl-C, Ctrl-D, and it works in Windows
//! consoles. Keys already waiting behind one are applied before the line is drawn again, so a
//! burst of thousands (a paste the terminal does not bracket) costs one redraw, not one each.
//!
//! A terminal that goes away (window closed, SSH dropped) is [`EditorEvent::TerminalGone`],
//! never a loop: keys are read on a thread of their own from a [`KeySource`] that stops at the
//! first end of input or lasting error; on Unix it waits with poll(2) itself and lets
//! crossterm read only when bytes are there (see [`super::console`]), and the editor also
//! looks at the terminal whenever no key came, so even a reader stuck inside crossterm
//! cannot hold the session. After the first failed write, nothing is drawn any more.
//!
//! Reading back: PgUp (or Shift+Up) is [`EditorEvent::PageUp`]; the command answers with a
//! screen of history ([`LineEditor::show_page`]), drawn on the terminal's alternate screen
//! so that the live log is left as it was. While a page is shown, lines printed above the
//! prompt are held, not drawn, and the status row counts them ("3 new below"): the view does
//! not move. End, or PgDn past the last page ([`EditorEvent::Bottom`],
//! [`EditorEvent::PageDown`]), goes back: [`LineEditor::leave_page`] restores the live log
//! and prints the held lines under it.

use crossterm::event::{
    self, DisableBracketedPaste, DisableFocusChange, EnableBracketedPaste, EnableFocusChange,
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use crossterm::style::Print;
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, queue};
use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use unicode_width::UnicodeWidthChar;

/// What the user did at the prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum EditorEvent {
    /// A line was submitted with Enter.
    Line(String),
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D on an empty line.
    Eof,
    /// The terminal went away (hang-up, end of input, a read or write error). Nothing is
    /// shown any more; asked again, the editor waits the timeout and says it again.
    TerminalGone,
    /// PgUp or Shift+Up: show the screen of history before the one shown (or before the
    /// live view).
    PageUp,
    /// PgDn or Shift+Down while a page is shown: the screen after it.
    PageDown,
    /// End while a page is shown: back to the live view.
    Bottom,
    /// The window changed size while a page is shown: draw it again at the new size.
    Resized,
}

/// How many lines printed while a page is shown are kept to print when the user comes back
/// (the older ones are in the history; a note says how many were left out).
const HELD_LINES: usize = 500;

/// A page of history on the alternate screen, and what arrived meanwhile.
struct Reading {
    /// What the status row says of the page ("reading back", "beginning of the chat").
    note: String,
    /// Lines printed meanwhile, to print under the live log on the way back.
    held: std::collections::VecDeque<String>,
    /// Lines printed meanwhile in all ("N new below").
    new_lines: usize,
}

/// Where the editor's keys come from; read on a thread of its own.
pub trait KeySource: Send + 'static {
    /// Waits up to `timeout` for the next terminal event; `Ok(None)` when none came. An
    /// interruption or "would block" is retried; any other error, end of input included
    /// ([`io::ErrorKind::UnexpectedEof`]), means the terminal is gone and ends the reading.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>>;
}

/// How long the key reader waits before it checks whether the editor still wants keys.
const READER_TICK: Duration = Duration::from_millis(100);

/// How long the key reader pauses when the terminal has bytes that crossterm does not see,
/// so that it does not spin until the next key press shows them.
#[cfg(unix)]
const STUCK_INPUT_PAUSE: Duration = Duration::from_millis(20);

/// How long the key reader lets crossterm look when it asks for an event it may have parsed
/// or bytes our own look has seen: crossterm's Unix source (`use-dev-tty`, level-triggered)
/// does nothing at all with a zero timeout, not even hand out what it parsed.
#[cfg(unix)]
const CROSSTERM_LOOK: Duration = Duration::from_millis(1);

/// How long the key reader lets crossterm look when its last read may have parsed more
/// events than it handed out (see [`TerminalKeys::next`]), at most: long enough that a
/// descheduled thread does not miss them.
#[cfg(unix)]
const PARSED_LOOK: Duration = Duration::from_millis(20);

/// The terminal's keys through crossterm. On Unix crossterm reads only once poll(2) saw
/// bytes (or to hand out the events it parsed from its last read), so a hung-up terminal is
/// reported instead of re-read forever; and it is asked for its resize event as soon as the
/// window changes, before a key can come with it (see [`super::console`]).
#[derive(Default)]
struct TerminalKeys {
    /// crossterm's last read may have parsed more events than it returned.
    #[cfg(unix)]
    parsed: bool,
    /// The read end of the window-change signal's self-pipe; `None` if it could not be set
    /// up (then a key right after a resize may wait for the next one, as before).
    #[cfg(unix)]
    resized: Option<std::os::unix::net::UnixStream>,
}

impl TerminalKeys {
    fn new() -> TerminalKeys {
        #[cfg(unix)]
        {
            use super::console::{look, Look};
            // crossterm's own handler of the signal must come first, so that when ours has
            // written its byte, crossterm's is there too (a signal's handlers run in the
            // order they were installed): crossterm installs it when its event source starts,
            // at its first poll — made here, unless the terminal is gone already. What that
            // poll may read is handed out first.
            if look(libc::STDIN_FILENO, Duration::ZERO) == Look::Gone {
                return TerminalKeys::default();
            }
            if let Err(e) = event::poll(Duration::ZERO) {
                log::warn!("window changes are not watched: {e}");
                return TerminalKeys::default();
            }
            let resized = std::os::unix::net::UnixStream::pair()
                .and_then(|(read, write)| {
                    read.set_nonblocking(true)?;
                    signal_hook::low_level::pipe::register(signal_hook::consts::SIGWINCH, write)?;
                    Ok(read)
                })
                .map_err(|e| log::warn!("window changes are not watched: {e}"))
                .ok();
            TerminalKeys {
                parsed: true,
                resized,
            }
        }
        #[cfg(not(unix))]
        {
            TerminalKeys::default()
        }
    }
}

impl KeySource for TerminalKeys {
    #[cfg(unix)]
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        use super::console::{look, look_with_resize, Look};
        // Asking crossterm returns an event it already parsed at once; with none left it
        // polls the terminal until the look ends, which could only read a hung-up terminal if
        // the hang-up came since our own look (the editor's watch covers that case, and the
        // look is short). crossterm hands out what it parsed only if its look starts within
        // the time it is given (a timeout already spent when it has taken its lock reads
        // nothing and returns "no event", queue or not): a keys thread descheduled for longer
        // than a very short look, on a loaded machine, would take the end of a paste to be
        // there and leave it waiting for the next key. Hence `PARSED_LOOK`, not
        // `CROSSTERM_LOOK`; meanwhile crossterm reads new keys itself.
        if self.parsed {
            if event::poll(timeout.clamp(CROSSTERM_LOOK, PARSED_LOOK))? {
                return event::read().map(Some);
            }
            self.parsed = false;
        }
        let (seen, resized) = match &self.resized {
            Some(pipe) => look_with_resize(libc::STDIN_FILENO, pipe, timeout),
            None => (look(libc::STDIN_FILENO, timeout), false),
        };
        match seen {
            Look::Gone => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the terminal is gone",
            )),
            Look::Quiet if !resized => Ok(None),
            // Input, or the window changed: crossterm's resize event is taken now, while no
            // key waits.
            Look::Quiet | Look::Input => {
                self.parsed = true;
                if event::poll(CROSSTERM_LOOK)? {
                    return event::read().map(Some);
                }
                if seen == Look::Input {
                    // Bytes crossterm does not see (a resize and a key at the same instant):
                    // they wait for the next key. Not a busy loop meanwhile.
                    thread::sleep(STUCK_INPUT_PAUSE);
                }
                Ok(None)
            }
        }
    }

    #[cfg(not(unix))]
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if event::poll(timeout)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Whether the terminal is gone, looked at without reading (Unix; elsewhere the key reader's
/// errors say it).
fn terminal_gone() -> bool {
    #[cfg(unix)]
    {
        super::console::look(libc::STDIN_FILENO, Duration::ZERO) == super::console::Look::Gone
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Reads `source` on a thread until `stop`, the first lasting error, or nobody listening.
fn spawn_reader(
    mut source: impl KeySource,
    stop: Arc<AtomicBool>,
) -> io::Result<Receiver<io::Result<Event>>> {
    let (tx, keys) = mpsc::channel();
    thread::Builder::new().name("keys".into()).spawn(move || {
        // Started by a thread that may share one CPU with the event loop: not this one.
        socketfalco_transport::affinity::run_anywhere();
        while !stop.load(Ordering::Relaxed) {
            match source.next(READER_TICK) {
                Ok(Some(event)) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    })?;
    Ok(keys)
}

/// The prompt line at the bottom of the terminal.
pub struct LineEditor<W: Write = Stdout> {
    out: W,
    keys: Receiver<io::Result<Event>>,
    stop: Arc<AtomicBool>,
    /// Looks at the terminal without reading; true when it is gone.
    watch: Box<dyn FnMut() -> bool>,
    /// Whether this editor put the terminal in raw mode (and restores it).
    raw: bool,
    /// The terminal's size when last drawn (asked only in raw mode).
    size: Option<(u16, u16)>,
    gone: bool,
    told_gone: bool,
    prompt: String,
    buffer: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    history_pos: Option<usize>,
    /// What Tab completes after `/to `: the live chats' names.
    completions: Vec<String>,
    /// A page of history is shown (reading back).
    reading: Option<Reading>,
    /// The terminal has the focus (as far as it reports focus changes; true if it does not).
    focused: bool,
    /// An event taken from the key reader while applying a burst of keys, to be handled next.
    next: Option<io::Result<Event>>,
}

impl LineEditor {
    /// Takes over the terminal (raw mode, bracketed paste) and draws the prompt.
    pub fn start(prompt: &str) -> io::Result<LineEditor> {
        terminal::enable_raw_mode()?;
        let mut editor =
            LineEditor::with(io::stdout(), TerminalKeys::new(), terminal_gone, prompt)?;
        editor.raw = true;
        editor.size = terminal::size().ok();
        // Paste support and focus reports are niceties: some terminals refuse them.
        let _ = queue!(editor.out, EnableBracketedPaste, EnableFocusChange);
        editor.redraw();
        Ok(editor)
    }
}

impl<W: Write> LineEditor<W> {
    /// An editor writing to `out`, its keys from `source`, `watch` telling whether the
    /// terminal is gone; it leaves the terminal's mode alone.
    pub fn with(
        out: W,
        source: impl KeySource,
        watch: impl FnMut() -> bool + 'static,
        prompt: &str,
    ) -> io::Result<LineEditor<W>> {
        let stop = Arc::new(AtomicBool::new(false));
        let keys = spawn_reader(source, Arc::clone(&stop))?;
        Ok(LineEditor {
            out,
            keys,
            stop,
            watch: Box::new(watch),
            raw: false,
            size: None,
            gone: false,
            told_gone: false,
            prompt: prompt.to_owned(),
            buffer: Vec::new(),
            cursor: 0,
            history: Vec::new(),
            history_pos: None,
            completions: Vec::new(),
            reading: None,
            focused: true,
            next: None,
        })
    }

    /// Whether the terminal went away.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Queues output, unless the terminal is gone; a failed write means it is.
    fn emit(&mut self, draw: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.gone {
            return;
        }
        if let Err(e) = draw(&mut self.out) {
            self.lose(&e);
        }
    }

    fn lose(&mut self, why: &io::Error) {
        if !self.gone {
            log::debug!("the terminal is gone: {why}");
            self.gone = true;
        }
    }

    /// Prints `text` (may span lines) above the prompt, then redraws the prompt. While a page
    /// of history is shown, the line is held for the way back and only counted.
    pub fn print_above(&mut self, text: &str) {
        if let Some(reading) = self.reading.as_mut() {
            reading.new_lines += 1;
            reading.held.push_back(text.to_owned());
            if reading.held.len() > HELD_LINES {
                reading.held.pop_front();
            }
            self.draw_status();
            self.redraw();
            return;
        }
        self.emit(|out| {
            queue!(out, cursor::MoveToColumn(0), Clear(ClearType::CurrentLine))?;
            for line in text.split('\n') {
                queue!(out, Print(line), Print("\r\n"))?;
            }
            Ok(())
        });
        self.redraw();
    }

    /// The terminal's size, columns and rows (80×24 when it cannot be asked).
    pub fn size(&self) -> (usize, usize) {
        terminal::size().map_or((80, 24), |(w, h)| (usize::from(w), usize::from(h)))
    }

    /// How many rows a page of history has: the screen less the status row and the prompt.
    pub fn page_rows(&self) -> usize {
        self.size().1.saturating_sub(2).max(1)
    }

    /// Whether a page of history is shown.
    pub fn is_reading(&self) -> bool {
        self.reading.is_some()
    }

    /// Lines printed since the page of history was shown (0 when none is).
    pub fn new_below(&self) -> usize {
        self.reading.as_ref().map_or(0, |r| r.new_lines)
    }

    /// Shows `rows` (at most [`LineEditor::page_rows`], drawn at the bottom of the page) as a
    /// page of history, with `note` in the status row under it (`None`: the note the page
    /// had, for the same page drawn again); the first page switches to the alternate screen.
    pub fn show_page(&mut self, rows: &[String], note: Option<&str>) {
        if self.reading.is_none() {
            self.emit(|out| queue!(out, terminal::EnterAlternateScreen));
            self.reading = Some(Reading {
                note: String::new(),
                held: std::collections::VecDeque::new(),
                new_lines: 0,
            });
        }
        if let (Some(reading), Some(note)) = (self.reading.as_mut(), note) {
            note.clone_into(&mut reading.note);
        }
        let area = self.page_rows();
        let shown = &rows[rows.len().saturating_sub(area)..];
        let first = area - shown.len();
        let rows: Vec<String> = shown.to_vec();
        self.emit(|out| {
            queue!(out, Clear(ClearType::All))?;
            for (i, row) in rows.iter().enumerate() {
                let y = u16::try_from(first + i).unwrap_or(u16::MAX);
                queue!(out, cursor::MoveTo(0, y), Print(row))?;
            }
            Ok(())
        });
        self.draw_status();
        self.redraw();
    }

    /// The status row under a page: its note, the lines that arrived meanwhile, the keys.
    fn draw_status(&mut self) {
        let Some(reading) = self.reading.as_ref() else {
            return;
        };
        let (width, height) = self.size();
        let new = match reading.new_lines {
            0 => String::new(),
            1 => " — 1 new line below".to_owned(),
            n => format!(" — {n} new lines below"),
        };
        let mut status = format!("── {}{new} — End to return ──", reading.note);
        let used: usize = status.chars().map(char_width).sum();
        status.push_str(&"─".repeat(width.saturating_sub(used)));
        let status: String = status
            .chars()
            .scan(0, |w, c| {
                *w += char_width(c);
                (*w <= width).then_some(c)
            })
            .collect();
        let y = u16::try_from(height.saturating_sub(2)).unwrap_or(u16::MAX);
        let prompt_row = u16::try_from(height.saturating_sub(1)).unwrap_or(u16::MAX);
        self.emit(|out| {
            queue!(
                out,
                cursor::MoveTo(0, y),
                Clear(ClearType::CurrentLine),
                crossterm::style::SetAttribute(crossterm::style::Attribute::Reverse),
                Print(status),
                crossterm::style::SetAttribute(crossterm::style::Attribute::Reset),
                cursor::MoveTo(0, prompt_row)
            )
        });
    }

    /// Back from the pages of history to the live log, as it was, with the lines that
    /// arrived meanwhile printed under it.
    pub fn leave_page(&mut self) {
        let Some(reading) = self.reading.take() else {
            return;
        };
        self.emit(|out| queue!(out, Clear(ClearType::All), terminal::LeaveAlternateScreen));
        let left_out = reading.new_lines - reading.held.len();
        if left_out > 0 {
            self.print_above(&format!(
                "… {left_out} earlier line(s) not repeated here (PgUp reads the chat)"
            ));
        }
        for line in reading.held {
            self.print_above(&line);
        }
        self.redraw();
    }

    /// Whether the terminal has the focus (true when it does not report focus changes).
    pub fn has_focus(&self) -> bool {
        self.focused
    }

    /// Rings the terminal bell.
    pub fn bell(&mut self) {
        self.emit(|out| {
            queue!(out, Print('\u{7}'))?;
            out.flush()
        });
    }

    /// Changes the prompt (for example to show re-sync progress).
    pub fn set_prompt(&mut self, prompt: &str) {
        if prompt != self.prompt {
            prompt.clone_into(&mut self.prompt);
            self.redraw();
        }
    }

    /// Waits up to `timeout` for a key and applies it.
    pub fn poll(&mut self, timeout: Duration) -> Option<EditorEvent> {
        if self.gone {
            return Some(self.gone_again(timeout));
        }
        let taken = match self.next.take() {
            Some(taken) => Ok(taken),
            None => self.keys.recv_timeout(timeout),
        };
        let mut event = match taken {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => {
                self.lose(&e);
                return Some(self.gone_again(Duration::ZERO));
            }
            Err(RecvTimeoutError::Timeout) => {
                if (self.watch)() {
                    self.lose(&io::Error::other("hang-up"));
                    return Some(self.gone_again(Duration::ZERO));
                }
                // crossterm reports a resize only while it reads; redraw for it here.
                if self.raw {
                    let size = terminal::size().ok();
                    if size != self.size {
                        self.size = size;
                        self.redraw();
                    }
                }
                return None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.lose(&io::Error::other("the key reader stopped"));
                return Some(self.gone_again(Duration::ZERO));
            }
        };
        // Keys already waiting behind this one (a burst, a paste the terminal does not
        // bracket) are applied before the line is drawn once: drawing after each key made a
        // long burst quadratic, seconds for a few thousand keys.
        let result = loop {
            let result = match event {
                Event::Key(key) if key.kind == KeyEventKind::Release => None,
                Event::Key(key) => self.key(key),
                Event::Paste(text) => {
                    let text = text.replace("\r\n", "\n").replace('\r', "\n");
                    self.insert(text.trim_end_matches('\n'));
                    None
                }
                other => break Err(other),
            };
            if result.is_some() {
                break Ok(result);
            }
            match self.keys.try_recv() {
                Ok(Ok(next @ (Event::Key(_) | Event::Paste(_)))) => event = next,
                Ok(other) => {
                    self.next = Some(other);
                    break Ok(None);
                }
                Err(_) => break Ok(None),
            }
        };
        let event = match result {
            Ok(result) => {
                self.redraw();
                return result;
            }
            Err(event) => event,
        };
        match event {
            Event::Resize(..) => {
                self.size = terminal::size().ok();
                if self.reading.is_some() {
                    return Some(EditorEvent::Resized);
                }
                self.redraw();
                None
            }
            Event::FocusGained => {
                self.focused = true;
                None
            }
            Event::FocusLost => {
                self.focused = false;
                None
            }
            _ => None,
        }
    }

    /// [`EditorEvent::TerminalGone`]: at once the first time, after `timeout` afterwards, so
    /// that a caller polling in a loop cannot spin.
    fn gone_again(&mut self, timeout: Duration) -> EditorEvent {
        if self.told_gone {
            thread::sleep(timeout);
        }
        self.told_gone = true;
        EditorEvent::TerminalGone
    }

    fn key(&mut self, key: KeyEvent) -> Option<EditorEvent> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return Some(EditorEvent::Interrupt),
            KeyCode::Char('d') if ctrl => {
                if self.buffer.is_empty() {
                    return Some(EditorEvent::Eof);
                }
                if self.cursor < self.buffer.len() {
                    self.buffer.remove(self.cursor);
                }
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.buffer.len(),
            KeyCode::Char('u') if ctrl => {
                self.buffer.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('k') if ctrl => self.buffer.truncate(self.cursor),
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.buffer[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.buffer[start - 1] != ' ' {
                    start -= 1;
                }
                self.buffer.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Char('l') if ctrl => {
                self.emit(|out| queue!(out, Clear(ClearType::All), cursor::MoveTo(0, 0)));
            }
            KeyCode::Char(c) if !ctrl => self.insert(&c.to_string()),
            KeyCode::Enter => {
                let line: String = self.buffer.drain(..).collect();
                self.cursor = 0;
                self.history_pos = None;
                if !line.trim().is_empty() && self.history.last() != Some(&line) {
                    self.history.push(line.clone());
                }
                return Some(EditorEvent::Line(line));
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.buffer.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.buffer.len() => {
                self.buffer.remove(self.cursor);
            }
            KeyCode::PageUp => return Some(EditorEvent::PageUp),
            KeyCode::Up if key.modifiers.contains(KeyModifiers::SHIFT) => {
                return Some(EditorEvent::PageUp)
            }
            KeyCode::PageDown if self.reading.is_some() => return Some(EditorEvent::PageDown),
            KeyCode::Down
                if key.modifiers.contains(KeyModifiers::SHIFT) && self.reading.is_some() =>
            {
                return Some(EditorEvent::PageDown)
            }
            // Not reading back: nothing below the live view.
            KeyCode::Down if key.modifiers.contains(KeyModifiers::SHIFT) => {}
            KeyCode::End if self.reading.is_some() => return Some(EditorEvent::Bottom),
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.buffer.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.buffer.len(),
            KeyCode::Tab => self.complete(),
            KeyCode::Up => self.recall(true),
            KeyCode::Down => self.recall(false),
            _ => {}
        }
        None
    }

    /// The words Tab completes after `/to ` (the live chats' names).
    pub fn set_completions(&mut self, words: Vec<String>) {
        self.completions = words;
    }

    fn complete(&mut self) {
        if self.cursor != self.buffer.len() {
            return;
        }
        let line: String = self.buffer.iter().collect();
        if let Some(done) = complete_line(&line, &self.completions) {
            self.buffer = done.chars().collect();
            self.cursor = self.buffer.len();
        }
    }

    fn insert(&mut self, text: &str) {
        for c in text.chars() {
            self.buffer.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    fn recall(&mut self, older: bool) {
        if self.history.is_empty() {
            return;
        }
        let pos = match (self.history_pos, older) {
            (None, true) => Some(self.history.len() - 1),
            (None, false) => None,
            (Some(p), true) => Some(p.saturating_sub(1)),
            (Some(p), false) if p + 1 < self.history.len() => Some(p + 1),
            (Some(_), false) => None,
        };
        self.history_pos = pos;
        self.buffer = pos.map_or_else(Vec::new, |p| self.history[p].chars().collect());
        self.cursor = self.buffer.len();
    }

    /// Draws the prompt and the part of the buffer around the cursor that fits the width
    /// (long lines scroll sideways rather than wrap). Newlines in a paste show as `⏎`.
    fn redraw(&mut self) {
        if self.gone {
            return;
        }
        let width = terminal::size().map_or(80, |(w, _)| usize::from(w)).max(10);
        let (prompt, prompt_width) = fit_prompt(&self.prompt, width);
        let room = width.saturating_sub(prompt_width + 1).max(1);
        let shown: Vec<char> = self
            .buffer
            .iter()
            .map(|&c| if c == '\n' { '⏎' } else { c })
            .collect();
        // Scroll so that the cursor stays visible.
        let mut start = 0;
        while shown[start..self.cursor]
            .iter()
            .map(|&c| char_width(c))
            .sum::<usize>()
            >= room
        {
            start += 1;
        }
        let mut end = start;
        let mut used = 0;
        while end < shown.len() && used + char_width(shown[end]) < room {
            used += char_width(shown[end]);
            end += 1;
        }
        let visible: String = shown[start..end].iter().collect();
        let cursor_col: usize = shown[start..self.cursor]
            .iter()
            .map(|&c| char_width(c))
            .sum();
        let col = u16::try_from(prompt_width + cursor_col).unwrap_or(u16::MAX);
        self.emit(|out| {
            queue!(
                out,
                cursor::MoveToColumn(0),
                Clear(ClearType::CurrentLine),
                Print(prompt),
                Print(visible),
                cursor::MoveToColumn(col)
            )?;
            out.flush()
        });
    }
}

fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// The prompt as it fits a terminal `width` columns wide, and its width. One that would
/// leave the typed text less than a fifth of the row (10 to 16 columns) is cut, so that the
/// row never wraps — a wrapped prompt row would be left behind on every redraw: a status in
/// brackets (`[reconnecting in 8 s, attempt 5, …] Alice> `) loses the end of the status,
/// shown as `…`, so its start (what changes) and the prompt's end (`] Alice> `) stay; any
/// other prompt loses its start.
fn fit_prompt(prompt: &str, width: usize) -> (String, usize) {
    let full = text_width(prompt);
    let most = width.saturating_sub((width / 5).clamp(10, 16) + 1).max(2);
    if full <= most {
        return (prompt.to_owned(), full);
    }
    let (head, tail) = match prompt.rfind("] ") {
        Some(end) => prompt.split_at(end),
        None => ("", prompt),
    };
    // Room for the start of the status, if the end of the prompt leaves any.
    let tail_width = text_width(tail);
    if !head.is_empty() && tail_width + 1 < most {
        let mut shown = String::new();
        let mut used = 0;
        for c in head.chars() {
            if used + char_width(c) + 1 + tail_width > most {
                break;
            }
            used += char_width(c);
            shown.push(c);
        }
        shown.push('…');
        shown.push_str(tail);
        return (shown, used + 1 + tail_width);
    }
    let mut kept = Vec::new();
    let mut used = 1; // the `…`
    for c in prompt.chars().rev() {
        if used + char_width(c) > most {
            break;
        }
        used += char_width(c);
        kept.push(c);
    }
    kept.push('…');
    (kept.into_iter().rev().collect(), used)
}

fn text_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

impl<W: Write> Drop for LineEditor<W> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if !self.gone && self.reading.take().is_some() {
            let _ = queue!(self.out, terminal::LeaveAlternateScreen);
        }
        if !self.gone {
            if self.raw {
                let _ = queue!(self.out, DisableFocusChange);
            }
            let _ = queue!(
                self.out,
                DisableBracketedPaste,
                cursor::MoveToColumn(0),
                Clear(ClearType::CurrentLine)
            );
            let _ = self.out.flush();
        }
        if self.raw {
            let _ = terminal::disable_raw_mode();
        }
    }
}

/// Tab completion of a chat command: `/to PREFIX` (or `/to` and a space) becomes `/to NAME `
/// when one of `names` starts with PREFIX (any case), or the longest prefix all the
/// candidates share. `None`: nothing to complete.
pub fn complete_line(line: &str, names: &[String]) -> Option<String> {
    let prefix = line.strip_prefix("/to ")?;
    if prefix.contains(' ') && !names.iter().any(|n| n.starts_with(prefix)) {
        return None;
    }
    let lower = prefix.to_lowercase();
    let candidates: Vec<&String> = names
        .iter()
        .filter(|n| n.to_lowercase().starts_with(&lower))
        .collect();
    match candidates[..] {
        [] => None,
        [one] => Some(format!("/to {one} ")),
        _ => {
            let first: Vec<char> = candidates[0].chars().collect();
            let common = candidates.iter().skip(1).fold(first.len(), |len, n| {
                n.chars()
                    .zip(&first)
                    .take(len)
                    .take_while(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
                    .count()
            });
            let common: String = first[..common].iter().collect();
            (common.chars().count() > prefix.chars().count()).then(|| format!("/to {common}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEvent;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Instant;

    #[test]
    fn a_prompt_too_wide_for_the_window_is_cut_and_never_wraps() {
        let prompt = "[reconnecting in 12 s, attempt 6, offline since 04:01] Alice> ";
        // A standard terminal shows it whole.
        assert_eq!(fit_prompt(prompt, 80), (prompt.to_owned(), 62));
        for width in [30, 45, 60, 70] {
            let (shown, used) = fit_prompt(prompt, width);
            assert_eq!(used, text_width(&shown), "{width}: {shown:?}");
            assert!(used < width, "{width}: {shown:?}");
            assert!(shown.ends_with("> "), "{width}: {shown:?}");
            assert!(shown.contains('…'), "{width}: {shown:?}");
        }
        // The status keeps its start (what changes) and the prompt its end.
        assert_eq!(
            fit_prompt(prompt, 45).0,
            "[reconnecting in 12 s, a…] Alice> "
        );
        // Too narrow for both: the end of the prompt.
        assert_eq!(fit_prompt(prompt, 20).0, "… Alice> ");
        // Wide characters are never cut in two.
        let (shown, used) = fit_prompt("[再接続中 再接続中 再接続中] 李> ", 24);
        assert_eq!(used, text_width(&shown));
        assert!(used <= 13, "{shown:?}");
    }

    #[test]
    fn tab_completes_a_chat_name_after_to() {
        let names = vec!["Bob".to_owned(), "Bea".to_owned(), "Carol Ann".to_owned()];
        assert_eq!(
            complete_line("/to c", &names).as_deref(),
            Some("/to Carol Ann ")
        );
        assert_eq!(
            complete_line("/to b", &names),
            None,
            "Bob and Bea share only B"
        );
        assert_eq!(complete_line("/to bo", &names).as_deref(), Some("/to Bob "));
        assert_eq!(complete_line("/to ", &names), None);
        assert_eq!(complete_line("hello", &names), None);
        assert_eq!(complete_line("/to x", &names), None);
        let two = vec!["Alexander".to_owned(), "Alexandra".to_owned()];
        assert_eq!(
            complete_line("/to al", &two).as_deref(),
            Some("/to Alexand")
        );
    }

    /// A terminal that sends what the test scripted, then waits.
    struct Scripted(VecDeque<io::Result<Option<Event>>>);

    impl KeySource for Scripted {
        fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
            match self.0.pop_front() {
                Some(step) => step,
                None => {
                    thread::sleep(timeout);
                    Ok(None)
                }
            }
        }
    }

    fn typed(text: &str) -> Vec<io::Result<Option<Event>>> {
        text.chars()
            .map(|c| {
                let code = if c == '\n' {
                    KeyCode::Enter
                } else {
                    KeyCode::Char(c)
                };
                Ok(Some(Event::Key(KeyEvent::new(code, KeyModifiers::NONE))))
            })
            .collect()
    }

    /// Output that fails after `ok` writes, as a hung-up terminal's writes fail with EIO.
    #[derive(Clone, Default)]
    struct Screen {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: Arc<AtomicBool>,
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(io::Error::from_raw_os_error(5));
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn editor(steps: Vec<io::Result<Option<Event>>>, screen: &Screen) -> LineEditor<Screen> {
        LineEditor::with(screen.clone(), Scripted(steps.into()), || false, "me> ").unwrap()
    }

    /// Polls until something happens (the keys come from another thread).
    fn next_event(editor: &mut LineEditor<Screen>) -> EditorEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(event) = editor.poll(Duration::from_millis(50)) {
                return event;
            }
        }
        panic!("no event");
    }

    #[test]
    fn end_of_input_after_a_line_gives_the_line_then_terminal_gone() {
        let screen = Screen::default();
        let mut steps = typed("hi\n");
        steps.push(Err(io::ErrorKind::UnexpectedEof.into()));
        let mut editor = editor(steps, &screen);
        assert_eq!(next_event(&mut editor), EditorEvent::Line("hi".into()));
        assert_eq!(next_event(&mut editor), EditorEvent::TerminalGone);
        assert!(editor.is_gone());
        // Asked again it says so again, after the timeout: a loop around it cannot spin.
        let start = Instant::now();
        assert_eq!(
            editor.poll(Duration::from_millis(100)),
            Some(EditorEvent::TerminalGone)
        );
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn eio_from_the_terminal_is_terminal_gone_and_nothing_is_drawn_after() {
        let screen = Screen::default();
        let mut steps = typed("ab");
        steps.push(Err(io::Error::from_raw_os_error(5)));
        let mut editor = editor(steps, &screen);
        assert_eq!(next_event(&mut editor), EditorEvent::TerminalGone);
        let drawn = screen.bytes.lock().unwrap().len();
        editor.print_above("a message after the hang-up");
        editor.set_prompt("other> ");
        drop(editor);
        assert_eq!(screen.bytes.lock().unwrap().len(), drawn);
    }

    #[test]
    fn interruptions_are_retried() {
        let screen = Screen::default();
        let mut steps = vec![Err(io::ErrorKind::Interrupted.into())];
        steps.extend(typed("x\n"));
        let mut editor = editor(steps, &screen);
        assert_eq!(next_event(&mut editor), EditorEvent::Line("x".into()));
    }

    #[test]
    fn a_failed_write_is_terminal_gone() {
        let screen = Screen::default();
        let mut editor = editor(Vec::new(), &screen);
        assert_eq!(editor.poll(Duration::from_millis(10)), None);
        screen.fail.store(true, Ordering::Relaxed);
        editor.print_above("hello");
        assert_eq!(
            editor.poll(Duration::from_millis(10)),
            Some(EditorEvent::TerminalGone)
        );
    }

    #[test]
    fn the_watch_ends_the_session_even_if_the_reader_is_stuck() {
        struct Stuck;
        impl KeySource for Stuck {
            fn next(&mut self, _: Duration) -> io::Result<Option<Event>> {
                thread::sleep(Duration::from_secs(3600));
                Ok(None)
            }
        }
        let gone = Arc::new(AtomicBool::new(false));
        let watched = Arc::clone(&gone);
        let mut editor = LineEditor::with(
            Screen::default(),
            Stuck,
            move || watched.load(Ordering::Relaxed),
            "me> ",
        )
        .unwrap();
        assert_eq!(editor.poll(Duration::from_millis(10)), None);
        gone.store(true, Ordering::Relaxed);
        assert_eq!(
            editor.poll(Duration::from_millis(10)),
            Some(EditorEvent::TerminalGone)
        );
    }

    #[test]
    fn lines_printed_while_reading_back_are_held_counted_and_printed_on_the_way_back() {
        let screen = Screen::default();
        let mut editor = editor(Vec::new(), &screen);
        let drawn =
            |screen: &Screen| String::from_utf8_lossy(&screen.bytes.lock().unwrap()).into_owned();
        editor.print_above("before");
        editor.show_page(
            &["old 1".to_owned(), "old 2".to_owned()],
            Some("reading back"),
        );
        assert!(editor.is_reading());
        assert!(
            drawn(&screen).contains("\u{1b}[?1049h"),
            "the alternate screen"
        );
        let mark = screen.bytes.lock().unwrap().len();
        editor.print_above("new while reading");
        let since: String = drawn(&screen)[mark..].to_owned();
        assert!(
            !since.contains("new while reading"),
            "the page did not move"
        );
        assert!(since.contains("1 new line below"), "{since:?}");
        assert_eq!(editor.new_below(), 1);
        editor.leave_page();
        assert!(!editor.is_reading());
        let after: String = drawn(&screen)[mark..].to_owned();
        let left = after.find("\u{1b}[?1049l").expect("back to the live log");
        assert!(
            after[left..].contains("new while reading"),
            "printed on the way back"
        );
    }

    #[test]
    fn paging_keys_are_events_and_end_moves_the_cursor_unless_reading_back() {
        let key = |code, modifiers| Ok(Some(Event::Key(KeyEvent::new(code, modifiers))));
        let screen = Screen::default();
        let mut e = editor(
            vec![
                key(KeyCode::PageUp, KeyModifiers::NONE),
                key(KeyCode::Up, KeyModifiers::SHIFT),
            ],
            &screen,
        );
        assert_eq!(next_event(&mut e), EditorEvent::PageUp);
        assert_eq!(next_event(&mut e), EditorEvent::PageUp);
        // Not reading back: End is the end of the line, PgDn does nothing (neither is an
        // event; keys that are not events are applied together).
        let mut e = editor(
            vec![
                key(KeyCode::End, KeyModifiers::NONE),
                key(KeyCode::PageDown, KeyModifiers::NONE),
            ],
            &screen,
        );
        assert_eq!(e.poll(Duration::from_secs(5)), None);
        assert_eq!(e.poll(Duration::from_millis(100)), None);
        // Shift+Down and End while reading back.
        let mut e = editor(
            vec![
                key(KeyCode::Down, KeyModifiers::SHIFT),
                key(KeyCode::End, KeyModifiers::NONE),
            ],
            &screen,
        );
        e.show_page(&[], Some("reading back"));
        assert_eq!(next_event(&mut e), EditorEvent::PageDown);
        assert_eq!(next_event(&mut e), EditorEvent::Bottom);
    }
}
