//! The event loop: chats over TCP, as a listener serving many peers or as a caller.
//!
//! An [`Endpoint`] owns the mio poll, every open [`Connection`] and the [`Storage`] thread
//! that owns the store: the loop hands the links' storage requests over and goes on, and
//! the completions wake it (see [`crate::storage`]). As a
//! listener it accepts every caller and runs each one's Noise handshake alongside the
//! others, each under its own deadline, at most [`EndpointConfig::max_pending_handshakes`]
//! at once (the oldest is dropped first), so a silent or garbage-sending socket never holds
//! anyone's place. A connection becomes a chat only once the peer has proved its key and the
//! endpoint admitted it ([`socketfalco_core::Link::require_admission`]): up to
//! [`EndpointConfig::max_peers`] devices at once, each in its own chat; one more is refused
//! as busy (after the handshake, with a lone close frame, no hello), and a second connection
//! of a device already connected replaces the first once its key is checked. As a caller it
//! connects, and after a drop keeps the chat open — lines typed meanwhile are stored as
//! waiting — and reconnects with exponential backoff (also when the listener was busy); the
//! re-sync then delivers both ways.
//!
//! The user interface runs on another thread: it sends [`Command`]s through a [`Control`],
//! which wakes the loop, and gets [`Output`]s through the callback given to
//! [`Endpoint::run`]. Every output about a chat names the peer's device. When that thread
//! falls far behind, the loop stops reading from its peers until it caught up
//! ([`crate::backlog`]).

use crate::admission::{self, Admission, Contacts, Seated};
use crate::affinity::{Companions, SharedCpu};
use crate::backlog::OutputBacklog;
use crate::clock::Clock;
use crate::connection::{Connection, Progress};
use crate::route::{RelayRoute, Route, Tunnel, TunnelStep};
use crate::spin::{Spin, Waiting, SPIN_AT_MOST, SPIN_FOR};
use crate::storage::{Completion, Origin, Storage, MAX_GROUP_ROWS};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socketfalco_core::{
    ChatResume, Close, CloseCode, DeviceId, Link, Message, Notice, OwnLinesShown, PeerHello,
    PublicKey, RequestId, Role as NoiseRole, SessionConfig, Side, StaticKeypair, Store, StoreReply,
    StoreRequest,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const DIALING: Token = Token(2);
const RELAY: Token = Token(3);
const FIRST_CONNECTION: usize = 4;

/// A listener's place at a relay is renewed this often: a connection idle for long may
/// have been dropped silently on the way (a NAT's table), and a renewed one costs nothing.
const RELAY_RENEW_MS: u64 = 5 * 60_000;

/// Whether this endpoint waits for a caller or calls.
#[derive(Clone, Debug)]
pub enum Role {
    /// Listen on this address (port 0: any free port).
    Listen {
        /// The address to bind.
        bind: SocketAddr,
    },
    /// Connect by the first of these routes that gets through.
    Connect {
        /// Routes, tried in order (after a drop, from the first again).
        routes: Vec<Route>,
        /// The peer as the user named it, for messages.
        label: String,
    },
}

impl Role {
    /// Connects straight to the first of `addrs` that answers.
    pub fn connect(addrs: Vec<SocketAddr>, label: impl Into<String>) -> Role {
        Role::Connect {
            routes: addrs.into_iter().map(Route::Direct).collect(),
            label: label.into(),
        }
    }
}

/// Settings of an [`Endpoint`]; times in milliseconds.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Settings for each connection's session (identity, temporary, timers, window).
    pub session: SessionConfig,
    /// This device's static key: every connection runs the Noise handshake with it. `None`
    /// runs the protocol in the clear (benchmarks and tests compare the two).
    pub keypair: Option<StaticKeypair>,
    /// Give up a connection attempt after this long.
    pub connect_timeout_ms: u64,
    /// First reconnection delay after a drop; doubles per failed attempt.
    pub reconnect_min_ms: u64,
    /// Longest reconnection delay.
    pub reconnect_max_ms: u64,
    /// On quit, wait this long for the handshake and for acks of what was sent.
    pub quit_grace_ms: u64,
    /// While connected, look this often for messages another process wrote into the chat.
    pub store_poll_ms: u64,
    /// A listener chats with at most this many devices at once; one more is refused as busy
    /// (and retries later).
    pub max_peers: usize,
    /// A listener runs at most this many handshakes at once; one more drops the oldest.
    pub max_pending_handshakes: usize,
    /// Give up a connection through a proxy or a relay after this long (a Tor circuit to an
    /// onion service takes seconds to build).
    pub tunnel_timeout_ms: u64,
    /// A caller accepts only a listener that proves this key (the key of an invite): any
    /// other is refused during the handshake, before the caller proves its own.
    pub expected_peer_key: Option<PublicKey>,
    /// A listener also waits for callers at this transit relay: one connection waits there
    /// at all times, a new one as soon as a caller took it, re-joining with backoff when the
    /// relay goes away.
    pub relay: Option<RelayRoute>,
    /// Keep the event loop and its storage thread on one CPU while that CPU is theirs
    /// (Linux; see [`crate::affinity`]): their hand-offs then wake no halted CPU. Off, the
    /// scheduler places both as it likes.
    pub share_one_cpu: bool,
    /// While an answer is due (an own message not yet acked, a storage request not yet
    /// completed), poll without sleeping for at most this long after the last event, so that
    /// the answer finds the loop's CPU awake ([`crate::spin`]). Zero: always sleep.
    pub spin_for: Duration,
    /// What the outputs' reader has not taken yet, counted by whoever hands them to it: the
    /// endpoint stops reading from its peers while too much waits ([`crate::backlog`]).
    /// `None`: outputs are taken at once (a callback that does the work itself).
    pub output_backlog: Option<Arc<OutputBacklog>>,
    /// The devices the user has written to, by the key each proved: a listener at its limit
    /// lets one of them in in place of the stranger admitted last ([`crate::admission`]).
    /// The endpoint adds each device the user writes to in a live chat.
    pub contacts: Arc<Contacts>,
}

/// Default [`EndpointConfig::max_peers`]: far more contacts than anyone chats with at once,
/// few enough that one device's memory and file descriptors are never the limit.
pub const DEFAULT_MAX_PEERS: usize = 32;

/// Default [`EndpointConfig::max_pending_handshakes`]. A handshake in progress costs a socket
/// and at most one frame and one Noise message of buffered input (≈ 200 KiB at worst, ≈ 70
/// KiB typically), so 64 of them stay under ≈ 13 MiB; and 64 is far more than honest peers
/// ever need at once (a handshake takes one round trip), so a flood of silent sockets only
/// ever pushes out other silent sockets: each honest handshake finishes long before 64
/// newer connections arrive behind it, unless the flood is fast enough to fill the queue
/// within one round trip.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 64;

impl EndpointConfig {
    /// Defaults: 10 s to connect, reconnect after 0.5 s doubling to 30 s, 5 s grace on
    /// quit, store polled every second.
    pub fn new(session: SessionConfig, keypair: Option<StaticKeypair>) -> EndpointConfig {
        EndpointConfig {
            session,
            keypair,
            connect_timeout_ms: 10_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            quit_grace_ms: 5_000,
            store_poll_ms: 1_000,
            max_peers: DEFAULT_MAX_PEERS,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            tunnel_timeout_ms: 60_000,
            expected_peer_key: None,
            relay: None,
            share_one_cpu: true,
            spin_for: SPIN_FOR,
            output_backlog: None,
            contacts: Arc::new(Contacts::new()),
        }
    }
}

/// What the user interface asks of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The user wrote a line with no chat named: it goes to the peer who connected last (the
    /// caller's peer), or waits for the first peer to connect. (A user interface that keeps
    /// a current chat of its own names it with [`Command::WriteTo`].)
    Write(String),
    /// The user wrote a line for the chat with `to`.
    WriteTo {
        /// The chat.
        to: DeviceId,
        /// The line.
        text: String,
    },
    /// The user wants to leave (quit, end of input, Ctrl-C): each chat is closed once it is
    /// settled, within [`EndpointConfig::quit_grace_ms`].
    Quit,
    /// Leave now (the terminal went away, SIGTERM): every session is closed at once with a
    /// normal close; what is not acked yet stays stored and waiting, never lost.
    QuitNow,
}

