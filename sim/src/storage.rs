//! [`StorageQueue`]: a device's storage thread as the simulator models it.
//!
//! The core asks for storage as effects ([`StoreRequest`]s, `Link::poll_store_request`) and
//! takes the results back as completions (`Link::handle_store_completion`). The product's
//! storage thread commits many requests in one group and hands the completions back later,
//! while the event loop goes on reading, writing and firing timers. Here each device has one
//! queue; the world puts every request its links make into it (tagged with the link's
//! connection), and the queue's [`StorageMode`] says what a driver call does with it:
//!
//! - [`StorageMode::Now`]: everything is carried out at the end of the driver call, marks
//!   included, and the completions handed back at once (`Link::pump_with`'s behaviour: no
//!   storage latency);
//! - [`StorageMode::HoldMarks`]: the same, except that a queue holding only delivery marks
//!   is held back (as the storage thread does: advisory marks cost no commit of their own),
//!   so marks ride in a later group, or are lost in a crash;
//! - [`StorageMode::Queued`]: nothing is carried out until a `commit` event (some or all of
//!   the queue, of one connection only if it says so) or a crash (a prefix, durable, no
//!   completion delivered);
//! - [`StorageMode::Early`]: as `queued`, and a commit that carries out a compose numbering
//!   lines stops right after it, as the product's storage thread does before its `COMMIT`
//!   (docs/PROTOCOL.md §6.2): the link is told the lines are written and sends them, the
//!   group's completions wait for the device's next commit, and a crash before it loses
//!   the whole group (the world puts the store back to its state before it).
//!
//! The rules of `StoreRequest` hold: a link's requests take effect in the order made (a
//! commit always takes a prefix of that link's requests); fail-stop per link (once one of a
//! link's requests failed, its later ones fail without being carried out); a completion is
//! handed back only after its request was carried out (every `Store` call of the storage
//! model is durable when it returns).

use crate::disk::{Disk, DiskError};
use socketfalco_core::{execute, DeviceId, Message, RequestId, StoreReply, StoreRequest};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;

/// What a driver call does with a device's queued storage requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageMode {
    /// Carried out at once, completions at once (`now`).
    #[default]
    Now,
    /// Carried out at once, but a queue of only delivery marks waits for a later group
    /// (`hold-marks`).
    HoldMarks,
    /// Nothing is carried out until a `commit` event or a crash (`queued`).
    Queued,
    /// As `queued`, and a numbered compose's lines are sent before its commit (`early`).
    Early,
}

impl fmt::Display for StorageMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageMode::Now => "now",
            StorageMode::HoldMarks => "hold-marks",
            StorageMode::Queued => "queued",
            StorageMode::Early => "early",
        })
    }
}

impl FromStr for StorageMode {
    type Err = String;
    fn from_str(s: &str) -> Result<StorageMode, String> {
        match s {
            "now" => Ok(StorageMode::Now),
            "hold-marks" => Ok(StorageMode::HoldMarks),
            "queued" => Ok(StorageMode::Queued),
            "early" => Ok(StorageMode::Early),
            _ => Err(format!(
                "`{s}` is not a storage mode (now, hold-marks, queued, early)"
            )),
        }
    }
}

/// One request waiting in a device's queue.
#[derive(Clone, Debug)]
struct Pending {
    /// The connection whose link made it.
    link: u64,
    id: RequestId,
    request: StoreRequest,
    /// The event during which it was made.
    made_at: u64,
}

/// One request carried out (or failed without being carried out).
#[derive(Clone, Debug)]
pub struct Done {
    /// The connection whose link made it.
    pub link: u64,
    /// The request's id.
    pub id: RequestId,
    /// What the store returned, or why it failed.
    pub result: Result<StoreReply, String>,
    /// Whether the link is handed its completion: every request (a delivery mark's too:
    /// nothing waits for it, but its failure closes the session).
    pub wants_completion: bool,
    /// A delivery mark.
    pub mark: bool,
    /// The store failed this very request (a simulated disk failure).
    pub disk_failed: bool,
    /// The chat a compose request wrote in.
    pub compose_peer: Option<DeviceId>,
}

impl Done {
    /// The messages a compose request stored, if this was one and it succeeded.
    pub fn composed(&self) -> Option<&[Message]> {
        match &self.result {
            Ok(StoreReply::Composed(messages)) => Some(messages),
            _ => None,
        }
    }
}

/// Counters of the storage model (summed into the worlds' stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Completions handed back at a later event than the one that made the request.
    pub delayed: u64,
    /// Requests carried out while an earlier request of another connection still waited.
    pub reordered: u64,
    /// Delivery marks carried out at a later event than the one that made them (they rode
    /// in a later group).
    pub marks_held: u64,
    /// Crashes with requests in the queue.
    pub crashes_in_flight: u64,
    /// Of the requests in the queue at a crash, those that had taken effect (the prefix).
    pub in_flight_durable: u64,
    /// … and those that never happened.
    pub in_flight_lost: u64,
    /// Delivery marks lost in a crash.
    pub marks_dropped: u64,
    /// Composes whose lines were sent before their commit ([`StorageMode::Early`]).
    pub written_early: u64,
    /// … of which the process died before the commit, losing the compose.
    pub written_early_lost: u64,
    /// … and of those, the peer had stored some of the lines (they come back from it).
    pub written_early_lost_held: u64,
    /// Requests that failed without being carried out, because an earlier one of their link
    /// failed (fail-stop).
    pub failed_after_failure: u64,
}

