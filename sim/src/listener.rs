//! The listener world: one device (`a`) serving two or three peers (`b`, `c`, `d`) at once,
//! each connection its own pair of [`Link`]s, every link of `a` on `a`'s one store.
//!
//! This is the always-on listener of the product (transport-mio's endpoint): `a`'s links
//! wait for admission ([`Link::require_admission`]); the driver answers
//! [`Notice::PeerProved`] with [`Link::admit`], and on [`Notice::Connected`] closes every
//! older link of the same peer ([`CloseCode::Replaced`]), as `Endpoint::replace_older` does.
//! A peer dials; it may dial again while its old connection is still open on `a`'s side
//! (its old socket vanished silently, or was closed with a FIN whose end is still on its
//! way): both links of `a` then run on `a`'s store for the same chat until the old one is
//! cut, times out, or is replaced.
//!
//! A run is a seed. The generator looks at the world and emits one [`Step`] at a time (the
//! connections' rounds interleaved one connection at a time, writes on every device online
//! and offline, cuts at any byte, short reads and writes, crashes of `a` — which drop all of
//! its links at once — at an event boundary or between two commits of one driver call,
//! crashes of peers, disk failures, time passing), applies it, and checks every chat
//! `a`↔peer with its own [`Oracle`] — the same per-pair invariants as the two-device world,
//! seen through [`ChatView`] — after every pump and compose. Each run ends with a heal:
//! faults off, every device up, every connection lost, then one clean connection per peer,
//! all at once, settled; each chat must then have converged.
//!
//! There is no text form and no shrinker here: the trace is printed on failure and the seed
//! replays it exactly (`sim listener SEED`).

use crate::disk::{Disk, DiskFaults};
use crate::event::Who;
use crate::oracle::{composed_as_stored, ChatView, Oracle, SyncLanded, Violation};
use crate::rng::Rng;
use crate::rounds::Rounds;
use crate::storage::{CommitEnd, Done, StorageMode, StorageQueue, StorageStats};
use socketfalco_core::{Close, CloseCode, DeviceId, Link, Message, Notice, Role, Side, Store};
use socketfalco_testkit::{Device, MemoryStore, Wire, WireKnobs, WireRead, WireWrite};
use std::collections::BTreeSet;
use std::fmt;

/// The listener's device id.
pub const LISTENER: DeviceId = DeviceId([0xa0; 16]);
/// Write calls a device makes per round on one connection at most.
const WRITE_CALLS_PER_ROUND: usize = 16;
/// Commits one driver call may make before it is called a livelock.
const MAX_STORAGE_TURNS: usize = 100_000;
/// Seeds `cargo test` runs by default (`SIM_LISTENER_SEEDS` changes it).
pub const DEFAULT_LISTENER_SEEDS: u64 = 500;

/// Device index 0 is the listener; 1.. are the peers.
fn device_name(d: usize) -> char {
    char::from(b'a' + u8::try_from(d).unwrap_or(0))
}

fn peer_id(d: usize) -> DeviceId {
    DeviceId([0xb0 + u8::try_from(d).unwrap_or(0); 16])
}

/// One step of a listener run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Peer `peer` dials `a` (`connect b`). Its open connection, if any, is abandoned on
    /// its side: its socket vanishes `silent`ly (`connect b silent`: no FIN, `a` sees
    /// nothing) or is closed (a FIN after what it wrote). At most two connections per peer:
    /// a third loses the oldest.
    Connect {
        /// The dialing peer.
        peer: usize,
        /// The old socket vanishes without a FIN.
        silent: bool,
    },
    /// One round of one connection (transmit, receive, timers, pump on both sides).
    Round {
        /// The connection.
        conn: u64,
    },
    /// One round of every connection, oldest first.
    RoundAll,
    /// Rounds of every connection until nothing moves.
    Settle,
    /// A user writes `count` messages in the chat `a`↔`peer`: `a`'s user (`by_listener`) or
    /// the peer's. Through the newest link of that chat whose peer is known, else offline.
    Send {
        /// The chat.
        peer: usize,
        /// `a` writes (else the peer).
        by_listener: bool,
        /// How many messages.
        count: u32,
    },
    /// The connection is lost now, both ways.
    Drop {
        /// The connection.
        conn: u64,
    },
    /// The connection breaks after `after` more bytes in one direction.
    Cut {
        /// The connection.
        conn: u64,
        /// The direction `a`->peer (else peer->`a`).
        from_listener: bool,
        /// Bytes that still get through.
        after: u64,
    },
    /// Short writes and reads in one direction of a connection (0: whole).
    Pieces {
        /// The connection.
        conn: u64,
        /// The direction `a`->peer (else peer->`a`).
        from_listener: bool,
        /// Largest write call.
        write: usize,
        /// Largest read call.
        read: usize,
    },
    /// Latency of the peer's later connections, both ways.
    Latency {
        /// The peer.
        peer: usize,
        /// Milliseconds.
        ms: u64,
    },
    /// A device dies: now, or at its next store write after `after_commits` more commits.
    Crash {
        /// The device (0: `a`).
        device: usize,
        /// Inside a driver call, after this many more commits.
        after_commits: Option<u32>,
    },
    /// A device dies with storage requests queued: the first `durable` of them (in queue
    /// order, every connection's) had taken effect, no completion was handed back; the rest
    /// never happened.
    CrashDurable {
        /// The device.
        device: usize,
        /// Queued requests that took effect.
        durable: u32,
    },
    /// What a device's storage does with its driver calls' requests from now on.
    Storage {
        /// The device.
        device: usize,
        /// The mode.
        mode: StorageMode,
    },
    /// A device's storage commits `count` of its queued requests (all with `None`) — of
    /// connection `conn` only, if given (overtaking other connections' requests) — in queue
    /// order, and hands their completions back.
    Commit {
        /// The device.
        device: usize,
        /// Requests to commit; `None`: all.
        count: Option<u32>,
        /// Only this connection's requests.
        conn: Option<u64>,
    },
    /// A dead device runs again, not connected.
    Restart {
        /// The device.
        device: usize,
    },
    /// `count` store writes fail after `after` more successful ones.
    StoreFail {
        /// The device.
        device: usize,
        /// Failing writes.
        count: u32,
        /// Successful writes first.
        after: u32,
    },
    /// The clock moves on without any round: bytes in flight become due, timers are not
    /// fired (`round #N` then delivers exactly what is due on that connection).
    Wait {
        /// Milliseconds.
        ms: u64,
    },
    /// Time passes; timers fire on the way.
    AdvanceClock {
        /// Milliseconds.
        ms: u64,
    },
    /// Faults off, every device up, every connection lost, one clean connection per peer,
    /// settle: every chat must have converged.
    Heal,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |from_listener: bool, conn: &u64| {
            if from_listener {
                format!("#{conn} a->peer")
            } else {
                format!("#{conn} peer->a")
            }
        };
        match self {
            Step::Connect { peer, silent } => write!(
                f,
                "connect {}{}",
                device_name(*peer),
                if *silent { " silent" } else { "" }
            ),
            Step::Round { conn } => write!(f, "round #{conn}"),
            Step::RoundAll => write!(f, "round"),
            Step::Settle => write!(f, "settle"),
            Step::Send {
                peer,
                by_listener,
                count,
            } => {
                if *by_listener {
                    write!(f, "send a->{} {count}", device_name(*peer))
                } else {
                    write!(f, "send {}->a {count}", device_name(*peer))
                }
            }
            Step::Drop { conn } => write!(f, "drop #{conn}"),
            Step::Cut {
                conn,
                from_listener,
                after,
            } => write!(f, "drop-after {} {after}", dir(*from_listener, conn)),
            Step::Pieces {
                conn,
                from_listener,
                write,
                read,
            } => write!(
                f,
                "pieces {} write {write} read {read}",
                dir(*from_listener, conn)
            ),
            Step::Latency { peer, ms } => write!(f, "latency {} {ms}", device_name(*peer)),
            Step::Crash {
                device,
                after_commits: None,
            } => write!(f, "crash {}", device_name(*device)),
            Step::Crash {
                device,
                after_commits: Some(n),
            } => write!(f, "crash {} after-commits {n}", device_name(*device)),
            Step::CrashDurable { device, durable } => {
                write!(f, "crash {} durable {durable}", device_name(*device))
            }
            Step::Storage { device, mode } => write!(f, "storage {} {mode}", device_name(*device)),
            Step::Commit {
                device,
                count,
                conn,
            } => {
                write!(f, "commit {}", device_name(*device))?;
                if let Some(n) = count {
                    write!(f, " {n}")?;
                }
                if let Some(c) = conn {
                    write!(f, " #{c}")?;
                }
                Ok(())
            }
            Step::Restart { device } => write!(f, "restart {}", device_name(*device)),
            Step::StoreFail {
                device,
                count,
                after,
            } => write!(
                f,
                "store-fail {} {count} after {after}",
                device_name(*device)
            ),
            Step::Wait { ms } => write!(f, "wait {ms}"),
            Step::AdvanceClock { ms } => write!(f, "advance-clock {ms}"),
            Step::Heal => write!(f, "heal"),
        }
    }
}

fn parse_device(word: &str) -> Result<usize, String> {
    match word.as_bytes() {
        [c @ b'a'..=b'd'] => Ok(usize::from(c - b'a')),
        _ => Err(format!("{word:?} is not a device (a, b, c or d)")),
    }
}

fn parse_conn(word: &str) -> Result<u64, String> {
    word.trim_start_matches('#')
        .parse()
        .map_err(|_| format!("{word:?} is not a connection (#1, #2, …)"))
}