/// What the endpoint tells the user interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The listener is bound.
    Listening(SocketAddr),
    /// A connection attempt starts, by this route.
    Connecting(String),
    /// A listener's place at its relay is taken: callers can reach it there.
    RelayWaiting(String),
    /// A listener's relay cannot be reached (or dropped its place); it tries again.
    RelayUnavailable {
        /// The relay.
        relay: String,
        /// Why.
        error: String,
        /// The next attempt is in this many milliseconds.
        retry_in_ms: u64,
    },
    /// A peer is accepted and synchronized.
    Connected {
        /// Who.
        peer: PeerHello,
        /// Where from: its address, or the route that reached it.
        addr: String,
        /// How many of the peer's messages arrive in this re-sync.
        incoming: u64,
        /// How many of ours go out in this re-sync.
        outgoing: u64,
        /// How far this device had got in the chat when the session opened
        /// ([`Notice::Connected`]).
        held: ChatResume,
    },
    /// A message from the peer (already stored unless the session is temporary).
    Received {
        /// The peer.
        peer: DeviceId,
        /// The message.
        message: Message,
        /// Whether it is stored.
        stored: bool,
    },
    /// A line of the user is written: stored durably (unless temporary) and, if `live`,
    /// handed to the connected peer's session; otherwise it waits for the next connection.
    Sent {
        /// The chat.
        peer: DeviceId,
        /// The message.
        message: Message,
        /// Whether a peer is connected right now.
        live: bool,
    },
    /// The peer holds our messages up to here.
    Delivered {
        /// The chat.
        peer: DeviceId,
        /// Cumulative sequence number.
        up_to: u64,
    },
    /// The connection ended (a listener reports only connections that became chats).
    Disconnected {
        /// The chat, if the connection got that far.
        peer: Option<DeviceId>,
        /// Why.
        reason: Close,
        /// Who ended it.
        by: Side,
    },
    /// The next connection attempt is in `in_ms`.
    Reconnecting {
        /// Delay.
        in_ms: u64,
        /// Why the attempt that just ended reached no peer (nothing listens at the address, the
        /// proxy is unreachable or could not reach the target, no answer in time); `None` after
        /// a connection that was lost or refused, which its own output reports.
        failed: Option<String>,
    },
    /// A second caller was told the listener is busy.
    RefusedBusy(SocketAddr),
    /// A listener at its limit let a contact in and put out the stranger admitted last
    /// ([`crate::admission`]); that connection's `Disconnected` follows.
    MadeRoom {
        /// The contact let in.
        contact: PeerHello,
        /// The stranger put out.
        stranger: DeviceId,
        /// Its name, if its chat was established.
        stranger_name: Option<String>,
    },
    /// A line could not be written.
    Rejected {
        /// The line.
        text: String,
        /// Why.
        reason: String,
    },
    /// A line waits for the first peer: it is not stored yet.
    Pending(String),
    /// The endpoint stopped with lines that waited for a first peer which never came (or
    /// never took them): they were not sent and are not stored. The last output of
    /// [`Endpoint::run`], whatever ended it, so a front end can show the texts and fail.
    NotSent {
        /// The lines, in the order written.
        texts: Vec<String>,
        /// Why: no peer connected in time.
        reason: String,
    },
    /// A peer presented a known device id with another key and was refused.
    KeyMismatch {
        /// Who it claimed to be.
        peer: PeerHello,
        /// The key it proved.
        presented: PublicKey,
        /// The key pinned for that device id.
        pinned: PublicKey,
        /// Where from.
        addr: SocketAddr,
    },
    /// Own lines this device had lost came back from the peer and are stored again (a
    /// restore from an older copy; or a peer claiming lines as ours: the user is told).
    Restored {
        /// The chat.
        peer: DeviceId,
        /// How many, in this batch.
        count: u64,
        /// The newest one's sequence number.
        up_to: u64,
    },
    /// Something went wrong but the endpoint goes on.
    Warning(String),
    /// A peer admitted by the listener (its key proved, its chat opened: the key pinned on
    /// a first contact) left before its chat was established, and no other connection of
    /// that device is open: a chat the store created for it since `since_wall_ms`, that no
    /// other connection opened and that holds nothing may be forgotten with its pin — a
    /// stranger that never completes a sync leaves nothing behind, and a first contact is
    /// made by a chat that opens. Not shown.
    NeverOpened {
        /// The device.
        peer: DeviceId,
        /// When it was admitted (wall clock, ms): a chat created before then is not this
        /// connection's.
        since_wall_ms: i64,
    },
}

/// Why [`Endpoint::run`] stopped other than by the user's wish.
#[derive(Debug)]
pub enum EndpointError {
    /// Binding, polling or the first connection failed.
    Io(String),
    /// The first connection ended before the chat was set up, for good: the peer refused
    /// us (busy, version, our own identity, …), this device refused the peer (its key), or
    /// whatever answered was no SocketFalco peer; `by` says who closed it.
    Refused {
        /// Why.
        close: Close,
        /// Who closed the connection.
        by: Side,
    },
    /// The device that answered did not prove the key this caller expects (an invite's):
    /// it is not the invited device. Nothing was sent to it.
    NotInvited(Close),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::Io(e) => write!(f, "{e}"),
            // What the peer decided, and what went wrong before there was a peer to decide:
            // garbage, silence or a hang-up from whatever answered (a port that is not a
            // SocketFalco listener's, a proxy that went nowhere).
            EndpointError::Refused { close, by } => match (close.code, by) {
                (CloseCode::Replaced, Side::Peer) => write!(
                    f,
                    "this device connected to the peer again, from another process or place, \
                     and that connection took over the chat: {close}"
                ),
                (
                    CloseCode::Busy
                    | CloseCode::VersionMismatch
                    | CloseCode::SelfConnection
                    | CloseCode::Refused
                    | CloseCode::IdentityMismatch,
                    Side::Peer,
                ) => write!(f, "the peer refused the chat: {close}"),
                (CloseCode::Refused | CloseCode::IdentityMismatch, Side::Local) => write!(
                    f,
                    "refused the peer: its key is not the one pinned for its device id (see the \
                     warning above)"
                ),
                _ => write!(
                    f,
                    "no chat could be set up with what answered: {close} (is it a SocketFalco \
                     listener?)"
                ),
            },
            EndpointError::NotInvited(close) => write!(
                f,
                "refused the device that answered: {}; nothing was sent to it — check that the \
                 invite is your peer's own",
                close.detail
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Sends commands to a running [`Endpoint`] from any thread.
#[derive(Clone, Debug)]
pub struct Control {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// A wake is on its way and the endpoint has not started taking commands since: a
    /// command queued now is taken with the others, with no wake (and no system call) of its
    /// own. 100,000 lines piped in cost 100,000 wakes without it.
    wake_pending: Arc<AtomicBool>,
    /// Set by the endpoint, under this lock, once it takes no more commands: a command is
    /// either queued before (and the endpoint answers for it: a line it could not send is in
    /// its [`Output::NotSent`]) or refused here (and the caller answers for it).
    ended: Arc<Mutex<bool>>,
    /// The caller's threads that run beside the loop ([`Control::share_cpu`]).
    companions: Arc<Companions>,
}

impl Control {
    /// Keeps the calling thread — the user interface's, which hands the loop its lines and
    /// reads its outputs — on the CPU of the loop and its storage thread while they share one
    /// ([`EndpointConfig::share_one_cpu`], [`crate::affinity`]), and lets it go with them.
    /// The thread must outlive the endpoint's loop. Nothing happens where nothing is pinned.
    pub fn share_cpu(&self) {
        self.companions.join_current();
    }

    /// Queues `command` and wakes the endpoint, unless a wake is already on its way. Returns
    /// false once the endpoint has ended: the command was not taken, and a line in it is
    /// the caller's to report.
    pub fn send(&self, command: Command) -> bool {
        self.try_send(command).is_ok()
    }

    /// [`Control::send`], handing the command back when the endpoint has ended.
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if *ended {
            return Err(command);
        }
        self.tx.send(command).map_err(|e| e.0)?;
        drop(ended);
        // Queued first, flag second: the endpoint clears the flag before it takes the queue,
        // so a command is either taken by a turn that starts after it was queued or wakes
        // the endpoint itself.
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            // A failed wake leaves the command queued for the endpoint's next turn.
            let _ = self.waker.wake();
        }
        Ok(())
    }
}

struct Dialing {
    stream: TcpStream,
    deadline_ms: u64,
    /// Index of the route in the role's list.
    index: usize,
    /// The TCP connection is up.
    connected: bool,
    /// The route's negotiation (proxy, relay), run once connected.
    tunnel: Option<Tunnel>,
}

/// A listener's connection waiting at its relay for a caller.
struct RelayWait {
    stream: TcpStream,
    tunnel: Tunnel,
    connected: bool,
    /// When it was opened: renewed after [`RELAY_RENEW_MS`].
    opened_ms: u64,
}

/// A connection on its way out: its session ended and everything it had to say is written;
/// half-closed, it drains what the peer still sends until the peer hangs up, so that our
/// last frames — a close with its reason — are read rather than lost to a reset.
struct Lingering {
    conn: Connection,
    deadline_ms: u64,
}

/// An open connection: a handshake in progress, or a chat.
struct Live {
    conn: Connection,
    /// When it was accepted or dialled: the oldest handshake goes first when there are too
    /// many.
    opened_ms: u64,
    /// The device it was admitted as (its key is proved; checked against the pin next).
    admitted: Option<DeviceId>,
    /// The key it proved when it was admitted (`None` on a plain link).
    admitted_key: Option<PublicKey>,
    /// Put out, as a stranger, to make room for a contact: it holds no place any more.
    put_out: bool,
    /// When it was admitted (wall clock, ms).
    admitted_wall_ms: i64,
    /// Refused for its key: the chat it was admitted for is not its own.
    key_refused: bool,
    /// The peer, once the chat is established.
    chat: Option<PeerHello>,
    /// It was closed because a side could not store the chat.
    storage_failed: bool,
    /// How it was reached: the peer's address, or the route.
    reached: String,
}

/// What a caller hears when every place of the listener is taken (`max` of them).
fn busy_close(max: usize) -> Close {
    Close::new(
        CloseCode::Busy,
        format!("the listener chats with as many peers as it allows ({max})"),
    )
}

/// How long a closed connection waits, half-closed, for the peer to read our close (and end
/// its side) before it is dropped: a peer that reads it gets the reason, not a reset.
const LINGER_MS: u64 = 2_000;

/// While reading is paused for the output's reader ([`crate::backlog`]), the loop looks this
/// often whether it caught up.
const BACKLOG_LOOK_MS: u64 = 20;

