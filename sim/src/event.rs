//! Events and scenarios, and their text format: one event per line.
//!
//! [`Event`]'s `Display` and `FromStr` are exact inverses, so a trace printed on failure IS a
//! scenario file (`testdata/sim/*.sim`). The format, line by line (`#` starts a comment):
//!
//! ```text
//! option break-durability      # self-test: links ack before they persist
//! option plain-links           # no Noise encryption (frames straight on the wire)
//! option tolerate compose-error-but-stored   # go on past this known core bug
//! option restore-any-state     # random restores may also pick states of abandoned futures
//! option tolerate mark-failure-ignored   # go on past this known core bug
//! connect                      # new connection: the dialer's session first, then the listener's
//! swap-roles                   # the other device listens from the next connection on
//! send a 3 size 200            # a's user writes 3 messages of 200 bytes (count, size optional)
//! step 2                       # two rounds: transmit, receive, timers + pump, on each device
//! settle                       # rounds until nothing moves (the clock follows deliveries only)
//! recv b | flush b | pump b    # one phase of one device: read arrived bytes / write / pump
//! drop                         # the connection is lost now, both ways; bytes in flight too
//! drop-after a->b 37           # the connection breaks after 37 more bytes from a to b
//! tamper b->a 12               # the 13th next byte from b to a has a bit flipped
//! crash b                      # b dies now: its link is gone, its store stays
//! crash b after-commits 1      # b dies inside its next store call after 1 more commit
//! crash b durable 2            # b dies with requests queued: the first 2 had taken effect
//! storage b queued             # b's storage requests wait for a `commit` (now | hold-marks | queued | early)
//! commit b 3                   # b's storage commits its 3 oldest queued requests (all without a count)
//! restart b                    # b runs again (not connected)
//! restore a 3                  # a's store goes back 3 commits along its own past
//! restore b 5 any              # b's store goes back to the state of its 5th-last commit, abandoned futures included
//! store-fail b 1 after 2       # b's store fails 1 write after 2 more successful ones
//! temporary a on               # a asks for temporary sessions from the next connection
//! window a 4                   # a's send window from the next connection
//! latency a->b 20 jitter 5     # delay (ms) of later bytes from a to b
//! pieces a->b write 3 read 1   # short writes / reads of 1..=n bytes (0: whole)
//! advance-clock 5000           # time passes; timers (keepalive, timeouts) fire
//! clock-jump a 30000           # a's monotonic clock leaps ahead (suspend/resume)
//! clock-rate b 150             # b's monotonic clock runs 1.5× fast from now on (rate skew)
//! wall a -3600000              # a's wall clock is set back an hour (skew or a jump)
//! heal                         # faults off, both up, non-temporary connect, settle
//! expect converged             # an assertion at this point (see Expectation)
//! expect violation acked-lost  # the run must fail with this invariant
//! ```

use crate::storage::StorageMode;
use std::fmt;
use std::str::FromStr;

/// One of the two devices.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Who {
    /// Device a ("alice").
    A,
    /// Device b ("bob").
    B,
}

impl Who {
    /// Both devices, a first.
    pub const BOTH: [Who; 2] = [Who::A, Who::B];

    /// The other device.
    pub fn other(self) -> Who {
        match self {
            Who::A => Who::B,
            Who::B => Who::A,
        }
    }

    /// 0 for a, 1 for b.
    pub fn index(self) -> usize {
        match self {
            Who::A => 0,
            Who::B => 1,
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Who::A => "a",
            Who::B => "b",
        })
    }
}

impl FromStr for Who {
    type Err = String;
    fn from_str(s: &str) -> Result<Who, String> {
        match s {
            "a" => Ok(Who::A),
            "b" => Ok(Who::B),
            _ => Err(format!("expected a device, `a` or `b`, got `{s}`")),
        }
    }
}

/// A direction `a->b` or `b->a`, named by its writer.
fn parse_direction(s: &str) -> Result<Who, String> {
    match s {
        "a->b" => Ok(Who::A),
        "b->a" => Ok(Who::B),
        _ => Err(format!("expected a direction, `a->b` or `b->a`, got `{s}`")),
    }
}

