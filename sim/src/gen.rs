//! The random event generator: a seed becomes a trace of events, each fault with a weight.
//!
//! The generator looks at the world while it generates (it restarts dead devices, connects
//! when nothing is connected, cuts at byte offsets that fall inside what is about to be
//! written), but it only ever produces [`Event`]s: the recorded trace alone replays the run,
//! and the shrinker works on that trace.
//!
//! Restores (weight 2) go back a few commits, sometimes tens, sometimes to before the chat
//! existed, on either device; along the store's own past, or with
//! [`Options::restore_any`](crate::Options) half of them to any state ever committed. While
//! a session is recovering its own messages after a restore, another restore of either side
//! comes with a chance of 1 in 8 per event; and a third of the restores are followed by a
//! connection, a few rounds (the recovery under way) and another restore of either side.

use crate::event::{Event, Who};
use crate::rng::Rng;
use crate::storage::StorageMode;
use crate::world::World;
use socketfalco_core::limits::MAX_TEXT_BYTES;
use std::collections::VecDeque;

/// What the generator may produce, with its weight (out of the sum of all weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Step,
    Settle,
    Send,
    Connect,
    Drop,
    DropAfter,
    Tamper,
    Crash,
    CrashBeforePersist,
    CrashAfterAck,
    CrashInsidePump,
    SendBetweenReadAndPump,
    Phase,
    SwapRoles,
    Temporary,
    Window,
    Latency,
    Pieces,
    AdvanceClock,
    ClockJump,
    ClockRate,
    Wall,
    StoreFail,
    Restore,
    StorageMode,
    Commit,
    CrashInFlight,
}

const WEIGHTS: &[(Kind, u32)] = &[
    (Kind::Step, 26),
    (Kind::Settle, 7),
    (Kind::Send, 20),
    (Kind::Connect, 4),
    (Kind::Drop, 2),
    (Kind::DropAfter, 5),
    (Kind::Tamper, 1),
    (Kind::Crash, 2),
    (Kind::CrashBeforePersist, 2),
    (Kind::CrashAfterAck, 2),
    (Kind::CrashInsidePump, 2),
    (Kind::SendBetweenReadAndPump, 1),
    (Kind::Phase, 4),
    (Kind::SwapRoles, 2),
    (Kind::Temporary, 2),
    (Kind::Window, 1),
    (Kind::Latency, 2),
    (Kind::Pieces, 3),
    (Kind::AdvanceClock, 3),
    (Kind::ClockJump, 1),
    (Kind::ClockRate, 1),
    (Kind::Wall, 2),
    (Kind::StoreFail, 1),
    (Kind::Restore, 2),
    (Kind::StorageMode, 2),
    (Kind::Commit, 4),
    (Kind::CrashInFlight, 2),
];

/// Turns a seed into events; see the [module docs](self).
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    length: usize,
    produced: usize,
    queued: VecDeque<Event>,
}

impl Generator {
    /// The generator of `seed`: 20 to 120 events.
    pub fn new(seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let length = usize::try_from(rng.range(20, 120)).unwrap_or(60);
        let mut queued = VecDeque::new();
        // Start some runs with a small window, so that backlogs stream through it.
        for who in Who::BOTH {
            if rng.chance(1, 3) {
                let window = if rng.chance(1, 8) {
                    1024
                } else {
                    rng.range(1, 8)
                };
                queued.push_back(Event::Window { who, window });
            }
        }
        // Half the runs start with a device whose storage is slow: its requests wait for a
        // commit, or its delivery marks ride in later groups. The other half start with
        // storage that completes at once (until a `storage` event changes it).
        for who in Who::BOTH {
            if rng.chance(1, 3) {
                let mode = if rng.chance(1, 2) {
                    StorageMode::Queued
                } else {
                    StorageMode::HoldMarks
                };
                queued.push_back(Event::Storage { who, mode });
            }
        }
        Generator {
            rng,
            length,
            produced: 0,
            queued,
        }
    }

    fn who(&mut self) -> Who {
        if self.rng.chance(1, 2) {
            Who::A
        } else {
            Who::B
        }
    }

    /// The next event, or `None` once the trace is long enough.
    pub fn next(&mut self, world: &World) -> Option<Event> {
        if let Some(event) = self.queued.pop_front() {
            self.produced += 1;
            return Some(event);
        }
        if self.produced >= self.length {
            return None;
        }
        let event = self.pick(world);
        self.produced += 1;
        Some(event)
    }