/// A caller's backoff starts again from its shortest delay after a chat, unless the chat
/// ended in a storage failure (a full disk on either side) before its connection lasted this
/// long: that is retried with the growing delay, not twice a second for ever.
pub const STABLE_CHAT_MS: u64 = 10_000;

/// The event loop. See the [module docs](self).
pub struct Endpoint<S: Store + Send + 'static> {
    poll: Poll,
    storage: Storage<S>,
    /// The store, back from the storage thread once [`Endpoint::run`] has ended.
    store_back: Option<S>,
    /// Lines for chats with no connection, being stored: which chat each request is for.
    offline: BTreeMap<RequestId, DeviceId>,
    next_offline: u64,
    clock: Clock,
    config: EndpointConfig,
    role: Role,
    commands: Receiver<Command>,
    /// Set by a [`Control`] that woke the endpoint; cleared before the queue is taken.
    commands_woken: Arc<AtomicBool>,
    /// Shared with every [`Control`]: set once no more commands are taken.
    commands_ended: Arc<Mutex<bool>>,
    /// The caller's threads that asked to run beside the loop (see [`Control::share_cpu`]).
    companions: Arc<Companions>,
    listener: Option<TcpListener>,
    /// Every open connection by token: handshakes in progress and chats.
    conns: BTreeMap<Token, Live>,
    dialing: Option<Dialing>,
    lingering: Vec<Lingering>,
    next_token: usize,
    /// The chat that lines without a chat of their own ([`Command::Write`]) go to: the peer
    /// who connected last.
    current: Option<PeerHello>,
    /// Lines typed before any peer was known.
    pending: VecDeque<String>,
    ever_established: bool,
    /// A listener answered at this address at least once, if only to say it is busy: a
    /// caller's later failed attempts are retried like those after a chat, not fatal as a
    /// first connection to where nothing listens is.
    listener_answered: bool,
    reconnect_at_ms: Option<u64>,
    reconnect_delay_ms: u64,
    quit_deadline_ms: Option<u64>,
    /// Asked to leave at once ([`Command::QuitNow`]): closed connections do not linger.
    leave_now: bool,
    next_store_poll_ms: u64,
    /// A caller's connection was closed in a way that ends the endpoint (or, busy, waits
    /// for a retry) once the connection is finished.
    refused_for_good: Option<(Close, Side)>,
    /// A caller's connection was refused for not proving the invited key: the endpoint
    /// stops once the connection is finished.
    not_invited: Option<Close>,
    /// What the user interface was shown of the user's own lines in each chat whose last
    /// connection ended, with the lines written here since: the chat's next link takes it
    /// (`Link::inherit_own_lines_shown`), so that a line another process wrote meanwhile
    /// (`-eC` while the peer was away) is shown when it goes, and nothing twice.
    own_lines_shown: HashMap<DeviceId, OwnLinesShown>,
    /// The listener's connection waiting at its relay.
    relay_wait: Option<RelayWait>,
    /// When the listener joins its relay again.
    relay_retry_at_ms: Option<u64>,
    relay_delay_ms: u64,
    /// What the user was last told of the relay: one report per change.
    relay_reported: RelayReport,
    /// Whether the endpoint reads from its peers' established sessions: not while their
    /// output waits for its reader ([`EndpointConfig::output_backlog`]).
    reading: bool,
}

/// The last report about a listener's relay ([`Output::RelayWaiting`],
/// [`Output::RelayUnavailable`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RelayReport {
    /// Nothing yet.
    None,
    /// Waiting there.
    Waiting,
    /// Unavailable (retries are not reported again).
    Unavailable,
}

