//! What a chat's other threads (the network loop, the standard input's reader, the log) tell
//! the thread that shows it: [`Update`]s, through a channel that counts how much waits in it.
//!
//! The count is the endpoint's [`OutputBacklog`]: when the showing thread falls far behind
//! (a `--serve` listener whose output goes to a pipe nobody reads), the endpoint stops reading
//! from its peers until it caught up, so what they send waits with them, unacked, instead of
//! in this process's memory without end (socketfalco_transport's `backlog` module).

use crate::ui::FirstContact;
use socketfalco_transport::{Output, OutputBacklog};
use std::sync::mpsc::{self, RecvError, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// Everything the user interface reacts to.
pub enum Update {
    Net(Output),
    /// A line of the script's input that is not a line of text: refused, not sent.
    BadLine {
        /// Its number in the input, from 1.
        number: u64,
        /// Why.
        why: String,
    },
    /// The first connection with this peer: its key was just pinned.
    FirstContact(FirstContact),
    Finished(Result<(), String>),
    /// The listener's onion service is published at this address (`….onion:PORT`).
    Onion(String),
    Line(String),
    EndOfInput,
}

impl Update {
    /// About how many bytes of memory an output holds while it waits: itself and its texts
    /// (the rest of an output is a few small fields). The script's own input lines count
    /// nothing: they are no output, and the endpoint must not stop reading for them.
    fn weight(&self) -> usize {
        let texts = match self {
            Update::Net(output) => match output {
                Output::Received { message, .. } | Output::Sent { message, .. } => {
                    message.text.len()
                }
                Output::Rejected { text, reason } => text.len() + reason.len(),
                Output::NotSent { texts, reason } => {
                    texts.iter().map(String::len).sum::<usize>() + reason.len()
                }
                Output::Warning(text) | Output::Pending(text) | Output::Connecting(text) => {
                    text.len()
                }
                _ => 0,
            },
            Update::Onion(address) => address.len(),
            Update::FirstContact(_) | Update::Finished(_) => 0,
            Update::Line(_) | Update::BadLine { .. } | Update::EndOfInput => return 0,
        };
        std::mem::size_of::<Update>() + texts
    }
}

/// A channel for [`Update`]s whose waiting bytes `backlog` counts; give the same backlog to
/// the endpoint ([`socketfalco_transport::EndpointConfig::output_backlog`]).
pub fn channel(backlog: Arc<OutputBacklog>) -> (UpdateSender, Updates) {
    let (tx, rx) = mpsc::channel();
    (
        UpdateSender {
            tx,
            backlog: Arc::clone(&backlog),
        },
        Updates { rx, backlog },
    )
}

/// The sending end: counts each update in as it goes.
#[derive(Clone)]
pub struct UpdateSender {
    tx: mpsc::Sender<Update>,
    backlog: Arc<OutputBacklog>,
}

impl UpdateSender {
    /// Sends `update`; false if the receiving end is gone (the update with it).
    pub fn send(&self, update: Update) -> bool {
        let weight = update.weight();
        self.backlog.queued(weight);
        let sent = self.tx.send(update).is_ok();
        if !sent {
            self.backlog.taken(weight);
        }
        sent
    }
}

/// The receiving end: counts each update out as it is taken.
pub struct Updates {
    rx: mpsc::Receiver<Update>,
    backlog: Arc<OutputBacklog>,
}

impl Updates {
    fn took(&self, update: Update) -> Update {
        self.backlog.taken(update.weight());
        update
    }

    /// As [`mpsc::Receiver::try_recv`].
    pub fn try_recv(&self) -> Result<Update, TryRecvError> {
        self.rx.try_recv().map(|u| self.took(u))
    }

    /// As [`mpsc::Receiver::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Update, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map(|u| self.took(u))
    }

    /// As [`mpsc::Receiver::recv`].
    pub fn recv(&self) -> Result<Update, RecvError> {
        self.rx.recv().map(|u| self.took(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketfalco_core::{DeviceId, Message};

    #[test]
    fn what_waits_in_the_channel_is_counted_in_and_out() {
        let backlog = Arc::new(OutputBacklog::new());
        let (tx, rx) = channel(Arc::clone(&backlog));
        let line = |text: &str| {
            Update::Net(Output::Received {
                peer: DeviceId([1; 16]),
                message: Message {
                    seq: 1,
                    lamport: 1,
                    sent_at_ms: 0,
                    text: text.to_owned(),
                },
                stored: true,
            })
        };
        assert!(tx.send(line("short")));
        let short = backlog.waiting();
        assert!(tx.send(line(&"x".repeat(10_000))));
        assert!(backlog.waiting() >= short + short + 10_000 - 5);
        rx.try_recv().unwrap();
        rx.recv_timeout(Duration::from_millis(1)).unwrap();
        assert_eq!(backlog.waiting(), 0);
        assert!(tx.send(Update::Line("x".repeat(100_000))));
        assert_eq!(backlog.waiting(), 0, "input is no output");
        rx.recv().unwrap();
        drop(rx);
        assert!(!tx.send(line("late")));
        assert_eq!(backlog.waiting(), 0, "what could not be sent does not wait");
    }
}
