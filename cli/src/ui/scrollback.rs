//! Reading a chat back, a screenful at a time, without ever holding the chat in memory.
//!
//! This module owns the paging arithmetic of the scrollback and nothing else: which lines of
//! a chat fill a screen above a given place, which screen comes before or after it, and how
//! the lines wrap at the terminal's width. It reads the chat through a [`PageSource`] (the
//! store's keyset queries on the display index, `Database::page`, in the program; a vector in
//! the tests), never more than a screenful of entries per move, so a move costs the same at
//! any history length and any position. Drawing is the line editor's; which chat and which
//! store are the command's.
//!
//! A screen ([`View`]) is laid out from the bottom up, from a row of an entry: the last row
//! of the entry at the bottom (or, when a page move ended inside an entry taller than the
//! screen, the row where it ended), then the rows above it as they fit, the topmost entry
//! possibly cut (its first rows hidden). [`page_up`] shows the screen whose last row is the
//! one just above the screen's first; [`page_down`] the screen whose first row is the one
//! just below the screen's last, or says that the end was reached (back to the live view):
//! so every row of the chat is on some page, a message taller than the screen too. A marker
//! row ("── 3 unread ──") goes above the first unread entry wherever it shows.

use unicode_width::UnicodeWidthChar;

/// Which side of a place in the chat to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The entries just before it (the newest of the chat without a place).
    Older,
    /// The entries just after it (the oldest of the chat without a place).
    Newer,
}

/// Where the entries of a chat come from, in display order, each with its text as shown
/// (it may span lines: a message with newlines).
pub trait PageSource {
    /// A place in the chat's display order.
    type Key: Copy + Eq;
    /// At most `limit` entries next to `from` (not `from` itself) on `side`, in display order
    /// (oldest first), the nearest ones; without `from`, the newest (`Older`) or the oldest
    /// (`Newer`) of the chat.
    fn page(
        &mut self,
        from: Option<Self::Key>,
        side: Side,
        limit: usize,
    ) -> Result<Vec<(Self::Key, String)>, String>;
}

/// The row drawn above the first unread entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker<K> {
    /// The first unread entry.
    pub key: K,
    /// What the row says.
    pub label: String,
}

/// One screen of the chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View<K> {
    /// The rows to draw, top to bottom, each at most the width wide; fewer than the area when
    /// the whole chat is shorter (drawn at the bottom of the area).
    pub rows: Vec<String>,
    /// The entries shown, top to bottom.
    keys: Vec<K>,
    /// How many of the top entry's first rows are above the screen (0: it is shown from its
    /// beginning).
    top_hidden: usize,
    /// How many of the bottom entry's last rows are below the screen (0: it is shown to its
    /// end).
    bottom_hidden: usize,
    /// The screen shows the chat's first row (known after a page move up).
    at_start: bool,
}

impl<K: Copy + Eq> View<K> {
    /// The entry at the bottom of the screen; `None` for an empty chat.
    pub fn bottom(&self) -> Option<K> {
        self.keys.last().copied()
    }

    /// The entry at the top of the screen (maybe cut); `None` for an empty chat.
    pub fn top(&self) -> Option<K> {
        self.keys.first().copied()
    }

    /// Whether a page move up found this screen to show the chat's first row.
    pub fn at_start(&self) -> bool {
        self.at_start
    }
}

/// `text` as rows of at most `width` columns: split at its newlines, each line wrapped at
/// the width (by display width: a wide character never straddles two rows). An empty line is
/// one empty row.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(2);
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let mut row = String::new();
        let mut used = 0;
        for c in line.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push(c);
            used += w;
        }
        rows.push(row);
    }
    rows
}

/// The rows an entry takes: the marker row above it if it is the first unread one, then its
/// text wrapped at the width.
fn entry_rows<K: Copy + Eq>(
    key: K,
    text: &str,
    width: usize,
    marker: Option<&Marker<K>>,
) -> Vec<String> {
    let mut rows = Vec::new();
    if let Some(marker) = marker.filter(|m| m.key == key) {
        rows.push(marker_row(&marker.label, width));
    }
    rows.extend(wrap(text, width));
    rows
}

