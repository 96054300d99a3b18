//! [`World`]: two devices of a [`Pair`] (the real `Link`s and `Session`s over the
//! [`MemoryStore`](socketfalco_testkit::MemoryStore) storage model), a connection made
//! of two byte-exact [`Wire`]s, a virtual clock, and the events that drive them.
//!
//! # A round
//! [`Event::Step`] runs one round; every other way of moving time is made of rounds. In a
//! round, each running device, the dialer first:
//! 1. **transmits**: writes what its session has to send, in write calls that may each take
//!    fewer bytes than offered (a write that reaches a cut breaks the connection for it);
//! 2. **receives**: reads what has arrived, in read calls of any size, into its session
//!    (and the end of the stream, once everything before it is read);
//! 3. handles due **timers**, then **pumps** its link: persists what arrived in one store
//!    call, confirms it, records deliveries, fills the send window.
//!
//! Then a closed session with nothing left to write has its socket closed. Between two
//! rounds a device has persisted what it received but not yet sent the ack: a crash there
//! is the "between persist and ack" crash. `recv`/`flush`/`pump` run a single phase, so
//! `recv b; crash b` dies with bytes read but not stored, `flush b; crash b` right after the
//! ack left, and `crash b after-commits n` inside a pump, between two store commits.
//!
//! Links are encrypted as in the product ([`Link::new_secure`]: a Noise XX handshake, the
//! dialer initiating, then every frame encrypted), so the wires carry ciphertext and a cut
//! can fall in a handshake message, a Noise length or a ciphertext body; `option
//! plain-links` puts the frames straight on the wire instead.
//!
//! # Restores
//! Every driver call goes through a [`Disk`] that records the store's state after each
//! commit in the device's [`StoreHistory`]; [`Event::Restore`] puts the store back to one of
//! those states (along its own past, or any state with `any`) while the process is down —
//! its link is dropped as in a crash — and tells the oracle, which starts its baselines of
//! that store again. The final [`Event::Heal`] first ends the connection, takes the writes
//! some store still holds as the ones the chat must end with (writes both devices lost are
//! gone), then opens one clean connection on which everything must converge.
//!
//! The invariants ([`crate::oracle`], plus memory bounds, temporary sessions and honest
//! closes here — a storage-failure close only when a store call of that link failed) are
//! checked after every pump and every event.

use crate::disk::{Disk, DiskFaults, StoreHistory};
use crate::event::{Event, Expectation, Options, Who};
use crate::oracle::{chat, composed_as_stored, Oracle, SyncLanded, Violation};
use crate::rounds::Rounds;
use crate::storage::{CommitEnd, Done, StorageMode, StorageQueue, StorageStats};
use socketfalco_core::limits::{
    LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MAX_IN_FLIGHT_MESSAGES, MAX_NOISE_MESSAGE,
    MAX_RECOVER_BATCH, TAG_BYTES,
};
use socketfalco_core::{
    encode_frame, Close, CloseCode, Frame, Hello, Link, Message, Notice, Role, Side, Store,
};
use socketfalco_testkit::{Device, Pair, Wire, WireKnobs, WireRead, WireWrite};
use std::collections::BTreeSet;

/// Bytes a Noise message adds to its plaintext: a 2-byte length and the tag.
const NOISE_OVERHEAD: usize = 2 + TAG_BYTES;
/// Bytes of the three Noise XX handshake messages, with their lengths (34 + 98 + 66), and
/// room to spare.
const NOISE_HANDSHAKE_BYTES: usize = 256;

/// Write calls a device makes per round at most (it stops earlier when it has written
/// everything).
const WRITE_CALLS_PER_ROUND: usize = 16;
/// Commits one driver call may make (each completion may ask for more) before it is called
/// a livelock.
const MAX_STORAGE_TURNS: usize = 100_000;

/// Counters of one run, summed over runs by the soak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events applied.
    pub events: u64,
    /// Faults that took effect (drops, cuts, crashes, disk failures, clock skews and jumps,
    /// latency and piece changes).
    pub faults: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections that reached the established state on both sides.
    pub established: u64,
    /// Device crashes.
    pub crashes: u64,
    /// Stored messages written by users.
    pub messages: u64,
    /// Messages written in temporary sessions.
    pub temporary_messages: u64,
    /// Messages shown to users as received (stored or temporary).
    pub shown: u64,
    /// Write calls that took fewer bytes than offered.
    pub short_writes: u64,
    /// Read calls that returned fewer bytes than had arrived.
    pub short_reads: u64,
    /// Bytes carried by all connections.
    pub bytes: u64,
    /// Compose calls that failed (disk failure), with nothing stored.
    pub compose_errors: u64,
    /// Hits of a known core bug that the options tolerate.
    pub tolerated: u64,
    /// Coverage: cuts that broke a connection before it was established (in the handshake).
    pub cuts_in_handshake: u64,
    /// Coverage: cuts that broke an established connection.
    pub cuts_established: u64,
    /// Coverage: ends of stream that arrived in the middle of a frame.
    pub eof_mid_frame: u64,
    /// Coverage: crashes with received messages not yet persisted.
    pub crashes_unpersisted: u64,
    /// Coverage: crashes with messages persisted but their ack not yet written.
    pub crashes_ack_unsent: u64,
    /// Coverage: crashes between two commits of one driver call.
    pub crashes_mid_call: u64,
    /// Coverage: connections dialed by b (roles swapped).
    pub connections_b_dials: u64,
    /// Coverage: temporary sessions established.
    pub temporary_sessions: u64,
    /// Coverage: connections closed by a timeout (handshake, idle).
    pub timeouts: u64,
    /// Coverage: connections closed by a storage failure.
    pub storage_failures: u64,
    /// Coverage: pumps after which a session's send window was full.
    pub window_full: u64,
    /// Coverage: connections refused for integrity after a bit was flipped on them.
    pub integrity_failures: u64,
    /// Stores put back to an earlier committed state.
    pub restores: u64,
    /// Coverage: restores of a device whose session was getting its own messages back.
    pub restores_mid_recovery: u64,
    /// Coverage: own numbered messages that came back to their author after a restore.
    pub recovered: u64,
    /// Coverage: of those, writes that waited unnumbered in the restored store (kept once).
    pub returned_waiting: u64,
    /// Coverage: delivered marks a sync set lower (the peer's store went back).
    pub marks_set_down: u64,
    /// Coverage: ids given a new text, and writes numbered again, after both devices lost
    /// the first one.
    pub ids_reused: u64,
    /// Coverage: writes both devices had lost to restores when the faults stopped.
    pub writes_lost_to_restores: u64,
    /// The storage queues' counters: delayed completions, marks held back and dropped,
    /// crashes with requests in flight.
    pub storage: StorageStats,
    /// `commit` events that carried out queued requests.
    pub commits: u64,
    /// Coverage: syncs that set a mark right after a crash had lost delivery marks.
    pub marks_resynced: u64,
    /// Coverage: writes carried out by a crash's durable prefix, never shown as written.
    pub writes_durable_unshown: u64,
}

impl Stats {
    /// Adds another run's counters.
    pub fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.faults += other.faults;
        self.rounds += other.rounds;
        self.connections += other.connections;
        self.established += other.established;
        self.crashes += other.crashes;
        self.messages += other.messages;
        self.temporary_messages += other.temporary_messages;
        self.shown += other.shown;
        self.short_writes += other.short_writes;
        self.short_reads += other.short_reads;
        self.bytes += other.bytes;
        self.compose_errors += other.compose_errors;
        self.tolerated += other.tolerated;
        self.cuts_in_handshake += other.cuts_in_handshake;
        self.cuts_established += other.cuts_established;
        self.eof_mid_frame += other.eof_mid_frame;
        self.crashes_unpersisted += other.crashes_unpersisted;
        self.crashes_ack_unsent += other.crashes_ack_unsent;
        self.crashes_mid_call += other.crashes_mid_call;
        self.connections_b_dials += other.connections_b_dials;
        self.temporary_sessions += other.temporary_sessions;
        self.timeouts += other.timeouts;
        self.storage_failures += other.storage_failures;
        self.window_full += other.window_full;
        self.integrity_failures += other.integrity_failures;
        self.restores += other.restores;
        self.restores_mid_recovery += other.restores_mid_recovery;
        self.recovered += other.recovered;
        self.returned_waiting += other.returned_waiting;
        self.marks_set_down += other.marks_set_down;
        self.ids_reused += other.ids_reused;
        self.writes_lost_to_restores += other.writes_lost_to_restores;
        self.storage.add(&other.storage);
        self.commits += other.commits;
        self.marks_resynced += other.marks_resynced;
        self.writes_durable_unshown += other.writes_durable_unshown;
    }
}