fn direction(from: Who) -> &'static str {
    match from {
        Who::A => "a->b",
        Who::B => "b->a",
    }
}

/// A check at a point of a scenario.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Expectation {
    /// Both hold the same chat in the same order, nothing waits, everything written is there.
    Converged,
    /// A connection is up and both sessions are established.
    Established,
    /// No device has a link.
    Disconnected,
    /// The device's stored chat has this many messages (both authors).
    Holds(Who, usize),
    /// The device stored this many of the peer's messages.
    Received(Who, usize),
    /// This many of the device's own messages are not yet known to be delivered.
    Waiting(Who, usize),
    /// The device's user was shown this many of the peer's messages so far (stored or
    /// temporary, every connection).
    Shown(Who, usize),
    /// The device's store holds no chat at all.
    StoredNothing(Who),
    /// The device is running.
    Up(Who),
    /// The device is down (crashed, not restarted).
    Down(Who),
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Converged => write!(f, "converged"),
            Expectation::Established => write!(f, "established"),
            Expectation::Disconnected => write!(f, "disconnected"),
            Expectation::Holds(w, n) => write!(f, "{w}-holds {n}"),
            Expectation::Received(w, n) => write!(f, "{w}-received {n}"),
            Expectation::Waiting(w, n) => write!(f, "{w}-waiting {n}"),
            Expectation::Shown(w, n) => write!(f, "{w}-shown {n}"),
            Expectation::StoredNothing(w) => write!(f, "{w}-stored-nothing"),
            Expectation::Up(w) => write!(f, "{w}-up"),
            Expectation::Down(w) => write!(f, "{w}-down"),
        }
    }
}

impl FromStr for Expectation {
    type Err = String;
    fn from_str(s: &str) -> Result<Expectation, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let count = |i: usize| -> Result<usize, String> {
            let w = words
                .get(i)
                .ok_or_else(|| format!("`{s}` needs a number"))?;
            w.parse().map_err(|_| format!("`{w}` is not a number"))
        };
        let Some(head) = words.first() else {
            return Err("empty expectation".into());
        };
        let simple = match *head {
            "converged" => Some(Expectation::Converged),
            "established" => Some(Expectation::Established),
            "disconnected" => Some(Expectation::Disconnected),
            _ => None,
        };
        if let Some(e) = simple {
            return if words.len() == 1 {
                Ok(e)
            } else {
                Err(format!("`expect {head}` takes no argument"))
            };
        }
        let (who, what) = head
            .split_once('-')
            .ok_or_else(|| format!("unknown expectation `{s}`"))?;
        let who: Who = who.parse()?;
        let e = match what {
            "holds" => Expectation::Holds(who, count(1)?),
            "received" => Expectation::Received(who, count(1)?),
            "waiting" => Expectation::Waiting(who, count(1)?),
            "shown" => Expectation::Shown(who, count(1)?),
            "stored-nothing" => Expectation::StoredNothing(who),
            "up" => Expectation::Up(who),
            "down" => Expectation::Down(who),
            _ => return Err(format!("unknown expectation `{s}`")),
        };
        let arity = match e {
            Expectation::StoredNothing(_) | Expectation::Up(_) | Expectation::Down(_) => 1,
            _ => 2,
        };
        if words.len() != arity {
            return Err(format!("wrong number of arguments in `expect {s}`"));
        }
        Ok(e)
    }
}