fn parse_number<T: std::str::FromStr>(word: &str, what: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{what}: {word:?} is not a number"))
}

fn parse_direction(word: &str) -> Result<bool, String> {
    match word {
        "a->peer" => Ok(true),
        "peer->a" => Ok(false),
        other => Err(format!("{other:?} is not a direction (a->peer, peer->a)")),
    }
}

fn parse_peer(word: &str) -> Result<usize, String> {
    match parse_device(word)? {
        0 => Err("a is the listener, not a peer".to_owned()),
        d => Ok(d),
    }
}

impl std::str::FromStr for Step {
    type Err = String;

    /// The inverse of `Display`.
    fn from_str(line: &str) -> Result<Step, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let step = match w.as_slice() {
            ["connect", p] => Step::Connect {
                peer: parse_peer(p)?,
                silent: false,
            },
            ["connect", p, "silent"] => Step::Connect {
                peer: parse_peer(p)?,
                silent: true,
            },
            ["round"] => Step::RoundAll,
            ["round", c] => Step::Round {
                conn: parse_conn(c)?,
            },
            ["settle"] => Step::Settle,
            ["send", chat, count] => {
                let (from, to) = chat
                    .split_once("->")
                    .ok_or_else(|| format!("{chat:?} is not a chat (a->b, b->a, …)"))?;
                let count = parse_number(count, "the count")?;
                match (parse_device(from)?, parse_device(to)?) {
                    (0, p) if p > 0 => Step::Send {
                        peer: p,
                        by_listener: true,
                        count,
                    },
                    (p, 0) if p > 0 => Step::Send {
                        peer: p,
                        by_listener: false,
                        count,
                    },
                    _ => return Err(format!("{chat:?}: every chat is between a and a peer")),
                }
            }
            ["drop", c] => Step::Drop {
                conn: parse_conn(c)?,
            },
            ["drop-after", c, dir, after] => Step::Cut {
                conn: parse_conn(c)?,
                from_listener: parse_direction(dir)?,
                after: parse_number(after, "the bytes")?,
            },
            ["pieces", c, dir, "write", write, "read", read] => Step::Pieces {
                conn: parse_conn(c)?,
                from_listener: parse_direction(dir)?,
                write: parse_number(write, "the write size")?,
                read: parse_number(read, "the read size")?,
            },
            ["latency", p, ms] => Step::Latency {
                peer: parse_peer(p)?,
                ms: parse_number(ms, "the latency")?,
            },
            ["crash", d] => Step::Crash {
                device: parse_device(d)?,
                after_commits: None,
            },
            ["crash", d, "after-commits", n] => Step::Crash {
                device: parse_device(d)?,
                after_commits: Some(parse_number(n, "the commits")?),
            },
            ["crash", d, "durable", n] => Step::CrashDurable {
                device: parse_device(d)?,
                durable: parse_number(n, "the durable requests")?,
            },
            ["storage", d, mode] => Step::Storage {
                device: parse_device(d)?,
                mode: mode.parse()?,
            },
            ["commit", d, rest @ ..] if rest.len() <= 2 => {
                let mut count = None;
                let mut conn = None;
                for word in rest {
                    if word.starts_with('#') && conn.is_none() {
                        conn = Some(parse_conn(word)?);
                    } else if count.is_none() && conn.is_none() {
                        count = Some(parse_number(word, "the count")?);
                    } else {
                        return Err(format!("{line:?}: commit X [N] [#K]"));
                    }
                }
                Step::Commit {
                    device: parse_device(d)?,
                    count,
                    conn,
                }
            }
            ["restart", d] => Step::Restart {
                device: parse_device(d)?,
            },
            ["store-fail", d, count, "after", after] => Step::StoreFail {
                device: parse_device(d)?,
                count: parse_number(count, "the failures")?,
                after: parse_number(after, "the successes")?,
            },
            ["wait", ms] => Step::Wait {
                ms: parse_number(ms, "the milliseconds")?,
            },
            ["advance-clock", ms] => Step::AdvanceClock {
                ms: parse_number(ms, "the milliseconds")?,
            },
            ["heal"] => Step::Heal,
            _ => return Err(format!("unknown step {line:?}")),
        };
        Ok(step)
    }
}

/// Cuts a comment off a line: `#` followed by anything but a digit (`#3` is a connection).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let at = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
    at.map_or(line, |i| &line[..i])
}

/// A listener run written down: `peers N` (2 or 3), `option break-durability`, steps one a
/// line (or separated by `;`), `#` comments, and `expect violation KIND`. Every run ends
/// with an implicit `heal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerScenario {
    /// Peers besides `a`.
    pub peers: usize,
    /// The self-test: every link acks before it stores.
    pub break_durability: bool,
    /// The steps.
    pub steps: Vec<Step>,
    /// The run must fail with this invariant.
    pub expect_violation: Option<String>,
}

impl ListenerScenario {
    /// Reads the text form.
    pub fn parse(text: &str) -> Result<ListenerScenario, String> {
        let mut scenario = ListenerScenario {
            peers: 2,
            break_durability: false,
            steps: Vec::new(),
            expect_violation: None,
        };
        for (n, raw) in text.lines().enumerate() {
            for part in strip_comment(raw)
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let w: Vec<&str> = part.split_whitespace().collect();
                match w.as_slice() {
                    ["peers", k] => {
                        scenario.peers = k
                            .parse()
                            .ok()
                            .filter(|k| (2..=3).contains(k))
                            .ok_or_else(|| format!("line {}: peers is 2 or 3", n + 1))?;
                    }
                    ["option", "break-durability"] => scenario.break_durability = true,
                    ["expect", "violation", kind] => {
                        scenario.expect_violation = Some((*kind).to_owned());
                    }
                    _ => scenario
                        .steps
                        .push(part.parse().map_err(|e| format!("line {}: {e}", n + 1))?),
                }
            }
        }
        let too_high = scenario.steps.iter().find_map(|s| match s {
            Step::Connect { peer, .. } | Step::Latency { peer, .. } | Step::Send { peer, .. }
                if *peer > scenario.peers =>
            {
                Some(*peer)
            }
            Step::Crash { device, .. }
            | Step::CrashDurable { device, .. }
            | Step::Storage { device, .. }
            | Step::Commit { device, .. }
            | Step::Restart { device }
            | Step::StoreFail { device, .. }
                if *device > scenario.peers =>
            {
                Some(*device)
            }
            _ => None,
        });
        if let Some(bad) = too_high {
            return Err(format!(
                "device {} is not one of the {} peers",
                device_name(bad),
                scenario.peers
            ));
        }
        Ok(scenario)
    }

    /// Runs it: the steps, then `heal`. The counters, or the violation and the number of
    /// steps applied when it happened.
    pub fn run(&self) -> Result<ListenerStats, (usize, Violation)> {
        let mut world = ListenerWorld::new(self.peers);
        world.break_durability = self.break_durability;
        let heal = [Step::Heal];
        let mut applied = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for step in self.steps.iter().chain(&heal) {
                applied += 1;
                world.apply(step)?;
            }
            Ok(world.stats)
        }));
        match outcome {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(v)) => Err((applied, v)),
            Err(panic) => Err((applied, panic_violation(panic.as_ref()))),
        }
    }

    /// Runs it, printing each step and the connections after it.
    pub fn run_logged(&self) -> Result<ListenerStats, (usize, Violation)> {
        let mut world = ListenerWorld::new(self.peers);
        world.break_durability = self.break_durability;
        for (i, step) in self.steps.iter().chain(&[Step::Heal]).enumerate() {
            println!("{step}");
            let result = world.apply(step);
            println!("{}", world.describe());
            result.map_err(|v| (i + 1, v))?;
        }
        Ok(world.stats)
    }

    /// Runs it and compares with its `expect violation` line, if any.
    pub fn check(&self) -> Result<ListenerStats, String> {
        match (self.run(), &self.expect_violation) {
            (Ok(stats), None) => Ok(stats),
            (Ok(_), Some(kind)) => Err(format!("expected a {kind} violation, the run held")),
            (Err((_, v)), Some(kind)) if v.kind == kind => Ok(ListenerStats::default()),
            (Err((at, v)), _) => Err(format!("at step {at}: {v}")),
        }
    }
}

impl fmt::Display for ListenerScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "peers {}", self.peers)?;
        if self.break_durability {
            writeln!(f, "option break-durability")?;
        }
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        if let Some(kind) = &self.expect_violation {
            writeln!(f, "expect violation {kind}")?;
        }
        Ok(())
    }
}

fn panic_violation(panic: &(dyn std::any::Any + Send)) -> Violation {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    Violation::new("panic", what)
}

/// One connection between `a` and a peer. Side 0 is `a`'s, side 1 the peer's; `wires[s]`
/// carries what side `s` writes.
#[derive(Debug)]
struct Conn {
    id: u64,
    peer: usize,
    links: [Option<Link>; 2],
    wires: [Wire; 2],
    /// `a`'s link starts when the connection reaches it.
    accept_at: Option<u64>,
    eof_seen: [bool; 2],
    write_broken: [bool; 2],
    /// A store call of this side's link failed.
    disk_failed: [bool; 2],
    /// `a`'s driver admitted the proved peer on it (the endpoint's `admitted`): only such a
    /// connection is replaced by a newer one of the same peer.
    admitted: bool,
    /// A delivery mark of this side's link failed (the known core bug).
    mark_failed: [bool; 2],
}

impl Conn {
    fn is_over(&self) -> bool {
        self.accept_at.is_none() && self.links.iter().all(Option::is_none)
    }
}