/// Lays `entries` (display order) out on a screen of `area` rows from the bottom up: the
/// newest entry at the bottom, but for its last `bottom_hidden` rows (at least its first row
/// is shown), older ones above as they fit, the topmost maybe cut.
pub fn layout<K: Copy + Eq>(
    entries: &[(K, String)],
    area: usize,
    width: usize,
    marker: Option<&Marker<K>>,
    bottom_hidden: usize,
) -> View<K> {
    let area = area.max(1);
    let mut rows: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    let mut top_hidden = 0;
    let mut hidden_below = 0;
    for (key, text) in entries.iter().rev() {
        let mut entry = entry_rows(*key, text, width, marker);
        if keys.is_empty() {
            hidden_below = bottom_hidden.min(entry.len() - 1);
            entry.truncate(entry.len() - hidden_below);
        }
        keys.push(*key);
        let room = area - rows.len();
        top_hidden = entry.len().saturating_sub(room);
        entry.drain(..top_hidden);
        entry.append(&mut rows);
        rows = entry;
        if rows.len() == area {
            break;
        }
    }
    keys.reverse();
    View {
        rows,
        keys,
        top_hidden,
        bottom_hidden: hidden_below,
        at_start: false,
    }
}

/// The entries before `key` (at most `limit`) and the entry `key` itself, in display order.
fn through<S: PageSource>(
    source: &mut S,
    key: S::Key,
    limit: usize,
) -> Result<Vec<(S::Key, String)>, String> {
    let mut entries = source.page(Some(key), Side::Older, limit)?;
    // The entry itself: the one after the older ones (the chat's first without any).
    let before = entries.last().map(|(key, _)| *key);
    entries.extend(source.page(before, Side::Newer, 1)?);
    Ok(entries)
}

/// The marker row: the label centred in a rule as wide as the screen.
pub fn marker_row(label: &str, width: usize) -> String {
    let label = format!(" {label} ");
    let used: usize = label.chars().map(|c| c.width().unwrap_or(0)).sum();
    let left = width.saturating_sub(used) / 2;
    let right = width.saturating_sub(used + left);
    format!("{}{label}{}", "─".repeat(left), "─".repeat(right))
}

/// The newest screenful of the chat (the live view's screen).
pub fn last_screen<S: PageSource>(
    source: &mut S,
    area: usize,
    width: usize,
    marker: Option<&Marker<S::Key>>,
) -> Result<View<S::Key>, String> {
    let entries = source.page(None, Side::Older, area.max(1))?;
    Ok(layout(&entries, area, width, marker, 0))
}

/// `view` laid out again at another size (a resized window): the same entry at the bottom
/// (as many of its last rows hidden as before, if it still has that many), as much above it
/// as fits.
pub fn relayout<S: PageSource>(
    source: &mut S,
    view: &View<S::Key>,
    area: usize,
    width: usize,
    marker: Option<&Marker<S::Key>>,
) -> Result<View<S::Key>, String> {
    let Some(bottom) = view.bottom() else {
        return last_screen(source, area, width, marker);
    };
    let entries = through(source, bottom, area.max(1))?;
    Ok(layout(&entries, area, width, marker, view.bottom_hidden))
}

/// The screen before `view`, ending on the row just above its first; `None` when `view`
/// shows the beginning of the chat.
pub fn page_up<S: PageSource>(
    source: &mut S,
    view: &View<S::Key>,
    area: usize,
    width: usize,
    marker: Option<&Marker<S::Key>>,
) -> Result<Option<View<S::Key>>, String> {
    let Some(top) = view.top() else {
        return Ok(None);
    };
    let (entries, older, hidden) = if view.top_hidden > 0 {
        // The rest of the cut top entry: the screen ends on the row above the first shown.
        let entries = through(source, top, area.max(1))?;
        let Some((key, text)) = entries.last() else {
            return Ok(None);
        };
        let total = entry_rows(*key, text, width, marker).len();
        let older = entries.len() - 1;
        (entries, older, total.saturating_sub(view.top_hidden))
    } else {
        let entries = source.page(Some(top), Side::Older, area.max(1))?;
        if entries.is_empty() {
            return Ok(None);
        }
        let older = entries.len();
        (entries, older, 0)
    };
    let mut up = layout(&entries, area, width, marker, hidden);
    // Fewer entries before than asked for, all of them shown from their first row: the start.
    up.at_start = older < area.max(1) && up.keys.len() == entries.len() && up.top_hidden == 0;
    if up.rows.len() < area.max(1) {
        // The beginning of the chat does not fill a screen from there: its first screenful,
        // as a pager shows the top of a text.
        return first_screen(source, area, width, marker).map(Some);
    }
    Ok(Some(up))
}

