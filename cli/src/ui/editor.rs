//! A small line editor on crossterm that lets incoming messages print above the line being
//! typed without garbling it.
//!
//! Why not rustyline or reedline: both block inside `readline` with no way for another
//! thread to end it, so a session that ends on the network side (peer refused us, store
//! failed) would leave the terminal in raw mode or wait for a key press. Here the main
//! thread owns the terminal, polls keys with a timeout, and prints network events between
//! polls. It handles what a chat needs: editing keys, history, bracketed paste (a pasted
//! multi-line text stays one message), Ctrl-C, Ctrl-D, and it works in Windows consoles.

use crossterm::event::{
    self, DisableBracketedPaste, EnableBracketedPaste, Event, KeyCode, KeyEvent, KeyEventKind,
    KeyModifiers,
};
use crossterm::style::Print;
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, queue};
use std::io::{self, Stdout, Write};
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
}

/// The prompt line at the bottom of the terminal.
pub struct LineEditor {
    out: Stdout,
    prompt: String,
    buffer: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    history_pos: Option<usize>,
}

impl LineEditor {
    /// Takes over the terminal (raw mode, bracketed paste) and draws the prompt.
    pub fn start(prompt: &str) -> io::Result<LineEditor> {
        terminal::enable_raw_mode()?;
        let mut editor = LineEditor {
            out: io::stdout(),
            prompt: prompt.to_owned(),
            buffer: Vec::new(),
            cursor: 0,
            history: Vec::new(),
            history_pos: None,
        };
        // Paste support is a nicety: some terminals refuse it.
        let _ = queue!(editor.out, EnableBracketedPaste);
        editor.redraw()?;
        Ok(editor)
    }

    /// Prints `text` (may span lines) above the prompt, then redraws the prompt.
    pub fn print_above(&mut self, text: &str) -> io::Result<()> {
        queue!(
            self.out,
            cursor::MoveToColumn(0),
            Clear(ClearType::CurrentLine)
        )?;
        for line in text.split('\n') {
            queue!(self.out, Print(line), Print("\r\n"))?;
        }
        self.redraw()
    }

    /// Changes the prompt (for example to show re-sync progress).
    pub fn set_prompt(&mut self, prompt: &str) -> io::Result<()> {
        if prompt != self.prompt {
            prompt.clone_into(&mut self.prompt);
            self.redraw()?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for a key and applies it.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<Option<EditorEvent>> {
        if !event::poll(timeout)? {
            return Ok(None);
        }
        let result = match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Paste(text) => {
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                self.insert(text.trim_end_matches('\n'));
                None
            }
            Event::Resize(..) => None,
            _ => return Ok(None),
        };
        self.redraw()?;
        Ok(result)
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
                let _ = queue!(self.out, Clear(ClearType::All), cursor::MoveTo(0, 0));
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
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.buffer.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.buffer.len(),
            KeyCode::Up => self.recall(true),
            KeyCode::Down => self.recall(false),
            _ => {}
        }
        None
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
    fn redraw(&mut self) -> io::Result<()> {
        let width = terminal::size().map_or(80, |(w, _)| usize::from(w)).max(10);
        let prompt_width: usize = self.prompt.chars().map(char_width).sum();
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
        queue!(
            self.out,
            cursor::MoveToColumn(0),
            Clear(ClearType::CurrentLine),
            Print(&self.prompt),
            Print(visible),
            cursor::MoveToColumn(col)
        )?;
        self.out.flush()
    }
}

fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

impl Drop for LineEditor {
    fn drop(&mut self) {
        let _ = queue!(
            self.out,
            DisableBracketedPaste,
            cursor::MoveToColumn(0),
            Clear(ClearType::CurrentLine)
        );
        let _ = self.out.flush();
        let _ = terminal::disable_raw_mode();
    }
}