/// Counters of listener runs: how often the delicate moments were reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Steps applied.
    pub steps: u64,
    /// Connections opened.
    pub connections: u64,
    /// Sessions established on both sides.
    pub established: u64,
    /// Messages written (stored).
    pub messages: u64,
    /// Pumps of a link of `a` while another link of `a` for the same peer was open.
    pub pumps_two_links_one_chat: u64,
    /// Older links of `a` closed because the same peer connected again.
    pub replaced: u64,
    /// Crashes of `a` (all its links at once).
    pub listener_crashes: u64,
    /// Crashes of `a` with a persisted message whose ack was not yet written.
    pub listener_crashes_ack_unsent: u64,
    /// Of those, while another chat had messages in flight.
    pub listener_crashes_ack_unsent_other_streaming: u64,
    /// Crashes inside a driver call, between two commits.
    pub crashes_mid_call: u64,
    /// Peer crashes.
    pub peer_crashes: u64,
    /// Connections cut by a write reaching the cut point.
    pub cuts: u64,
    /// Sessions closed for a storage failure.
    pub storage_failures: u64,
    /// Sessions closed by a timeout.
    pub timeouts: u64,
    /// The storage queues' counters (delayed completions, reorders across connections,
    /// marks held back and dropped, crashes with requests in flight).
    pub storage: StorageStats,
    /// `commit` steps that carried out queued requests.
    pub commits: u64,
    /// Syncs that set a mark right after a crash had lost delivery marks.
    pub marks_resynced: u64,
    /// Writes carried out by a crash's durable prefix, never shown as written.
    pub writes_durable_unshown: u64,
}

impl ListenerStats {
    /// Adds another run's counters.
    pub fn add(&mut self, o: &ListenerStats) {
        self.steps += o.steps;
        self.connections += o.connections;
        self.established += o.established;
        self.messages += o.messages;
        self.pumps_two_links_one_chat += o.pumps_two_links_one_chat;
        self.replaced += o.replaced;
        self.listener_crashes += o.listener_crashes;
        self.listener_crashes_ack_unsent += o.listener_crashes_ack_unsent;
        self.listener_crashes_ack_unsent_other_streaming +=
            o.listener_crashes_ack_unsent_other_streaming;
        self.crashes_mid_call += o.crashes_mid_call;
        self.peer_crashes += o.peer_crashes;
        self.cuts += o.cuts;
        self.storage_failures += o.storage_failures;
        self.timeouts += o.timeouts;
        self.storage.add(&o.storage);
        self.commits += o.commits;
        self.marks_resynced += o.marks_resynced;
        self.writes_durable_unshown += o.writes_durable_unshown;
    }
}

/// The listener world; see the [module docs](self).
#[derive(Debug)]
pub struct ListenerWorld {
    /// Device 0 is `a`, the listener; 1.. the peers.
    devices: Vec<Device>,
    up: Vec<bool>,
    disk: Vec<DiskFaults>,
    /// Latency of each peer's new connections.
    latency: Vec<u64>,
    conns: Vec<Conn>,
    connections: u64,
    now_ms: u64,
    /// One oracle per chat: `oracles[p - 1]` for `a`↔peer `p` (`a` is its `Who::A`).
    oracles: Vec<Oracle>,
    texts: u64,
    /// Self-test: every link acks what it receives before storing it.
    break_durability: bool,
    /// Each device's storage thread: its links' requests, tagged with their connection.
    storage: Vec<StorageQueue>,
    /// Per chat (`p - 1`), per side: the connection whose sync waits to land.
    sync_link: Vec<[Option<u64>; 2]>,
    /// A crash lost delivery marks of the device, not yet set right by a sync.
    marks_lost: Vec<bool>,
    /// Per device: a group still committing, ending with a compose whose lines were handed
    /// to its link to send (storage mode `early`), and the store as it was before the group
    /// (what a crash before the commit leaves).
    committing: Vec<Option<(Vec<Done>, MemoryStore)>>,
    /// Writes the oracles were told of when their group was reported, by chat, side and
    /// text: not told again when they are shown.
    told_early: BTreeSet<(usize, usize, String)>,
    /// Known core bug tolerated: a failed delivery mark the link goes on after.
    pub tolerate_mark_failure: bool,
    /// Hits of it.
    pub tolerated: u64,
    /// Counters.
    pub stats: ListenerStats,
}

fn view(devices: &[Device], peer: usize) -> ChatView<'_> {
    ChatView {
        a: (devices[0].id, &devices[0].store),
        b: (devices[peer].id, &devices[peer].store),
    }
}

fn who(side: usize) -> Who {
    if side == 0 {
        Who::A
    } else {
        Who::B
    }
}

/// In a chat's report, `a` and `b` are `a` and that chat's peer.
fn in_chat(peer: usize, v: Violation) -> Violation {
    Violation::new(
        v.kind,
        format!(
            "chat a<->{} (below, \"b\" is {}): {}",
            device_name(peer),
            device_name(peer),
            v.detail
        ),
    )
}

impl ListenerWorld {
    /// `a` and `peers` peers, all running, empty stores, nothing connected.
    pub fn new(peers: usize) -> ListenerWorld {
        let mut devices = vec![Device::new(LISTENER, "listener a")];
        for p in 1..=peers {
            devices.push(Device::new(peer_id(p), &format!("peer {}", device_name(p))));
        }
        ListenerWorld {
            up: vec![true; peers + 1],
            disk: vec![DiskFaults::default(); peers + 1],
            latency: vec![0; peers + 1],
            devices,
            conns: Vec::new(),
            connections: 0,
            now_ms: 0,
            oracles: vec![Oracle::new(); peers],
            texts: 0,
            break_durability: false,
            storage: vec![StorageQueue::default(); peers + 1],
            sync_link: vec![[None; 2]; peers],
            marks_lost: vec![false; peers + 1],
            committing: vec![None; peers + 1],
            told_early: BTreeSet::new(),
            tolerate_mark_failure: false,
            tolerated: 0,
            stats: ListenerStats::default(),
        }
    }

    /// Number of peers.
    pub fn peers(&self) -> usize {
        self.devices.len() - 1
    }

    /// Ids of the open connections, oldest first.
    pub fn open_connections(&self) -> Vec<u64> {
        self.conns.iter().map(|c| c.id).collect()
    }

    /// One line per open connection: its links' states (for `--log`).
    pub fn describe(&self) -> String {
        let state = |l: &Option<Link>| {
            l.as_ref().map_or_else(
                || "no link".to_owned(),
                |l| {
                    let s = l.session();
                    if s.is_established() {
                        format!(
                            "established, received {}, in flight {}",
                            s.received_up_to(),
                            s.in_flight()
                        )
                    } else if let Some(c) = s.close_reason() {
                        format!("closed: {c}")
                    } else {
                        "handshake".to_owned()
                    }
                },
            )
        };
        let mut out = format!("    t={} ms", self.now_ms);
        for c in &self.conns {
            out.push_str(&format!(
                "\n    #{} {}{}: a: {}; {}: {}; bytes a->{} {} written, {} read; {}->a {} written, {} read",
                c.id,
                device_name(c.peer),
                if c.admitted { " (admitted)" } else { "" },
                state(&c.links[0]),
                device_name(c.peer),
                state(&c.links[1]),
                device_name(c.peer),
                c.wires[0].written(),
                c.wires[0].bytes_read(),
                device_name(c.peer),
                c.wires[1].written(),
                c.wires[1].bytes_read(),
            ));
        }
        out
    }

    /// Whether a link of `a`'s has persisted a message whose ack it has not written yet.
    pub fn ack_unsent(&self) -> bool {
        self.conns.iter().any(|c| {
            c.links[0].as_ref().is_some_and(|l| {
                let s = l.session();
                s.is_established() && s.persisted_up_to() > s.acked_up_to()
            })
        })
    }

    /// Storage requests of device `d` waiting.
    pub fn queued(&self, d: usize) -> usize {
        self.storage[d].len()
    }

    /// Whether device `d` has a group still committing whose lines were sent.
    pub fn is_committing(&self, d: usize) -> bool {
        self.committing[d].is_some()
    }

    /// Connections with storage requests of device `d` waiting, each with how many, that may
    /// be committed alone: no other connection of the same chat has requests waiting (the
    /// generator reorders requests across chats, not across two links of one chat).
    pub fn queued_alone(&self, d: usize) -> Vec<(u64, usize)> {
        let links = self.storage[d].links();
        let peer_of = |id: u64| self.conns.iter().find(|c| c.id == id).map(|c| c.peer);
        links
            .iter()
            .filter(|&&id| {
                links
                    .iter()
                    .all(|&other| other == id || peer_of(other) != peer_of(id))
            })
            .map(|&id| (id, self.storage[d].len_of(id)))
            .collect()
    }

    /// Whether device `d` runs.
    pub fn is_up(&self, d: usize) -> bool {
        self.up[d]
    }

    fn device_of(conn: &Conn, side: usize) -> usize {
        if side == 0 {
            0
        } else {
            conn.peer
        }
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.conns.iter().position(|c| c.id == id)
    }