/// The chat's first screenful: its first rows, top down.
fn first_screen<S: PageSource>(
    source: &mut S,
    area: usize,
    width: usize,
    marker: Option<&Marker<S::Key>>,
) -> Result<View<S::Key>, String> {
    let area = area.max(1);
    let entries = source.page(None, Side::Newer, area)?;
    let mut filled = 0;
    let mut end = entries.len();
    for (i, (key, text)) in entries.iter().enumerate() {
        filled += entry_rows(*key, text, width, marker).len();
        if filled >= area {
            end = i + 1;
            break;
        }
    }
    let mut first = layout(
        &entries[..end],
        area,
        width,
        marker,
        filled.saturating_sub(area),
    );
    first.at_start = true;
    Ok(first)
}

/// The screen after `view`; `None` when no full screen follows it (the caller returns to the
/// live view, which shows the chat's end).
pub fn page_down<S: PageSource>(
    source: &mut S,
    view: &View<S::Key>,
    area: usize,
    width: usize,
    marker: Option<&Marker<S::Key>>,
) -> Result<Option<View<S::Key>>, String> {
    let Some(bottom) = view.bottom() else {
        return Ok(None);
    };
    let area = area.max(1);
    // The rows below the screen: the rest of the bottom entry, then the entries after it —
    // enough to fill a screen, and one more to know that the chat goes on.
    let mut filled = view.bottom_hidden;
    if filled >= area {
        // Still inside a tall bottom entry.
        let entries = through(source, bottom, area)?;
        return Ok(Some(layout(
            &entries,
            area,
            width,
            marker,
            view.bottom_hidden - area,
        )));
    }
    let newer = source.page(Some(bottom), Side::Newer, area + 1)?;
    for (i, (key, text)) in newer.iter().enumerate() {
        let rows = entry_rows(*key, text, width, marker).len();
        filled += rows;
        if filled >= area {
            let hidden = filled - area;
            if hidden == 0 && i + 1 == newer.len() {
                // This screen ends the chat: that is the live view.
                return Ok(None);
            }
            let entries = through(source, *key, area)?;
            return Ok(Some(layout(&entries, area, width, marker, hidden)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat in memory; counts what it was asked, to show that no move reads the chat.
    struct Chat {
        entries: Vec<(u32, String)>,
        most_read: usize,
    }

    impl Chat {
        fn of(texts: &[&str]) -> Chat {
            Chat {
                entries: (0u32..)
                    .zip(texts.iter().map(|t| (*t).to_owned()))
                    .collect(),
                most_read: 0,
            }
        }

        fn numbered(n: u32) -> Chat {
            Chat {
                entries: (0..n).map(|i| (i, format!("line {i}"))).collect(),
                most_read: 0,
            }
        }
    }

    impl PageSource for Chat {
        type Key = u32;
        fn page(
            &mut self,
            from: Option<u32>,
            side: Side,
            limit: usize,
        ) -> Result<Vec<(u32, String)>, String> {
            let page: Vec<(u32, String)> = match side {
                Side::Older => {
                    let before: Vec<_> = self
                        .entries
                        .iter()
                        .filter(|(k, _)| from.is_none_or(|f| *k < f))
                        .cloned()
                        .collect();
                    before[before.len().saturating_sub(limit)..].to_vec()
                }
                Side::Newer => self
                    .entries
                    .iter()
                    .filter(|(k, _)| from.is_none_or(|f| *k > f))
                    .take(limit)
                    .cloned()
                    .collect(),
            };
            self.most_read = self.most_read.max(page.len());
            Ok(page)
        }
    }

    #[test]
    fn wrapping_splits_at_newlines_and_at_the_width_by_display_width() {
        assert_eq!(wrap("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(wrap("ab\n    cd", 10), ["ab", "    cd"]);
        assert_eq!(wrap("", 10), [""]);
        // A wide character that does not fit goes to the next row whole.
        assert_eq!(wrap("abc日本", 4), ["abc", "日本"]);
    }

    #[test]
    fn the_last_screen_ends_with_the_last_line() {
        let mut chat = Chat::numbered(1000);
        let view = last_screen(&mut chat, 5, 80, None).unwrap();
        assert_eq!(
            view.rows,
            ["line 995", "line 996", "line 997", "line 998", "line 999"]
        );
        assert_eq!(view.bottom(), Some(999));
        assert!(chat.most_read <= 5);
    }

    #[test]
    fn a_short_chat_fills_only_part_of_the_screen() {
        let mut chat = Chat::of(&["a", "b"]);
        let view = last_screen(&mut chat, 5, 80, None).unwrap();
        assert_eq!(view.rows, ["a", "b"]);
        assert_eq!(page_up(&mut chat, &view, 5, 80, None).unwrap(), None);
        assert_eq!(page_down(&mut chat, &view, 5, 80, None).unwrap(), None);
        let empty = last_screen(&mut Chat::of(&[]), 5, 80, None).unwrap();
        assert!(empty.rows.is_empty());
        assert_eq!(
            page_up(&mut Chat::of(&[]), &empty, 5, 80, None).unwrap(),
            None
        );
    }

    #[test]
    fn paging_up_and_down_walks_the_whole_chat_a_screen_at_a_time() {
        let mut chat = Chat::numbered(23);
        let last = last_screen(&mut chat, 5, 80, None).unwrap();
        let mut view = last.clone();
        let mut seen = view.rows.clone();
        while let Some(up) = page_up(&mut chat, &view, 5, 80, None).unwrap() {
            let above = view.top().unwrap();
            if up.top() == Some(0) {
                // The chat's first screenful, full: it may overlap the screen below it.
                assert_eq!(up.rows.len(), 5);
                assert!(up.bottom().unwrap() + 1 >= above, "no gap");
                seen.splice(0..0, up.rows[..above as usize].iter().cloned());
            } else {
                assert_eq!(up.bottom().unwrap() + 1, above, "no gap, no overlap");
                seen.splice(0..0, up.rows.clone());
            }
            view = up;
        }
        let all: Vec<String> = (0..23).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, all);
        assert_eq!(view.top(), Some(0));
        assert!(view.at_start());
        // Down again: each screen starts just below the last, until the end is the live view.
        let mut screens = 0;
        while let Some(down) = page_down(&mut chat, &view, 5, 80, None).unwrap() {
            assert!(down.top().unwrap() <= view.bottom().unwrap() + 1);
            view = down;
            screens += 1;
        }
        assert!(screens >= 3, "{screens}");
        assert!(
            view.bottom().unwrap() >= 17,
            "the last screen before the live one"
        );
        assert!(
            chat.most_read <= 6,
            "never more than a screen and one: {}",
            chat.most_read
        );
    }

    #[test]
    fn paging_back_and_forth_returns_to_the_same_screen() {
        let mut chat = Chat::numbered(100);
        let last = last_screen(&mut chat, 10, 80, None).unwrap();
        let up1 = page_up(&mut chat, &last, 10, 80, None).unwrap().unwrap();
        let up2 = page_up(&mut chat, &up1, 10, 80, None).unwrap().unwrap();
        assert_eq!(up2.rows[0], "line 70");
        let down = page_down(&mut chat, &up2, 10, 80, None).unwrap().unwrap();
        assert_eq!(down, up1);
        assert_eq!(
            page_down(&mut chat, &down, 10, 80, None).unwrap(),
            None,
            "then live"
        );
    }

    #[test]
    fn long_entries_wrap_and_the_top_one_is_cut_then_shown_whole() {
        let mut chat = Chat::of(&["first", "a long line that wraps", "x", "y"]);
        // Width 10: the long entry is 3 rows; a screen of 4 rows shows its last row.
        let view = last_screen(&mut chat, 4, 10, None).unwrap();
        assert_eq!(view.rows, ["e that wra", "ps", "x", "y"]);
        assert_eq!(view.top(), Some(1));
        let up = page_up(&mut chat, &view, 4, 10, None).unwrap().unwrap();
        assert_eq!(up.rows, ["first", "a long lin", "e that wra", "ps"]);
        assert_eq!(up.bottom(), Some(1));
    }

    #[test]
    fn an_entry_taller_than_the_screen_is_read_whole_a_screen_at_a_time() {
        let tall = (1..=8)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let mut chat = Chat::of(&["before", &tall, "after 1", "after 2"]);
        // The live view ends with the chat's last rows.
        let last = last_screen(&mut chat, 3, 10, None).unwrap();
        assert_eq!(last.rows, ["8", "after 1", "after 2"]);
        // Up, a screen at a time, through every row of the tall entry, then what is before.
        let mut screens = vec![last.clone()];
        while let Some(up) = page_up(&mut chat, screens.last().unwrap(), 3, 10, None).unwrap() {
            screens.push(up);
        }
        let rows: Vec<Vec<String>> = screens.iter().rev().map(|v| v.rows.clone()).collect();
        assert_eq!(
            rows,
            [
                vec!["before", "1", "2"],
                vec!["2", "3", "4"],
                vec!["5", "6", "7"],
                vec!["8", "after 1", "after 2"],
            ]
        );
        // Down again from the top, the same screens, then the live view.
        let mut view = screens.pop().unwrap();
        let mut down_rows = vec![view.rows.clone()];
        while let Some(down) = page_down(&mut chat, &view, 3, 10, None).unwrap() {
            down_rows.push(down.rows.clone());
            view = down;
        }
        assert_eq!(
            down_rows,
            [
                vec!["before", "1", "2"],
                vec!["3", "4", "5"],
                vec!["6", "7", "8"]
            ]
        );
        // A tall entry alone, whose first screen is full: up reaches its first row.
        let mut alone = Chat::of(&[&tall]);
        let mut view = last_screen(&mut alone, 4, 10, None).unwrap();
        assert_eq!(view.rows, ["5", "6", "7", "8"]);
        view = page_up(&mut alone, &view, 4, 10, None).unwrap().unwrap();
        assert_eq!(view.rows, ["1", "2", "3", "4"]);
        assert_eq!(page_up(&mut alone, &view, 4, 10, None).unwrap(), None);
        // Laid out again at another size, the same bottom row stays at the bottom.
        let again = relayout(&mut alone, &view, 2, 10, None).unwrap();
        assert_eq!(again.rows, ["3", "4"]);
    }

    #[test]
    fn the_unread_marker_sits_above_the_first_unread_entry() {
        let mut chat = Chat::numbered(10);
        let marker = Marker {
            key: 8,
            label: "2 unread".to_owned(),
        };
        let view = last_screen(&mut chat, 4, 20, Some(&marker)).unwrap();
        assert_eq!(view.rows.len(), 4);
        assert_eq!(view.rows[0], "line 7");
        assert!(view.rows[1].contains(" 2 unread "), "{:?}", view.rows);
        assert_eq!(view.rows[1].chars().count(), 20);
        assert_eq!(&view.rows[2..], ["line 8", "line 9"]);
    }

    #[test]
    fn a_page_laid_out_again_at_another_size_keeps_its_bottom_line() {
        let mut chat = Chat::numbered(1000);
        let last = last_screen(&mut chat, 10, 40, None).unwrap();
        let view = page_up(&mut chat, &last, 10, 40, None).unwrap().unwrap();
        assert_eq!(view.rows.last().unwrap(), "line 989");
        // Taller and narrower: "line 989" still at the bottom, wrapped, more above it.
        let again = relayout(&mut chat, &view, 20, 5, None).unwrap();
        assert_eq!(again.bottom(), Some(989));
        assert_eq!(&again.rows[again.rows.len() - 2..], ["line ", "989"]);
        assert_eq!(again.rows.len(), 20);
        // Shorter: fewer lines above it.
        let again = relayout(&mut chat, &view, 3, 40, None).unwrap();
        assert_eq!(again.rows, ["line 987", "line 988", "line 989"]);
        assert!(chat.most_read <= 20, "read {} entries", chat.most_read);
        // The chat's first line at the bottom: nothing above it.
        let mut short = Chat::of(&["only"]);
        let view = last_screen(&mut short, 5, 40, None).unwrap();
        let again = relayout(&mut short, &view, 8, 20, None).unwrap();
        assert_eq!(again.rows, ["only"]);
    }
}
