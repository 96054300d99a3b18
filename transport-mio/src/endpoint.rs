//! The event loop: one chat at a time over TCP, as listener or as caller.
//!
//! An [`Endpoint`] owns the mio poll, the store and at most one live [`Connection`]. As a
//! listener it accepts a caller, holds the chat, and goes back to accepting when the caller
//! leaves; a second caller meanwhile gets, after the encrypted handshake, a lone "busy" close
//! frame (no hello). As a caller it connects,
//! and after a drop keeps the chat open — lines typed meanwhile are stored as waiting — and
//! reconnects with exponential backoff; the re-sync then delivers both ways.
//!
//! The user interface runs on another thread: it sends [`Command`]s through a [`Control`],
//! which wakes the loop, and gets [`Output`]s through the callback given to
//! [`Endpoint::run`].

use crate::clock::Clock;
use crate::connection::{Connection, Progress};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socketfalco_core::{
    Close, CloseCode, ComposeError, DeviceId, Link, Message, Notice, PeerHello, PublicKey,
    Role as NoiseRole, SessionConfig, Side, StaticKeypair, Store,
};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONNECTION: Token = Token(2);
const FIRST_REFUSED: usize = 3;

/// Whether this endpoint waits for a caller or calls.
#[derive(Clone, Debug)]
pub enum Role {
    /// Listen on this address (port 0: any free port).
    Listen {
        /// The address to bind.
        bind: SocketAddr,
    },
    /// Connect to the first of these addresses that answers.
    Connect {
        /// Resolved addresses, tried in order.
        addrs: Vec<SocketAddr>,
        /// The address as the user wrote it, for messages.
        label: String,
    },
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
}

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
        }
    }
}

/// What the user interface asks of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The user wrote a line.
    Write(String),
    /// The user wants to leave (quit, end of input, Ctrl-C, SIGTERM).
    Quit,
}

/// What the endpoint tells the user interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The listener is bound.
    Listening(SocketAddr),
    /// A connection attempt starts.
    Connecting(SocketAddr),
    /// A peer is accepted and synchronized.
    Connected {
        /// Who.
        peer: PeerHello,
        /// Where from.
        addr: SocketAddr,
        /// How many of the peer's messages arrive in this re-sync.
        incoming: u64,
        /// How many of ours go out in this re-sync.
        outgoing: u64,
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
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: Close,
        /// Who ended it.
        by: Side,
    },
    /// The next connection attempt is in `in_ms`.
    Reconnecting {
        /// Delay.
        in_ms: u64,
    },
    /// A second caller was told the listener is busy.
    RefusedBusy(SocketAddr),
    /// A line could not be written.
    Rejected {
        /// The line.
        text: String,
        /// Why.
        reason: String,
    },
    /// A line waits for the first peer: it is not stored yet.
    Pending(String),
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
    /// Something went wrong but the endpoint goes on.
    Warning(String),
}

/// Why [`Endpoint::run`] stopped other than by the user's wish.
#[derive(Debug)]
pub enum EndpointError {
    /// Binding, polling or the first connection failed.
    Io(String),
    /// The peer refused us for good (busy, version, our own identity, …).
    Refused(Close),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::Io(e) => write!(f, "{e}"),
            EndpointError::Refused(close) => write!(f, "the peer refused the chat: {close}"),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Sends commands to a running [`Endpoint`] from any thread.
#[derive(Clone, Debug)]
pub struct Control {
    tx: Sender<Command>,
    waker: Arc<Waker>,
}

impl Control {
    /// Queues `command` and wakes the endpoint. Returns false once the endpoint is gone.
    pub fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok() && self.waker.wake().is_ok()
    }
}

struct Dialing {
    stream: TcpStream,
    addr: SocketAddr,
    deadline_ms: u64,
    /// Index of `addr` in the role's address list.
    index: usize,
}

/// A connection on its way out: a second caller being told that we are busy, or a finished
/// connection draining after its half-close.
struct Refused {
    conn: Connection,
    deadline_ms: u64,
    /// The close is written; now we only drain until the caller hangs up.
    half_closed: bool,
}