    /// Applies one step, then checks every chat in full.
    pub fn apply(&mut self, step: &Step) -> Result<(), Violation> {
        self.stats.steps += 1;
        match step {
            Step::Connect { peer, silent } => self.connect(*peer, *silent)?,
            Step::Round { conn } => {
                if let Some(ci) = self.index(*conn) {
                    self.round(ci)?;
                }
            }
            Step::RoundAll => {
                self.round_all()?;
            }
            Step::Settle => self.settle()?,
            Step::Send {
                peer,
                by_listener,
                count,
            } => {
                for _ in 0..*count {
                    self.send(*peer, *by_listener)?;
                }
            }
            Step::Drop { conn } => self.lose(*conn)?,
            Step::Cut {
                conn,
                from_listener,
                after,
            } => {
                if let Some(ci) = self.index(*conn) {
                    self.conns[ci].wires[usize::from(!*from_listener)].cut_after(*after);
                }
            }
            Step::Pieces {
                conn,
                from_listener,
                write,
                read,
            } => {
                if let Some(ci) = self.index(*conn) {
                    let wire = &mut self.conns[ci].wires[usize::from(!*from_listener)];
                    wire.knobs.max_write = *write;
                    wire.knobs.max_read = *read;
                }
            }
            Step::Latency { peer, ms } => self.latency[*peer] = *ms,
            Step::Crash {
                device,
                after_commits: None,
            } => {
                if self.up[*device] {
                    self.crash_durable(*device, 0)?;
                }
            }
            Step::Crash {
                device,
                after_commits: Some(n),
            } => {
                if self.up[*device] {
                    self.disk[*device].crash_after = Some(*n);
                }
            }
            Step::CrashDurable { device, durable } => {
                if self.up[*device] {
                    self.crash_durable(*device, usize::try_from(*durable).unwrap_or(usize::MAX))?;
                }
            }
            Step::Storage { device, mode } => {
                self.storage[*device].mode = *mode;
                if self.up[*device] {
                    self.service(*device, None)?;
                }
            }
            Step::Commit {
                device,
                count,
                conn,
            } => {
                let queued = conn.map_or(self.storage[*device].len(), |c| {
                    self.storage[*device].len_of(c)
                });
                let n = count.map_or(queued, |c| queued.min(usize::try_from(c).unwrap_or(0)));
                if self.up[*device] && (n > 0 || self.is_committing(*device)) {
                    self.stats.commits += 1;
                    self.service(*device, Some((n, *conn)))?;
                }
            }
            Step::Restart { device } => self.up[*device] = true,
            Step::StoreFail {
                device,
                count,
                after,
            } => {
                self.disk[*device].fail_count = *count;
                self.disk[*device].fail_after = *after;
            }
            Step::Wait { ms } => self.now_ms = self.now_ms.saturating_add(*ms),
            Step::AdvanceClock { ms } => self.advance(*ms)?,
            Step::Heal => self.heal()?,
        }
        self.conns.retain(|c| !c.is_over());
        let mut storage = StorageStats::default();
        for queue in &self.storage {
            storage.add(&queue.stats);
        }
        self.stats.storage = storage;
        self.check_full()
    }

    fn check_full(&mut self) -> Result<(), Violation> {
        for p in 1..=self.peers() {
            self.oracles[p - 1]
                .check_full(&view(&self.devices, p))
                .map_err(|v| in_chat(p, v))?;
        }
        Ok(())
    }

    // ----- connections -----

    fn new_link(&self, conn: u64, d: usize, role: Role) -> Link {
        let dev = &self.devices[d];
        let mut seed = [0x6c; 32];
        seed[..8].copy_from_slice(&conn.to_le_bytes());
        seed[8] = u8::try_from(d).unwrap_or(0);
        let mut link = Link::new_secure(dev.config.clone(), self.now_ms, role, &dev.keypair, seed);
        if d == 0 {
            link.require_admission();
        }
        if self.break_durability {
            link.break_durability_for_simulator_self_test();
        }
        link
    }

    fn connect(&mut self, peer: usize, silent: bool) -> Result<(), Violation> {
        if !(self.up[0] && self.up[peer]) {
            return Ok(());
        }
        // The peer's process leaves its old socket (a vanished route, or a close), once its
        // storage requests are completed.
        self.drain(peer)?;
        if !self.up[peer] {
            return Ok(());
        }
        for conn in self.conns.iter_mut().filter(|c| c.peer == peer) {
            if conn.links[1].take().is_some() {
                conn.wires[0].drop_reader();
                if !silent {
                    conn.wires[1].close();
                }
            }
        }
        let mine: Vec<u64> = self
            .conns
            .iter()
            .filter(|c| c.peer == peer)
            .map(|c| c.id)
            .collect();
        if mine.len() >= 2 {
            self.lose(mine[0])?;
        }
        self.connections += 1;
        self.stats.connections += 1;
        let id = self.connections;
        let salt = |dir: u64| id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ dir;
        let knobs = WireKnobs {
            latency_ms: self.latency[peer],
            ..WireKnobs::default()
        };
        let link = self.new_link(id, peer, Role::Initiator);
        self.conns.push(Conn {
            id,
            peer,
            links: [None, Some(link)],
            wires: [Wire::new(knobs, salt(1)), Wire::new(knobs, salt(2))],
            accept_at: Some(self.now_ms + self.latency[peer]),
            eof_seen: [false; 2],
            write_broken: [false; 2],
            disk_failed: [false; 2],
            admitted: false,
            mark_failed: [false; 2],
        });
        let ci = self.conns.len() - 1;
        self.accept_due(ci);
        Ok(())
    }

    /// `a`'s link starts once the connection has reached it.
    fn accept_due(&mut self, ci: usize) -> bool {
        let Some(at) = self.conns[ci].accept_at else {
            return false;
        };
        if at > self.now_ms {
            return false;
        }
        self.conns[ci].accept_at = None;
        if !self.up[0] {
            // Nobody listens: the dialer's connection is refused.
            self.conns[ci].wires[0].close();
            return true;
        }
        let link = self.new_link(self.conns[ci].id, 0, Role::Responder);
        self.conns[ci].links[0] = Some(link);
        true
    }

    /// The connection is lost now, both ways: each side still on it sees the end of the
    /// stream and pumps once more.
    fn lose(&mut self, id: u64) -> Result<(), Violation> {
        let Some(ci) = self.index(id) else {
            return Ok(());
        };
        for side in [1, 0] {
            let now = self.now_ms;
            if let Some(link) = self.conns[ci].links[side].as_mut() {
                link.handle_eof(now);
                self.pump(ci, side)?;
                // The driver keeps the link until its storage requests are completed.
                self.drain(Self::device_of(&self.conns[ci], side))?;
            }
            if let Some(ci) = self.index(id) {
                self.conns[ci].links[side] = None;
            }
        }
        if let Some(ci) = self.index(id) {
            self.conns[ci].accept_at = None;
        }
        Ok(())
    }

    /// Device `d` dies: every link of it vanishes at once, its sockets are closed by its
    /// kernel (what it wrote still goes out, then the end), its store stays; its storage
    /// requests still queued never happen. Lines whose completion a link had taken but the
    /// user was not shown yet are written all the same.
    fn crash(&mut self, d: usize) -> Result<(), Violation> {
        let side = usize::from(d != 0);
        let mut unshown: Vec<(usize, Message)> = Vec::new();
        for conn in &mut self.conns {
            if Self::side_of(conn, d).is_none() {
                continue;
            }
            if let Some(link) = conn.links[side].as_mut() {
                while let Some(notice) = link.poll_notice() {
                    if let Notice::Composed { messages, .. } = notice {
                        unshown.extend(messages.into_iter().map(|m| (conn.peer, m)));
                    }
                }
            }
        }
        for (p, message) in unshown {
            self.stats.writes_durable_unshown += 1;
            self.wrote(d, p, &message)?;
        }
        if self.storage[d].holds_marks() {
            self.marks_lost[d] = true;
        }
        self.storage[d].lose_all();
        for p in 1..=self.peers() {
            if d == 0 || d == p {
                self.sync_link[p - 1][side] = None;
                self.oracles[p - 1].link_gone(who(side));
            }
        }
        if d == 0 {
            self.stats.listener_crashes += 1;
            let streaming: Vec<(usize, bool, bool)> = self
                .conns
                .iter()
                .filter_map(|c| {
                    let s = c.links[0].as_ref()?.session();
                    Some((
                        c.peer,
                        s.is_established() && s.persisted_up_to() > s.acked_up_to(),
                        s.in_flight() > 0
                            || c.links[1]
                                .as_ref()
                                .is_some_and(|l| l.session().in_flight() > 0),
                    ))
                })
                .collect();
            for &(peer, unacked, _) in &streaming {
                if unacked {
                    self.stats.listener_crashes_ack_unsent += 1;
                    if streaming.iter().any(|&(q, _, busy)| q != peer && busy) {
                        self.stats.listener_crashes_ack_unsent_other_streaming += 1;
                    }
                }
            }
        } else {
            self.stats.peer_crashes += 1;
        }
        for conn in &mut self.conns {
            let side = if d == 0 {
                0
            } else if conn.peer == d {
                1
            } else {
                continue;
            };
            if conn.links[side].take().is_some() {
                conn.wires[side].close();
                conn.wires[1 - side].drop_reader();
            }
            if side == 0 && conn.accept_at.take().is_some() {
                conn.wires[0].close();
            }
        }
        self.up[d] = false;
        self.disk[d].crash_after = None;
        self.lose_unfinished_commit(d)
    }

    // ----- rounds (the loop that runs them: `impl Rounds` below) -----

    /// One round of one connection: the dialer (the peer) first.
    fn round(&mut self, ci: usize) -> Result<bool, Violation> {
        let id = self.conns[ci].id;
        let mut moved = self.accept_due(ci);
        for side in [1, 0] {
            moved |= self.transmit(ci, side);
        }
        for side in [1, 0] {
            moved |= self.receive(ci, side);
        }
        for side in [1, 0] {
            let now = self.now_ms;
            if let Some(link) = self.conns[ci].links[side].as_mut() {
                link.handle_timeout(now);
            }
            moved |= self.pump(ci, side)?;
        }
        // A crash of `a` inside the pump may have ended this connection; it stays listed
        // until the step is over, so `ci` is still valid.
        debug_assert_eq!(self.conns[ci].id, id);
        moved |= self.close_finished(ci)?;
        Ok(moved)
    }