/// One step of a simulation. The runner ([`crate::world::World::apply`]) gives each a
/// precise meaning; see the module docs for the text of each.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// Tear down any connection (each live side sees the end of the stream), then open a new
    /// one if both devices run: the dialer's session now, the listener's when the dialer's
    /// connection reaches it (after the dialer→listener latency).
    Connect,
    /// The other device listens from the next connection on.
    SwapRoles,
    /// The connection is lost now in both directions; bytes in flight are lost.
    Drop,
    /// The lowest bit of the byte `bytes` bytes ahead from `from` to the other side is
    /// flipped (an attacker on the path). With encryption the receiver must refuse the
    /// connection; without, the event does nothing (plain links make no such promise).
    Tamper {
        /// The writer of the direction.
        from: Who,
        /// Bytes ahead.
        bytes: u64,
    },
    /// The connection breaks once `bytes` more bytes have gone from `from` to the other side.
    DropAfter {
        /// The writer of the direction that is cut.
        from: Who,
        /// Bytes still let through.
        bytes: u64,
    },
    /// The device asks (or stops asking) for temporary sessions, from the next connection.
    Temporary {
        /// The device.
        who: Who,
        /// Whether it asks.
        on: bool,
    },
    /// The device's send window, from the next connection.
    Window {
        /// The device.
        who: Who,
        /// Messages in flight at most.
        window: u64,
    },
    /// The device's user writes `count` messages of `size` bytes (0: a short text).
    Send {
        /// The author.
        who: Who,
        /// How many messages.
        count: u32,
        /// Text length in bytes; 0 for a short text.
        size: usize,
    },
    /// Rounds: each device transmits, then receives, then handles timers and pumps. A round
    /// where nothing moves advances the clock to the next delivery.
    Step(u32),
    /// Rounds until nothing moves; the clock follows deliveries, not timers.
    Settle,
    /// The device reads what has arrived into its session, without pumping.
    Recv(Who),
    /// The device writes what its session has to send.
    Flush(Who),
    /// The device's driver pumps its link (persist, confirm, fill the window).
    Pump(Who),
    /// The device dies now: its link vanishes, its store stays.
    Crash(Who),
    /// The device dies inside its next store call after `commits` more commits.
    CrashAfterCommits {
        /// The device.
        who: Who,
        /// Commits it still makes.
        commits: u32,
    },
    /// The device dies with storage requests queued: the first `durable` of them (in queue
    /// order) had taken effect, durably, but none of their completions was handed back; the
    /// rest never happened (delivery marks among them are lost).
    CrashDurable {
        /// The device.
        who: Who,
        /// Queued requests that took effect before the process died.
        durable: u32,
    },
    /// What the device's storage does with the requests of its driver calls from now on:
    /// carry them out at once, hold back a queue of only delivery marks, or let them wait
    /// for a `commit` (see [`StorageMode`]).
    Storage {
        /// The device.
        who: Who,
        /// The mode.
        mode: StorageMode,
    },
    /// The device's storage commits `count` of its queued requests (all with `None`), in
    /// queue order, and hands their completions back; the driver then goes on as after any
    /// completion (pumps, and carries out what that asks for by the storage mode).
    Commit {
        /// The device.
        who: Who,
        /// Requests to commit; `None`: all.
        count: Option<u32>,
    },
    /// A dead device runs again.
    Restart(Who),
    /// The device's store goes back to an earlier committed state: `back` commits along its
    /// own past (the states its current state grew from), or with `any` the state of its
    /// `back`-th last commit in the order the commits were made, a state of a future an
    /// earlier restore abandoned included; or the nearest older state kept (see
    /// [`StoreHistory`](crate::disk::StoreHistory)). The process is down while it happens:
    /// its link is gone, as in a crash; a running device runs again at once with the old
    /// store, a device that is down stays down.
    Restore {
        /// The device.
        who: Who,
        /// Commits back (at least 1 to take effect).
        back: u64,
        /// Counted over every state ever committed, not only the current one's past.
        any: bool,
    },
    /// The device's store fails `fails` writes after `after` more successful ones.
    StoreFail {
        /// The device.
        who: Who,
        /// Writes that fail.
        fails: u32,
        /// Writes that succeed first.
        after: u32,
    },
    /// Time passes for everyone; timers fire on the way.
    AdvanceClock(u64),
    /// The device's monotonic clock leaps ahead (the machine slept).
    ClockJump {
        /// The device.
        who: Who,
        /// Milliseconds.
        ms: u64,
    },
    /// The device's monotonic clock runs at `percent` of simulated time from now on (rate
    /// skew between the peers).
    ClockRate {
        /// The device.
        who: Who,
        /// Percent of simulated time (100: in step).
        percent: u64,
    },
    /// The device's wall clock is moved (skew, or a jump either way).
    Wall {
        /// The device.
        who: Who,
        /// Milliseconds, either sign.
        delta_ms: i64,
    },
    /// Delay of later bytes in one direction.
    Latency {
        /// The writer of the direction.
        from: Who,
        /// Milliseconds.
        ms: u64,
        /// Extra 0..=jitter ms, order kept.
        jitter: u64,
    },
    /// Short writes and reads in one direction.
    Pieces {
        /// The writer of the direction.
        from: Who,
        /// A write takes 1..=write bytes (0: all).
        write: usize,
        /// A read returns 1..=read bytes (0: all).
        read: usize,
    },
    /// Faults off, both devices up, a non-temporary connection, settle, then check that both
    /// converged.
    Heal,
    /// Check something now.
    Expect(Expectation),
}

