//! Chat messages: what a message carries, how a new one is numbered, and how a chat is ordered.
//!
//! A message carries its author's sequence number, a Lamport counter and the author's
//! wall-clock time. The author is not on the wire: it is the peer that sent the frame (a
//! device only ever sends messages it wrote). Both devices order a chat by
//! [`order_key`] — Lamport counter, then author id, then sequence number — so they show the
//! same chat in the same order whoever was online when each message was written.

use crate::ids::DeviceId;
use crate::limits::{MAX_COUNTER, MAX_NAME_CHARS, MAX_TEXT_BYTES, MIN_NAME_CHARS};
use std::fmt;

/// One chat message, as written by its author.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The author's sequence number in this chat: 1 for the first message, then +1 each.
    pub seq: u64,
    /// Lamport counter: greater than every counter the author had seen in this chat (or
    /// equal to it at the limit, [`MAX_COUNTER`]).
    pub lamport: u64,
    /// The author's wall-clock time when writing, in milliseconds since the Unix epoch.
    /// Shown to users; never used for ordering (clocks skew and jump).
    pub sent_at_ms: i64,
    /// The text, valid UTF-8, 1 to [`MAX_TEXT_BYTES`] bytes.
    pub text: String,
}

/// Where a chat stands on this device, as far as writing a new message is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChatHead {
    /// Highest sequence number this device has used, or that the peer has confirmed holding
    /// from us (whichever is higher): the next message takes this plus one.
    pub last_own_seq: u64,
    /// Highest Lamport counter of any message in the chat, from either author.
    pub max_lamport: u64,
}

impl ChatHead {
    /// Writes the next message of this chat: the next sequence number and a Lamport counter
    /// above everything seen. The caller stores it durably before showing it as sent.
    pub fn compose(&self, text: &str, sent_at_ms: i64) -> Result<Message, TextError> {
        check_text(text)?;
        Ok(Message {
            seq: self.last_own_seq + 1,
            // Saturates at the protocol's limit, so that a peer that sent a counter at the
            // limit cannot make our messages unsendable; (lamport, author, seq) still orders
            // every message uniquely.
            lamport: (self.max_lamport + 1).min(MAX_COUNTER),
            sent_at_ms,
            text: text.to_owned(),
        })
    }

    /// Accounts for a message, either author, so the next compose orders after it.
    pub fn observe(&mut self, message: &Message, own: bool) {
        self.max_lamport = self.max_lamport.max(message.lamport);
        if own {
            self.last_own_seq = self.last_own_seq.max(message.seq);
        }
    }
}

/// The key both devices sort a chat by: Lamport counter, then author, then sequence number.
/// Unique per message, since one author never reuses a sequence number.
pub fn order_key(author: DeviceId, message: &Message) -> (u64, [u8; 16], u64) {
    (message.lamport, author.0, message.seq)
}

/// Why a text cannot be a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TextError {
    /// Nothing to send.
    Empty,
    /// More than [`MAX_TEXT_BYTES`] bytes.
    TooLong {
        /// The text's length in bytes.
        bytes: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty => write!(f, "the message is empty"),
            TextError::TooLong { bytes } => write!(
                f,
                "the message is {bytes} bytes long; the limit is {MAX_TEXT_BYTES} bytes"
            ),
        }
    }
}

impl std::error::Error for TextError {}

/// Checks a message text against the protocol's limits.
pub fn check_text(text: &str) -> Result<(), TextError> {
    if text.is_empty() {
        Err(TextError::Empty)
    } else if text.len() > MAX_TEXT_BYTES {
        Err(TextError::TooLong { bytes: text.len() })
    } else {
        Ok(())
    }
}

/// Why a text cannot be a display name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NameError {
    /// Fewer than [`MIN_NAME_CHARS`] characters.
    TooShort,
    /// More than [`MAX_NAME_CHARS`] characters.
    TooLong,
    /// A control character (newline, escape, …), which could garble a terminal.
    ControlCharacter,
    /// Leading or trailing white space.
    SurroundingSpace,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::TooShort => write!(f, "a name has at least {MIN_NAME_CHARS} characters"),
            NameError::TooLong => write!(f, "a name has at most {MAX_NAME_CHARS} characters"),
            NameError::ControlCharacter => write!(f, "a name cannot contain control characters"),
            NameError::SurroundingSpace => {
                write!(f, "a name cannot start or end with white space")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a display name: 2 to 15 characters, no control characters, no surrounding space.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let chars = name.chars().count();
    if chars < MIN_NAME_CHARS {
        Err(NameError::TooShort)
    } else if chars > MAX_NAME_CHARS {
        Err(NameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(NameError::ControlCharacter)
    } else if name.trim() != name {
        Err(NameError::SurroundingSpace)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_numbers_after_the_head() {
        let head = ChatHead {
            last_own_seq: 4,
            max_lamport: 9,
        };
        let m = head.compose("hi", 123).unwrap();
        assert_eq!((m.seq, m.lamport, m.sent_at_ms), (5, 10, 123));
    }

    #[test]
    fn text_limits_are_exact() {
        assert_eq!(check_text(""), Err(TextError::Empty));
        assert_eq!(check_text(&"a".repeat(MAX_TEXT_BYTES)), Ok(()));
        assert_eq!(
            check_text(&"a".repeat(MAX_TEXT_BYTES + 1)),
            Err(TextError::TooLong {
                bytes: MAX_TEXT_BYTES + 1
            })
        );
    }

    #[test]
    fn name_limits_count_characters_not_bytes() {
        assert_eq!(check_name("A"), Err(NameError::TooShort));
        assert_eq!(check_name("Al"), Ok(()));
        assert_eq!(check_name(&"é".repeat(15)), Ok(()));
        assert_eq!(check_name(&"é".repeat(16)), Err(NameError::TooLong));
        assert_eq!(check_name("Bob\x1b[2J"), Err(NameError::ControlCharacter));
        assert_eq!(check_name(" Bob"), Err(NameError::SurroundingSpace));
    }

    #[test]
    fn order_is_lamport_then_author() {
        let a = DeviceId([1; 16]);
        let b = DeviceId([2; 16]);
        let m = |lamport, seq| Message {
            seq,
            lamport,
            sent_at_ms: 0,
            text: "x".into(),
        };
        assert!(order_key(a, &m(1, 9)) < order_key(b, &m(1, 1)));
        assert!(order_key(b, &m(1, 1)) < order_key(a, &m(2, 1)));
    }
}