    fn transmit(&mut self, ci: usize, side: usize) -> bool {
        let now = self.now_ms;
        let conn = &mut self.conns[ci];
        let Some(link) = conn.links[side].as_mut() else {
            return false;
        };
        if conn.write_broken[side] {
            return false;
        }
        let mut moved = false;
        for _ in 0..WRITE_CALLS_PER_ROUND {
            let bytes = link.poll_transmit(now);
            if bytes.is_empty() {
                break;
            }
            match conn.wires[side].write(bytes, now) {
                WireWrite::Accepted(n) => {
                    link.advance_transmit(n);
                    moved = true;
                }
                WireWrite::Broken(n) => {
                    self.stats.cuts += 1;
                    link.advance_transmit(n);
                    link.handle_eof(now);
                    conn.write_broken[side] = true;
                    conn.wires[1 - side].drop_reader();
                    moved = true;
                    break;
                }
            }
        }
        moved
    }

    fn receive(&mut self, ci: usize, side: usize) -> bool {
        let now = self.now_ms;
        let conn = &mut self.conns[ci];
        let Some(link) = conn.links[side].as_mut() else {
            return false;
        };
        let mut moved = false;
        loop {
            match conn.wires[1 - side].read(now) {
                WireRead::Data(bytes) => {
                    link.handle_input(&bytes, now);
                    moved = true;
                }
                WireRead::Eof => {
                    if !conn.eof_seen[side] {
                        conn.eof_seen[side] = true;
                        link.handle_eof(now);
                        moved = true;
                    }
                    break;
                }
                WireRead::Nothing => break,
            }
        }
        moved
    }

    /// The driver pumps one link (admitting a proved peer on `a`'s side), carries out the
    /// device's storage requests as its storage mode says, then the chats are checked.
    fn pump(&mut self, ci: usize, side: usize) -> Result<bool, Violation> {
        let now = self.now_ms;
        let d = Self::device_of(&self.conns[ci], side);
        let peer = self.conns[ci].peer;
        let id = self.conns[ci].id;
        let others_open = side == 0
            && self
                .conns
                .iter()
                .any(|c| c.id != id && c.peer == peer && c.links[0].is_some());
        let Some(link) = self.conns[ci].links[side].as_mut() else {
            return Ok(false);
        };
        if others_open {
            self.stats.pumps_two_links_one_chat += 1;
        }
        link.pump(now);
        self.service(d, None)
    }

    /// Which side of `conn` is device `d`'s, if any.
    fn side_of(conn: &Conn, d: usize) -> Option<usize> {
        if d == 0 {
            Some(0)
        } else if conn.peer == d {
            Some(1)
        } else {
            None
        }
    }

    /// Moves the requests device `d`'s links have made into its storage queue.
    fn take_requests(&mut self, d: usize) {
        let event = self.stats.steps;
        for conn in &mut self.conns {
            let Some(side) = Self::side_of(conn, d) else {
                continue;
            };
            if let Some(link) = conn.links[side].as_mut() {
                while let Some((id, request)) = link.poll_store_request() {
                    self.storage[d].push(conn.id, id, request, event);
                }
            }
        }
    }

    /// One driver turn of device `d`: notices of its links shown (a proved peer admitted),
    /// `forced` requests committed first (a `commit` step), then as the storage mode says,
    /// every completion handed back to its link, until nothing moves; then the chats are
    /// checked. Returns whether anything moved.
    fn service(
        &mut self,
        d: usize,
        forced: Option<(usize, Option<u64>)>,
    ) -> Result<bool, Violation> {
        let now = self.now_ms;
        let mut forced = forced;
        let mut moved = false;
        let mut turns = 0;
        if self.is_committing(d) && (forced.is_some() || self.storage[d].mode != StorageMode::Early)
        {
            self.finish_commit(d)?;
            moved = true;
        }
        loop {
            turns += 1;
            if turns > MAX_STORAGE_TURNS {
                return Err(Violation::new(
                    "livelock",
                    format!("device {} kept asking for storage", device_name(d)),
                ));
            }
            let mut notices: Vec<(usize, usize, Notice, u64)> = Vec::new();
            let mut wrong_peer = None;
            for ci in 0..self.conns.len() {
                let Some(side) = Self::side_of(&self.conns[ci], d) else {
                    continue;
                };
                let peer = self.conns[ci].peer;
                let conn = &mut self.conns[ci];
                let Some(link) = conn.links[side].as_mut() else {
                    continue;
                };
                while let Some(notice) = link.poll_notice() {
                    if let Notice::PeerProved { peer: hello, .. } = &notice {
                        if hello.device == peer_id(peer) {
                            // As the endpoint does: the chat is opened by a store request.
                            conn.admitted = true;
                            link.admit(now);
                        } else {
                            wrong_peer = Some((conn.id, peer, hello.device));
                        }
                    }
                    let acked = link.session().peer_acked();
                    notices.push((ci, side, notice, acked));
                }
            }
            if let Some((id, peer, device)) = wrong_peer {
                return Err(Violation::new(
                    "unexpected-close",
                    format!(
                        "a's link of connection #{id}, dialed by {}, proved device {device:?}",
                        device_name(peer)
                    ),
                ));
            }
            for (ci, side, notice, acked) in &notices {
                if let Notice::Connected { peer, .. } = notice {
                    if !peer.temporary {
                        let (id, p) = (self.conns[*ci].id, self.conns[*ci].peer);
                        self.sync_link[p - 1][*side] = Some(id);
                        self.oracles[p - 1].sync_seen(who(*side), id, *acked);
                    }
                }
                let disk_failed = self.conns[*ci].disk_failed[*side];
                self.observe(*ci, *side, notice, disk_failed)?;
            }
            moved |= !notices.is_empty();
            self.take_requests(d);
            let (count, only) = forced.take().unwrap_or((self.storage[d].due(), None));
            if count == 0 || self.storage[d].is_empty() {
                if notices.is_empty() {
                    break;
                }
                continue;
            }
            if !self.commit(d, count, only)? {
                // The process died inside the commit.
                return Ok(true);
            }
            moved = true;
        }
        self.check_device_chats(d)?;
        self.check_syncs(d)?;
        Ok(moved)
    }

    /// Carries out `count` of device `d`'s queued requests (of connection `only`, if given)
    /// and hands their completions back. Returns false if the process died inside it.
    fn commit(&mut self, d: usize, count: usize, only: Option<u64>) -> Result<bool, Violation> {
        // A commit still running finishes before the next group starts.
        self.finish_commit(d)?;
        if count == 0 || self.storage[d].is_empty() {
            return Ok(true);
        }
        let event = self.stats.steps;
        let pause = self.storage[d].mode == StorageMode::Early;
        let before = pause.then(|| self.devices[d].store.clone());
        let mut disk = Disk::new(&mut self.devices[d].store, &mut self.disk[d]);
        let (done, end) = self.storage[d].commit(&mut disk, count, only, event, pause);
        for dn in done.iter().filter(|dn| dn.disk_failed) {
            if let Some(ci) = self.index(dn.link) {
                if let Some(side) = Self::side_of(&self.conns[ci], d) {
                    self.conns[ci].disk_failed[side] = true;
                    if dn.mark {
                        self.conns[ci].mark_failed[side] = true;
                    }
                }
            }
        }
        if end == CommitEnd::Crashed {
            self.stats.crashes_mid_call += 1;
            self.unshown_writes(d, &done)?;
            self.crash(d)?;
            self.check_device_chats(d)?;
            return Ok(false);
        }
        if let (CommitEnd::Written, Some(before)) = (end, before) {
            self.written_early(d, done, before)?;
            return Ok(true);
        }
        self.hand_back(d, done)?;
        Ok(true)
    }

    /// Device `d`'s storage carried out a group ending with a compose that numbered lines,
    /// and the group is still committing: the oracles hear of the group's writes, the link
    /// of the compose is told of its lines (and sends them if they are next in line), and the
    /// group's completions wait for the commit (`finish_commit`) or are lost with it.
    fn written_early(
        &mut self,
        d: usize,
        group: Vec<Done>,
        before: MemoryStore,
    ) -> Result<(), Violation> {
        let side = usize::from(d != 0);
        let now = self.now_ms;
        for dn in &group {
            let (Some(messages), Some(other)) = (dn.composed(), dn.compose_peer) else {
                continue;
            };
            let Some(p) = self.chat_of(d, other) else {
                continue;
            };
            for message in messages {
                self.wrote(d, p, message)?;
                self.told_early.insert((p, side, message.text.clone()));
            }
        }
        if let Some(last) = group.last() {
            let target = self
                .index(last.link)
                .and_then(|ci| Self::side_of(&self.conns[ci], d).map(|side| (ci, side)));
            let messages = last.composed().unwrap_or(&[]);
            if let Some(link) = target.and_then(|(ci, side)| self.conns[ci].links[side].as_mut()) {
                if let Err(e) = link.handle_store_written(last.id, messages, now) {
                    return Err(Violation::new(
                        "driver-misuse",
                        format!(
                            "a link of {} refused the written lines of {:?}: {e:?} (a simulator bug)",
                            device_name(d),
                            last.id
                        ),
                    ));
                }
            }
        }
        self.committing[d] = Some((group, before));
        Ok(())
    }