impl Event {
    /// Whether this event injects a fault (counted in the soak figures) when it takes effect.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Event::Drop
                | Event::DropAfter { .. }
                | Event::Tamper { .. }
                | Event::Crash(_)
                | Event::CrashAfterCommits { .. }
                | Event::CrashDurable { .. }
                | Event::Storage { .. }
                | Event::Commit { .. }
                | Event::Restore { .. }
                | Event::StoreFail { .. }
                | Event::ClockJump { .. }
                | Event::ClockRate { .. }
                | Event::Wall { .. }
                | Event::Latency { .. }
                | Event::Pieces { .. }
        )
    }

    /// Smaller versions of this event, for the shrinker: simpler numbers first.
    pub fn simpler(&self) -> Vec<Event> {
        let mut out = Vec::new();
        let halves = |n: u64| -> Vec<u64> {
            let mut v = Vec::new();
            if n > 0 {
                v.push(0);
            }
            if n > 1 {
                v.push(1);
                v.push(n / 2);
                v.push(n - 1);
            }
            v.dedup();
            v
        };
        match self {
            Event::Send { who, count, size } => {
                for c in halves(u64::from(*count)) {
                    if c > 0 {
                        out.push(Event::Send {
                            who: *who,
                            count: u32::try_from(c).unwrap_or(1),
                            size: *size,
                        });
                    }
                }
                if *size > 0 {
                    out.push(Event::Send {
                        who: *who,
                        count: *count,
                        size: 0,
                    });
                }
            }
            Event::Step(n) => {
                for c in halves(u64::from(*n)) {
                    if c > 0 {
                        out.push(Event::Step(u32::try_from(c).unwrap_or(1)));
                    }
                }
            }
            Event::DropAfter { from, bytes } => {
                for b in halves(*bytes) {
                    out.push(Event::DropAfter {
                        from: *from,
                        bytes: b,
                    });
                }
            }
            Event::Tamper { from, bytes } => {
                for b in halves(*bytes) {
                    out.push(Event::Tamper {
                        from: *from,
                        bytes: b,
                    });
                }
            }
            Event::CrashAfterCommits { who, commits } => {
                out.push(Event::Crash(*who));
                for c in halves(u64::from(*commits)) {
                    out.push(Event::CrashAfterCommits {
                        who: *who,
                        commits: u32::try_from(c).unwrap_or(0),
                    });
                }
            }
            Event::CrashDurable { who, durable } => {
                out.push(Event::Crash(*who));
                for c in halves(u64::from(*durable)) {
                    out.push(Event::CrashDurable {
                        who: *who,
                        durable: u32::try_from(c).unwrap_or(0),
                    });
                }
            }
            Event::Storage { who, mode } if *mode != StorageMode::Now => {
                if *mode == StorageMode::Early {
                    out.push(Event::Storage {
                        who: *who,
                        mode: StorageMode::Queued,
                    });
                }
                if *mode == StorageMode::Queued {
                    out.push(Event::Storage {
                        who: *who,
                        mode: StorageMode::HoldMarks,
                    });
                }
                out.push(Event::Storage {
                    who: *who,
                    mode: StorageMode::Now,
                });
            }
            Event::Commit {
                who,
                count: Some(n),
            } => {
                out.push(Event::Commit {
                    who: *who,
                    count: None,
                });
                for c in halves(u64::from(*n)) {
                    if c > 0 {
                        out.push(Event::Commit {
                            who: *who,
                            count: Some(u32::try_from(c).unwrap_or(1)),
                        });
                    }
                }
            }
            Event::Restore { who, back, any } => {
                if *any {
                    out.push(Event::Restore {
                        who: *who,
                        back: *back,
                        any: false,
                    });
                }
                for b in halves(*back) {
                    if b > 0 {
                        out.push(Event::Restore {
                            who: *who,
                            back: b,
                            any: *any,
                        });
                    }
                }
            }
            Event::AdvanceClock(ms) => {
                for m in halves(*ms) {
                    out.push(Event::AdvanceClock(m));
                }
                out.push(Event::Settle);
            }
            Event::Latency { from, ms, jitter } => {
                if *jitter > 0 {
                    out.push(Event::Latency {
                        from: *from,
                        ms: *ms,
                        jitter: 0,
                    });
                }
                for m in halves(*ms) {
                    out.push(Event::Latency {
                        from: *from,
                        ms: m,
                        jitter: *jitter,
                    });
                }
            }
            Event::Pieces { from, write, read } => {
                if *write > 0 {
                    out.push(Event::Pieces {
                        from: *from,
                        write: 0,
                        read: *read,
                    });
                }
                if *read > 0 {
                    out.push(Event::Pieces {
                        from: *from,
                        write: *write,
                        read: 0,
                    });
                }
            }
            Event::ClockRate { who, percent } if *percent != 100 => {
                out.push(Event::ClockRate {
                    who: *who,
                    percent: 100,
                });
            }
            Event::Window { who, window } => {
                for w in halves(*window) {
                    if w > 0 {
                        out.push(Event::Window {
                            who: *who,
                            window: w,
                        });
                    }
                }
            }
            Event::StoreFail { who, fails, after } => {
                if *after > 0 {
                    out.push(Event::StoreFail {
                        who: *who,
                        fails: *fails,
                        after: 0,
                    });
                }
                if *fails > 1 {
                    out.push(Event::StoreFail {
                        who: *who,
                        fails: 1,
                        after: *after,
                    });
                }
            }
            _ => {}
        }
        out.retain(|e| e != self);
        out
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connect => write!(f, "connect"),
            Event::SwapRoles => write!(f, "swap-roles"),
            Event::Drop => write!(f, "drop"),
            Event::DropAfter { from, bytes } => {
                write!(f, "drop-after {} {bytes}", direction(*from))
            }
            Event::Tamper { from, bytes } => write!(f, "tamper {} {bytes}", direction(*from)),
            Event::Temporary { who, on } => {
                write!(f, "temporary {who} {}", if *on { "on" } else { "off" })
            }
            Event::Window { who, window } => write!(f, "window {who} {window}"),
            Event::Send { who, count, size } => {
                write!(f, "send {who}")?;
                if *count != 1 || *size != 0 {
                    write!(f, " {count}")?;
                }
                if *size != 0 {
                    write!(f, " size {size}")?;
                }
                Ok(())
            }
            Event::Step(1) => write!(f, "step"),
            Event::Step(n) => write!(f, "step {n}"),
            Event::Settle => write!(f, "settle"),
            Event::Recv(w) => write!(f, "recv {w}"),
            Event::Flush(w) => write!(f, "flush {w}"),
            Event::Pump(w) => write!(f, "pump {w}"),
            Event::Crash(w) => write!(f, "crash {w}"),
            Event::CrashAfterCommits { who, commits } => {
                write!(f, "crash {who} after-commits {commits}")
            }
            Event::CrashDurable { who, durable } => write!(f, "crash {who} durable {durable}"),
            Event::Storage { who, mode } => write!(f, "storage {who} {mode}"),
            Event::Commit { who, count: None } => write!(f, "commit {who}"),
            Event::Commit {
                who,
                count: Some(n),
            } => write!(f, "commit {who} {n}"),
            Event::Restart(w) => write!(f, "restart {w}"),
            Event::Restore { who, back, any } => {
                write!(f, "restore {who} {back}{}", if *any { " any" } else { "" })
            }
            Event::StoreFail { who, fails, after } => {
                write!(f, "store-fail {who} {fails}")?;
                if *after > 0 {
                    write!(f, " after {after}")?;
                }
                Ok(())
            }
            Event::AdvanceClock(ms) => write!(f, "advance-clock {ms}"),
            Event::ClockJump { who, ms } => write!(f, "clock-jump {who} {ms}"),
            Event::ClockRate { who, percent } => write!(f, "clock-rate {who} {percent}"),
            Event::Wall { who, delta_ms } => write!(f, "wall {who} {delta_ms:+}"),
            Event::Latency { from, ms, jitter } => {
                write!(f, "latency {} {ms}", direction(*from))?;
                if *jitter > 0 {
                    write!(f, " jitter {jitter}")?;
                }
                Ok(())
            }
            Event::Pieces { from, write, read } => {
                write!(f, "pieces {} write {write} read {read}", direction(*from))
            }
            Event::Heal => write!(f, "heal"),
            Event::Expect(e) => write!(f, "expect {e}"),
        }
    }
}

