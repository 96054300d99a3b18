//! The chat view on a terminal, shared by `-eC` and live sessions: its opening screenful and
//! reading it back page by page.
//!
//! [`ChatPages`] is the chat as the scrollback reads it: the store's keyset queries on the
//! display index ([`Database::page`]), each line rendered as the presenter shows history;
//! [`AsOpened`] is the same chat as it stood when a live session opened, for the session's
//! opening screenful.
//! [`Scroll`] follows the keys PgUp, PgDn, Shift+Up/Down and End: it asks the scrollback for
//! the screen before or after the one shown and hands it to the line editor, which draws it
//! over the live log and holds what arrives meanwhile. No key ever loads the chat: each move
//! reads at most a screenful and one line.

use crate::store::{Database, DisplayKey, PageSide};
use crate::ui::editor::{EditorEvent, LineEditor};
use crate::ui::scrollback::{self, Marker, PageSource, Side, View};
use crate::ui::{HistoryEntry, Presenter};
use socketfalco_core::{ChatResume, DeviceId};

/// One chat, as the scrollback reads it.
pub struct ChatPages<'a> {
    /// The store (a read handle of its own in a live session).
    pub db: &'a Database,
    /// The chat.
    pub peer: DeviceId,
    /// Renders the lines.
    pub presenter: &'a Presenter,
    /// This device's name, for own lines.
    pub me: &'a str,
}

impl PageSource for ChatPages<'_> {
    type Key = DisplayKey;

    fn page(
        &mut self,
        from: Option<DisplayKey>,
        side: Side,
        limit: usize,
    ) -> Result<Vec<(DisplayKey, String)>, String> {
        let side = match side {
            Side::Older => PageSide::Older,
            Side::Newer => PageSide::Newer,
        };
        let page = self
            .db
            .page(self.peer, from, side, limit)
            .map_err(|e| e.to_string())?;
        let peer_name = self.presenter.name_of(self.peer);
        Ok(page
            .into_iter()
            .map(|stored| {
                let key = stored.display_key();
                let entry = HistoryEntry {
                    author_name: if stored.mine {
                        self.me.to_owned()
                    } else {
                        peer_name.clone()
                    },
                    mine: stored.mine,
                    delivered: stored.delivered,
                    message: stored.message,
                    peer: self.peer,
                };
                (key, self.presenter.history_line(&entry))
            })
            .collect())
    }
}

/// A chat as it stood when a session opened: the lines its re-sync brings are left out (they
/// arrive and show as the session's own lines), so a live session's opening screenful never
/// shows a line twice, whichever of them the storage thread has committed by then.
pub struct AsOpened<'a> {
    /// The chat.
    pub pages: ChatPages<'a>,
    /// How far this device had got in it when the session opened.
    pub held: ChatResume,
}

impl AsOpened<'_> {
    /// Rows read per query while leaving out the re-sync's lines.
    const FETCH: usize = 256;

    fn held_at_open(&self, key: &DisplayKey) -> bool {
        if key.author == self.pages.peer {
            key.seq <= self.held.received_up_to
        } else {
            // Own lines that waited unnumbered when it opened were numbered by its re-sync,
            // after the last own number then: they were written before, and are shown.
            key.seq == 0 || key.seq <= self.held.last_own_seq + self.held.unnumbered
        }
    }
}

impl PageSource for AsOpened<'_> {
    type Key = DisplayKey;

    fn page(
        &mut self,
        mut from: Option<DisplayKey>,
        side: Side,
        limit: usize,
    ) -> Result<Vec<(DisplayKey, String)>, String> {
        let mut kept = std::collections::VecDeque::new();
        let fetch = limit.max(Self::FETCH);
        loop {
            let batch = self.pages.page(from, side, fetch)?;
            let exhausted = batch.len() < fetch;
            from = match side {
                Side::Older => batch.first(),
                Side::Newer => batch.last(),
            }
            .map(|(key, _)| *key);
            let held: Vec<_> = batch
                .into_iter()
                .filter(|(key, _)| self.held_at_open(key))
                .collect();
            match side {
                Side::Older => held.into_iter().rev().for_each(|e| kept.push_front(e)),
                Side::Newer => kept.extend(held),
            }
            if kept.len() >= limit || exhausted {
                break;
            }
        }
        match side {
            Side::Older => {
                while kept.len() > limit {
                    kept.pop_front();
                }
            }
            Side::Newer => kept.truncate(limit),
        }
        Ok(kept.into())
    }
}