/// One connection: a wire each way (indexed by the writer), and its bookkeeping.
#[derive(Debug)]
struct Conn {
    id: u64,
    wires: [Wire; 2],
    /// The listener's session starts at this time (the dialer's connection reaches it).
    pending_accept: Option<(u64, Who)>,
    /// The reader has seen the end of the stream.
    eof_seen: [bool; 2],
    /// The writer's write broke at a cut: its socket is dead.
    write_broken: [bool; 2],
    /// Both sides were established at some point.
    counted_established: bool,
    /// A bit was flipped on this connection: refusing it for integrity is then right.
    tampered: bool,
}

/// The simulated world; see the [module docs](self).
#[derive(Debug)]
pub struct World {
    /// The two devices (stores, links, configs), the clock and the wall clocks.
    pub pair: Pair,
    /// Run-wide settings.
    pub options: Options,
    /// The independent record the invariants check against.
    pub oracle: Oracle,
    /// Counters.
    pub stats: Stats,
    up: [bool; 2],
    listener: Who,
    conn: Option<Conn>,
    connections: u64,
    knobs: [WireKnobs; 2],
    clocks: [DeviceClock; 2],
    disk: [DiskFaults; 2],
    /// Each store's committed states, for `restore`.
    history: [StoreHistory; 2],
    link_window: [u64; 2],
    /// Bytes the session had waiting to be written at its last transmit.
    out_pending: [usize; 2],
    /// A store call of the device's current link failed (a simulated disk failure).
    link_disk_failed: [bool; 2],
    /// Each device's storage thread: its links' requests, waiting to be carried out.
    storage: [StorageQueue; 2],
    /// The connection of each device's current link (its requests are tagged with it).
    link_key: [u64; 2],
    /// A delivery mark of the device's current link failed (the known core bug).
    mark_failed: [bool; 2],
    /// A crash lost delivery marks of the device, not yet set right by a sync.
    marks_lost: [bool; 2],
    /// A group still committing, ending with a compose that numbered lines
    /// ([`StorageMode::Early`]): the lines were handed to the link to send, the group's
    /// completions wait for the device's next commit (or the group is lost in a crash), with
    /// the number of commits the device's history had before the group.
    committing: [Option<(Vec<Done>, u64)>; 2],
    /// Texts the oracle was told of when their compose was written early: not told again
    /// when their `Composed` notice comes.
    told_early: [BTreeSet<String>; 2],
    /// What happened, line by line, when asked for ([`World::enable_log`]).
    log: Option<Vec<String>>,
}

fn device(pair: &Pair, who: Who) -> &Device {
    match who {
        Who::A => &pair.a,
        Who::B => &pair.b,
    }
}

/// Whether the device's link has its session closed (or no link).
fn link_closed(pair: &Pair, who: Who) -> bool {
    device(pair, who)
        .link
        .as_ref()
        .is_none_or(|l| l.session().is_closed())
}

fn device_mut(pair: &mut Pair, who: Who) -> &mut Device {
    match who {
        Who::A => &mut pair.a,
        Who::B => &mut pair.b,
    }
}

/// The connection and `who`'s link on it, while both exist: what moves bytes.
fn conn_and_link<'a>(
    conn: &'a mut Option<Conn>,
    pair: &'a mut Pair,
    who: Who,
) -> Option<(&'a mut Conn, &'a mut Link)> {
    Some((conn.as_mut()?, device_mut(pair, who).link.as_mut()?))
}

impl World {
    /// Both devices running, empty stores, not connected; b listens first.
    pub fn new(options: Options) -> World {
        World {
            pair: Pair::new(),
            options,
            oracle: Oracle::new(),
            stats: Stats::default(),
            up: [true; 2],
            listener: Who::B,
            conn: None,
            connections: 0,
            knobs: [WireKnobs::default(); 2],
            clocks: [DeviceClock::default(); 2],
            disk: [DiskFaults::default(); 2],
            history: [StoreHistory::new(), StoreHistory::new()],
            link_window: [0; 2],
            out_pending: [0; 2],
            link_disk_failed: [false; 2],
            storage: [StorageQueue::default(), StorageQueue::default()],
            link_key: [0; 2],
            mark_failed: [false; 2],
            marks_lost: [false; 2],
            committing: [None, None],
            told_early: [BTreeSet::new(), BTreeSet::new()],
            log: None,
        }
    }