fn number<T: FromStr>(word: Option<&&str>, line: &str) -> Result<T, String> {
    let word = word.ok_or_else(|| format!("`{line}` is missing a number"))?;
    word.parse()
        .map_err(|_| format!("`{word}` is not a valid number in `{line}`"))
}

fn keyword(word: Option<&&str>, expected: &str, line: &str) -> Result<(), String> {
    match word {
        Some(w) if *w == expected => Ok(()),
        _ => Err(format!("`{line}`: expected `{expected}`")),
    }
}

impl FromStr for Event {
    type Err = String;
    fn from_str(line: &str) -> Result<Event, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(head) = w.first() else {
            return Err("empty line".into());
        };
        let arity = |n: usize| -> Result<(), String> {
            if w.len() == n {
                Ok(())
            } else {
                Err(format!("`{line}`: expected {} argument(s)", n - 1))
            }
        };
        let who = |i: usize| -> Result<Who, String> {
            w.get(i)
                .ok_or_else(|| format!("`{line}` needs a device"))?
                .parse()
        };
        let dir = |i: usize| -> Result<Who, String> {
            parse_direction(
                w.get(i)
                    .ok_or_else(|| format!("`{line}` needs a direction"))?,
            )
        };
        let event = match *head {
            "connect" => {
                arity(1)?;
                Event::Connect
            }
            "swap-roles" => {
                arity(1)?;
                Event::SwapRoles
            }
            "drop" => {
                arity(1)?;
                Event::Drop
            }
            "drop-after" => {
                arity(3)?;
                Event::DropAfter {
                    from: dir(1)?,
                    bytes: number(w.get(2), line)?,
                }
            }
            "tamper" => {
                arity(3)?;
                Event::Tamper {
                    from: dir(1)?,
                    bytes: number(w.get(2), line)?,
                }
            }
            "temporary" => {
                arity(3)?;
                let on = match w[2] {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("`{line}`: `{other}` is not on/off")),
                };
                Event::Temporary { who: who(1)?, on }
            }
            "window" => {
                arity(3)?;
                Event::Window {
                    who: who(1)?,
                    window: number(w.get(2), line)?,
                }
            }
            "send" => {
                let who = who(1)?;
                let (count, size) = match w.len() {
                    2 => (1, 0),
                    3 => (number(w.get(2), line)?, 0),
                    5 => {
                        keyword(w.get(3), "size", line)?;
                        (number(w.get(2), line)?, number(w.get(4), line)?)
                    }
                    _ => return Err(format!("`{line}`: send <who> [count [size <bytes>]]")),
                };
                Event::Send { who, count, size }
            }
            "step" => match w.len() {
                1 => Event::Step(1),
                2 => Event::Step(number(w.get(1), line)?),
                _ => return Err(format!("`{line}`: step [rounds]")),
            },
            "settle" => {
                arity(1)?;
                Event::Settle
            }
            "recv" => {
                arity(2)?;
                Event::Recv(who(1)?)
            }
            "flush" => {
                arity(2)?;
                Event::Flush(who(1)?)
            }
            "pump" => {
                arity(2)?;
                Event::Pump(who(1)?)
            }
            "crash" => match (w.len(), w.get(2).copied()) {
                (2, _) => Event::Crash(who(1)?),
                (4, Some("after-commits")) => Event::CrashAfterCommits {
                    who: who(1)?,
                    commits: number(w.get(3), line)?,
                },
                (4, Some("durable")) => Event::CrashDurable {
                    who: who(1)?,
                    durable: number(w.get(3), line)?,
                },
                _ => {
                    return Err(format!(
                        "`{line}`: crash <who> [after-commits <n> | durable <n>]"
                    ))
                }
            },
            "storage" => {
                arity(3)?;
                Event::Storage {
                    who: who(1)?,
                    mode: w[2].parse()?,
                }
            }
            "commit" => match w.len() {
                2 => Event::Commit {
                    who: who(1)?,
                    count: None,
                },
                3 => Event::Commit {
                    who: who(1)?,
                    count: Some(number(w.get(2), line)?),
                },
                _ => return Err(format!("`{line}`: commit <who> [count]")),
            },
            "restart" => {
                arity(2)?;
                Event::Restart(who(1)?)
            }
            "restore" => {
                let any = match w.len() {
                    3 => false,
                    4 => {
                        keyword(w.get(3), "any", line)?;
                        true
                    }
                    _ => return Err(format!("`{line}`: restore <who> <commits> [any]")),
                };
                Event::Restore {
                    who: who(1)?,
                    back: number(w.get(2), line)?,
                    any,
                }
            }
            "store-fail" => {
                let who = who(1)?;
                let fails = number(w.get(2), line)?;
                let after = match w.len() {
                    3 => 0,
                    5 => {
                        keyword(w.get(3), "after", line)?;
                        number(w.get(4), line)?
                    }
                    _ => return Err(format!("`{line}`: store-fail <who> <n> [after <k>]")),
                };
                Event::StoreFail { who, fails, after }
            }
            "advance-clock" => {
                arity(2)?;
                Event::AdvanceClock(number(w.get(1), line)?)
            }
            "clock-jump" => {
                arity(3)?;
                Event::ClockJump {
                    who: who(1)?,
                    ms: number(w.get(2), line)?,
                }
            }
            "clock-rate" => {
                arity(3)?;
                Event::ClockRate {
                    who: who(1)?,
                    percent: number(w.get(2), line)?,
                }
            }
            "wall" => {
                arity(3)?;
                let text = w[2].strip_prefix('+').unwrap_or(w[2]);
                Event::Wall {
                    who: who(1)?,
                    delta_ms: text
                        .parse()
                        .map_err(|_| format!("`{}` is not a number of ms", w[2]))?,
                }
            }
            "latency" => {
                let from = dir(1)?;
                let ms = number(w.get(2), line)?;
                let jitter = match w.len() {
                    3 => 0,
                    5 => {
                        keyword(w.get(3), "jitter", line)?;
                        number(w.get(4), line)?
                    }
                    _ => return Err(format!("`{line}`: latency <dir> <ms> [jitter <ms>]")),
                };
                Event::Latency { from, ms, jitter }
            }
            "pieces" => {
                arity(6)?;
                keyword(w.get(2), "write", line)?;
                keyword(w.get(4), "read", line)?;
                Event::Pieces {
                    from: dir(1)?,
                    write: number(w.get(3), line)?,
                    read: number(w.get(5), line)?,
                }
            }
            "heal" => {
                arity(1)?;
                Event::Heal
            }
            "expect" => {
                let rest = line.trim_start().strip_prefix("expect").unwrap_or("");
                Event::Expect(rest.trim().parse()?)
            }
            other => return Err(format!("unknown event `{other}`")),
        };
        Ok(event)
    }
}