/// The event loop. See the [module docs](self).
pub struct Endpoint<S: Store> {
    poll: Poll,
    store: S,
    clock: Clock,
    config: EndpointConfig,
    role: Role,
    commands: Receiver<Command>,
    listener: Option<TcpListener>,
    conn: Option<Connection>,
    dialing: Option<Dialing>,
    refused: Vec<Refused>,
    next_refused_token: usize,
    /// The chat that lines go to while no peer is connected.
    chat: Option<PeerHello>,
    /// Lines typed before any peer was known.
    pending: VecDeque<String>,
    ever_established: bool,
    reconnect_at_ms: Option<u64>,
    reconnect_delay_ms: u64,
    quit_deadline_ms: Option<u64>,
    next_store_poll_ms: u64,
}

impl<S: Store> Endpoint<S> {
    /// Prepares an endpoint (nothing is bound or dialled until [`run`](Self::run)). The
    /// [`Control`] sends it commands from other threads.
    pub fn new(role: Role, config: EndpointConfig, store: S) -> io::Result<(Endpoint<S>, Control)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, commands) = mpsc::channel();
        let endpoint = Endpoint {
            poll,
            store,
            clock: Clock::new(),
            reconnect_delay_ms: config.reconnect_min_ms,
            config,
            role,
            commands,
            listener: None,
            conn: None,
            dialing: None,
            refused: Vec::new(),
            next_refused_token: FIRST_REFUSED,
            chat: None,
            pending: VecDeque::new(),
            ever_established: false,
            reconnect_at_ms: None,
            quit_deadline_ms: None,
            next_store_poll_ms: 0,
        };
        Ok((endpoint, Control { tx, waker }))
    }

    /// The store, for the output callback's bookkeeping.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Runs until the user quits (`Ok`) or the endpoint cannot go on (`Err`). Every output
    /// goes to `on_output` with the store, so the caller can record extra facts (such as the
    /// peer's address) in it.
    pub fn run(&mut self, mut on_output: impl FnMut(&mut S, Output)) -> Result<(), EndpointError> {
        let mut out = OutputQueue::default();
        let result = self.run_inner(&mut out, &mut on_output);
        out.flush(&mut self.store, &mut on_output);
        result
    }

    fn run_inner(
        &mut self,
        out: &mut OutputQueue,
        on_output: &mut impl FnMut(&mut S, Output),
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
            }
            Role::Connect { .. } => self.dial(0, out)?,
        }
        let mut events = Events::with_capacity(64);
        loop {
            out.flush(&mut self.store, on_output);
            if self.finished_quitting() {
                return Ok(());
            }
            let timeout = self.next_deadline().map(|deadline| {
                Duration::from_millis(deadline.saturating_sub(self.clock.now_ms()) + 1)
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_error(e));
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(out),
                    WAKER => self.take_commands(out),
                    CONNECTION if self.dialing.is_some() => self.dial_progress(out)?,
                    CONNECTION => self.connection_ready(out)?,
                    token => self.refused_ready(token),
                }
            }
            // Commands may arrive without a wake (the channel is checked every turn).
            self.take_commands(out);
            self.timers(out)?;
        }
    }

    // ----- listening -----

    fn accept(&mut self, out: &mut OutputQueue) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if self.conn.is_some() || self.quit_deadline_ms.is_some() {
                        self.refuse_busy(stream, addr, out);
                    } else {
                        self.open_connection(stream, addr, NoiseRole::Responder, out);
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

    /// Tells a second caller we are busy. It gets a link of its own (encrypted like any
    /// other, so that the caller can read it) whose session is closed with `Busy` from the
    /// start ([`Link::refuse`]): after the handshake a lone close frame, no hello, then a
    /// half-close; then we drain what the caller sends for a moment so that the close is
    /// read rather than reset. Nothing of it touches the store.
    fn refuse_busy(&mut self, stream: TcpStream, addr: SocketAddr, out: &mut OutputQueue) {
        let now = self.clock.now_ms();
        let Some(mut link) = self.new_link(NoiseRole::Responder, now, out) else {
            return;
        };
        let close = Close::new(
            CloseCode::Busy,
            "the listener is in a chat with another peer",
        );
        link.refuse(close, now);
        let token = Token(self.next_refused_token);
        self.next_refused_token += 1;
        match Connection::new(self.poll.registry(), stream, token, addr, link) {
            Ok(mut conn) => {
                conn.after_command(self.poll.registry(), now);
                self.refused.push(Refused {
                    conn,
                    deadline_ms: now + 5_000,
                    half_closed: false,
                });
                out.push(Output::RefusedBusy(addr));
            }
            Err(e) => out.push(Output::Warning(format!("refusing {addr}: {e}"))),
        }
    }

    /// Ends a finished connection gracefully: half-close, then drain what the peer still
    /// sends until it hangs up (or two seconds pass), so that our last frames — a close with
    /// its reason — are read rather than lost to a reset.
    fn linger(&mut self, mut conn: Connection) {
        let token = Token(self.next_refused_token);
        self.next_refused_token += 1;
        conn.retoken(self.poll.registry(), token);
        conn.half_close();
        self.refused.push(Refused {
            conn,
            deadline_ms: self.clock.now_ms() + 2_000,
            half_closed: true,
        });
    }

    fn refused_ready(&mut self, token: Token) {
        let Some(i) = self.refused.iter().position(|r| r.conn.token() == token) else {
            return;
        };
        let now = self.clock.now_ms();
        let refused = &mut self.refused[i];
        if !refused.half_closed {
            // The link's session is closed: no event reaches the store.
            let progress = refused
                .conn
                .on_ready(self.poll.registry(), &mut self.store, now);
            if matches!(progress, Ok(Progress::Finished) | Err(_)) {
                refused.conn.half_close();
                refused.half_closed = true;
            }
        }
        if refused.half_closed && refused.conn.drain() {
            let done = self.refused.swap_remove(i);
            done.conn.shutdown(self.poll.registry());
        }
    }

    // ----- dialling -----

    fn dial(&mut self, index: usize, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Role::Connect { addrs, label } = &self.role else {
            return Ok(());
        };
        let Some(&addr) = addrs.get(index) else {
            return Err(EndpointError::Io(format!(
                "no address to connect to for {label}"
            )));
        };
        out.push(Output::Connecting(addr));
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                self.poll
                    .registry()
                    .register(
                        &mut stream,
                        CONNECTION,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(io_error)?;
                self.dialing = Some(Dialing {
                    stream,
                    addr,
                    deadline_ms: self.clock.now_ms() + self.config.connect_timeout_ms,
                    index,
                });
                Ok(())
            }
            Err(e) => self.dial_failed(index, addr, e.to_string(), out),
        }
    }

    fn dial_progress(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let Some(dialing) = self.dialing.as_mut() else {
            return Ok(());
        };
        let failure = match dialing.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e.to_string()),
            Ok(None) => match dialing.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => Some(e.to_string()),
            },
        };
        let Some(mut dialing) = self.dialing.take() else {
            return Ok(());
        };
        let _ = self.poll.registry().deregister(&mut dialing.stream);
        match failure {
            Some(e) => self.dial_failed(dialing.index, dialing.addr, e, out),
            None => {
                self.open_connection(dialing.stream, dialing.addr, NoiseRole::Initiator, out);
                Ok(())
            }
        }
    }

    fn dial_failed(
        &mut self,
        index: usize,
        addr: SocketAddr,
        error: String,
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        let Role::Connect { addrs, label } = &self.role else {
            return Ok(());
        };
        if index + 1 < addrs.len() {
            return self.dial(index + 1, out);
        }
        if !self.ever_established {
            return Err(EndpointError::Io(format!(
                "could not connect to {label} ({addr}): {error}"
            )));
        }
        if self.quit_deadline_ms.is_none() {
            self.schedule_reconnect(out);
        }
        Ok(())
    }

    fn schedule_reconnect(&mut self, out: &mut OutputQueue) {
        let delay = self.reconnect_delay_ms;
        self.reconnect_delay_ms = (delay * 2).min(self.config.reconnect_max_ms);
        self.reconnect_at_ms = Some(self.clock.now_ms() + delay);
        out.push(Output::Reconnecting { in_ms: delay });
    }

    // ----- the connection -----

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
        Some(Link::new_secure(config, now, role, keypair, seed))
    }

    fn open_connection(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        role: NoiseRole,
        out: &mut OutputQueue,
    ) {
        let now = self.clock.now_ms();
        let Some(link) = self.new_link(role, now, out) else {
            return;
        };
        match Connection::new(self.poll.registry(), stream, CONNECTION, addr, link) {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => out.push(Output::Warning(format!(
                "could not set up the connection: {e}"
            ))),
        }
    }

    fn connection_ready(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let now = self.clock.now_ms();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let result = conn.on_ready(self.poll.registry(), &mut self.store, now);
        self.after_connection_step(result.map_err(|e| e.to_string()), out)
    }

    /// Moves notices out, composes pending lines once a peer is known, and tears the
    /// connection down when it is finished.
    fn after_connection_step(
        &mut self,
        result: Result<Progress, String>,
        out: &mut OutputQueue,
    ) -> Result<(), EndpointError> {
        if let Err(e) = &result {
            out.push(Output::Warning(format!("storage failure: {e}")));
        }
        let mut refused_for_good = None;
        if let Some(conn) = self.conn.as_mut() {
            let addr = conn.peer_addr();
            while let Some(notice) = conn.link_mut().poll_notice() {
                match notice {
                    Notice::Connected {
                        peer,
                        incoming,
                        outgoing,
                    } => {
                        self.ever_established = true;
                        self.reconnect_delay_ms = self.config.reconnect_min_ms;
                        self.chat = Some(peer.clone());
                        out.push(Output::Connected {
                            peer,
                            addr,
                            incoming,
                            outgoing,
                        });
                    }
                    Notice::Received { message, stored } => {
                        if let Some(peer) = conn.link().peer() {
                            out.push(Output::Received {
                                peer: peer.device,
                                message,
                                stored,
                            });
                        }
                    }
                    Notice::Delivered { up_to } => {
                        if let Some(peer) = conn.link().peer() {
                            out.push(Output::Delivered {
                                peer: peer.device,
                                up_to,
                            });
                        }
                    }
                    Notice::KeyMismatch {
                        peer,
                        presented,
                        pinned,
                    } => out.push(Output::KeyMismatch {
                        peer,
                        presented,
                        pinned,
                        addr,
                    }),
                    Notice::Closed { reason, by } => {
                        // A caller whose very first connection ends before the chat is
                        // established (busy, wrong version, our own identity, a key
                        // mismatch, not a SocketFalco peer, …) stops with that reason
                        // rather than retrying forever; later drops are retried.
                        let left_on_purpose = by == Side::Local && reason.code == CloseCode::Normal;
                        if !self.ever_established && !left_on_purpose {
                            refused_for_good = Some(reason.clone());
                        }
                        out.push(Output::Disconnected { reason, by });
                    }
                }
            }
        }
        self.compose_pending(out);
        let finished = matches!(result, Ok(Progress::Finished))
            || self
                .conn
                .as_ref()
                .is_some_and(|c| c.link().session().is_closed() && result.is_err());
        if finished {
            if let Some(conn) = self.conn.take() {
                self.linger(conn);
            }
            if let Some(reason) = refused_for_good {
                if matches!(self.role, Role::Connect { .. }) {
                    return Err(EndpointError::Refused(reason));
                }
            }
            if matches!(self.role, Role::Connect { .. }) && self.quit_deadline_ms.is_none() {
                self.schedule_reconnect(out);
            }
        }
        Ok(())
    }

    fn compose_pending(&mut self, out: &mut OutputQueue) {
        let ready = self
            .conn
            .as_ref()
            .is_some_and(|c| c.link().session().is_established());
        if !ready {
            return;
        }
        while let Some(text) = self.pending.pop_front() {
            self.write_line(text, out);
        }
    }

    // ----- the user's commands -----

    fn take_commands(&mut self, out: &mut OutputQueue) {
        // Lines typed (or pasted) since the last turn are written in one store transaction:
        // one durable commit per burst instead of one per line.
        let mut burst = Vec::new();
        self.take_commands_into(&mut burst);
        self.write_lines(burst, out);
    }

    fn write_lines(&mut self, lines: Vec<String>, out: &mut OutputQueue) {
        let established = self
            .conn
            .as_ref()
            .is_some_and(|c| c.link().session().is_established());
        if lines.len() < 2 || !established {
            for text in lines {
                self.write_line(text, out);
            }
            return;
        }
        let now = self.clock.now_ms();
        let wall = self.clock.wall_ms();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let peer = conn.link().peer().map(|p| p.device);
        match conn
            .link_mut()
            .compose_batch(&mut self.store, &lines, wall, now)
        {
            Ok(messages) => {
                if let Some(peer) = peer {
                    for message in messages {
                        // Written while our history is still coming back: it waits for its
                        // number, like a line written offline.
                        let live = message.seq != 0;
                        out.push(Output::Sent {
                            peer,
                            message,
                            live,
                        });
                    }
                }
                conn.after_command(self.poll.registry(), now);
            }
            // One bad line (or a store failure) refuses the batch: retry line by line so
            // that each line gets its own verdict, as before.
            Err(_) => {
                for text in lines {
                    self.write_line(text, out);
                }
            }
        }
    }

    fn take_commands_into(&mut self, burst: &mut Vec<String>) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Write(text)) => burst.push(text),
                Ok(Command::Quit) | Err(TryRecvError::Disconnected) => {
                    if self.quit_deadline_ms.is_none() {
                        self.quit_deadline_ms =
                            Some(self.clock.now_ms() + self.config.quit_grace_ms);
                        self.reconnect_at_ms = None;
                    }
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn write_line(&mut self, text: String, out: &mut OutputQueue) {
        let now = self.clock.now_ms();
        let wall = self.clock.wall_ms();
        let established = self
            .conn
            .as_ref()
            .is_some_and(|c| c.link().session().is_established());
        if established {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let peer = conn.link().peer().map(|p| p.device);
            match conn.link_mut().compose(&mut self.store, &text, wall, now) {
                Ok(message) => {
                    if let Some(peer) = peer {
                        let live = message.seq != 0;
                        out.push(Output::Sent {
                            peer,
                            message,
                            live,
                        });
                    }
                }
                Err(e) => out.push(Output::Rejected {
                    text,
                    reason: e.to_string(),
                }),
            }
            conn.after_command(self.poll.registry(), now);
            return;
        }
        match self.chat.clone() {
            Some(peer) if peer.temporary => out.push(Output::Rejected {
                text,
                reason: "the temporary session has ended; nothing of it is stored".into(),
            }),
            Some(peer) => {
                let result = socketfalco_core::check_text(&text)
                    .map_err(ComposeError::Text)
                    .and_then(|()| {
                        self.store
                            .compose(peer.device, &text, wall)
                            .map_err(ComposeError::Store)
                    });
                match result {
                    Ok(message) => out.push(Output::Sent {
                        peer: peer.device,
                        message,
                        live: false,
                    }),
                    Err(e) => out.push(Output::Rejected {
                        text,
                        reason: e.to_string(),
                    }),
                }
            }
            None => match socketfalco_core::check_text(&text) {
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
        let conn = self.conn.as_ref();
        let store_poll = conn
            .filter(|c| c.link().session().is_established())
            .map(|_| self.next_store_poll_ms);
        [
            conn.and_then(|c| c.link().poll_timeout()),
            self.dialing.as_ref().map(|d| d.deadline_ms),
            self.reconnect_at_ms,
            self.quit_deadline_ms,
            self.refused.iter().map(|r| r.deadline_ms).min(),
            store_poll,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn timers(&mut self, out: &mut OutputQueue) -> Result<(), EndpointError> {
        let now = self.clock.now_ms();
        if let Some(conn) = self.conn.as_mut() {
            let due = conn.link().poll_timeout().is_some_and(|t| t <= now);
            let poll_store =
                conn.link().session().is_established() && now >= self.next_store_poll_ms;
            if due || poll_store {
                if poll_store {
                    self.next_store_poll_ms = now + self.config.store_poll_ms;
                }
                let result = conn.on_timeout(self.poll.registry(), &mut self.store, now);
                self.after_connection_step(result.map_err(|e| e.to_string()), out)?;
            }
        }
        if self.dialing.as_ref().is_some_and(|d| d.deadline_ms <= now) {
            if let Some(mut dialing) = self.dialing.take() {
                let _ = self.poll.registry().deregister(&mut dialing.stream);
                let timeout = format!("no answer within {} ms", self.config.connect_timeout_ms);
                self.dial_failed(dialing.index, dialing.addr, timeout, out)?;
            }
        }
        if self.reconnect_at_ms.is_some_and(|t| t <= now) {
            self.reconnect_at_ms = None;
            if self.conn.is_none() && self.dialing.is_none() {
                self.dial(0, out)?;
            }
        }
        let (expired, kept): (Vec<Refused>, Vec<Refused>) = std::mem::take(&mut self.refused)
            .into_iter()
            .partition(|r| r.deadline_ms <= now);
        self.refused = kept;
        for r in expired {
            r.conn.shutdown(self.poll.registry());
        }
        if self.quit_deadline_ms.is_some() {
            self.progress_quit(now, out);
        }
        Ok(())
    }

    /// On quit: once nothing is pending or in flight (or the grace period is over), close
    /// the session with a normal close and let the loop end when it is written.
    fn progress_quit(&mut self, now: u64, out: &mut OutputQueue) {
        let Some(deadline) = self.quit_deadline_ms else {
            return;
        };
        let expired = now >= deadline;
        match self.conn.as_mut() {
            Some(conn) if !conn.link().session().is_closed() => {
                // Settled: the handshake is done, every line is written and acked, and the
                // re-sync from the peer is complete. Until then (within the grace period)
                // leaving waits, so that `socketfalco -c HOST < /dev/null` syncs and exits.
                let session = conn.link().session();
                let settled = session.is_established()
                    && !session.is_recovering()
                    && self.pending.is_empty()
                    && session.in_flight() == 0
                    && session.persisted_up_to() >= session.peer_last_seq();
                if settled || expired {
                    conn.link_mut()
                        .session_mut()
                        .close(Close::new(CloseCode::Normal, "the user left"), now);
                    conn.after_command(self.poll.registry(), now);
                }
            }
            _ => {
                if self.dialing.is_some() && !expired {
                    return;
                }
                self.dialing = None;
            }
        }
        if expired && !self.pending.is_empty() {
            let n = self.pending.len();
            self.pending.clear();
            out.push(Output::Warning(format!(
                "{n} line(s) were not sent: no peer connected in time"
            )));
        }
    }

    fn finished_quitting(&mut self) -> bool {
        let Some(deadline) = self.quit_deadline_ms else {
            return false;
        };
        let now = self.clock.now_ms();
        if let Some(conn) = self.conn.as_ref() {
            let link = conn.link();
            let flushed = !link.wants_write() || now >= deadline + 1_000;
            if !(link.session().is_closed() && flushed) {
                return false;
            }
            if let Some(conn) = self.conn.take() {
                self.linger(conn);
            }
        }
        // Wait (briefly: lingering has its own deadline) until the peer has read our close.
        (self.dialing.is_none() || now >= deadline) && self.refused.is_empty()
    }
}

fn io_error(e: io::Error) -> EndpointError {
    EndpointError::Io(e.to_string())
}

/// Outputs gathered while the endpoint is borrowed, handed to the callback between steps.
#[derive(Default)]
struct OutputQueue(Vec<Output>);

impl OutputQueue {
    fn push(&mut self, output: Output) {
        self.0.push(output);
    }

    fn flush<S>(&mut self, store: &mut S, on_output: &mut impl FnMut(&mut S, Output)) {
        for output in self.0.drain(..) {
            on_output(store, output);
        }
    }
}