    fn pick(&mut self, world: &World) -> Event {
        for who in Who::BOTH {
            if !world.is_up(who) && self.rng.chance(1, 3) {
                return Event::Restart(who);
            }
        }
        if !world.has_connection() && self.rng.chance(1, 4) {
            return Event::Connect;
        }
        // A commit of lines already sent is running (storage mode `early`): now and then the
        // device dies before it ends, a few rounds on (the lines reach the peer, which stores
        // and acks them): the commit is lost while the peer holds the lines.
        for who in Who::BOTH {
            if world.is_committing(who) && world.is_up(who) && self.rng.chance(1, 6) {
                self.queued.push_back(Event::Crash(who));
                return Event::Step(u32::try_from(self.rng.range(1, 4)).unwrap_or(2));
            }
        }
        // A slow disk still commits: now and then some or all of what waits.
        for who in Who::BOTH {
            let queued = world.queued(who) as u64;
            if (queued > 0 || world.is_committing(who)) && world.is_up(who) && self.rng.chance(1, 4)
            {
                return self.commit(who, queued);
            }
        }
        // A recovery lasts a few rounds: go back in time again right then, now and then, on
        // the recovering side (a batch stored, the next not yet) or on the side answering.
        for who in Who::BOTH {
            if world.is_recovering(who) && self.rng.chance(1, 8) {
                let target = if self.rng.chance(2, 3) {
                    who
                } else {
                    who.other()
                };
                return Event::Restore {
                    who: target,
                    back: self.rng.range(1, 4),
                    any: false,
                };
            }
        }
        let weights: Vec<u32> = WEIGHTS.iter().map(|&(_, w)| w).collect();
        let kind = WEIGHTS[self.rng.weighted(&weights)].0;
        let rng = &mut self.rng;
        match kind {
            Kind::Step => Event::Step(u32::try_from(rng.range(1, 4)).unwrap_or(1)),
            Kind::Settle => Event::Settle,
            Kind::Send => {
                let who = self.who();
                self.send(who)
            }
            Kind::Connect => Event::Connect,
            Kind::Drop => Event::Drop,
            Kind::DropAfter => {
                let from = self.who();
                // Mostly inside the next few frames (a hello is ~40 bytes, a short message
                // ~20): in the handshake, in a length prefix, in a body.
                let bytes = match self.rng.below(10) {
                    0..=4 => self.rng.below(64),
                    5..=7 => self.rng.below(600),
                    _ => self.rng.below(8_000),
                };
                Event::DropAfter { from, bytes }
            }
            Kind::Tamper => Event::Tamper {
                from: self.who(),
                bytes: if self.rng.chance(1, 2) {
                    self.rng.below(200)
                } else {
                    self.rng.below(4_000)
                },
            },
            Kind::Crash => Event::Crash(self.who()),
            Kind::StorageMode => Event::Storage {
                who: self.who(),
                mode: match self.rng.below(4) {
                    0 => StorageMode::Now,
                    1 => StorageMode::HoldMarks,
                    2 => StorageMode::Queued,
                    _ => StorageMode::Early,
                },
            },
            Kind::Commit => {
                let who = self.who();
                let queued = world.queued(who) as u64;
                self.commit(who, queued.max(1))
            }
            Kind::CrashInFlight => {
                // Aim at a device with requests in flight: a prefix of them took effect.
                let who = if world.queued(Who::A) > 0
                    && (world.queued(Who::B) == 0 || self.rng.chance(1, 2))
                {
                    Who::A
                } else if world.queued(Who::B) > 0 {
                    Who::B
                } else {
                    self.who()
                };
                let queued = world.queued(who) as u64;
                Event::CrashDurable {
                    who,
                    durable: u32::try_from(self.rng.below(queued + 1)).unwrap_or(0),
                }
            }
            Kind::CrashBeforePersist => {
                let who = self.who();
                self.queued.push_back(Event::Crash(who));
                Event::Recv(who)
            }
            Kind::CrashAfterAck => {
                let who = self.who();
                self.queued.push_back(Event::Crash(who));
                Event::Flush(who)
            }
            Kind::CrashInsidePump => Event::CrashAfterCommits {
                who: self.who(),
                commits: u32::try_from(self.rng.below(3)).unwrap_or(0),
            },
            Kind::SendBetweenReadAndPump => {
                let who = self.who();
                self.queued.push_back(Event::Send {
                    who,
                    count: 1,
                    size: 0,
                });
                Event::Recv(who)
            }
            Kind::Phase => {
                let who = self.who();
                match self.rng.below(3) {
                    0 => Event::Recv(who),
                    1 => Event::Flush(who),
                    _ => Event::Pump(who),
                }
            }
            Kind::SwapRoles => Event::SwapRoles,
            Kind::Temporary => {
                let who = self.who();
                // Off again more often than on, so most connections keep the chat going.
                let on = !world.is_temporary(who) && self.rng.chance(1, 2);
                Event::Temporary { who, on }
            }
            Kind::Window => Event::Window {
                who: self.who(),
                window: if self.rng.chance(1, 6) {
                    1024
                } else {
                    self.rng.range(1, 16)
                },
            },
            Kind::Latency => {
                let from = self.who();
                let ms = if self.rng.chance(1, 3) {
                    0
                } else {
                    self.rng.range(1, 300)
                };
                let jitter = if self.rng.chance(1, 2) {
                    0
                } else {
                    self.rng.range(1, 100)
                };
                Event::Latency { from, ms, jitter }
            }
            Kind::Pieces => {
                let from = self.who();
                let size = |rng: &mut Rng| match rng.below(4) {
                    0 => 0,
                    1 => usize::try_from(rng.range(1, 3)).unwrap_or(1),
                    2 => usize::try_from(rng.range(1, 40)).unwrap_or(1),
                    _ => usize::try_from(rng.range(1, 5_000)).unwrap_or(1),
                };
                let write = size(&mut self.rng);
                let read = size(&mut self.rng);
                Event::Pieces { from, write, read }
            }
            Kind::AdvanceClock => Event::AdvanceClock(match self.rng.below(4) {
                0 => self.rng.range(1, 1_000),
                1 | 2 => self.rng.range(1_000, 12_000),
                _ => self.rng.range(12_000, 40_000),
            }),
            Kind::ClockJump => Event::ClockJump {
                who: self.who(),
                ms: self.rng.range(1_000, 60_000),
            },
            Kind::ClockRate => Event::ClockRate {
                who: self.who(),
                percent: if self.rng.chance(1, 4) {
                    100
                } else {
                    self.rng.range(50, 250)
                },
            },
            Kind::Wall => {
                let who = self.who();
                let magnitude = match self.rng.below(3) {
                    0 => self.rng.range(1, 5_000),
                    1 => self.rng.range(5_000, 3_600_000),
                    _ => self.rng.range(3_600_000, 400 * 86_400_000),
                };
                let delta = i64::try_from(magnitude).unwrap_or(i64::MAX);
                Event::Wall {
                    who,
                    delta_ms: if self.rng.chance(1, 2) { -delta } else { delta },
                }
            }
            Kind::StoreFail => Event::StoreFail {
                who: self.who(),
                fails: u32::try_from(self.rng.range(1, 2)).unwrap_or(1),
                after: u32::try_from(self.rng.below(3)).unwrap_or(0),
            },
            Kind::Restore => {
                let who = self.who();
                if self.rng.chance(1, 3) {
                    // Then reconnect, let the recovery run a few rounds, and go back in time
                    // again on one side, mid-recovery (a batch stored, the next not yet).
                    self.queued.push_back(Event::Connect);
                    self.queued.push_back(Event::Step(
                        u32::try_from(self.rng.range(1, 8)).unwrap_or(1),
                    ));
                    self.queued.push_back(Event::Restore {
                        who: if self.rng.chance(2, 3) {
                            who
                        } else {
                            who.other()
                        },
                        back: self.rng.range(1, 3),
                        any: false,
                    });
                }
                Event::Restore {
                    any: world.options.restore_any && self.rng.chance(1, 2),
                    who,
                    // Mostly a few commits back (a lost write cache, a backup of a moment
                    // ago), sometimes far (an old backup), sometimes to before the chat
                    // existed.
                    back: match self.rng.below(10) {
                        0..=5 => self.rng.range(1, 6),
                        6..=8 => self.rng.range(6, 60),
                        _ => 100_000,
                    },
                }
            }
        }
    }

    /// Commits all of `who`'s queued requests, or some of them.
    fn commit(&mut self, who: Who, queued: u64) -> Event {
        let count = if self.rng.chance(1, 2) {
            None
        } else {
            Some(u32::try_from(self.rng.range(1, queued.max(1))).unwrap_or(1))
        };
        Event::Commit { who, count }
    }

    fn send(&mut self, who: Who) -> Event {
        let rng = &mut self.rng;
        let count = match rng.below(100) {
            0..=74 => 1,
            75..=94 => rng.range(2, 6),
            _ => rng.range(20, 400),
        };
        let size = match rng.below(100) {
            0..=89 => 0,
            90..=98 => rng.range(20, 2_000),
            _ => rng.range(2_000, MAX_TEXT_BYTES as u64),
        };
        // Keep the huge ones few: a backlog of big messages is slow and proves nothing more.
        let count = if size > 2_000 { count.min(3) } else { count };
        Event::Send {
            who,
            count: u32::try_from(count).unwrap_or(1),
            size: usize::try_from(size).unwrap_or(0),
        }
    }
}