/// Reading a chat back: the page shown, if any, and the unread marker.
#[derive(Default)]
pub struct Scroll {
    /// The page shown (`None`: the live view).
    view: Option<View<DisplayKey>>,
    /// The chat being read back (a live session's current chat may change meanwhile).
    chat: Option<DeviceId>,
    /// The row above the first unread line.
    pub marker: Option<Marker<DisplayKey>>,
    /// How many rows of the chat's newest lines the live view shows (the opening screenful
    /// of `-eC`); 0 when the live view is a session's log rather than the chat's history.
    live_rows: usize,
}

impl Scroll {
    /// A scroll in the live view, which shows the chat's newest `live_rows` rows (0: none,
    /// the first PgUp then shows the chat's last screenful).
    pub fn new(marker: Option<Marker<DisplayKey>>, live_rows: usize) -> Scroll {
        Scroll {
            view: None,
            chat: None,
            marker,
            live_rows,
        }
    }

    /// The chat being read back, if a page is shown.
    pub fn chat(&self) -> Option<DeviceId> {
        self.view.as_ref().and(self.chat)
    }

    /// Carries out a paging key (`PageUp`, `PageDown`, `Bottom`) for the chat `pages` reads;
    /// other events are left alone. Returns true when the view went back to the live one
    /// (the chat is read then).
    pub fn key<W: std::io::Write>(
        &mut self,
        event: &EditorEvent,
        pages: &mut ChatPages<'_>,
        editor: &mut LineEditor<W>,
    ) -> bool {
        let (width, _) = editor.size();
        let area = editor.page_rows();
        let marker = self.marker.clone();
        let moved = match (event, &self.view) {
            (EditorEvent::PageUp, None) => {
                self.chat = Some(pages.peer);
                let live_rows = self.live_rows;
                // The screen just above the chat's lines the live view shows, or the chat's
                // last screen when it shows none.
                scrollback::last_screen(pages, area, width, marker.as_ref()).and_then(|last| {
                    if live_rows == 0 {
                        return Ok(Some((last, Some("reading back"))));
                    }
                    let shown = scrollback::last_screen(pages, live_rows, width, marker.as_ref())?;
                    match scrollback::page_up(pages, &shown, area, width, marker.as_ref())? {
                        Some(up) => {
                            let note = note_for(&up);
                            Ok(Some((up, Some(note))))
                        }
                        None => Ok(Some((last, Some(AT_START)))),
                    }
                })
            }
            (EditorEvent::PageUp, Some(view)) => {
                scrollback::page_up(pages, view, area, width, marker.as_ref()).map(|up| {
                    Some(match up {
                        Some(up) => {
                            let note = note_for(&up);
                            (up, Some(note))
                        }
                        None => (view.clone(), Some(AT_START)),
                    })
                })
            }
            (EditorEvent::PageDown, Some(view)) => {
                scrollback::page_down(pages, view, area, width, marker.as_ref())
                    .map(|down| down.map(|down| (down, Some("reading back"))))
            }
            (EditorEvent::Bottom, Some(_)) => Ok(None),
            // The same page at the new size, its note kept.
            (EditorEvent::Resized, Some(view)) => {
                scrollback::relayout(pages, view, area, width, marker.as_ref())
                    .map(|again| Some((again, None)))
            }
            _ => return false,
        };
        match moved {
            Ok(Some((view, note))) => {
                editor.show_page(&view.rows, note);
                self.view = Some(view);
                false
            }
            Ok(None) => {
                self.view = None;
                editor.leave_page();
                true
            }
            Err(e) => {
                self.view = None;
                editor.leave_page();
                editor.print_above(&format!("error: cannot read the chat back: {e}"));
                true
            }
        }
    }
}

/// The status row's note on a page that shows the chat's first row.
const AT_START: &str = "the beginning of the chat";

/// The status row's note for a page reached by a move up.
fn note_for(up: &View<DisplayKey>) -> &'static str {
    if up.at_start() {
        AT_START
    } else {
        "reading back"
    }
}

/// The chat's newest lines that fill `rows` rows of `width` columns, as rows to print, with
/// the unread marker above the first unread line if it is among them.
pub fn opening_rows<S: PageSource<Key = DisplayKey>>(
    pages: &mut S,
    rows: usize,
    width: usize,
    marker: Option<&Marker<DisplayKey>>,
) -> Result<Vec<String>, String> {
    Ok(scrollback::last_screen(pages, rows, width, marker)?.rows)
}