/// Run-wide settings, written as `option` lines.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Options {
    /// Every link acks received messages before storing them
    /// (`Link::break_durability_for_simulator_self_test`).
    pub break_durability: bool,
    /// Links run without encryption (`Link::new`); by default they run the Noise handshake
    /// and encryption, as the product does (`option plain-links`).
    pub plain_links: bool,
    /// Known core bug, tolerated so a soak can go on past it: `Link::compose` reports a
    /// store failure for a message it did store (`option tolerate compose-error-but-stored`).
    /// The message then counts as written.
    pub tolerate_compose_error: bool,
    /// The generator's restores may also go back to states of a future an earlier restore
    /// abandoned (`restore … any`), not only along the store's own past
    /// (`option restore-any-state`).
    pub restore_any: bool,
    /// Known core bug, tolerated so that runs can go on past it: a delivery mark the store
    /// failed is ignored by the link (marks get no completion), so a sync's lowered mark can
    /// stay too high while the session goes on (`option tolerate mark-failure-ignored`).
    /// Counted as a tolerated hit instead of `acked-lost`.
    pub tolerate_mark_failure: bool,
}

/// A whole run: options, events, and the invariant it must violate if it is meant to fail.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Scenario {
    /// Run-wide settings.
    pub options: Options,
    /// The events, in order.
    pub events: Vec<Event>,
    /// `expect violation <kind>`: the run must fail with this invariant.
    pub expect_violation: Option<String>,
}