impl StorageStats {
    /// Adds other counters.
    pub fn add(&mut self, o: &StorageStats) {
        self.delayed += o.delayed;
        self.reordered += o.reordered;
        self.marks_held += o.marks_held;
        self.crashes_in_flight += o.crashes_in_flight;
        self.in_flight_durable += o.in_flight_durable;
        self.in_flight_lost += o.in_flight_lost;
        self.marks_dropped += o.marks_dropped;
        self.written_early += o.written_early;
        self.written_early_lost += o.written_early_lost;
        self.written_early_lost_held += o.written_early_lost_held;
        self.failed_after_failure += o.failed_after_failure;
    }
}

/// One device's storage thread; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct StorageQueue {
    /// What a driver call does with the queue.
    pub mode: StorageMode,
    pending: VecDeque<Pending>,
    /// Connections one of whose requests failed (fail-stop).
    failed: BTreeSet<u64>,
    /// Counters.
    pub stats: StorageStats,
}

/// Why a commit stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitEnd {
    /// Everything asked for was carried out (or failed).
    Done,
    /// The process died inside the commit (`crash … after-commits`): what was carried out
    /// before it is durable, no completion is handed back, the rest never happens.
    Crashed,
    /// The last one done is a compose that numbered its lines, carried out in a group still
    /// committing ([`StorageMode::Early`]): its lines may be sent, its completion waits.
    Written,
}

impl StorageQueue {
    /// Takes a request a link of connection `link` made during event `event`.
    pub fn push(&mut self, link: u64, id: RequestId, request: StoreRequest, event: u64) {
        self.pending.push_back(Pending {
            link,
            id,
            request,
            made_at: event,
        });
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Requests of connection `link` waiting.
    pub fn len_of(&self, link: u64) -> usize {
        self.pending.iter().filter(|p| p.link == link).count()
    }

    /// The connections with requests waiting, in the order of their first one.
    pub fn links(&self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for p in &self.pending {
            if !out.contains(&p.link) {
                out.push(p.link);
            }
        }
        out
    }

    /// How many requests a driver call carries out now, by the mode.
    pub fn due(&self) -> usize {
        match self.mode {
            StorageMode::Now => self.pending.len(),
            StorageMode::HoldMarks => {
                if self.pending.iter().all(|p| p.request.is_delivery_mark()) {
                    0
                } else {
                    self.pending.len()
                }
            }
            StorageMode::Queued | StorageMode::Early => 0,
        }
    }

    /// Carries out up to `count` waiting requests — of connection `only` if given — in queue
    /// order, against `disk`, during event `event`. Returns what was done (completions to
    /// hand back, unless the process died) and how the commit ended. With `pause`, it stops
    /// after a compose that numbered lines ([`CommitEnd::Written`]).
    pub fn commit(
        &mut self,
        disk: &mut Disk<'_>,
        count: usize,
        only: Option<u64>,
        event: u64,
        pause: bool,
    ) -> (Vec<Done>, CommitEnd) {
        let mut done = Vec::new();
        let mut taken = 0;
        let mut i = 0;
        while taken < count && i < self.pending.len() {
            if only.is_some_and(|link| self.pending[i].link != link) {
                i += 1;
                continue;
            }
            if i > 0 {
                // Earlier requests of other connections still wait: this one overtakes them.
                self.stats.reordered += 1;
            }
            let Some(p) = self.pending.remove(i) else {
                break;
            };
            taken += 1;
            let mark = p.request.is_delivery_mark();
            let (result, disk_failed) = if self.failed.contains(&p.link) {
                self.stats.failed_after_failure += 1;
                (
                    Err("an earlier storage request of this connection failed".to_owned()),
                    false,
                )
            } else {
                match execute(disk, &p.request) {
                    Ok(reply) => (Ok(reply), false),
                    Err(DiskError::Crashed) => {
                        // The process died at this request: it and everything after never
                        // happen.
                        self.pending.insert(i, p);
                        return (done, CommitEnd::Crashed);
                    }
                    Err(e) => {
                        self.failed.insert(p.link);
                        (Err(e.to_string()), matches!(e, DiskError::Failed))
                    }
                }
            };
            if p.made_at < event {
                if mark {
                    self.stats.marks_held += 1;
                } else {
                    self.stats.delayed += 1;
                }
            }
            let compose_peer = match &p.request {
                StoreRequest::Compose { peer, .. } => Some(*peer),
                _ => None,
            };
            let done_one = Done {
                compose_peer,
                link: p.link,
                id: p.id,
                result,
                wants_completion: true,
                mark,
                disk_failed,
            };
            let numbered = done_one
                .composed()
                .and_then(<[Message]>::first)
                .is_some_and(|m| m.seq != 0);
            done.push(done_one);
            if pause && numbered {
                self.stats.written_early += 1;
                return (done, CommitEnd::Written);
            }
        }
        (done, CommitEnd::Done)
    }

    /// The process died: every request still waiting never happens. Returns how many there
    /// were.
    pub fn lose_all(&mut self) -> usize {
        let lost = self.pending.len();
        self.stats.in_flight_lost += lost as u64;
        self.stats.marks_dropped += self
            .pending
            .iter()
            .filter(|p| p.request.is_delivery_mark())
            .count() as u64;
        self.pending.clear();
        self.failed.clear();
        lost
    }

    /// Whether a delivery mark waits in the queue.
    pub fn holds_marks(&self) -> bool {
        self.pending.iter().any(|p| p.request.is_delivery_mark())
    }
}