    /// Device `d`'s unfinished commit finishes: the group's completions are handed back.
    fn finish_commit(&mut self, d: usize) -> Result<(), Violation> {
        match self.committing[d].take() {
            Some((group, _)) => self.hand_back(d, group),
            None => Ok(()),
        }
    }

    /// Device `d` died with a commit unfinished: its store is back to its state before the
    /// group, and each of its chats' oracles is told (the peer may hold the lines; the next
    /// sync gives them back).
    fn lose_unfinished_commit(&mut self, d: usize) -> Result<(), Violation> {
        let Some((group, before)) = self.committing[d].take() else {
            return Ok(());
        };
        let side = usize::from(d != 0);
        self.devices[d].store = before;
        self.storage[d].stats.written_early_lost += 1;
        let sent: Vec<(usize, Message)> = group
            .last()
            .and_then(|last| {
                let p = self.chat_of(d, last.compose_peer?)?;
                Some(
                    last.composed()?
                        .iter()
                        .map(|m| (p, m.clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap_or_default();
        let peer_holds = sent.iter().any(|(p, m)| {
            let (holder, author) = if d == 0 { (*p, 0) } else { (0, d) };
            self.devices[holder]
                .store
                .chats
                .get(&self.devices[author].id)
                .is_some_and(|chat| chat.received.contains(m))
        });
        if peer_holds {
            self.storage[d].stats.written_early_lost_held += 1;
        }
        let connection = self.connections;
        let chats: Vec<usize> = if d == 0 {
            (1..=self.peers()).collect()
        } else {
            vec![d]
        };
        for p in chats {
            self.oracles[p - 1]
                .restored(&view(&self.devices, p), who(side), connection)
                .map_err(|v| in_chat(p, v))?;
        }
        Ok(())
    }

    /// Tells chat `p`'s oracle of a write of device `d`, once (a write of a group reported
    /// before its commit was told then).
    fn wrote(&mut self, d: usize, p: usize, message: &Message) -> Result<(), Violation> {
        let side = usize::from(d != 0);
        if self.told_early.remove(&(p, side, message.text.clone())) {
            return Ok(());
        }
        self.stats.messages += 1;
        self.oracles[p - 1]
            .wrote(who(side), message)
            .map_err(|v| in_chat(p, v))
    }

    /// Hands completions back to device `d`'s links; those whose link is gone are writes
    /// nobody was shown.
    fn hand_back(&mut self, d: usize, done: Vec<Done>) -> Result<(), Violation> {
        let now = self.now_ms;
        let mut orphans = Vec::new();
        for dn in done {
            let target = self
                .index(dn.link)
                .and_then(|ci| Self::side_of(&self.conns[ci], d).map(|side| (ci, side)));
            match target.and_then(|(ci, side)| self.conns[ci].links[side].as_mut()) {
                Some(link) => {
                    if dn.wants_completion {
                        let id = dn.id;
                        if let Err(e) = link.handle_store_completion(id, dn.result, now) {
                            return Err(Violation::new(
                                "driver-misuse",
                                format!(
                                    "a link of {} refused the completion of {id:?}: {e:?} (a simulator bug)",
                                    device_name(d)
                                ),
                            ));
                        }
                    }
                }
                None => orphans.push(dn),
            }
        }
        self.unshown_writes(d, &orphans)
    }

    /// The chat of device `d` with device id `other`: its index `p` (`a`↔peer `p`).
    fn chat_of(&self, d: usize, other: DeviceId) -> Option<usize> {
        if d == 0 {
            (1..=self.peers()).find(|&p| peer_id(p) == other)
        } else {
            Some(d)
        }
    }

    /// Writes carried out whose completion never reached the user (the process died, or
    /// the link is gone): written all the same.
    fn unshown_writes(&mut self, d: usize, done: &[Done]) -> Result<(), Violation> {
        for dn in done {
            let (Some(messages), Some(other)) = (dn.composed(), dn.compose_peer) else {
                continue;
            };
            let Some(p) = self.chat_of(d, other) else {
                continue;
            };
            for message in messages {
                self.stats.writes_durable_unshown += 1;
                self.wrote(d, p, message)?;
            }
        }
        Ok(())
    }

    /// Everything queued on device `d` is carried out and completed, whatever its storage
    /// mode: the driver keeps a link until its storage requests are done.
    fn drain(&mut self, d: usize) -> Result<(), Violation> {
        if !self.up[d] {
            return Ok(());
        }
        let mode = self.storage[d].mode;
        self.storage[d].mode = StorageMode::Now;
        let result = self.service(d, None);
        self.storage[d].mode = mode;
        result.map(|_| ())
    }

    /// Device `d` dies with its storage requests in flight: the first `durable` queued take
    /// effect (no completion), the rest never happen.
    fn crash_durable(&mut self, d: usize, durable: usize) -> Result<(), Violation> {
        self.take_requests(d);
        let queued = self.storage[d].len();
        if queued > 0 {
            self.storage[d].stats.crashes_in_flight += 1;
        }
        // Nothing queued behind a commit that never finished took effect.
        let durable = if self.is_committing(d) {
            0
        } else {
            durable.min(queued)
        };
        if durable > 0 {
            let event = self.stats.steps;
            let mut disk = Disk::new(&mut self.devices[d].store, &mut self.disk[d]);
            let (done, _) = self.storage[d].commit(&mut disk, durable, None, event, false);
            self.storage[d].stats.in_flight_durable += done.len() as u64;
            self.unshown_writes(d, &done)?;
        }
        self.crash(d)?;
        self.check_device_chats(d)
    }

    /// The chats whose store is device `d`'s: all of `a`'s, or the peer's one.
    fn check_device_chats(&mut self, d: usize) -> Result<(), Violation> {
        let peer = if d == 0 { 1 } else { d };
        self.check_chats(d, peer)
    }

    /// Every sync of device `d`'s links whose storage requests are all carried out: the
    /// stored mark must be what it said ([`Oracle::sync_landed`]).
    fn check_syncs(&mut self, d: usize) -> Result<(), Violation> {
        let side = usize::from(d != 0);
        let chats: Vec<usize> = if d == 0 {
            (1..=self.peers()).collect()
        } else {
            vec![d]
        };
        for p in chats {
            let Some(id) = self.sync_link[p - 1][side] else {
                continue;
            };
            let Some(ci) = self.index(id) else {
                self.sync_link[p - 1][side] = None;
                self.oracles[p - 1].link_gone(who(side));
                continue;
            };
            let Some(link) = self.conns[ci].links[side].as_ref() else {
                continue;
            };
            if link.has_store_work() || self.storage[d].len_of(id) > 0 {
                continue;
            }
            let mark_failed = self.conns[ci].mark_failed[side];
            let closed = link.session().is_closed();
            self.sync_link[p - 1][side] = None;
            if mark_failed && closed {
                self.oracles[p - 1].link_gone(who(side));
                continue;
            }
            match self.oracles[p - 1].sync_landed(&view(&self.devices, p), who(side)) {
                Err(v) if mark_failed => {
                    if self.tolerate_mark_failure {
                        self.tolerated += 1;
                    } else {
                        return Err(in_chat(
                            p,
                            Violation::new(
                                "mark-failure-ignored",
                                format!(
                                    "{}'s store failed a delivery mark; its link was not told and its session went on: {}",
                                    device_name(d),
                                    v.detail
                                ),
                            ),
                        ));
                    }
                }
                Err(v) => return Err(in_chat(p, v)),
                Ok(SyncLanded::Right) if self.marks_lost[d] => {
                    self.marks_lost[d] = false;
                    self.stats.marks_resynced += 1;
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// After a store call of device `d` in the chat with `peer`: that chat, and every chat of
    /// `a`'s (one store serves them all).
    fn check_chats(&mut self, d: usize, peer: usize) -> Result<(), Violation> {
        if d == 0 {
            for p in 1..=self.peers() {
                self.oracles[p - 1]
                    .check(&view(&self.devices, p))
                    .map_err(|v| in_chat(p, v))?;
            }
            Ok(())
        } else {
            self.oracles[peer - 1]
                .check(&view(&self.devices, peer))
                .map_err(|v| in_chat(peer, v))
        }
    }

    fn observe(
        &mut self,
        ci: usize,
        side: usize,
        notice: &Notice,
        disk_failed: bool,
    ) -> Result<(), Violation> {
        let (id, peer) = (self.conns[ci].id, self.conns[ci].peer);
        let name = device_name(Self::device_of(&self.conns[ci], side));
        match notice {
            Notice::Closed { reason, by } => match reason.code {
                CloseCode::Timeout => self.stats.timeouts += 1,
                CloseCode::StorageFailure if *by == Side::Local && !disk_failed => {
                    return Err(Violation::new(
                        "unexpected-close",
                        format!(
                            "{name}'s session on connection #{id} was closed for a storage failure, though its store never failed: {reason}"
                        ),
                    ));
                }
                CloseCode::StorageFailure => self.stats.storage_failures += 1,
                CloseCode::ConnectionLost => {}
                // `a`'s driver replaces an older connection of the same peer.
                CloseCode::Replaced if (side == 0) == (*by == Side::Local) => {}
                _ => {
                    return Err(Violation::new(
                        "unexpected-close",
                        format!(
                            "{name}'s session on connection #{id} was closed by {by:?}: {reason}"
                        ),
                    ));
                }
            },
            Notice::KeyMismatch { .. } => {
                return Err(Violation::new(
                    "unexpected-close",
                    format!("{name} refused its peer's key on connection #{id}"),
                ));
            }
            Notice::Connected { .. } => {
                let other_established = self.conns[ci].links[1 - side]
                    .as_ref()
                    .is_some_and(|l| l.session().is_established());
                if other_established {
                    self.stats.established += 1;
                }
                if side == 0 {
                    self.replace_older(id, peer)?;
                }
            }
            Notice::Composed { messages, .. } => {
                let d = Self::device_of(&self.conns[ci], side);
                for message in messages {
                    self.composed(d, peer, message)?;
                }
            }
            Notice::ComposeFailed { texts, reason, .. } => {
                let d = Self::device_of(&self.conns[ci], side);
                for text in texts {
                    self.compose_failed(d, peer, text, reason)?;
                }
            }
            _ => {}
        }
        self.oracles[peer - 1]
            .observe(&view(&self.devices, peer), who(side), notice, false, id)
            .map_err(|v| in_chat(peer, v))
    }

    /// As the endpoint does (`Endpoint::replace_older`): the chat with `peer` is now
    /// established on connection `id`. The newest admitted connection of a device wins:
    /// every older one is closed (`Replaced`), and if a newer one is admitted already (its
    /// chat still being opened: admission and the open complete asynchronously), this one is
    /// the older and is closed instead. A newer connection is never closed for an older one
    /// (`newer-replaced`: the peer's dialer takes `Replaced` as another copy of itself and
    /// stops for good).
    fn replace_older(&mut self, id: u64, peer: usize) -> Result<(), Violation> {
        let now = self.now_ms;
        let open = |c: &&mut Conn| {
            c.peer == peer
                && c.admitted
                && c.links[0]
                    .as_ref()
                    .is_some_and(|l| !l.session().is_closed())
        };
        let newest = self
            .conns
            .iter_mut()
            .filter(|c| open(c))
            .map(|c| c.id)
            .max()
            .unwrap_or(id)
            .max(id);
        for conn in self.conns.iter_mut().filter(|c| open(c) && c.id != newest) {
            if conn.id > id {
                return Err(Violation::new(
                    "newer-replaced",
                    format!(
                        "a's driver closed {}'s newer connection #{} (Replaced) for its older connection #{id}",
                        device_name(peer),
                        conn.id
                    ),
                ));
            }
            if let Some(link) = conn.links[0].as_mut() {
                self.stats.replaced += 1;
                link.close(
                    Close::new(
                        CloseCode::Replaced,
                        "the same device connected again; the newer connection goes on",
                    ),
                    now,
                );
            }
        }
        Ok(())
    }

    /// Closes the socket of every closed session with nothing left to write (a link whose
    /// socket broke is kept until its storage requests are completed).
    fn close_finished(&mut self, ci: usize) -> Result<bool, Violation> {
        let mut moved = false;
        for side in 0..2 {
            let conn = &self.conns[ci];
            let finished = conn.links[side].as_ref().is_some_and(|l| {
                l.is_finished() || (l.session().is_closed() && conn.write_broken[side])
            });
            if !finished {
                continue;
            }
            self.drain(Self::device_of(&self.conns[ci], side))?;
            let conn = &mut self.conns[ci];
            if conn.links[side].take().is_some() {
                conn.wires[side].close();
                conn.wires[1 - side].drop_reader();
            }
            moved = true;
        }
        Ok(moved)
    }

    // ----- users -----

    /// One message in the chat `a`↔`peer`, by `a`'s user or the peer's: through the newest
    /// link of that chat on the writer's side whose peer is known (its outcome a notice,
    /// once the storage has carried it out), offline otherwise.
    fn send(&mut self, peer: usize, by_listener: bool) -> Result<(), Violation> {
        let (d, side, other) = if by_listener {
            (0, 0, peer)
        } else {
            (peer, 1, 0)
        };
        if !self.up[d] {
            return Ok(());
        }
        self.texts += 1;
        let text = if by_listener {
            format!("a{}{}", device_name(peer), self.texts)
        } else {
            format!("{}{}", device_name(peer), self.texts)
        };
        let now = self.now_ms;
        let wall = i64::try_from(now).unwrap_or(i64::MAX);
        let other_id = self.devices[other].id;
        let ci = self.conns.iter().rposition(|c| {
            c.peer == peer && c.links[side].as_ref().is_some_and(|l| l.peer().is_some())
        });
        if let Some(ci) = ci {
            let link = self.conns[ci].links[side].as_mut().expect("chosen above");
            return match link.compose_batch(vec![text.clone()], wall, now) {
                Ok(_) => self.service(d, None).map(|_| ()),
                Err(error) => {
                    self.compose_failed(d, peer, &text, &error.to_string())?;
                    self.check_chats(d, peer)
                }
            };
        }
        let mut disk = Disk::new(&mut self.devices[d].store, &mut self.disk[d]);
        let result = disk
            .compose(other_id, &text, wall)
            .map_err(|e| e.to_string());
        let crashed = disk.crashed();
        let stored = self.stored_write(d, peer, &text);
        let oracle = peer - 1;
        if crashed {
            self.stats.crashes_mid_call += 1;
            self.crash(d)?;
            if let Some(message) = stored {
                self.stats.messages += 1;
                self.oracles[oracle]
                    .wrote(who(side), &message)
                    .map_err(|v| in_chat(peer, v))?;
            }
            return self.check_chats(d, peer);
        }
        match result {
            Ok(message) => self.composed(d, peer, &message)?,
            Err(error) => self.compose_failed(d, peer, &text, &error)?,
        }
        self.check_chats(d, peer)
    }

    /// The write with this text, if device `d`'s store holds it in the chat `a`↔`peer`.
    fn stored_write(&self, d: usize, peer: usize, text: &str) -> Option<Message> {
        let other = if d == 0 { peer } else { 0 };
        self.devices[d]
            .store
            .chats
            .get(&self.devices[other].id)
            .and_then(|c| {
                c.unnumbered
                    .iter()
                    .rev()
                    .chain(c.own.iter().rev())
                    .find(|m| m.text == text)
                    .cloned()
            })
    }

    /// Device `d`'s user was shown `message` as written in the chat `a`↔`peer`: it is
    /// durable, as shown (or numbered since).
    fn composed(&mut self, d: usize, peer: usize, message: &Message) -> Result<(), Violation> {
        let stored = self.stored_write(d, peer, &message.text);
        if !composed_as_stored(message, stored.as_ref()) {
            return Err(in_chat(
                peer,
                Violation::new(
                    "own-mismatch",
                    format!(
                        "{}'s user was shown {message:?} as written, but its store holds {stored:?}",
                        device_name(d)
                    ),
                ),
            ));
        }
        self.wrote(d, peer, message)
    }

    /// Device `d`'s user was told `text` could not be written: nothing of it is stored.
    fn compose_failed(
        &mut self,
        d: usize,
        peer: usize,
        text: &str,
        error: &str,
    ) -> Result<(), Violation> {
        match self.stored_write(d, peer, text) {
            Some(message) => Err(in_chat(
                peer,
                Violation::new(
                    "compose-error-but-stored",
                    format!(
                        "{}'s user was told {text:?} could not be written ({error}), yet it is stored as #{}",
                        device_name(d),
                        message.seq
                    ),
                ),
            )),
            None => Ok(()),
        }
    }

    // ----- the end -----

    /// Faults off, everybody up, every connection lost; then one clean connection per peer,
    /// all at once, settled: every chat must have converged on it.
    fn heal(&mut self) -> Result<(), Violation> {
        for d in 0..self.devices.len() {
            self.disk[d] = DiskFaults::default();
            self.storage[d].mode = StorageMode::Now;
            self.up[d] = true;
            self.latency[d] = 0;
        }
        for id in self.open_connections() {
            self.lose(id)?;
        }
        self.conns.retain(|c| !c.is_over());
        let required: Vec<[BTreeSet<String>; 2]> = (1..=self.peers())
            .map(|p| {
                let v = view(&self.devices, p);
                [
                    self.oracles[p - 1].held_anywhere(&v, Who::A),
                    self.oracles[p - 1].held_anywhere(&v, Who::B),
                ]
            })
            .collect();
        for p in 1..=self.peers() {
            self.connect(p, false)?;
        }
        self.settle()?;
        for p in 1..=self.peers() {
            let conn = self.conns.iter().rfind(|c| c.peer == p);
            let state = |side: usize| {
                conn.and_then(|c| c.links[side].as_ref()).map_or_else(
                    || "no link".to_owned(),
                    |l| {
                        let s = l.session();
                        if s.is_established() {
                            format!("{} in flight", s.in_flight())
                        } else {
                            s.close_reason()
                                .map_or("not established".to_owned(), |c| c.to_string())
                        }
                    },
                )
            };
            let fine = |side: usize| {
                conn.and_then(|c| c.links[side].as_ref())
                    .is_some_and(|l| l.session().is_established() && l.session().in_flight() == 0)
            };
            if !(fine(0) && fine(1)) {
                return Err(in_chat(
                    p,
                    Violation::new(
                        "not-converged",
                        format!(
                            "after healing, the connection is not established with nothing in flight (a: {}; {}: {})",
                            state(0),
                            device_name(p),
                            state(1)
                        ),
                    ),
                ));
            }
            self.oracles[p - 1]
                .check_converged(&view(&self.devices, p), &required[p - 1])
                .map_err(|v| in_chat(p, v))?;
        }
        Ok(())
    }
}

impl Rounds for ListenerWorld {
    const MAX_SETTLE_ROUNDS: u64 = 200_000;
    const MAX_TIMER_FIRINGS: u64 = 10_000;

    fn round_all(&mut self) -> Result<bool, Violation> {
        let ids = self.open_connections();
        let mut moved = false;
        for id in ids {
            if let Some(ci) = self.index(id) {
                moved |= self.round(ci)?;
            }
        }
        self.conns.retain(|c| !c.is_over());
        Ok(moved)
    }

    fn next_delivery(&self) -> Option<u64> {
        self.conns
            .iter()
            .flat_map(|conn| {
                let wires = (0..2)
                    .filter(|&side| conn.links[side].is_some())
                    .filter_map(|side| conn.wires[1 - side].next_due());
                conn.accept_at.into_iter().chain(wires)
            })
            .min()
    }

    fn next_timer(&self) -> Option<u64> {
        self.conns
            .iter()
            .flat_map(|c| c.links.iter().flatten())
            .filter_map(Link::poll_timeout)
            .min()
    }

    fn clock(&mut self) -> &mut u64 {
        &mut self.now_ms
    }
}

// ----- the generator and the runner -----

/// The next step, chosen by `rng` from what the world looks like. Only the seed matters:
/// the same seed gives the same steps.
fn next_step(rng: &mut Rng, world: &ListenerWorld) -> Step {
    let peers = world.peers();
    let conns = world.open_connections();
    let any_peer = |rng: &mut Rng| 1 + usize::try_from(rng.below(peers as u64)).unwrap_or(0);
    let any_conn =
        |rng: &mut Rng| conns[usize::try_from(rng.below(conns.len() as u64)).unwrap_or(0)];
    let down: Vec<usize> = (0..=peers).filter(|&d| !world.is_up(d)).collect();
    if !down.is_empty() && rng.chance(1, 3) {
        return Step::Restart {
            device: down[usize::try_from(rng.below(down.len() as u64)).unwrap_or(0)],
        };
    }
    // A commit of lines already sent is running (storage mode `early`): now and then the
    // device dies before it ends, losing the group while a peer may hold the lines.
    for d in 0..=peers {
        if world.is_committing(d) && world.is_up(d) && rng.chance(1, 8) {
            return Step::Crash {
                device: d,
                after_commits: None,
            };
        }
    }
    // A slow disk still commits: some or all of what waits, or one connection's requests
    // before the others' (reordered across chats).
    for d in 0..=peers {
        let queued = world.queued(d) as u64;
        if (queued > 0 || world.is_committing(d)) && world.is_up(d) && rng.chance(1, 4) {
            let alone = world.queued_alone(d);
            let conn = (!alone.is_empty() && rng.chance(1, 2))
                .then(|| alone[usize::try_from(rng.below(alone.len() as u64)).unwrap_or(0)]);
            let most = conn.map_or(queued, |(_, n)| n as u64);
            return Step::Commit {
                device: d,
                count: rng
                    .chance(1, 2)
                    .then(|| u32::try_from(rng.range(1, most.max(1))).unwrap_or(1)),
                conn: conn.map(|(id, _)| id),
            };
        }
    }
    // Aim at the listener's delicate moment: a batch persisted, its ack not written yet.
    if world.ack_unsent() && rng.chance(1, 4) {
        return Step::Crash {
            device: 0,
            after_commits: None,
        };
    }
    if conns.is_empty() {
        return Step::Connect {
            peer: any_peer(rng),
            silent: rng.chance(1, 2),
        };
    }
    const WEIGHTS: [u32; 16] = [
        8,  // connect
        40, // round of one connection
        10, // round of all
        4,  // settle
        18, // send
        2,  // drop
        4,  // cut
        3,  // pieces
        2,  // latency
        3,  // crash a (now or between commits)
        2,  // crash a peer
        2,  // store failure
        1,  // advance clock
        4,  // wait (the clock moves, no round)
        2,  // storage mode of a device
        2,  // crash with requests in flight
    ];
    match rng.weighted(&WEIGHTS) {
        0 => Step::Connect {
            peer: any_peer(rng),
            silent: rng.chance(1, 2),
        },
        1 => Step::Round {
            conn: any_conn(rng),
        },
        2 => Step::RoundAll,
        3 => Step::Settle,
        4 => Step::Send {
            peer: any_peer(rng),
            by_listener: rng.chance(1, 2),
            count: if rng.chance(1, 5) {
                u32::try_from(rng.range(2, 40)).unwrap_or(2)
            } else {
                1
            },
        },
        5 => Step::Drop {
            conn: any_conn(rng),
        },
        6 => Step::Cut {
            conn: any_conn(rng),
            from_listener: rng.chance(1, 2),
            after: rng.below(400),
        },
        7 => Step::Pieces {
            conn: any_conn(rng),
            from_listener: rng.chance(1, 2),
            write: usize::try_from(rng.below(40)).unwrap_or(0),
            read: usize::try_from(rng.below(40)).unwrap_or(0),
        },
        8 => Step::Latency {
            peer: any_peer(rng),
            ms: rng.below(50),
        },
        9 => Step::Crash {
            device: 0,
            after_commits: rng
                .chance(1, 2)
                .then(|| u32::try_from(rng.below(4)).unwrap_or(0)),
        },
        10 => Step::Crash {
            device: any_peer(rng),
            after_commits: rng
                .chance(1, 3)
                .then(|| u32::try_from(rng.below(3)).unwrap_or(0)),
        },
        11 => Step::StoreFail {
            device: usize::try_from(rng.below(peers as u64 + 1)).unwrap_or(0),
            count: u32::try_from(rng.range(1, 2)).unwrap_or(1),
            after: u32::try_from(rng.below(4)).unwrap_or(0),
        },
        12 => Step::AdvanceClock {
            ms: rng.range(1_000, 120_000),
        },
        13 => Step::Wait {
            ms: rng.range(1, 60),
        },
        14 => Step::Storage {
            device: usize::try_from(rng.below(peers as u64 + 1)).unwrap_or(0),
            mode: match rng.below(4) {
                0 => StorageMode::Now,
                1 => StorageMode::HoldMarks,
                2 => StorageMode::Queued,
                _ => StorageMode::Early,
            },
        },
        _ => {
            let device = if world.queued(0) > 0 || rng.chance(1, 2) {
                0
            } else {
                any_peer(rng)
            };
            Step::CrashDurable {
                device,
                durable: u32::try_from(rng.below(world.queued(device) as u64 + 1)).unwrap_or(0),
            }
        }
    }
}

/// A failed listener run.
#[derive(Clone, Debug)]
pub struct ListenerFailure {
    /// The seed.
    pub seed: u64,
    /// Peers of the run.
    pub peers: usize,
    /// What was broken.
    pub violation: Violation,
    /// The steps, up to and including the failing one.
    pub trace: Vec<Step>,
    /// The run was the self-test (durability deliberately broken).
    pub break_durability: bool,
}

impl fmt::Display for ListenerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "LISTENER SIMULATION FAILED: seed {}", self.seed)?;
        writeln!(f, "violation: {}", self.violation)?;
        writeln!(
            f,
            "at step {} of the trace ({} peers):",
            self.trace.len(),
            self.peers
        )?;
        writeln!(f, "---")?;
        let scenario = ListenerScenario {
            peers: self.peers,
            break_durability: self.break_durability,
            steps: self.trace.clone(),
            expect_violation: Some(self.violation.kind.to_owned()),
        };
        write!(f, "{scenario}")?;
        writeln!(f, "---")?;
        writeln!(
            f,
            "(a scenario file: sim listener-scenario FILE replays it; the heal at the end is implicit)"
        )?;
        write!(
            f,
            "replay: cargo run -p socketfalco-sim --release -- listener {}{}",
            self.seed,
            if self.break_durability {
                " --break-durability"
            } else {
                ""
            }
        )
    }
}

/// Runs one seed: 2 or 3 peers, 30 to 120 steps, then the heal. Returns the counters, or
/// the failure (a panic of the code under test included).
pub fn run_listener_seed(seed: u64) -> Result<ListenerStats, Box<ListenerFailure>> {
    run_listener_seed_with(seed, false)
}

/// The same; with `break_durability` (the self-test) every link acks what it receives
/// before storing it, which the oracle must catch.
pub fn run_listener_seed_with(
    seed: u64,
    break_durability: bool,
) -> Result<ListenerStats, Box<ListenerFailure>> {
    let mut rng = Rng::new(seed ^ 0x6c69_7374_656e_6572);
    let peers = 2 + usize::try_from(rng.below(2)).unwrap_or(0);
    let steps = rng.range(30, 120);
    let mut trace = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut world = ListenerWorld::new(peers);
        world.break_durability = break_durability;
        // Some devices start with slow storage (requests wait for a commit, or marks ride in
        // later groups); the rest complete at once until a `storage` step changes it.
        for d in 0..=peers {
            if rng.chance(1, 3) {
                let step = Step::Storage {
                    device: d,
                    mode: if rng.chance(1, 2) {
                        StorageMode::Queued
                    } else {
                        StorageMode::HoldMarks
                    },
                };
                trace.push(step.clone());
                world.apply(&step)?;
            }
        }
        for _ in 0..steps {
            let step = next_step(&mut rng, &world);
            trace.push(step.clone());
            world.apply(&step)?;
        }
        trace.push(Step::Heal);
        world.apply(&Step::Heal)?;
        Ok(world.stats)
    }));
    let violation = match outcome {
        Ok(Ok(stats)) => return Ok(stats),
        Ok(Err(v)) => v,
        Err(panic) => panic_violation(panic.as_ref()),
    };
    Err(Box::new(ListenerFailure {
        seed,
        peers,
        violation,
        trace,
        break_durability,
    }))
}

/// Seeds from `SIM_LISTENER_SEEDS` (default `default`).
pub fn listener_seeds_from_env(default: u64) -> u64 {
    std::env::var("SIM_LISTENER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