impl Scenario {
    /// Parses the text format. Lines may also be separated by `;` (for a one-line trace on a
    /// command line). Errors name the line.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let mut scenario = Scenario::default();
        for (number, raw) in text.lines().enumerate() {
            for part in raw.split('#').next().unwrap_or("").split(';') {
                let line = part.trim();
                if line.is_empty() {
                    continue;
                }
                let at = |e: String| format!("line {}: {e}", number + 1);
                if let Some(option) = line.strip_prefix("option ") {
                    match option.trim() {
                        "break-durability" => scenario.options.break_durability = true,
                        "plain-links" => scenario.options.plain_links = true,
                        "tolerate compose-error-but-stored" => {
                            scenario.options.tolerate_compose_error = true;
                        }
                        "restore-any-state" => scenario.options.restore_any = true,
                        "tolerate mark-failure-ignored" => {
                            scenario.options.tolerate_mark_failure = true;
                        }
                        other => return Err(at(format!("unknown option `{other}`"))),
                    }
                } else if let Some(kind) = line.strip_prefix("expect violation ") {
                    scenario.expect_violation = Some(kind.trim().to_owned());
                } else {
                    scenario.events.push(line.parse().map_err(at)?);
                }
            }
        }
        Ok(scenario)
    }

    /// The scenario on one line, events separated by `; `.
    pub fn one_line(&self) -> String {
        self.to_string()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.options.break_durability {
            writeln!(f, "option break-durability")?;
        }
        if self.options.plain_links {
            writeln!(f, "option plain-links")?;
        }
        if self.options.tolerate_compose_error {
            writeln!(f, "option tolerate compose-error-but-stored")?;
        }
        if self.options.restore_any {
            writeln!(f, "option restore-any-state")?;
        }
        if self.options.tolerate_mark_failure {
            writeln!(f, "option tolerate mark-failure-ignored")?;
        }
        for event in &self.events {
            writeln!(f, "{event}")?;
        }
        if let Some(kind) = &self.expect_violation {
            writeln!(f, "expect violation {kind}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_text() {
        let text = "option break-durability
option plain-links
option tolerate compose-error-but-stored
option restore-any-state
option tolerate mark-failure-ignored
connect
swap-roles
drop
drop-after a->b 37
tamper b->a 12
temporary b on
temporary a off
window a 4
send a
send b 3
send a 2 size 500
step
step 7
settle
recv b
flush a
pump b
crash b
crash a after-commits 2
crash b durable 3
storage a queued
storage b hold-marks
storage a now
commit b
commit a 2
restart b
restore a 3
restore b 40 any
store-fail a 1
store-fail b 2 after 3
advance-clock 5000
clock-jump a 30000
clock-rate b 150
wall b -3600000
wall a +15
latency b->a 20
latency a->b 5 jitter 3
pieces a->b write 3 read 1
heal
expect converged
expect established
expect disconnected
expect a-holds 12
expect b-received 3
expect a-waiting 0
expect b-shown 2
expect a-stored-nothing
expect b-up
expect a-down
expect violation acked-lost
";
        let scenario = Scenario::parse(text).unwrap();
        assert_eq!(scenario.to_string(), text);
        assert_eq!(Scenario::parse(&scenario.one_line()).unwrap(), scenario);
    }

    #[test]
    fn errors_name_the_line() {
        let err = Scenario::parse("connect\n\nsend c\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(Scenario::parse("crash a after 3").is_err());
        assert!(Scenario::parse("expect a-holds").is_err());
        assert!(Scenario::parse("pieces a->b write x read 1").is_err());
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let s = Scenario::parse("# a story\n\nconnect   # open\n  settle\n").unwrap();
        assert_eq!(s.events, [Event::Connect, Event::Settle]);
    }
}