    /// Records from now on every event, every write and read on the wires (with their byte
    /// offsets) and every notice, for [`World::take_log`]. For writing scenarios: a cut
    /// offset is easiest to pick from this.
    pub fn enable_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The lines recorded so far.
    pub fn take_log(&mut self) -> Vec<String> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(log) = self.log.as_mut() {
            log.push(line());
        }
    }

    // ----- views for the generator and the tests -----

    /// Whether the device is running.
    pub fn is_up(&self, who: Who) -> bool {
        self.up[who.index()]
    }

    /// Whether a connection exists (at least one side still has it open).
    pub fn has_connection(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether the device has a link (is on a connection).
    pub fn has_link(&self, who: Who) -> bool {
        device(&self.pair, who).link.is_some()
    }

    /// Whether both sessions are established.
    pub fn is_established(&self) -> bool {
        Who::BOTH.iter().all(|&w| {
            device(&self.pair, w)
                .link
                .as_ref()
                .is_some_and(|l| l.session().is_established())
        })
    }

    /// Bytes written so far on the current connection from `from` to the other side.
    pub fn bytes_written(&self, from: Who) -> u64 {
        self.conn
            .as_ref()
            .map_or(0, |c| c.wires[from.index()].written())
    }

    /// Whether the device's session is getting its own messages back from the peer (its
    /// store went back in time).
    pub fn is_recovering(&self, who: Who) -> bool {
        device(&self.pair, who)
            .link
            .as_ref()
            .is_some_and(|l| l.session().is_recovering())
    }

    /// Storage requests of the device waiting to be carried out.
    pub fn queued(&self, who: Who) -> usize {
        self.storage[who.index()].len()
    }

    /// Whether the device has a compose written early whose commit has not finished.
    pub fn is_committing(&self, who: Who) -> bool {
        self.committing[who.index()].is_some()
    }

    /// What the device's storage does with its driver calls' requests.
    pub fn storage_mode(&self, who: Who) -> StorageMode {
        self.storage[who.index()].mode
    }

    /// Whether the device asks for temporary sessions.
    pub fn is_temporary(&self, who: Who) -> bool {
        device(&self.pair, who).config.temporary
    }

    /// The device's monotonic clock: its own rate, its own leaps, never backwards.
    fn now(&self, who: Who) -> u64 {
        self.clocks[who.index()].at(self.pair.now_ms)
    }

    fn wall(&self, who: Who) -> i64 {
        let base = match who {
            Who::A => self.pair.wall_a_ms,
            Who::B => self.pair.wall_b_ms,
        };
        base.saturating_add(i64::try_from(self.pair.now_ms).unwrap_or(i64::MAX))
    }

    fn dialer(&self) -> Who {
        self.listener.other()
    }

    // ----- events -----

    /// Applies one event, then checks every invariant.
    pub fn apply(&mut self, event: &Event) -> Result<(), Violation> {
        self.stats.events += 1;
        let now = self.pair.now_ms;
        self.note(|| format!("[{now} ms] {event}"));
        let result = self.apply_inner(event);
        let coverage = self.oracle.coverage;
        self.stats.recovered = coverage.recovered;
        self.stats.returned_waiting = coverage.returned_waiting;
        self.stats.marks_set_down = coverage.marks_set_down;
        self.stats.ids_reused = coverage.ids_reused + coverage.renumbered;
        self.stats.writes_lost_to_restores = coverage.writes_lost_to_restores;
        self.stats.storage = self.storage[0].stats;
        self.stats.storage.add(&self.storage[1].stats);
        if result? && event.is_fault() {
            self.stats.faults += 1;
        }
        self.check_all()
    }

    /// The end of every run: heal, then everything must have converged.
    pub fn finish(&mut self) -> Result<(), Violation> {
        self.apply(&Event::Heal)
    }

    /// Applies `event`; returns whether it took effect (for the fault count).
    fn apply_inner(&mut self, event: &Event) -> Result<bool, Violation> {
        match *event {
            Event::Connect => self.connect().map(|()| true),
            Event::SwapRoles => {
                self.listener = self.listener.other();
                Ok(true)
            }
            Event::Drop => {
                let had = self.conn.is_some();
                self.lose_connection()?;
                Ok(had)
            }
            Event::DropAfter { from, bytes } => Ok(match self.conn.as_mut() {
                Some(conn) if !conn.wires[from.index()].is_closed() => {
                    conn.wires[from.index()].cut_after(bytes);
                    true
                }
                _ => false,
            }),
            Event::Tamper { from, bytes } => Ok(match self.conn.as_mut() {
                Some(conn)
                    if !self.options.plain_links && !conn.wires[from.index()].is_closed() =>
                {
                    conn.wires[from.index()].tamper_after(bytes);
                    conn.tampered = true;
                    true
                }
                _ => false,
            }),
            Event::Temporary { who, on } => {
                device_mut(&mut self.pair, who).config.temporary = on;
                Ok(true)
            }
            Event::Window { who, window } => {
                device_mut(&mut self.pair, who).config.window = window;
                Ok(true)
            }
            Event::Send { who, count, size } => {
                for _ in 0..count {
                    self.send(who, size)?;
                }
                Ok(true)
            }
            Event::Step(rounds) => {
                for _ in 0..rounds {
                    if !self.round_all()? {
                        self.advance_to_next_delivery();
                    }
                }
                Ok(true)
            }
            Event::Settle => self.settle().map(|()| true),
            Event::Recv(who) => Ok(self.receive(who)),
            Event::Flush(who) => Ok(self.transmit(who)),
            Event::Pump(who) => self.pump(who),
            Event::Crash(who) => self.crash_durable(who, 0),
            Event::CrashDurable { who, durable } => {
                self.crash_durable(who, usize::try_from(durable).unwrap_or(usize::MAX))
            }
            Event::Storage { who, mode } => {
                let changed = self.storage[who.index()].mode != mode;
                self.storage[who.index()].mode = mode;
                if self.is_up(who) {
                    // The next driver turn goes by the new mode.
                    self.service(who, None)?;
                }
                Ok(changed)
            }
            Event::Commit { who, count } => {
                let queued = self.storage[who.index()].len();
                let committing = self.is_committing(who);
                if !self.is_up(who) || (queued == 0 && !committing) {
                    return Ok(false);
                }
                let n = count.map_or(queued, |c| queued.min(usize::try_from(c).unwrap_or(0)));
                if n == 0 && !committing {
                    return Ok(false);
                }
                self.stats.commits += 1;
                self.service(who, Some(n))?;
                Ok(true)
            }
            Event::CrashAfterCommits { who, commits } => {
                if self.is_up(who) {
                    self.disk[who.index()].crash_after = Some(commits);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            Event::Restart(who) => {
                let was_down = !self.up[who.index()];
                self.up[who.index()] = true;
                Ok(was_down)
            }
            Event::Restore { who, back, any } => {
                if back == 0 {
                    return Ok(false);
                }
                self.restore(who, back, any)?;
                Ok(true)
            }
            Event::StoreFail { who, fails, after } => {
                let disk = &mut self.disk[who.index()];
                disk.fail_count = fails;
                disk.fail_after = after;
                Ok(fails > 0)
            }
            Event::AdvanceClock(ms) => self.advance(ms).map(|()| true),
            Event::ClockJump { who, ms } => {
                let now = self.pair.now_ms;
                self.clocks[who.index()].jump(now, ms);
                Ok(ms > 0)
            }
            Event::ClockRate { who, percent } => {
                let now = self.pair.now_ms;
                let clock = &mut self.clocks[who.index()];
                let changed = clock.rate != percent.max(1);
                clock.set_rate(now, percent);
                Ok(changed)
            }
            Event::Wall { who, delta_ms } => {
                let wall = match who {
                    Who::A => &mut self.pair.wall_a_ms,
                    Who::B => &mut self.pair.wall_b_ms,
                };
                *wall = wall.saturating_add(delta_ms);
                Ok(delta_ms != 0)
            }
            Event::Latency { from, ms, jitter } => {
                let knobs = &mut self.knobs[from.index()];
                knobs.latency_ms = ms;
                knobs.jitter_ms = jitter;
                self.apply_knobs(from);
                Ok(true)
            }
            Event::Pieces { from, write, read } => {
                let knobs = &mut self.knobs[from.index()];
                knobs.max_write = write;
                knobs.max_read = read;
                self.apply_knobs(from);
                Ok(true)
            }
            Event::Heal => self.heal().map(|()| true),
            Event::Expect(ref expectation) => self.expect(expectation).map(|()| true),
        }
    }

    fn apply_knobs(&mut self, from: Who) {
        if let Some(conn) = self.conn.as_mut() {
            conn.wires[from.index()].knobs = self.knobs[from.index()];
        }
    }

    // ----- connections -----

    /// Tears down any connection, then dials: the dialer's session now, the listener's when
    /// the connection reaches it.
    fn connect(&mut self) -> Result<(), Violation> {
        self.lose_connection()?;
        if !(self.up[0] && self.up[1]) {
            return Ok(());
        }
        self.connections += 1;
        self.stats.connections += 1;
        let id = self.connections;
        let dialer = self.dialer();
        if dialer == Who::B {
            self.stats.connections_b_dials += 1;
        }
        let salt = |dir: u64| id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ dir;
        let accept_at = self.pair.now_ms + self.knobs[dialer.index()].latency_ms;
        self.conn = Some(Conn {
            id,
            wires: [
                Wire::new(self.knobs[0], salt(1)),
                Wire::new(self.knobs[1], salt(2)),
            ],
            pending_accept: Some((accept_at, self.listener)),
            eof_seen: [false; 2],
            write_broken: [false; 2],
            counted_established: false,
            tampered: false,
        });
        self.new_link(dialer, Role::Initiator);
        self.accept_due();
        Ok(())
    }

    fn new_link(&mut self, who: Who, role: Role) {
        let now = self.now(who);
        let connection = self.connections;
        let dev = device_mut(&mut self.pair, who);
        let mut link = if self.options.plain_links {
            Link::new(dev.config.clone(), now)
        } else {
            // Ephemeral keys from a seed fixed by the connection and the side: replayable.
            let mut seed = [0x5f; 32];
            seed[..8].copy_from_slice(&connection.to_le_bytes());
            seed[8] = u8::try_from(who.index()).unwrap_or(0);
            Link::new_secure(dev.config.clone(), now, role, &dev.keypair, seed)
        };
        if self.options.break_durability {
            link.break_durability_for_simulator_self_test();
        }
        self.link_window[who.index()] = dev.config.window.clamp(1, MAX_IN_FLIGHT_MESSAGES);
        self.out_pending[who.index()] = 0;
        self.link_disk_failed[who.index()] = false;
        self.link_key[who.index()] = connection;
        self.mark_failed[who.index()] = false;
        self.oracle.link_gone(who);
        dev.link = Some(link);
        if let Some(conn) = self.conn.as_mut() {
            conn.eof_seen[who.index()] = false;
        }
    }

    /// The listener's session starts once the connection has reached it.
    fn accept_due(&mut self) -> bool {
        let Some((at, who)) = self.conn.as_ref().and_then(|c| c.pending_accept) else {
            return false;
        };
        if at > self.pair.now_ms {
            return false;
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.pending_accept = None;
            if !self.up[who.index()] {
                // Nobody listens any more: the dialer's connection is refused.
                conn.wires[who.index()].close();
                return true;
            }
        }
        self.new_link(who, Role::Responder);
        true
    }

    /// The connection is lost now, both ways: bytes in flight are lost, each side still on
    /// it sees the end of the stream and its driver pumps once more.
    fn lose_connection(&mut self) -> Result<(), Violation> {
        if self.conn.is_none() {
            return Ok(());
        }
        for who in [self.dialer(), self.listener] {
            let now = self.now(who);
            if let Some(link) = device_mut(&mut self.pair, who).link.as_mut() {
                link.handle_eof(now);
                self.pump(who)?;
                // The driver keeps the link until its storage requests are completed.
                self.drain(who)?;
            }
            self.drop_link(who);
        }
        self.end_connection();
        Ok(())
    }

    /// The device's link is gone (its connection over, or its process).
    fn drop_link(&mut self, who: Who) {
        device_mut(&mut self.pair, who).link = None;
        self.oracle.link_gone(who);
    }

    fn end_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            for wire in &conn.wires {
                self.stats.short_writes += wire.short_writes;
                self.stats.short_reads += wire.short_reads;
                self.stats.bytes += wire.written();
            }
        }
    }

    /// The device's store goes back `back` commits (see [`Event::Restore`]) while its
    /// process is down: its link is gone as in a crash; it runs again if it was running.
    fn restore(&mut self, who: Who, back: u64, any: bool) -> Result<(), Violation> {
        let i = who.index();
        let was_up = self.up[i];
        if self.is_recovering(who) {
            self.stats.restores_mid_recovery += 1;
        }
        if was_up {
            self.stop(who);
            self.lose_unfinished_commit(who)?;
        }
        let (commit, state) = self.history[i].restore(back, any);
        let commits = self.history[i].commits();
        self.note(|| {
            format!("    {who}'s store goes back to its state after commit {commit} of {commits}")
        });
        device_mut(&mut self.pair, who).store = state;
        self.up[i] = was_up;
        self.stats.restores += 1;
        let connection = self.connections;
        self.oracle.restored(&self.pair, who, connection)
    }

    /// The device dies with its storage requests in flight: the first `durable` queued
    /// requests take effect (no completion is handed back), the rest never happen. Returns
    /// whether it took effect (the device was running).
    fn crash_durable(&mut self, who: Who, durable: usize) -> Result<bool, Violation> {
        if !self.is_up(who) {
            return Ok(false);
        }
        let i = who.index();
        self.take_requests(who);
        let queued = self.storage[i].len();
        if queued > 0 {
            self.storage[i].stats.crashes_in_flight += 1;
        }
        // Nothing queued behind a commit that never finished took effect.
        let durable = if self.is_committing(who) {
            0
        } else {
            durable.min(queued)
        };
        if durable > 0 {
            let event = self.stats.events;
            let dev = device_mut(&mut self.pair, who);
            let mut disk =
                Disk::with_history(&mut dev.store, &mut self.disk[i], &mut self.history[i]);
            let (done, _) = self.storage[i].commit(&mut disk, durable, None, event, false);
            self.storage[i].stats.in_flight_durable += done.len() as u64;
            self.note(|| {
                format!(
                    "    {who} crashes; {} queued request(s) had taken effect",
                    done.len()
                )
            });
            self.unshown_writes(who, &done)?;
        }
        self.crash(who)?;
        self.oracle.check(&self.pair)?;
        Ok(true)
    }

    /// Writes carried out whose completion never reached the user (the process died): they
    /// are written all the same, and the chat must hold them.
    fn unshown_writes(&mut self, who: Who, done: &[Done]) -> Result<(), Violation> {
        for d in done {
            for message in d.composed().unwrap_or(&[]) {
                self.stats.writes_durable_unshown += 1;
                self.wrote(who, message)?;
            }
        }
        Ok(())
    }

    /// Tells the oracle of a write, once (a write sent before its commit was told then).
    fn wrote(&mut self, who: Who, message: &Message) -> Result<(), Violation> {
        if self.told_early[who.index()].remove(&message.text) {
            return Ok(());
        }
        self.stats.messages += 1;
        self.oracle.wrote(who, message)
    }

    /// The device's storage carried out a group ending with a compose that numbered lines,
    /// and the group is still committing (as the product's storage thread reports before
    /// its `COMMIT`): the link is told of the lines, and sends them; the completions of the
    /// whole group wait for the commit to finish. `commits` is the history's count before
    /// the group.
    fn written_early(&mut self, who: Who, group: Vec<Done>, commits: u64) -> Result<(), Violation> {
        let i = who.index();
        let now = self.now(who);
        let Some(done) = group.last() else {
            return Ok(());
        };
        let id = done.id;
        let messages = done.composed().unwrap_or(&[]).to_vec();
        self.note(|| {
            format!(
                "    {who}'s storage wrote {id:?} ({} line(s)); its commit runs",
                messages.len()
            )
        });
        // Every compose of the group is in the store now (uncommitted), and the peer may hold
        // the last one's lines before the author's user is shown them, or ever is.
        let written: Vec<Message> = group
            .iter()
            .filter_map(Done::composed)
            .flatten()
            .cloned()
            .collect();
        for message in &written {
            self.wrote(who, message)?;
            self.told_early[i].insert(message.text.clone());
        }
        let key = self.link_key[i];
        if let Some(link) = device_mut(&mut self.pair, who).link.as_mut() {
            if done.link == key {
                if let Err(e) = link.handle_store_written(id, &messages, now) {
                    return Err(Violation::new(
                        "driver-misuse",
                        format!("{who}'s link refused the written lines of {id:?}: {e:?} (a simulator bug)"),
                    ));
                }
            }
        }
        self.committing[i] = Some((group, commits));
        Ok(())
    }

    /// The device's unfinished commit finishes: the group's completions are handed back.
    fn finish_commit(&mut self, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let Some((group, _)) = self.committing[i].take() else {
            return Ok(());
        };
        let ids: Vec<String> = group.iter().map(|d| format!("{:?}", d.id)).collect();
        self.note(|| format!("    {who}'s storage commits {}", ids.join(", ")));
        self.hand_back(who, group)
    }

    /// The process died with a commit unfinished: the group it was committing never took
    /// effect, and the store is back to its state before it — the rule for a store that went
    /// back in time covers what the peer may hold of its lines (docs/PROTOCOL.md §6.2).
    fn lose_unfinished_commit(&mut self, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let Some((group, commits)) = self.committing[i].take() else {
            return Ok(());
        };
        let Some(done) = group.last() else {
            return Ok(());
        };
        let (commit, state) = self.history[i].restore(self.history[i].commits() - commits, false);
        self.note(|| {
            format!(
                "    {who}'s commit of {} request(s) ending with {:?} never finished: its store is back to commit {commit}",
                group.len(),
                done.id
            )
        });
        device_mut(&mut self.pair, who).store = state;
        self.storage[i].stats.written_early_lost += 1;
        let peer_holds = crate::oracle::chat(&self.pair, who.other()).is_some_and(|chat| {
            done.composed()
                .unwrap_or(&[])
                .iter()
                .any(|m| chat.received.contains(m))
        });
        if peer_holds {
            self.storage[i].stats.written_early_lost_held += 1;
        }
        let connection = self.connections;
        self.oracle.restored(&self.pair, who, connection)
    }

    /// The device dies: its link vanishes without another step, its store stays; storage
    /// requests still queued never happen. Lines whose completion the link had taken but
    /// the user was not shown yet are written all the same.
    fn crash(&mut self, who: Who) -> Result<(), Violation> {
        self.note(|| format!("    {who} crashes"));
        let unshown: Vec<Message> = device_mut(&mut self.pair, who)
            .link
            .as_mut()
            .map(|link| {
                std::iter::from_fn(|| link.poll_notice())
                    .filter_map(|n| match n {
                        Notice::Composed { messages, .. } => Some(messages),
                        _ => None,
                    })
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let temporary = device(&self.pair, who)
            .link
            .as_ref()
            .and_then(|l| l.peer())
            .is_some_and(|p| p.temporary);
        for message in &unshown {
            if temporary {
                self.oracle.wrote_temporary(who, message);
            } else {
                self.stats.writes_durable_unshown += 1;
                self.wrote(who, message)?;
            }
        }
        if let Some(link) = device(&self.pair, who).link.as_ref() {
            let s = link.session();
            if s.received_up_to() > s.persisted_up_to() {
                self.stats.crashes_unpersisted += 1;
            }
            if s.is_established() && s.persisted_up_to() > s.acked_up_to() {
                self.stats.crashes_ack_unsent += 1;
            }
        }
        self.stats.crashes += 1;
        if self.storage[who.index()].holds_marks() {
            self.marks_lost[who.index()] = true;
        }
        self.stop(who);
        self.lose_unfinished_commit(who)
    }

    /// The process stops: its link vanishes without another step, its kernel closes the
    /// socket (what it wrote still goes out, then the end of the stream); its storage
    /// requests still queued never happen.
    fn stop(&mut self, who: Who) {
        let i = who.index();
        self.storage[i].lose_all();
        self.drop_link(who);
        self.up[i] = false;
        self.disk[i].crash_after = None;
        self.out_pending[i] = 0;
        if let Some(conn) = self.conn.as_mut() {
            // Its kernel closes the socket: what it wrote still goes out, then the end.
            conn.wires[i].close();
            conn.wires[who.other().index()].drop_reader();
            if conn.pending_accept.is_some_and(|(_, w)| w == who) {
                conn.pending_accept = None;
            }
        }
        self.maybe_end_connection();
    }

    fn maybe_end_connection(&mut self) {
        let over = self
            .conn
            .as_ref()
            .is_some_and(|c| c.pending_accept.is_none())
            && !self.has_link(Who::A)
            && !self.has_link(Who::B);
        if over {
            self.end_connection();
        }
    }

    // ----- rounds (the loop that runs them: `impl Rounds` below) -----

    /// The device writes what its session has to send.
    fn transmit(&mut self, who: Who) -> bool {
        let (i, now, global) = (who.index(), self.now(who), self.pair.now_ms);
        let Some((conn, link)) = conn_and_link(&mut self.conn, &mut self.pair, who) else {
            return false;
        };
        if conn.write_broken[i] {
            return false;
        }
        let mut moved = false;
        for call in 0..WRITE_CALLS_PER_ROUND {
            let bytes = link.poll_transmit(now);
            if call == 0 {
                self.out_pending[i] = bytes.len();
            }
            if bytes.is_empty() {
                break;
            }
            let offset = conn.wires[i].written();
            let offered = bytes.len();
            let result = conn.wires[i].write(bytes, global);
            if let Some(log) = self.log.as_mut() {
                let (n, broken) = match result {
                    WireWrite::Accepted(n) => (n, ""),
                    WireWrite::Broken(n) => (n, ", then the connection breaks (cut)"),
                };
                log.push(format!(
                    "    {who}->{} wrote bytes {offset}..{} ({n} of {offered} waiting){broken}",
                    who.other(),
                    offset + n as u64
                ));
            }
            match result {
                WireWrite::Accepted(n) => {
                    link.advance_transmit(n);
                    moved = true;
                }
                WireWrite::Broken(n) => {
                    // The write hit the cut: the connection is reset under this device.
                    if link.session().is_established() {
                        self.stats.cuts_established += 1;
                    } else {
                        self.stats.cuts_in_handshake += 1;
                    }
                    link.advance_transmit(n);
                    link.handle_eof(now);
                    conn.write_broken[i] = true;
                    conn.wires[who.other().index()].drop_reader();
                    moved = true;
                    break;
                }
            }
        }
        moved
    }

    /// The device reads what has arrived into its session.
    fn receive(&mut self, who: Who) -> bool {
        let (i, now, global) = (who.index(), self.now(who), self.pair.now_ms);
        let Some((conn, link)) = conn_and_link(&mut self.conn, &mut self.pair, who) else {
            return false;
        };
        let mut moved = false;
        loop {
            match conn.wires[who.other().index()].read(global) {
                WireRead::Data(bytes) => {
                    if let Some(log) = self.log.as_mut() {
                        let end = conn.wires[who.other().index()].bytes_read();
                        log.push(format!(
                            "    {who} read bytes {}..{end}",
                            end - bytes.len() as u64
                        ));
                    }
                    link.handle_input(&bytes, now);
                    moved = true;
                }
                WireRead::Eof => {
                    if !conn.eof_seen[i] {
                        conn.eof_seen[i] = true;
                        if link.buffered_input() > 0 {
                            self.stats.eof_mid_frame += 1;
                        }
                        if let Some(log) = self.log.as_mut() {
                            log.push(format!(
                                "    {who} read the end of the stream ({} bytes of an incomplete message buffered)",
                                link.buffered_input()
                            ));
                        }
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

    fn fire_timers(&mut self, who: Who) {
        let now = self.now(who);
        if let Some(link) = device_mut(&mut self.pair, who).link.as_mut() {
            link.handle_timeout(now);
        }
    }

    /// The device's driver pumps its link, carries out its storage requests as its storage
    /// mode says, then the invariants are checked.
    fn pump(&mut self, who: Who) -> Result<bool, Violation> {
        let now = self.now(who);
        let Some(link) = device_mut(&mut self.pair, who).link.as_mut() else {
            return Ok(false);
        };
        link.pump(now);
        self.service(who, None)
    }

    /// Moves the requests the device's link has made into its storage queue.
    fn take_requests(&mut self, who: Who) {
        let i = who.index();
        let (key, event) = (self.link_key[i], self.stats.events);
        if let Some(link) = device_mut(&mut self.pair, who).link.as_mut() {
            while let Some((id, request)) = link.poll_store_request() {
                self.storage[i].push(key, id, request, event);
            }
        }
    }

    /// One driver turn on the device's storage: `forced` requests committed first (a
    /// `commit` event), then as the storage mode says, each completion handed back to the
    /// link (which pumps, and may ask for more); then the notices are shown and every
    /// invariant checked. Returns whether anything moved.
    fn service(&mut self, who: Who, forced: Option<usize>) -> Result<bool, Violation> {
        let i = who.index();
        let mut forced = forced;
        let mut moved = false;
        let mut turns = 0;
        if self.is_committing(who)
            && (forced.is_some() || self.storage[i].mode != StorageMode::Early)
        {
            self.finish_commit(who)?;
            moved = true;
        }
        loop {
            self.take_requests(who);
            let count = forced.take().unwrap_or_else(|| self.storage[i].due());
            if count == 0 || self.storage[i].is_empty() {
                break;
            }
            turns += 1;
            if turns > MAX_STORAGE_TURNS {
                return Err(Violation::new(
                    "livelock",
                    format!("{who}'s link asked for storage more than {MAX_STORAGE_TURNS} times in one driver call"),
                ));
            }
            if !self.commit(who, count)? {
                // The process died inside the commit.
                return Ok(true);
            }
            moved = true;
        }
        let connection = self.conn.as_ref().map_or(0, |c| c.id);
        let Some(link) = device_mut(&mut self.pair, who).link.as_mut() else {
            self.oracle.check(&self.pair)?;
            return Ok(moved);
        };
        let temporary = link.peer().is_some_and(|p| p.temporary);
        let window_full =
            link.session().is_established() && link.session().in_flight() == self.link_window[i];
        let notices: Vec<Notice> = std::iter::from_fn(|| link.poll_notice()).collect();
        let peer_acked = link.session().peer_acked();
        if window_full {
            self.stats.window_full += 1;
        }
        for notice in &notices {
            self.note(|| format!("    {who}: {}", describe(notice)));
            if let Notice::Connected { peer, .. } = notice {
                if !peer.temporary {
                    self.oracle.sync_seen(who, connection, peer_acked);
                }
            }
            self.observe(who, notice, temporary, connection)?;
        }
        self.oracle.check(&self.pair)?;
        self.check_sync_landed(who)?;
        self.check_memory(who)?;
        Ok(moved || !notices.is_empty())
    }

    /// Carries out `count` of the device's queued requests and hands their completions back
    /// to its link. Returns false if the process died inside the commit.
    fn commit(&mut self, who: Who, count: usize) -> Result<bool, Violation> {
        let i = who.index();
        // A commit still running finishes before the next group starts.
        self.finish_commit(who)?;
        if count == 0 || self.storage[i].is_empty() {
            return Ok(true);
        }
        let pause = self.storage[i].mode == StorageMode::Early;
        let event = self.stats.events;
        let key = self.link_key[i];
        let dev = device_mut(&mut self.pair, who);
        let temporary = dev
            .link
            .as_ref()
            .is_some_and(|l| l.peer().map_or(dev.config.temporary, |p| p.temporary));
        let snapshot = temporary.then(|| dev.store.chats.clone());
        let commits = self.history[i].commits();
        let mut disk = Disk::with_history(&mut dev.store, &mut self.disk[i], &mut self.history[i]);
        let (done, end) = self.storage[i].commit(&mut disk, count, None, event, pause);
        let tried_to_store = disk.writes > 0;
        if end == CommitEnd::Done {
            let kinds: Vec<String> = done.iter().map(|d| format!("{:?}", d.id)).collect();
            self.note(|| format!("    {who}'s storage commits {}", kinds.join(", ")));
        }
        for d in done.iter().filter(|d| d.disk_failed && d.link == key) {
            self.link_disk_failed[i] = true;
            if d.mark {
                self.mark_failed[i] = true;
            }
        }
        let dev = device_mut(&mut self.pair, who);
        let still_temporary = dev
            .link
            .as_ref()
            .is_some_and(|l| l.peer().is_some_and(|p| p.temporary));
        if still_temporary && (tried_to_store || snapshot.is_some_and(|s| s != dev.store.chats)) {
            return Err(Violation::new(
                "temporary-stored",
                format!("{who}'s link wrote to its store during a temporary session"),
            ));
        }
        if end == CommitEnd::Crashed {
            self.stats.crashes_mid_call += 1;
            self.unshown_writes(who, &done)?;
            self.crash(who)?;
            self.oracle.check(&self.pair)?;
            return Ok(false);
        }
        if end == CommitEnd::Written {
            return self.written_early(who, done, commits).map(|()| true);
        }
        self.hand_back(who, done)?;
        Ok(true)
    }

    /// Hands completions back to the device's link; those whose link is gone are writes
    /// nobody was shown.
    fn hand_back(&mut self, who: Who, done: Vec<Done>) -> Result<(), Violation> {
        let i = who.index();
        let now = self.now(who);
        let key = self.link_key[i];
        let mut orphans = Vec::new();
        for d in done {
            let link = device_mut(&mut self.pair, who).link.as_mut();
            match link {
                Some(link) if d.link == key => {
                    if d.wants_completion {
                        let id = d.id;
                        if let Err(e) = link.handle_store_completion(id, d.result, now) {
                            return Err(Violation::new(
                                "driver-misuse",
                                format!("{who}'s link refused the completion of {id:?}: {e:?} (a simulator bug)"),
                            ));
                        }
                    }
                }
                // Its link is gone: nothing waits for the completion.
                _ => orphans.push(d),
            }
        }
        self.unshown_writes(who, &orphans)
    }

    /// Everything queued on the device is carried out and completed (the driver keeps a link
    /// until its storage requests are done), whatever the storage mode.
    fn drain(&mut self, who: Who) -> Result<(), Violation> {
        let i = who.index();
        let mode = self.storage[i].mode;
        self.storage[i].mode = StorageMode::Now;
        let result = self.service(who, None);
        self.storage[i].mode = mode;
        result.map(|_| ())
    }

    /// Once every storage request the device's link made since its sync is carried out,
    /// the stored mark must be what the sync said (see [`Oracle::sync_landed`]).
    fn check_sync_landed(&mut self, who: Who) -> Result<(), Violation> {
        let i = who.index();
        if !self.oracle.sync_pending(who) {
            return Ok(());
        }
        let busy = device(&self.pair, who)
            .link
            .as_ref()
            .is_none_or(Link::has_store_work);
        if busy || self.storage[i].len_of(self.link_key[i]) > 0 {
            return Ok(());
        }
        if self.mark_failed[i] && link_closed(&self.pair, who) {
            // A mark failed and the link closed its session: the mark is wrong until the
            // next sync, as after any failed write.
            self.oracle.link_gone(who);
            return Ok(());
        }
        match self.oracle.sync_landed(&self.pair, who) {
            Err(v) if self.mark_failed[i] => {
                // The known core bug: the store failed a delivery mark, the link was not told
                // (marks get no completion) and its session goes on with the mark wrong.
                if self.options.tolerate_mark_failure {
                    self.stats.tolerated += 1;
                } else {
                    return Err(Violation::new(
                        "mark-failure-ignored",
                        format!(
                            "{who}'s store failed a delivery mark; its link was not told (marks get no completion) and its session went on: {}",
                            v.detail
                        ),
                    ));
                }
            }
            Err(v) => return Err(v),
            Ok(SyncLanded::Right) if self.marks_lost[i] => {
                self.marks_lost[i] = false;
                self.stats.marks_resynced += 1;
            }
            Ok(_) => {}
        }
        Ok(())
    }

    fn observe(
        &mut self,
        who: Who,
        notice: &Notice,
        temporary: bool,
        connection: u64,
    ) -> Result<(), Violation> {
        match notice {
            Notice::Received { .. } => self.stats.shown += 1,
            Notice::Closed { reason, by } => match reason.code {
                CloseCode::Timeout => self.stats.timeouts += 1,
                CloseCode::StorageFailure
                    if *by == Side::Local && !self.link_disk_failed[who.index()] =>
                {
                    // The link closed for a storage failure though its store never failed:
                    // it could not send back what the peer asked for, or its own numbering
                    // had a gap (it would otherwise stall).
                    return Err(Violation::new(
                        "unexpected-close",
                        format!(
                            "{who}'s session was closed for a storage failure, though its store never failed: {reason}"
                        ),
                    ));
                }
                CloseCode::StorageFailure => self.stats.storage_failures += 1,
                CloseCode::ConnectionLost => {}
                CloseCode::IntegrityFailure if self.conn.as_ref().is_some_and(|c| c.tampered) => {
                    self.stats.integrity_failures += 1;
                }
                _ => {
                    // Two honest peers over a network that cuts and delays, and alters bytes
                    // only when told to (then encryption must refuse the connection):
                    // nothing else may end a session.
                    return Err(Violation::new(
                        "unexpected-close",
                        format!("{who}'s session was closed by {by:?}: {reason}"),
                    ));
                }
            },
            Notice::KeyMismatch { .. } => {
                return Err(Violation::new(
                    "unexpected-close",
                    format!("{who} refused its peer's key, though no device ever changed its key"),
                ));
            }
            Notice::Connected { peer, .. } => {
                if let Some(conn) = self.conn.as_mut() {
                    let other_established = device(&self.pair, who.other())
                        .link
                        .as_ref()
                        .is_some_and(|l| l.session().is_established());
                    if other_established && !conn.counted_established {
                        conn.counted_established = true;
                        self.stats.established += 1;
                        if peer.temporary {
                            self.stats.temporary_sessions += 1;
                        }
                    }
                }
            }
            Notice::Composed { messages, .. } => {
                for message in messages {
                    if temporary {
                        self.stats.temporary_messages += 1;
                        self.oracle.wrote_temporary(who, message);
                        continue;
                    }
                    // Shown as written: it is durable, exactly as shown (or numbered since).
                    let stored = self.stored_write(who, &message.text);
                    if !composed_as_stored(message, stored.as_ref()) {
                        return Err(Violation::new(
                            "own-mismatch",
                            format!(
                                "{who}'s user was shown {message:?} as written, but its store holds {stored:?}"
                            ),
                        ));
                    }
                    self.wrote(who, message)?;
                }
            }
            Notice::ComposeFailed { texts, reason, .. } => {
                for text in texts {
                    self.compose_failed(who, text, reason)?;
                }
            }
            _ => {}
        }
        self.oracle
            .observe(&self.pair, who, notice, temporary, connection)
    }

    /// The write with this text, if `who`'s store holds it (numbered, or waiting).
    fn stored_write(&self, who: Who, text: &str) -> Option<Message> {
        let peer_id = device(&self.pair, who.other()).id;
        device(&self.pair, who)
            .store
            .chats
            .get(&peer_id)
            .and_then(|c| {
                c.unnumbered
                    .iter()
                    .rev()
                    .chain(c.own.iter().rev())
                    .find(|m| m.text == text)
                    .cloned()
            })
    }

    /// `who`'s user was told `text` could not be written: nothing of it may be stored.
    fn compose_failed(&mut self, who: Who, text: &str, error: &str) -> Result<(), Violation> {
        match self.stored_write(who, text) {
            Some(message) if self.options.tolerate_compose_error => {
                // The known bug: the user was told it failed, yet it is stored and will be
                // delivered. Count it as written.
                self.stats.tolerated += 1;
                self.stats.messages += 1;
                self.oracle.wrote(who, &message)
            }
            Some(message) => Err(Violation::new(
                "compose-error-but-stored",
                format!(
                    "{who}'s user was told {text:?} could not be written ({error}), yet it is stored as #{}",
                    message.seq
                ),
            )),
            None => {
                self.stats.compose_errors += 1;
                Ok(())
            }
        }
    }

    /// Closes the socket of every closed session with nothing left to write (a link whose
    /// socket broke is kept until its storage requests are completed).
    fn close_finished(&mut self) -> Result<bool, Violation> {
        let mut moved = false;
        for who in Who::BOTH {
            let i = who.index();
            let broken = self.conn.as_ref().is_some_and(|c| c.write_broken[i]);
            let finished = device(&self.pair, who)
                .link
                .as_ref()
                .is_some_and(|l| l.is_finished() || (l.session().is_closed() && broken));
            if finished {
                self.drain(who)?;
                if device(&self.pair, who).link.is_none() {
                    // It died inside the drain.
                    moved = true;
                    continue;
                }
                self.drop_link(who);
                if let Some(conn) = self.conn.as_mut() {
                    conn.wires[i].close();
                    conn.wires[who.other().index()].drop_reader();
                }
                moved = true;
            }
        }
        self.maybe_end_connection();
        Ok(moved)
    }

    // ----- users -----

    /// `who`'s user writes one message: through the link when the peer is known, offline
    /// into the store otherwise. A device that is down has no user at the keyboard.
    fn send(&mut self, who: Who, size: usize) -> Result<(), Violation> {
        let i = who.index();
        if !self.up[i] {
            return Ok(());
        }
        let text = self.oracle.next_text(who, size);
        let now = self.now(who);
        let wall = self.wall(who);
        let peer_id = device(&self.pair, who.other()).id;
        let dev = device_mut(&mut self.pair, who);
        if let Some(link) = dev.link.as_mut().filter(|l| l.peer().is_some()) {
            // Through the link: the outcome comes back as a notice once the storage has
            // carried the request out (now, or at a later commit).
            return match link.compose_batch(vec![text.clone()], wall, now) {
                Ok(_) => self.service(who, None).map(|_| ()),
                Err(error) => {
                    self.compose_failed(who, &text, &error.to_string())?;
                    self.oracle.check(&self.pair)
                }
            };
        }
        // Offline, straight into the store (the endpoint's own write for a chat with no
        // connection).
        let mut disk = Disk::with_history(&mut dev.store, &mut self.disk[i], &mut self.history[i]);
        let result = disk.compose(peer_id, &text, wall);
        let crashed = disk.crashed();
        self.link_disk_failed[i] |= disk.failures > 0;
        let stored = self.stored_write(who, &text);
        if crashed {
            // The process died inside compose: the message is written if its commit was.
            self.stats.crashes_mid_call += 1;
            self.crash(who)?;
            if let Some(message) = stored {
                self.stats.messages += 1;
                self.oracle.wrote(who, &message)?;
            }
            return self.oracle.check(&self.pair);
        }
        match result {
            Ok(message) => {
                if !composed_as_stored(&message, stored.as_ref()) {
                    return Err(Violation::new(
                        "own-mismatch",
                        format!(
                            "{who}'s user was shown {message:?} as written, but its store holds {stored:?}"
                        ),
                    ));
                }
                self.stats.messages += 1;
                self.oracle.wrote(who, &message)?;
            }
            Err(error) => self.compose_failed(who, &text, &error.to_string())?,
        }
        self.oracle.check(&self.pair)?;
        self.check_memory(who)
    }

    // ----- invariants -----

    /// Every invariant that can be checked at any instant.
    fn check_all(&mut self) -> Result<(), Violation> {
        self.oracle.check_full(&self.pair)?;
        for who in Who::BOTH {
            self.check_memory(who)?;
        }
        Ok(())
    }

    /// The most bytes a link may have waiting to be written: a window of the largest
    /// message frame its user wrote (itself at most `MAX_FRAME_BYTES`), an ack for each
    /// message of the peer's window, room for the hello, sync, pings and a close, and, on an
    /// encrypted link, the Noise handshake plus a length and a tag for every Noise message
    /// those frames can have been sealed in (one per transmit with new plaintext, so at most
    /// one per frame, plus one per 64 KiB of a big frame).
    pub fn transmit_bound(&self, who: Who) -> usize {
        let frame = self
            .oracle
            .max_frame(who)
            .min(MAX_FRAME_BYTES + LENGTH_PREFIX_BYTES);
        let window = usize::try_from(self.link_window[who.index()]).unwrap_or(usize::MAX);
        let peer_window =
            usize::try_from(self.link_window[who.other().index()].max(1)).unwrap_or(usize::MAX);
        // A batch of the peer's own messages sent back (the peer's store went back in time).
        let returned = usize::try_from(MAX_RECOVER_BATCH).unwrap_or(usize::MAX);
        let returned_frame = self
            .oracle
            .max_frame(who.other())
            .min(MAX_FRAME_BYTES + LENGTH_PREFIX_BYTES);
        let frames = window + peer_window + 2 + PINGS + returned + 1;
        let plain = window * frame
            + returned * returned_frame
            + (peer_window + 2) * ack_frame_bytes()
            + control_frames_bytes();
        if self.options.plain_links {
            plain
        } else {
            let largest = frame.max(returned_frame);
            let pieces_per_frame = largest.div_ceil(MAX_NOISE_MESSAGE - TAG_BYTES).max(1);
            plain + frames * pieces_per_frame * NOISE_OVERHEAD + NOISE_HANDSHAKE_BYTES
        }
    }

    fn check_memory(&self, who: Who) -> Result<(), Violation> {
        let Some(link) = device(&self.pair, who).link.as_ref() else {
            return Ok(());
        };
        let session = link.session();
        let window = self.link_window[who.index()];
        if session.in_flight() > window {
            return Err(Violation::new(
                "memory-unbounded",
                format!(
                    "{who} has {} messages in flight, its window is {window}",
                    session.in_flight()
                ),
            ));
        }
        let pending = self.out_pending[who.index()];
        let bound = self.transmit_bound(who);
        if pending > bound {
            return Err(Violation::new(
                "memory-unbounded",
                format!("{who} had {pending} bytes waiting to be written; the bound is {bound}"),
            ));
        }
        // One incomplete frame, and on an encrypted link one incomplete Noise message.
        let buffered = link.buffered_input();
        let buffer_bound = MAX_FRAME_BYTES + LENGTH_PREFIX_BYTES + 2 + MAX_NOISE_MESSAGE;
        if buffered > buffer_bound {
            return Err(Violation::new(
                "memory-unbounded",
                format!(
                    "{who} buffers {buffered} bytes of incomplete input; the bound is {buffer_bound}"
                ),
            ));
        }
        Ok(())
    }

    // ----- healing and expectations -----

    /// Faults off, both up, non-temporary, a fresh connection, settle: both must hold the
    /// same chat with nothing waiting.
    fn heal(&mut self) -> Result<(), Violation> {
        self.knobs = [WireKnobs::default(); 2];
        self.disk = [DiskFaults::default(); 2];
        for storage in &mut self.storage {
            storage.mode = StorageMode::Now;
        }
        self.up = [true; 2];
        self.pair.a.config.temporary = false;
        self.pair.b.config.temporary = false;
        // The faults stop here: what is in flight lands (or is lost with the connection), and
        // then the writes some store holds are exactly what the chat must hold in the end.
        // Writes that both devices lost to restores are gone for good.
        self.lose_connection()?;
        let required = self.required();
        self.connect()?;
        self.settle()?;
        if !self.is_established() {
            let why: Vec<String> = Who::BOTH
                .iter()
                .map(|&w| {
                    let state = device(&self.pair, w).link.as_ref().map_or_else(
                        || "no link".to_owned(),
                        |l| {
                            l.session()
                                .close_reason()
                                .map_or("not established".to_owned(), |c| c.to_string())
                        },
                    );
                    format!("{w}: {state}")
                })
                .collect();
            return Err(Violation::new(
                "not-converged",
                format!(
                    "after healing, the connection is not established ({})",
                    why.join("; ")
                ),
            ));
        }
        for who in Who::BOTH {
            let in_flight = device(&self.pair, who)
                .link
                .as_ref()
                .map_or(0, |l| l.session().in_flight());
            if in_flight != 0 {
                return Err(Violation::new(
                    "not-converged",
                    format!("after healing, {who} still has {in_flight} message(s) in flight"),
                ));
            }
        }
        self.oracle.check_converged(&self.pair, &required)
    }

    /// Each author's writes that some store holds now.
    fn required(&self) -> [BTreeSet<String>; 2] {
        [
            self.oracle.held_anywhere(&self.pair, Who::A),
            self.oracle.held_anywhere(&self.pair, Who::B),
        ]
    }

    fn expect(&mut self, expectation: &Expectation) -> Result<(), Violation> {
        let fail = |what: String| {
            Err(Violation::new(
                "expectation",
                format!("expect {expectation}: {what}"),
            ))
        };
        let count = |who: Who, f: &dyn Fn(&socketfalco_testkit::MemoryChat) -> usize| {
            chat(&self.pair, who).map_or(0, f)
        };
        match *expectation {
            Expectation::Converged => {
                let required = self.required();
                self.oracle
                    .check_converged(&self.pair, &required)
                    .or_else(|v| fail(v.detail))
            }
            Expectation::Established => {
                if self.is_established() {
                    Ok(())
                } else {
                    fail("the sessions are not both established".into())
                }
            }
            Expectation::Disconnected => {
                if self.has_link(Who::A) || self.has_link(Who::B) {
                    fail("a device is still on a connection".into())
                } else {
                    Ok(())
                }
            }
            Expectation::Holds(who, n) => {
                let got = self.pair.history(who == Who::A).len();
                if got == n {
                    Ok(())
                } else {
                    fail(format!("{who} holds {got}"))
                }
            }
            Expectation::Received(who, n) => {
                let got = count(who, &|c| c.received.len());
                if got == n {
                    Ok(())
                } else {
                    fail(format!("{who} stored {got} of its peer's messages"))
                }
            }
            Expectation::Waiting(who, n) => {
                let got = self.pair.waiting(who == Who::A);
                if got == n {
                    Ok(())
                } else {
                    fail(format!("{got} of {who}'s messages are waiting"))
                }
            }
            Expectation::Shown(who, n) => {
                let got = self.oracle.shown(who);
                if got == n {
                    Ok(())
                } else {
                    fail(format!("{who}'s user was shown {got}"))
                }
            }
            Expectation::StoredNothing(who) => {
                let chats = device(&self.pair, who).store.chats.len();
                if chats == 0 {
                    Ok(())
                } else {
                    fail(format!("{who} stores {chats} chat(s)"))
                }
            }
            Expectation::Up(who) => {
                if self.is_up(who) {
                    Ok(())
                } else {
                    fail(format!("{who} is down"))
                }
            }
            Expectation::Down(who) => {
                if self.is_up(who) {
                    fail(format!("{who} is up"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl Rounds for World {
    const MAX_SETTLE_ROUNDS: u64 = 2_000_000;
    const MAX_TIMER_FIRINGS: u64 = 100_000;

    fn round_all(&mut self) -> Result<bool, Violation> {
        self.stats.rounds += 1;
        let order = [self.dialer(), self.listener];
        let mut moved = self.accept_due();
        for who in order {
            moved |= self.transmit(who);
        }
        for who in order {
            moved |= self.receive(who);
        }
        for who in order {
            self.fire_timers(who);
            moved |= self.pump(who)?;
        }
        moved |= self.close_finished()?;
        if !moved {
            // Nothing moved: the dialer's connection may still be on its way.
            moved = self.accept_due();
        }
        Ok(moved)
    }

    fn next_delivery(&self) -> Option<u64> {
        let conn = self.conn.as_ref()?;
        let mut next = conn.pending_accept.map(|(at, _)| at);
        for who in Who::BOTH {
            if device(&self.pair, who).link.is_some() {
                if let Some(due) = conn.wires[who.other().index()].next_due() {
                    next = Some(next.map_or(due, |n: u64| n.min(due)));
                }
            }
        }
        next
    }

    fn next_timer(&self) -> Option<u64> {
        Who::BOTH
            .iter()
            .filter_map(|&w| {
                let t = device(&self.pair, w).link.as_ref()?.poll_timeout()?;
                Some(self.clocks[w.index()].global_for(t))
            })
            .min()
    }

    fn clock(&mut self) -> &mut u64 {
        &mut self.pair.now_ms
    }
}

/// A notice, short.
#[allow(unreachable_patterns)] // a notice kind added to the core later still prints
fn describe(notice: &Notice) -> String {
    match notice {
        Notice::Connected {
            peer,
            incoming,
            outgoing,
            ..
        } => format!(
            "connected to {}{} ({incoming} in, {outgoing} out)",
            peer.name,
            if peer.temporary { ", temporary" } else { "" }
        ),
        Notice::Received { message, stored } => format!(
            "received #{} {:?}{}",
            message.seq,
            message.text.chars().take(24).collect::<String>(),
            if *stored { "" } else { " (not stored)" }
        ),
        Notice::Delivered { up_to } => format!("delivered up to #{up_to}"),
        Notice::KeyMismatch { .. } => "key mismatch".to_owned(),
        Notice::Closed { reason, by } => format!("closed by {by:?}: {reason}"),
        other => format!("{other:?}"),
    }
}

/// Pings a link may have queued while its writes lag (one per keepalive interval).
const PINGS: usize = 16;

/// Largest ack frame on the wire.
fn ack_frame_bytes() -> usize {
    let mut out = Vec::new();
    encode_frame(&Frame::Ack { up_to: u64::MAX }, &mut out);
    out.len()
}

/// Room for the frames that are not messages or acks: a hello, a sync, a close with the
/// longest detail, and a few pings.
fn control_frames_bytes() -> usize {
    let mut out = Vec::new();
    encode_frame(
        &Frame::Hello(Hello {
            version: u16::MAX,
            device: socketfalco_core::DeviceId([0xff; 16]),
            name: "x".repeat(socketfalco_core::limits::MAX_NAME_CHARS * 4),
            temporary: true,
        }),
        &mut out,
    );
    encode_frame(
        &Frame::Sync(socketfalco_core::SyncPoint {
            received_up_to: u64::MAX,
            last_seq: u64::MAX,
        }),
        &mut out,
    );
    encode_frame(
        &Frame::Close(Close::new(
            CloseCode::ProtocolViolation,
            "x".repeat(socketfalco_core::limits::MAX_CLOSE_DETAIL_BYTES),
        )),
        &mut out,
    );
    for _ in 0..PINGS {
        encode_frame(&Frame::Ping, &mut out);
    }
    out.len()
}

/// A device's monotonic clock: it runs at `rate` percent of simulated time and may leap
/// ahead (a machine that slept), but never goes back.
#[derive(Clone, Copy, Debug)]
struct DeviceClock {
    /// Simulated time of the last change.
    anchor_global: u64,
    /// The device's time then.
    anchor_device: u64,
    /// Percent of simulated time.
    rate: u64,
}

impl Default for DeviceClock {
    fn default() -> Self {
        DeviceClock {
            anchor_global: 0,
            anchor_device: 0,
            rate: 100,
        }
    }
}

impl DeviceClock {
    /// The device's time at simulated time `global` (not before the last change).
    fn at(&self, global: u64) -> u64 {
        let elapsed = global.saturating_sub(self.anchor_global);
        self.anchor_device
            .saturating_add(elapsed.saturating_mul(self.rate) / 100)
    }

    /// The first simulated time at which the device's clock reads `device` or more.
    fn global_for(&self, device: u64) -> u64 {
        if device <= self.anchor_device {
            return self.anchor_global;
        }
        let ahead = device - self.anchor_device;
        self.anchor_global
            .saturating_add(ahead.saturating_mul(100).div_ceil(self.rate))
    }

    fn jump(&mut self, global: u64, ms: u64) {
        self.anchor_device = self.at(global).saturating_add(ms);
        self.anchor_global = global;
    }

    fn set_rate(&mut self, global: u64, percent: u64) {
        self.anchor_device = self.at(global);
        self.anchor_global = global;
        self.rate = percent.max(1);
    }
}