impl<S: Store + Send + 'static> Endpoint<S> {
    /// Prepares an endpoint (nothing is bound or dialled until [`run`](Self::run)). The
    /// [`Control`] sends it commands from other threads.
    pub fn new(role: Role, config: EndpointConfig, store: S) -> io::Result<(Endpoint<S>, Control)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, commands) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Mutex::new(false));
        let storage = Storage::start(store, Arc::clone(&waker))?;
        let companions = Arc::new(Companions::default());
        let endpoint = Endpoint {
            poll,
            storage,
            store_back: None,
            offline: BTreeMap::new(),
            next_offline: 1,
            clock: Clock::new(),
            reconnect_delay_ms: config.reconnect_min_ms,
            config,
            role,
            commands,
            commands_woken: Arc::clone(&wake_pending),
            commands_ended: Arc::clone(&ended),
            companions: Arc::clone(&companions),
            listener: None,
            conns: BTreeMap::new(),
            dialing: None,
            lingering: Vec::new(),
            next_token: FIRST_CONNECTION,
            current: None,
            pending: VecDeque::new(),
            ever_established: false,
            listener_answered: false,
            reconnect_at_ms: None,
            quit_deadline_ms: None,
            leave_now: false,
            next_store_poll_ms: 0,
            refused_for_good: None,
            not_invited: None,
            own_lines_shown: HashMap::new(),
            relay_wait: None,
            relay_retry_at_ms: None,
            relay_delay_ms: 0,
            relay_reported: RelayReport::None,
            reading: true,
        };
        Ok((
            endpoint,
            Control {
                tx,
                waker,
                wake_pending,
                ended,
                companions,
            },
        ))
    }

    /// The store, once [`run`](Self::run) has ended and the storage thread carried out
    /// everything queued.
    pub fn take_store(&mut self) -> Option<S> {
        self.store_back.take()
    }

    /// Runs until the user quits (`Ok`) or the endpoint cannot go on (`Err`). Every output
    /// goes to `on_output` with the storage thread, so the caller can record extra facts
    /// (such as the peer's address) with [`Storage::task`], off the loop. When it returns,
    /// everything queued for the store is carried out (and [`take_store`](Self::take_store)
    /// hands the store back).
    pub fn run(
        &mut self,
        mut on_output: impl FnMut(&Storage<S>, Output),
    ) -> Result<(), EndpointError> {
        let mut out = OutputQueue::default();
        let result = self.run_inner(&mut out, &mut on_output);
        // Lines written that the loop never took (it ended first: the first connection
        // failed): not sent either, and said so with the rest. No command comes after.
        *self
            .commands_ended
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Write(text) | Command::WriteTo { text, .. } = command {
                self.pending.push_back(text);
            }
        }
        if !self.pending.is_empty() {
            out.push(Output::NotSent {
                texts: self.pending.drain(..).collect(),
                reason: "no peer connected to take them".to_owned(),
            });
        }
        out.flush(&self.storage, &mut on_output);
        self.store_back = self.storage.stop();
        result
    }

    fn run_inner(
        &mut self,
        out: &mut OutputQueue,
        on_output: &mut impl FnMut(&Storage<S>, Output),
    ) -> Result<(), EndpointError> {
        match self.role.clone() {
            Role::Listen { bind } => {
                let mut listener = TcpListener::bind(bind)
                    .map_err(|e| EndpointError::Io(format!("cannot listen on {bind}: {e}")))?;
                self.poll
                    .registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)
                    .map_err(io_error)?;
                let local = listener.local_addr().map_err(io_error)?;
                out.push(Output::Listening(local));
                self.listener = Some(listener);
                if self.config.relay.is_some() {
                    self.relay_join(out);
                }
            }
            Role::Connect { .. } => self.dial(0, out)?,
        }
        let mut events = Events::with_capacity(256);
        // Made here, on the loop's thread, and dropped when the loop ends.
        let mut shared_cpu = match self.storage.thread() {
            Some((storage, home)) if self.config.share_one_cpu => {
                SharedCpu::pin(storage, home, Arc::clone(&self.companions), Instant::now())
            }
            _ => None,
        };
        let mut spin = Spin::new(self.config.spin_for);
        loop {
            if let Some(shared) = shared_cpu.as_mut() {
                shared.watch(Instant::now());
            }
            out.flush(&self.storage, on_output);
            self.follow_output_backlog(out)?;
            if self.finished_quitting() {
                // Quitting does not hide a refusal that came meanwhile.
                return match self.refused_for_good.take() {
                    Some((close, by)) if close.code != CloseCode::Busy => {
                        Err(EndpointError::Refused { close, by })
                    }
                    _ => Ok(()),
                };
            }
            let timeout = if self.storage.has_completions() {
                // Completions of a store driven inline wait: no sleep.
                Some(Duration::ZERO)
            } else {
                let timers = self.next_deadline().map(|deadline| {
                    Duration::from_millis(deadline.saturating_sub(self.clock.now_ms()) + 1)
                });
                // Delivery marks held back go to the storage thread when due.
                [timers, self.storage.marks_due_in()]
                    .into_iter()
                    .flatten()
                    .min()
            };
            let timeout = if timeout != Some(Duration::ZERO)
                && spin.poll_now(Instant::now(), || self.waiting())
            {
                // Any other thread of this CPU (the storage thread, the user interface's)
                // runs first.
                std::thread::yield_now();
                Some(Duration::ZERO)
            } else {
                timeout
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_error(e));
            }
            spin.waited(Instant::now(), !events.is_empty());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(out),
                    WAKER => self.take_commands(out),
                    DIALING => self.dial_progress(out)?,
                    RELAY => self.relay_progress(out)?,
                    token if self.conns.contains_key(&token) => {
                        self.connection_ready(token, out)?;
                    }
                    token => self.lingering_ready(token),
                }
            }
            // Completions and commands may arrive without a wake of their own (both are
            // checked every turn).
            self.take_completions(out)?;
            self.take_commands(out);
            self.timers(out)?;
            self.storage.send_due_marks();
        }
    }

    /// What the connections wait for ([`crate::spin`]), in one pass: whether one waits for
    /// an answer soon due — an ack of its own messages, a peer's message's commit, a storage
    /// request's completion — while none is in a burst (more than [`SPIN_AT_MOST`] messages
    /// waiting for an ack or for their commit: a burst or a re-sync wakes the loop often
    /// enough by itself, and spinning beside it would only take the CPU from the threads
    /// doing its work), and how many messages they have received and had acked.
    fn waiting(&self) -> Waiting {
        let mut due = false;
        let mut burst = false;
        let mut messages_seen = 0;
        for live in self.conns.values() {
            let link = live.conn.link();
            let session = link.session();
            let unacked = session.in_flight();
            let unpersisted = session
                .received_up_to()
                .saturating_sub(session.persisted_up_to());
            burst |= unacked > SPIN_AT_MOST || unpersisted > SPIN_AT_MOST;
            due |= unacked > 0 || unpersisted > 0 || link.has_store_work();
            messages_seen += session.received_up_to() + session.peer_acked();
        }
        Waiting {
            answer_due: due && !burst,
            messages_seen,
        }
    }

    /// Stops reading from the peers while more of their output waits for its reader than
    /// [`crate::backlog`] allows, and reads again once it caught up. Paused, a link reads
    /// nothing once its session flows and its dead-peer timeout waits
    /// ([`Link::pause_reading`]); resumed, each connection reads what arrived meanwhile,
    /// which brought no new readiness.
    fn follow_output_backlog(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Some(backlog) = self.config.output_backlog.as_ref() else {
            return Ok(());
        };
        let reading = backlog.allows_reading(self.reading);
        if reading == self.reading {
            return Ok(());
        }
        self.reading = reading;
        if !reading {
            log::info!(
                "not reading from peers: {} bytes of events wait for the output to be read",
                backlog.waiting()
            );
            for live in self.conns.values_mut() {
                live.conn.link_mut().pause_reading();
            }
            return Ok(());
        }
        log::info!("reading from peers again: the output caught up");
        let now = self.clock.now_ms();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(live) = self.conns.get_mut(&token) else {
                continue;
            };
            live.conn.link_mut().resume_reading(now);
            let progress = live.conn.on_ready(self.poll.registry(), &self.storage, now);
            self.after_connection_step(token, progress, out)?;
        }
        Ok(())
    }

    fn token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    // ----- listening -----

    /// Accepts every waiting caller. Each runs its handshake alongside the others; when
    /// there are more handshakes in progress than the configured bound, the oldest is
    /// dropped first (a silent socket cannot hold a place for long, and never a chat's).
    fn accept(&mut self, out: &mut OutputQueue) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if self.quit_deadline_ms.is_some() {
                        // Leaving: no new chat. Dropping the stream closes it.
                        continue;
                    }
                    self.make_room_for_a_handshake();
                    if let Err(e) = self.open_connection(
                        stream,
                        addr,
                        addr.to_string(),
                        NoiseRole::Responder,
                        &[],
                        out,
                    ) {
                        log::warn!("a new connection failed at once: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.push(Output::Warning(format!("accepting a caller failed: {e}")));
                    return;
                }
            }
        }
    }

    fn make_room_for_a_handshake(&mut self) {
        loop {
            let pending: Vec<(u64, Token)> = self
                .conns
                .iter()
                .filter(|(_, live)| live.admitted.is_none())
                .map(|(token, live)| (live.opened_ms, *token))
                .collect();
            if pending.len() < self.config.max_pending_handshakes.max(1) {
                return;
            }
            let Some(&(_, oldest)) = pending.iter().min() else {
                return;
            };
            if let Some(live) = self.conns.remove(&oldest) {
                log::debug!(
                    "dropping the oldest unauthenticated connection, from {}: {} handshakes \
                     are in progress",
                    live.conn.peer_addr(),
                    pending.len()
                );
                live.conn.shutdown(self.poll.registry());
            }
        }
    }

    /// Moves a finished connection to the lingering list: half-closed, drained until the
    /// peer hangs up or two seconds pass.
    fn linger(&mut self, mut conn: Connection) {
        if self.leave_now {
            // Leaving at once (a second Ctrl-C, the terminal gone): no wait for the peer to
            // read our close.
            conn.shutdown(self.poll.registry());
            return;
        }
        let token = self.token();
        conn.retoken(self.poll.registry(), token);
        conn.half_close();
        let now = self.clock.now_ms();
        // While quitting, no longer than the grace period: a peer that never answered
        // (a silent handshake) does not hold the user beyond it.
        let deadline_ms = match self.quit_deadline_ms {
            Some(quit) => (now + LINGER_MS).min(quit.max(now)),
            None => now + LINGER_MS,
        };
        self.lingering.push(Lingering { conn, deadline_ms });
    }

    fn lingering_ready(&mut self, token: Token) {
        let Some(i) = self.lingering.iter().position(|l| l.conn.token() == token) else {
            return;
        };
        if self.lingering[i].conn.drain() {
            let done = self.lingering.swap_remove(i);
            done.conn.shutdown(self.poll.registry());
        }
    }

    /// A proved peer asks to be let in: refused as busy when the listener already chats
    /// with as many other devices as it allows, unless it is a contact and a stranger holds
    /// a place ([`crate::admission`]). A device that is connected already may come in: its
    /// newer connection replaces the older once its key is checked.
    fn admit(
        &mut self,
        token: Token,
        peer: &PeerHello,
        key: Option<PublicKey>,
        out: &mut OutputQueue,
    ) {
        let now = self.clock.now_ms();
        let contacts = &self.config.contacts;
        let is_contact = |device: DeviceId, key: Option<PublicKey>| {
            key.is_some_and(|key| contacts.contains(device, key))
        };
        let mut seated: BTreeMap<DeviceId, Seated> = BTreeMap::new();
        for (t, live) in &self.conns {
            let Some(device) = live
                .admitted
                .filter(|d| *t != token && *d != peer.device && !live.put_out)
            else {
                continue;
            };
            let seat = Seated {
                device,
                contact: is_contact(device, live.admitted_key),
                admitted_at: live.admitted_wall_ms,
            };
            let entry = seated.entry(device).or_insert(seat);
            // A device with two connections counts as a contact if either proved it.
            entry.contact |= seat.contact;
            entry.admitted_at = entry.admitted_at.max(seat.admitted_at);
        }
        let seated: Vec<Seated> = seated.into_values().collect();
        let max = self.config.max_peers.max(1);
        let decision = if self.quit_deadline_ms.is_some() {
            None
        } else {
            Some(admission::admit(&seated, max, is_contact(peer.device, key)))
        };
        if let Some(Admission::InPlaceOf(stranger)) = decision {
            self.make_room(stranger, peer, out);
        }
        let Some(live) = self.conns.get_mut(&token) else {
            return;
        };
        match decision {
            None => {
                let close = Close::new(CloseCode::Normal, "the user left");
                live.conn.link_mut().refuse(close, now);
            }
            Some(Admission::Busy) => {
                live.conn.link_mut().refuse(busy_close(max), now);
                out.push(Output::RefusedBusy(live.conn.peer_addr()));
            }
            Some(Admission::Admit | Admission::InPlaceOf(_)) => {
                live.admitted = Some(peer.device);
                live.admitted_key = key;
                live.admitted_wall_ms = self.clock.wall_ms();
                live.conn.link_mut().admit(now);
            }
        }
        live.conn
            .after_command(self.poll.registry(), &self.storage, now);
    }

    /// Puts out every connection of `stranger`, as busy, to make room for `contact`.
    fn make_room(&mut self, stranger: DeviceId, contact: &PeerHello, out: &mut OutputQueue) {
        let now = self.clock.now_ms();
        let max = self.config.max_peers.max(1);
        let mut stranger_name = None;
        for live in self.conns.values_mut() {
            if live.admitted != Some(stranger) || live.put_out {
                continue;
            }
            live.put_out = true;
            if let Some(chat) = &live.chat {
                stranger_name = Some(chat.name.clone());
            }
            log::info!(
                "putting out {} (a stranger) to make room for {}, a contact",
                live.reached,
                contact.name
            );
            live.conn.link_mut().close(busy_close(max), now);
            live.conn
                .after_command(self.poll.registry(), &self.storage, now);
        }
        out.push(Output::MadeRoom {
            contact: contact.clone(),
            stranger,
            stranger_name,
        });
    }

    /// The chat with `device` is now on `token`, its newest admitted connection: every older
    /// one of the same device is closed (most likely the same device after a network
    /// change).
    fn replace_older(&mut self, token: Token, device: DeviceId) {
        let now = self.clock.now_ms();
        let older: Vec<Token> = self
            .conns
            .iter()
            .filter(|(t, live)| **t != token && live.admitted == Some(device))
            .map(|(t, _)| *t)
            .collect();
        for old in older {
            self.close_replaced(old, now);
        }
    }

    /// Hands the link on `token`, whose chat with `peer` just opened, what the user interface
    /// was shown of the user's own lines there: by an older connection of the same device
    /// still here (about to be replaced), or by the chat's last connection. A chat with no
    /// earlier connection in this process needs nothing: its lines so far are the user's
    /// history. Temporary chats store nothing and announce nothing.
    fn hand_over_own_lines_shown(&mut self, token: Token, peer: &PeerHello) {
        if peer.temporary {
            return;
        }
        let older = self
            .conns
            .iter()
            .filter(|(t, live)| {
                **t != token && live.chat.as_ref().is_some_and(|c| c.device == peer.device)
            })
            .map(|(_, live)| live.conn.link().own_lines_shown())
            .next_back();
        let kept = self.own_lines_shown.remove(&peer.device);
        if let (Some(shown), Some(live)) = (older.or(kept), self.conns.get_mut(&token)) {
            live.conn.link_mut().inherit_own_lines_shown(shown);
        }
    }

    /// Keeps what the link of a connection that ends had shown of the user's own lines in
    /// its chat, for the chat's next link — unless another connection has the chat now.
    fn keep_own_lines_shown(&mut self, chat: Option<&PeerHello>, link: &Link) {
        let Some(chat) = chat.filter(|c| !c.temporary) else {
            return;
        };
        let other = self
            .conns
            .values()
            .any(|live| live.chat.as_ref().is_some_and(|c| c.device == chat.device));
        if !other {
            self.own_lines_shown
                .insert(chat.device, link.own_lines_shown());
        }
    }

    /// Closes the connection on `token`: a newer one of the same device goes on.
    fn close_replaced(&mut self, token: Token, now: u64) {
        if let Some(live) = self.conns.get_mut(&token) {
            live.admitted = None;
            let close = Close::new(
                CloseCode::Replaced,
                "the same device connected again; the newer connection goes on",
            );
            live.conn.link_mut().close(close, now);
            live.conn
                .after_command(self.poll.registry(), &self.storage, now);
        }
    }

    // ----- dialling -----

    fn dial(&mut self, index: usize, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Role::Connect { routes, label } = &self.role else {
            return Ok(());
        };
        let Some(route) = routes.get(index).cloned() else {
            return Err(EndpointError::Io(format!(
                "no address to connect to for {label}"
            )));
        };
        out.push(Output::Connecting(route.to_string()));
        let tunnel = match route.tunnel() {
            Ok(tunnel) => tunnel,
            Err(e) => return self.dial_failed(index, e, out),
        };
        let timeout = if tunnel.is_some() {
            self.config.tunnel_timeout_ms
        } else {
            self.config.connect_timeout_ms
        };
        match TcpStream::connect(route.first_hop()) {
            Ok(mut stream) => {
                self.poll
                    .registry()
                    .register(
                        &mut stream,
                        DIALING,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(io_error)?;
                self.dialing = Some(Dialing {
                    stream,
                    deadline_ms: self.clock.now_ms() + timeout,
                    index,
                    connected: false,
                    tunnel,
                });
                Ok(())
            }
            Err(e) => self.dial_failed(index, first_hop_error(&route, &e), out),
        }
    }

    fn dial_progress(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Some(dialing) = self.dialing.as_mut() else {
            return Ok(());
        };
        let route = match &self.role {
            Role::Connect { routes, .. } => routes.get(dialing.index).cloned(),
            Role::Listen { .. } => None,
        };
        let Some(route) = route else {
            return Ok(());
        };
        let step = if dialing.connected {
            None
        } else {
            match connect_outcome(&dialing.stream) {
                ConnectOutcome::Pending => return Ok(()),
                ConnectOutcome::Failed(e) => Some(Err(first_hop_error(&route, &e))),
                ConnectOutcome::Connected => {
                    dialing.connected = true;
                    None
                }
            }
        };
        let step = match step {
            Some(step) => step,
            None => match dialing.tunnel.as_mut() {
                None => Ok(Vec::new()),
                Some(tunnel) => match tunnel.drive(&mut dialing.stream) {
                    TunnelStep::Pending => return Ok(()),
                    TunnelStep::Through(leftover) => Ok(leftover),
                    TunnelStep::Failed(e) => Err(e),
                },
            },
        };
        let Some(mut dialing) = self.dialing.take() else {
            return Ok(());
        };
        let _ = self.poll.registry().deregister(&mut dialing.stream);
        match step {
            Err(e) => self.dial_failed(dialing.index, e, out),
            Ok(leftover) => self.open_connection(
                dialing.stream,
                route.first_hop(),
                route.to_string(),
                NoiseRole::Initiator,
                &leftover,
                out,
            ),
        }
    }

    fn dial_failed(
        &mut self,
        index: usize,
        error: String,
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        let Role::Connect { routes, label } = &self.role else {
            return Ok(());
        };
        let route = routes
            .get(index)
            .map_or_else(|| label.clone(), Route::to_string);
        if index + 1 < routes.len() {
            log::info!("could not connect to {route}: {error}; trying the next route");
            return self.dial(index + 1, out);
        }
        // The route names the target itself when it goes through a proxy.
        let what = if route.starts_with(label.as_str()) {
            route
        } else {
            format!("{label} ({route})")
        };
        let failed = format!("could not connect to {what}: {error}");
        if !self.ever_established && !self.listener_answered {
            return Err(EndpointError::Io(failed));
        }
        if self.keeps_trying() {
            self.schedule_reconnect(Some(failed), out);
        }
        Ok(())
    }

    // ----- the listener's place at a relay -----

    /// Opens a connection to the relay that waits there for a caller.
    fn relay_join(&mut self, out: &mut OutputQueue) {
        let Some(relay) = self.config.relay.clone() else {
            return;
        };
        self.relay_retry_at_ms = None;
        match TcpStream::connect(relay.relay) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    RELAY,
                    Interest::READABLE | Interest::WRITABLE,
                );
                if let Err(e) = registered {
                    self.relay_failed(e.to_string(), out);
                    return;
                }
                self.relay_wait = Some(RelayWait {
                    stream,
                    tunnel: Tunnel::Transit(socketfalco_reach::transit::TransitClient::new(
                        relay.token,
                        relay.side,
                    )),
                    connected: false,
                    opened_ms: self.clock.now_ms(),
                });
            }
            Err(e) => self.relay_failed(e.to_string(), out),
        }
    }

    fn relay_progress(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Some(wait) = self.relay_wait.as_mut() else {
            return Ok(());
        };
        if !wait.connected {
            match connect_outcome(&wait.stream) {
                ConnectOutcome::Pending => return Ok(()),
                ConnectOutcome::Failed(e) => {
                    self.drop_relay_wait();
                    self.relay_failed(e.to_string(), out);
                    return Ok(());
                }
                ConnectOutcome::Connected => wait.connected = true,
            }
        }
        match wait.tunnel.drive(&mut wait.stream) {
            TunnelStep::Pending => {
                if wait.tunnel.request_written() && self.relay_reported != RelayReport::Waiting {
                    self.relay_reported = RelayReport::Waiting;
                    if let Some(relay) = &self.config.relay {
                        out.push(Output::RelayWaiting(relay.label.clone()));
                    }
                }
                Ok(())
            }
            TunnelStep::Failed(e) => {
                self.drop_relay_wait();
                self.relay_failed(e, out);
                Ok(())
            }
            TunnelStep::Through(leftover) => {
                let Some(mut wait) = self.relay_wait.take() else {
                    return Ok(());
                };
                let _ = self.poll.registry().deregister(&mut wait.stream);
                self.relay_delay_ms = 0;
                let Some(relay) = self.config.relay.clone() else {
                    return Ok(());
                };
                // A new place at the relay first, for the next caller.
                if self.quit_deadline_ms.is_none() {
                    self.relay_join(out);
                }
                if self.quit_deadline_ms.is_some() {
                    return Ok(());
                }
                self.make_room_for_a_handshake();
                self.open_connection(
                    wait.stream,
                    relay.relay,
                    format!("the relay {}", relay.label),
                    NoiseRole::Responder,
                    &leftover,
                    out,
                )
            }
        }
    }

    fn drop_relay_wait(&mut self) {
        if let Some(mut wait) = self.relay_wait.take() {
            let _ = self.poll.registry().deregister(&mut wait.stream);
        }
    }

    /// The relay could not be reached or dropped the place: join again after a backoff
    /// (one second, doubling to the reconnection maximum); reported once per outage.
    fn relay_failed(&mut self, error: String, out: &mut OutputQueue) {
        let delay = if self.relay_delay_ms == 0 {
            1_000
        } else {
            (self.relay_delay_ms * 2).min(self.config.reconnect_max_ms.max(1_000))
        };
        self.relay_delay_ms = delay;
        self.relay_retry_at_ms = Some(self.clock.now_ms() + delay);
        let before = std::mem::replace(&mut self.relay_reported, RelayReport::Unavailable);
        if before != RelayReport::Unavailable {
            if let Some(relay) = &self.config.relay {
                out.push(Output::RelayUnavailable {
                    relay: relay.label.clone(),
                    error,
                    retry_in_ms: delay,
                });
            }
        } else {
            log::debug!("the relay is still unavailable: {error}");
        }
    }

    /// Whether a caller whose connection ended tries again: unless the user leaves — or,
    /// while lines still wait for a first peer, until the grace period of leaving is over.
    fn keeps_trying(&self) -> bool {
        match self.quit_deadline_ms {
            None => true,
            Some(deadline) => !self.pending.is_empty() && self.clock.now_ms() < deadline,
        }
    }

    /// The next attempt after a backoff; `failed`: why the attempt that just ended reached no
    /// peer, if it did not.
    fn schedule_reconnect(&mut self, failed: Option<String>, out: &mut OutputQueue) {
        let delay = self.reconnect_delay_ms;
        self.reconnect_delay_ms = (delay * 2).min(self.config.reconnect_max_ms);
        self.reconnect_at_ms = Some(self.clock.now_ms() + delay);
        out.push(Output::Reconnecting {
            in_ms: delay,
            failed,
        });
    }

    // ----- connections -----

    /// A link for a new connection: encrypted when this endpoint has a key.
    fn new_link(&self, role: NoiseRole, now: u64, out: &mut OutputQueue) -> Option<Link> {
        let config = self.config.session.clone();
        let Some(keypair) = &self.config.keypair else {
            return Some(Link::new(config, now));
        };
        let mut seed = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut seed) {
            out.push(Output::Warning(format!(
                "no randomness for the handshake: {e}"
            )));
            return None;
        }
        let mut link = Link::new_secure(config, now, role, keypair, seed);
        if let (NoiseRole::Initiator, Some(key)) = (role, self.config.expected_peer_key) {
            link.expect_peer_key(key);
        }
        Some(link)
    }

    /// A new connection: a listener's waits for [`Endpoint::admit`] once the peer proved
    /// its key. `reached` says how (the peer's address, or the route); `early` is what the
    /// peer sent already, read while a proxy or relay negotiation finished.
    fn open_connection(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        reached: String,
        role: NoiseRole,
        early: &[u8],
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        let now = self.clock.now_ms();
        let Some(mut link) = self.new_link(role, now, out) else {
            return Ok(());
        };
        if !early.is_empty() {
            link.handle_input(early, now);
        }
        if matches!(self.role, Role::Listen { .. }) {
            link.require_admission();
        }
        if !self.reading {
            link.pause_reading();
        }
        let token = self.token();
        match Connection::new(self.poll.registry(), stream, token, addr, link) {
            Ok(conn) => {
                self.conns.insert(
                    token,
                    Live {
                        conn,
                        opened_ms: now,
                        admitted: None,
                        admitted_key: None,
                        put_out: false,
                        admitted_wall_ms: 0,
                        key_refused: false,
                        chat: None,
                        storage_failed: false,
                        reached,
                    },
                );
                if early.is_empty() {
                    Ok(())
                } else {
                    // What came early is in the link: pump it (and read what followed).
                    self.connection_ready(token, out)
                }
            }
            Err(e) => {
                out.push(Output::Warning(format!(
                    "could not set up the connection: {e}"
                )));
                Ok(())
            }
        }
    }

    fn connection_ready(
        &mut self,
        token: Token,
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        let now = self.clock.now_ms();
        let Some(live) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        let progress = live.conn.on_ready(self.poll.registry(), &self.storage, now);
        self.after_connection_step(token, progress, out)
    }

    /// Hands every storage completion that is ready to its link (or, for a line written
    /// with no connection, reports it).
    fn take_completions(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        loop {
            let completion = self.storage.next_completion().map_err(EndpointError::Io)?;
            let Some(Completion {
                origin,
                id,
                result,
                stage,
            }) = completion
            else {
                return Ok(());
            };
            match origin {
                Origin::Endpoint => self.offline_written(id, result, out),
                Origin::Link(token) => {
                    let now = self.clock.now_ms();
                    let Some(live) = self.conns.get_mut(&token) else {
                        // Unreachable: a connection stays until its requests completed.
                        continue;
                    };
                    let progress = live.conn.on_completion(
                        self.poll.registry(),
                        &self.storage,
                        id,
                        result,
                        stage,
                        now,
                    );
                    self.after_connection_step(token, progress, out)?;
                }
            }
        }
    }

    /// A line for a chat with no connection is stored (or not).
    fn offline_written(
        &mut self,
        id: RequestId,
        result: Result<StoreReply, String>,
        out: &mut OutputQueue,
    ) {
        let Some(device) = self.offline.remove(&id) else {
            return;
        };
        match result {
            Ok(StoreReply::Composed(messages)) => {
                // A connection with this peer may be opening: the lines are shown here as
                // waiting, so its link must not announce them as written elsewhere.
                for live in self.conns.values_mut() {
                    let link = live.conn.link_mut();
                    if link.peer().is_some_and(|p| p.device == device) {
                        link.note_written_here(&messages);
                    }
                }
                // The chat's next link too, if an earlier one left what it had shown.
                if let Some(shown) = self.own_lines_shown.get_mut(&device) {
                    shown.note_written_here(&messages);
                }
                for message in messages {
                    out.push(Output::Sent {
                        peer: device,
                        message,
                        live: false,
                    });
                }
            }
            Ok(_) => out.push(Output::Warning(
                "the store answered a line with another kind of result".into(),
            )),
            Err(e) => out.push(Output::Warning(format!("a line could not be stored: {e}"))),
        }
    }

    /// Tells the storage thread how many chats are established (how long its groups may be).
    fn count_live_chats(&self) {
        let chats = self
            .conns
            .values()
            .filter(|live| live.chat.is_some())
            .count();
        self.storage.set_live_chats(chats);
    }

    /// The established chat with `device`, if any.
    fn chat_token(&self, device: DeviceId) -> Option<Token> {
        self.conns
            .iter()
            .filter(|(_, live)| {
                live.chat.as_ref().is_some_and(|c| c.device == device)
                    && live.conn.link().session().is_established()
            })
            .map(|(token, _)| *token)
            .next_back()
    }

    /// Moves a connection's notices out, admits a proved peer, composes lines typed before
    /// any peer once one is there, and tears the connection down when it is finished.
    fn after_connection_step(
        &mut self,
        token: Token,
        progress: Progress,
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        while let Some(live) = self.conns.get_mut(&token) {
            let Some(notice) = live.conn.link_mut().poll_notice() else {
                break;
            };
            let addr = live.conn.peer_addr();
            let reached = live.reached.clone();
            let peer_device = live.conn.link().peer().map(|p| p.device);
            match notice {
                Notice::PeerProved { peer, key } => self.admit(token, &peer, key, out),
                Notice::Connected {
                    peer,
                    incoming,
                    outgoing,
                    held,
                } => {
                    // The newest admitted connection of a device wins. Admission and the
                    // chat's opening are asynchronous, so an older connection may be
                    // established after a newer one was admitted: it is the one to go.
                    let newer = self
                        .conns
                        .range((Bound::Excluded(token), Bound::Unbounded))
                        .any(|(_, other)| other.admitted == Some(peer.device));
                    if newer {
                        self.close_replaced(token, self.clock.now_ms());
                        continue;
                    }
                    self.hand_over_own_lines_shown(token, &peer);
                    let Some(live) = self.conns.get_mut(&token) else {
                        break;
                    };
                    live.chat = Some(peer.clone());
                    live.admitted = Some(peer.device);
                    self.ever_established = true;
                    self.current = Some(peer.clone());
                    self.replace_older(token, peer.device);
                    self.count_live_chats();
                    out.push(Output::Connected {
                        peer,
                        addr: reached,
                        incoming,
                        outgoing,
                        held,
                    });
                }
                Notice::Restored { count, up_to } => {
                    if let Some(peer) = peer_device {
                        out.push(Output::Restored { peer, count, up_to });
                    }
                }
                Notice::Received { message, stored } => {
                    if let Some(peer) = peer_device {
                        out.push(Output::Received {
                            peer,
                            message,
                            stored,
                        });
                    }
                }
                Notice::Composed { messages, .. } => {
                    if let Some(peer) = peer_device {
                        for message in messages {
                            // Written while our history is still coming back (or the
                            // connection ended meanwhile): it waits for its number, like a
                            // line written offline.
                            let live = message.seq != 0;
                            out.push(Output::Sent {
                                peer,
                                message,
                                live,
                            });
                        }
                    }
                }
                Notice::WrittenElsewhere { message } => {
                    // A line another process of this device wrote into the chat (`-eC`
                    // beside this session): the user's own, sent now.
                    if let Some(peer) = peer_device {
                        out.push(Output::Sent {
                            peer,
                            message,
                            live: true,
                        });
                    }
                }
                Notice::ComposeFailed { texts, reason, .. } => {
                    for text in texts {
                        out.push(Output::Rejected {
                            text,
                            reason: format!("could not store the message: {reason}"),
                        });
                    }
                }
                Notice::Delivered { up_to } => {
                    if let Some(peer) = peer_device {
                        out.push(Output::Delivered { peer, up_to });
                    }
                }
                Notice::KeyMismatch {
                    peer,
                    presented,
                    pinned,
                } => {
                    // Its chat was not opened: the one in the store is not this connection's.
                    live.key_refused = true;
                    out.push(Output::KeyMismatch {
                        peer,
                        presented,
                        pinned,
                        addr,
                    });
                }
                Notice::Closed { reason, by } => {
                    if reason.code == CloseCode::StorageFailure {
                        live.storage_failed = true;
                        if by == Side::Local {
                            // Never silent: what could not be stored or sent is also in the log.
                            log::warn!("connection with {addr} closed: {reason}");
                        }
                    }
                    let chat = live.chat.as_ref().map(|c| c.device);
                    // A proved, admitted peer is shown leaving even before its chat opened
                    // (refused for its key, after the warning): it is a real event.
                    let shown = chat.is_some() || live.admitted.is_some();
                    // Admitted and its chat opened by it (not refused for its key, nor
                    // failed to store), but never established.
                    let never_opened = live
                        .admitted
                        .filter(|_| chat.is_none() && !live.key_refused && !live.storage_failed)
                        .map(|device| (device, live.admitted_wall_ms));
                    live.admitted = None;
                    if let Some((device, since_wall_ms)) = never_opened {
                        let elsewhere = self.conns.values().any(|other| {
                            other.admitted == Some(device)
                                || other.chat.as_ref().is_some_and(|c| c.device == device)
                        });
                        if !elsewhere {
                            out.push(Output::NeverOpened {
                                peer: device,
                                since_wall_ms,
                            });
                        }
                    }
                    match self.role {
                        Role::Connect { .. } => {
                            // A caller whose very first connection ends before the chat is
                            // established (busy, wrong version, our own identity, a key
                            // mismatch, not a SocketFalco peer, …) stops with that reason
                            // rather than retrying forever — except busy, which passes;
                            // later drops are retried.
                            let left_on_purpose =
                                by == Side::Local && reason.code == CloseCode::Normal;
                            // Replaced by the peer: another copy of this device (same id, same
                            // key) connected to it; reconnecting would push that one out in
                            // turn, forever. Stop and say why.
                            let replaced = by == Side::Peer && reason.code == CloseCode::Replaced;
                            // The listener did not prove the key of the invite: whoever
                            // answered is not the invited device, now or later.
                            let not_invited =
                                by == Side::Local && reason.code == CloseCode::IdentityMismatch;
                            if not_invited {
                                self.not_invited = Some(reason.clone());
                            } else if (!self.ever_established && !left_on_purpose) || replaced {
                                self.refused_for_good = Some((reason.clone(), by));
                            }
                            out.push(Output::Disconnected {
                                peer: chat,
                                reason,
                                by,
                            });
                        }
                        // An unauthenticated connection never appears in the chat view.
                        Role::Listen { .. } if !shown => {
                            log::debug!("a connection from {addr} ended before its chat: {reason}");
                        }
                        Role::Listen { .. } => out.push(Output::Disconnected {
                            peer: chat,
                            reason,
                            by,
                        }),
                    }
                }
            }
        }
        self.compose_pending(out);
        let Some(live) = self.conns.get(&token) else {
            return Ok(());
        };
        let finished = live.conn.link().is_finished() || progress == Progress::Finished;
        if !finished {
            return Ok(());
        }
        if let Some(live) = self.conns.remove(&token) {
            self.keep_own_lines_shown(live.chat.as_ref(), live.conn.link());
            let lasted = self.clock.now_ms().saturating_sub(live.opened_ms);
            if live.chat.is_some() && (!live.storage_failed || lasted >= STABLE_CHAT_MS) {
                self.reconnect_delay_ms = self.config.reconnect_min_ms;
            }
            self.linger(live.conn);
            self.count_live_chats();
        }
        if let Some(reason) = self.not_invited.take() {
            return Err(EndpointError::NotInvited(reason));
        }
        if matches!(self.role, Role::Connect { .. }) {
            let keep_trying = self.keeps_trying();
            match self.refused_for_good.take() {
                // A listener at its limit of peers: try again later, unless the user leaves.
                Some((close, _)) if close.code == CloseCode::Busy && keep_trying => {
                    self.listener_answered = true;
                    self.schedule_reconnect(None, out);
                }
                Some((close, _)) if close.code == CloseCode::Busy => {}
                Some((close, by)) => return Err(EndpointError::Refused { close, by }),
                None if keep_trying => self.schedule_reconnect(None, out),
                None => {}
            }
        }
        Ok(())
    }

    fn compose_pending(&mut self, out: &mut OutputQueue) {
        if self.pending.is_empty() {
            return;
        }
        let Some(peer) = self.current.clone() else {
            return;
        };
        if self.chat_token(peer.device).is_none() {
            return;
        }
        while let Some(text) = self.pending.pop_front() {
            self.write_line(None, text, out);
        }
    }

    // ----- the user's commands -----

    fn take_commands(&mut self, out: &mut OutputQueue) {
        // Lines typed (or pasted) since the last turn go to the store as one request per
        // chat (and the storage thread commits many requests at once).
        let mut burst = Vec::new();
        self.take_commands_into(&mut burst);
        self.write_lines(burst, out);
    }

    fn take_commands_into(&mut self, burst: &mut Vec<(Option<DeviceId>, String)>) {
        // Cleared before the queue is read: what is queued from now on wakes us again.
        self.commands_woken.store(false, Ordering::SeqCst);
        loop {
            match self.commands.try_recv() {
                Ok(Command::Write(text)) => burst.push((None, text)),
                Ok(Command::WriteTo { to, text }) => burst.push((Some(to), text)),
                Ok(Command::Quit) | Err(TryRecvError::Disconnected) => {
                    if self.quit_deadline_ms.is_none() {
                        self.quit_deadline_ms =
                            Some(self.clock.now_ms() + self.config.quit_grace_ms);
                        // Lines still waiting for a first peer keep a caller trying again
                        // within the grace period (a busy listener, one not up yet).
                        if self.pending.is_empty() {
                            self.reconnect_at_ms = None;
                        }
                    }
                    return;
                }
                Ok(Command::QuitNow) => {
                    let now = self.clock.now_ms();
                    self.quit_deadline_ms = Some(self.quit_deadline_ms.map_or(now, |d| d.min(now)));
                    self.reconnect_at_ms = None;
                    self.leave_now = true;
                    for lingering in std::mem::take(&mut self.lingering) {
                        lingering.conn.shutdown(self.poll.registry());
                    }
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Writes a burst of lines: runs of lines for the same established chat go in one store
    /// request, every other line on its own.
    fn write_lines(&mut self, lines: Vec<(Option<DeviceId>, String)>, out: &mut OutputQueue) {
        let mut lines = lines.into_iter().peekable();
        while let Some((to, text)) = lines.next() {
            let target = to.or_else(|| self.current.as_ref().map(|p| p.device));
            let token = target.and_then(|device| self.chat_token(device));
            let (Some(device), Some(token)) = (target, token) else {
                self.write_line(to, text, out);
                continue;
            };
            let mut run = vec![text];
            while let Some((next_to, _)) = lines.peek() {
                if next_to.or_else(|| self.current.as_ref().map(|p| p.device)) != Some(device) {
                    break;
                }
                if let Some((_, text)) = lines.next() {
                    run.push(text);
                }
            }
            self.write_run(token, run, out);
        }
    }

    /// Lines for the established chat on `token`: one store request (one commit) for all
    /// that are within the limits; each other line is rejected on its own.
    fn write_run(&mut self, token: Token, run: Vec<String>, out: &mut OutputQueue) {
        let now = self.clock.now_ms();
        let wall = self.clock.wall_ms();
        let (good, bad): (Vec<String>, Vec<String>) = run
            .into_iter()
            .partition(|text| socketfalco_core::check_text(text).is_ok());
        for text in bad {
            let reason = socketfalco_core::check_text(&text)
                .err()
                .map_or_else(String::new, |e| e.to_string());
            out.push(Output::Rejected { text, reason });
        }
        if good.is_empty() {
            return;
        }
        let Some(live) = self.conns.get_mut(&token) else {
            return;
        };
        // The user writes to this device: a contact from now on ([`crate::admission`]).
        let temporary = live.chat.as_ref().is_some_and(|c| c.temporary);
        if let (Some(device), Some(key), false) = (live.admitted, live.admitted_key, temporary) {
            self.config.contacts.extend([(device, key)]);
        }
        // A long burst (a paste, a script's input) goes in requests of at most one group's
        // rows: the first is committed and on the wire while the next is being committed.
        let mut good = good.into_iter().peekable();
        while good.peek().is_some() {
            let chunk: Vec<String> = good.by_ref().take(MAX_GROUP_ROWS).collect();
            if let Err(e) = live.conn.link_mut().compose_batch(chunk.clone(), wall, now) {
                for text in chunk {
                    out.push(Output::Rejected {
                        text,
                        reason: e.to_string(),
                    });
                }
            }
        }
        // The lines show as sent when the store has them (`Notice::Composed`).
        live.conn
            .after_command(self.poll.registry(), &self.storage, now);
    }

    /// One line for a chat with no established connection (stored to wait for the next
    /// one), or, with no chat known yet, kept until the first peer connects.
    fn write_line(&mut self, to: Option<DeviceId>, text: String, out: &mut OutputQueue) {
        let target = to.or_else(|| self.current.as_ref().map(|p| p.device));
        if let Some(device) = target {
            if let Some(token) = self.chat_token(device) {
                self.write_run(token, vec![text], out);
                return;
            }
        }
        let wall = self.clock.wall_ms();
        let current_is_target = self.current.as_ref().filter(|p| Some(p.device) == target);
        match (target, current_is_target) {
            (Some(_), Some(peer)) if peer.temporary => out.push(Output::Rejected {
                text,
                reason: "the temporary session has ended; nothing of it is stored".into(),
            }),
            (Some(device), _) => match socketfalco_core::check_text(&text) {
                Ok(()) => {
                    // Stored unnumbered, to wait for the next sync; shown once stored.
                    let id = RequestId(self.next_offline);
                    self.next_offline += 1;
                    self.offline.insert(id, device);
                    let request = StoreRequest::Compose {
                        peer: device,
                        texts: Arc::new(vec![text]),
                        sent_at_ms: wall,
                        number_after: None,
                    };
                    self.storage.submit(Origin::Endpoint, id, request);
                }
                Err(e) => out.push(Output::Rejected {
                    text,
                    reason: e.to_string(),
                }),
            },
            (None, _) => match socketfalco_core::check_text(&text) {
                Ok(()) => {
                    out.push(Output::Pending(text.clone()));
                    self.pending.push_back(text);
                }
                Err(e) => out.push(Output::Rejected {
                    text,
                    reason: e.to_string(),
                }),
            },
        }
    }

    // ----- time -----

    fn next_deadline(&self) -> Option<u64> {
        let now = self.clock.now_ms();
        let established = self
            .conns
            .values()
            .any(|live| live.conn.link().session().is_established());
        [
            self.conns
                .values()
                .filter_map(|live| live.conn.link().poll_timeout())
                .min(),
            self.dialing.as_ref().map(|d| d.deadline_ms),
            self.relay_retry_at_ms,
            self.relay_wait
                .as_ref()
                .map(|w| w.opened_ms + RELAY_RENEW_MS),
            self.reconnect_at_ms,
            // Once passed, the grace period's end is no timer (it would be due on every
            // turn: a busy loop); one more second for the closes to be written is.
            self.quit_deadline_ms
                .map(|d| if now < d { d } else { d + 1_000 })
                .filter(|&t| t > now),
            self.lingering.iter().map(|l| l.deadline_ms).min(),
            established.then_some(self.next_store_poll_ms),
            // Paused for the output's reader: look again soon whether it caught up.
            (!self.reading).then_some(now + BACKLOG_LOOK_MS),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn timers(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let now = self.clock.now_ms();
        let poll_store = now >= self.next_store_poll_ms;
        if poll_store {
            self.next_store_poll_ms = now + self.config.store_poll_ms;
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(live) = self.conns.get_mut(&token) else {
                continue;
            };
            let link = live.conn.link();
            let due = link.poll_timeout().is_some_and(|t| t <= now);
            // Messages another process wrote into the chat (an offline writer on the same
            // data directory) go out within a store poll.
            if poll_store && link.session().is_established() {
                live.conn.link_mut().refill(now);
            }
            if due || poll_store {
                let progress = live
                    .conn
                    .on_timeout(self.poll.registry(), &self.storage, now);
                self.after_connection_step(token, progress, out)?;
            }
        }
        if self.dialing.as_ref().is_some_and(|d| d.deadline_ms <= now) {
            if let Some(mut dialing) = self.dialing.take() {
                let _ = self.poll.registry().deregister(&mut dialing.stream);
                let at_relay = dialing
                    .tunnel
                    .as_ref()
                    .is_some_and(Tunnel::waiting_at_relay);
                let seconds = |ms: u64| ms.div_ceil(1_000);
                let timeout = if at_relay && dialing.connected {
                    format!(
                        "the listener did not come to the relay within {} s (is it running \
                         with -l --relay?)",
                        seconds(self.config.tunnel_timeout_ms)
                    )
                } else if dialing.tunnel.is_some() {
                    format!(
                        "not through within {} s",
                        seconds(self.config.tunnel_timeout_ms)
                    )
                } else {
                    format!(
                        "no answer within {} s",
                        seconds(self.config.connect_timeout_ms)
                    )
                };
                self.dial_failed(dialing.index, timeout, out)?;
            }
        }
        if self.quit_deadline_ms.is_some() {
            self.drop_relay_wait();
            self.relay_retry_at_ms = None;
        } else if self.relay_retry_at_ms.is_some_and(|t| t <= now) {
            self.relay_join(out);
        } else if self
            .relay_wait
            .as_ref()
            .is_some_and(|w| now >= w.opened_ms + RELAY_RENEW_MS)
        {
            // Renewed: a silently dropped place would never see a caller.
            self.drop_relay_wait();
            self.relay_join(out);
        }
        if self.reconnect_at_ms.is_some_and(|t| t <= now) {
            self.reconnect_at_ms = None;
            if self.conns.is_empty() && self.dialing.is_none() {
                self.dial(0, out)?;
            }
        }
        let (expired, kept): (Vec<Lingering>, Vec<Lingering>) = std::mem::take(&mut self.lingering)
            .into_iter()
            .partition(|l| l.deadline_ms <= now);
        self.lingering = kept;
        for l in expired {
            l.conn.shutdown(self.poll.registry());
        }
        if self.quit_deadline_ms.is_some() {
            self.progress_quit(now, out)?;
        }
        Ok(())
    }

    /// On quit: each chat is closed with a normal close once it is settled — the handshake
    /// done, every line written and acked, the re-sync from the peer complete (or the grace
    /// period is over); handshakes in progress are closed at once. The loop ends when every
    /// close is written.
    fn progress_quit(&mut self, now: u64, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Some(deadline) = self.quit_deadline_ms else {
            return Ok(());
        };
        let expired = now >= deadline;
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(live) = self.conns.get_mut(&token) else {
                continue;
            };
            let session = live.conn.link().session();
            if session.is_closed() {
                continue;
            }
            // A caller that is still shaking hands waits (within the grace period), so that
            // `socketfalco -c HOST < /dev/null` syncs and exits; a listener's unauthenticated
            // connections are closed at once.
            let unauthenticated =
                matches!(self.role, Role::Listen { .. }) && live.admitted.is_none();
            let handshaking = !session.is_established() && !unauthenticated;
            let settled = session.is_established()
                && !live.conn.link().has_store_work()
                && !session.is_recovering()
                && !session.peer_is_recovering()
                && self.pending.is_empty()
                && session.in_flight() == 0
                && session.persisted_up_to() >= session.peer_last_seq();
            if settled || expired || !handshaking && !session.is_established() {
                live.conn
                    .link_mut()
                    .close(Close::new(CloseCode::Normal, "the user left"), now);
                // The close becomes the link's notice now (its leaving is reported, a chat
                // that never opened forgotten): the connection may be dropped before any
                // other turn would have done it.
                live.conn.link_mut().pump(now);
                live.conn
                    .after_command(self.poll.registry(), &self.storage, now);
                let progress = if live.conn.link().is_finished() {
                    Progress::Finished
                } else {
                    Progress::Open
                };
                self.after_connection_step(token, progress, out)?;
            }
        }
        if self.conns.is_empty() && self.dialing.is_some() && expired {
            self.dialing = None;
        }
        if expired {
            self.reconnect_at_ms = None;
        }
        Ok(())
    }

    fn finished_quitting(&mut self) -> bool {
        let Some(deadline) = self.quit_deadline_ms else {
            return false;
        };
        let now = self.clock.now_ms();
        let done: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, live)| {
                let link = live.conn.link();
                let flushed = !link.wants_write() || now >= deadline + 1_000;
                // A connection stays until its storage requests are completed: what it
                // received is stored and shown, its lines reported.
                link.session().is_closed() && flushed && !link.has_store_work()
            })
            .map(|(token, _)| *token)
            .collect();
        for token in done {
            if let Some(live) = self.conns.remove(&token) {
                self.linger(live.conn);
            }
        }
        self.count_live_chats();
        if !self.conns.is_empty() || !self.offline.is_empty() {
            return false;
        }
        // Lines that wait for a first peer wait out the grace period for one (a caller
        // dialing or trying again, a listener a peer may still reach); then `run` reports
        // them as not sent.
        if !self.pending.is_empty() && now < deadline && self.refused_for_good.is_none() {
            return false;
        }
        // Wait (briefly: lingering has its own deadline) until the peers have read our close.
        (self.dialing.is_none() || now >= deadline) && self.lingering.is_empty()
    }
}

fn io_error(e: io::Error) -> EndpointError {
    EndpointError::Io(e.to_string())
}

/// Where a non-blocking connect stands.
enum ConnectOutcome {
    Pending,
    Connected,
    Failed(io::Error),
}

fn connect_outcome(stream: &TcpStream) -> ConnectOutcome {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => ConnectOutcome::Failed(e),
        Ok(None) => match stream.peer_addr() {
            Ok(_) => ConnectOutcome::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectOutcome::Pending,
            Err(e) => ConnectOutcome::Failed(e),
        },
    }
}

/// A failed TCP connection to a route's first hop, naming the proxy or relay when there is
/// one (the target was never reached).
fn first_hop_error(route: &Route, e: &io::Error) -> String {
    match route {
        Route::Direct(_) => e.to_string(),
        Route::Proxy(proxy) => format!("the proxy {} is not reachable: {e}", proxy.proxy_label),
        Route::Relay(relay) => match &relay.via {
            Some(via) => format!("the proxy {} is not reachable: {e}", via.proxy_label),
            None => format!("the relay {} is not reachable: {e}", relay.label),
        },
    }
}

/// Outputs gathered while the endpoint is borrowed, handed to the callback between steps.
#[derive(Default)]
struct OutputQueue(Vec<Output>);

impl OutputQueue {
    fn push(&mut self, output: Output) {
        self.0.push(output);
    }

    fn flush<S>(&mut self, storage: &Storage<S>, on_output: &mut impl FnMut(&Storage<S>, Output)) {
        for output in self.0.drain(..) {
            on_output(storage, output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_before_any_peer_is_not_called_its_refusal() {
        let ended = |code, by| {
            EndpointError::Refused {
                close: Close::new(code, "detail"),
                by,
            }
            .to_string()
        };
        let busy = ended(CloseCode::Busy, Side::Peer);
        assert!(busy.starts_with("the peer refused the chat: "), "{busy}");
        // The key refused here, not there: not the peer's refusal.
        let key = ended(CloseCode::Refused, Side::Local);
        assert!(key.starts_with("refused the peer: its key"), "{key}");
        let replaced = ended(CloseCode::Replaced, Side::Peer);
        assert!(replaced.contains("that connection took over"), "{replaced}");
        for (code, by) in [
            (CloseCode::IntegrityFailure, Side::Local),
            (CloseCode::ConnectionLost, Side::Peer),
            (CloseCode::Timeout, Side::Local),
        ] {
            let failed = ended(code, by);
            assert!(failed.starts_with("no chat could be set up"), "{failed}");
            assert!(failed.contains("is it a SocketFalco listener?"), "{failed}");
        }
    }
}
