//! The session's states, its reaction to each frame, its timers and its counters.
//!
//! States run `AwaitingHello → AwaitingAccept → AwaitingSync → Established → Closed`; any
//! state can go straight to `Closed`. See `docs/PROTOCOL.md` for the table of which frame is
//! valid in which state.

use crate::codec::{encode_frame, encode_message_frame, FrameDecoder};
use crate::frame::{Close, CloseCode, Frame, FrameError, Hello, SyncPoint};
use crate::ids::DeviceId;
use crate::limits::{
    DEFAULT_WINDOW_BYTES, MAX_COUNTER, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_MESSAGES,
    MAX_RECOVER_BATCH, MAX_TEXT_BYTES, MAX_UNACKED_BYTES, PROTOCOL_VERSION,
};
use crate::message::{check_text, Message, TextError};
use crate::send_buffer::SendBuffer;
use crate::store::ChatResume;
use std::collections::VecDeque;
use std::fmt;

/// How a session behaves; times are in milliseconds of the driver's monotonic clock.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This device's id.
    pub device: DeviceId,
    /// This device's display name.
    pub name: String,
    /// This side asks for a temporary session.
    pub temporary: bool,
    /// Most messages in flight (sent, not acked) at once; clamped to
    /// [`MAX_IN_FLIGHT_MESSAGES`].
    pub window: u64,
    /// Most text bytes in flight at once, so that long messages flow as well as short ones
    /// without a sender queueing more than this unacked; clamped to
    /// [`MAX_TEXT_BYTES`]..=[`MAX_IN_FLIGHT_BYTES`]. One message always fits when nothing
    /// is in flight.
    pub window_bytes: usize,
    /// Send a ping when nothing has been sent for this long.
    pub keepalive_interval_ms: u64,
    /// Close when nothing has arrived for this long.
    pub idle_timeout_ms: u64,
    /// Close when the handshake has not finished this long after the start.
    pub handshake_timeout_ms: u64,
}

impl SessionConfig {
    /// The defaults: a window of 4,096 messages and 2 MiB of text (enough that a sender
    /// never idles while the receiver commits: docs/PERFORMANCE.md), a ping every 5 s of
    /// silence, a dead peer after 20 s of silence, 10 s to finish the handshake.
    pub fn new(device: DeviceId, name: impl Into<String>) -> SessionConfig {
        SessionConfig {
            device,
            name: name.into(),
            temporary: false,
            window: MAX_IN_FLIGHT_MESSAGES,
            window_bytes: DEFAULT_WINDOW_BYTES,
            keepalive_interval_ms: 5_000,
            idle_timeout_ms: 20_000,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Which side of the connection did something.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// This device.
    Local,
    /// The other device.
    Peer,
}

/// The peer, as its hello presented it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerHello {
    /// The peer's device id: the key of the chat.
    pub device: DeviceId,
    /// The peer's display name.
    pub name: String,
    /// The peer asked for a temporary session.
    pub peer_temporary: bool,
    /// The session is temporary: either side asked for it. Nothing of it may be stored.
    pub temporary: bool,
}

/// Something the driver must act on or may show, from [`Session::poll_event`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// The peer said who it is. The driver must answer with [`Session::accept_peer`] (with
    /// how far this device has got in the chat) or refuse with [`Session::close`].
    PeerHello(PeerHello),
    /// Both sides are synchronized; messages flow from here on.
    Established {
        /// The peer holds our messages up to this sequence number (they are delivered).
        peer_received_up_to: u64,
        /// How many of the peer's messages are on their way to us in this re-sync.
        incoming: u64,
    },
    /// A message from the peer. Store it durably, then call
    /// [`Session::confirm_persisted`]: it is not acked before that.
    MessageToPersist(Message),
    /// A message from the peer in a temporary session: show it, never store it. It is
    /// acked at once.
    TemporaryMessage(Message),
    /// One of our own messages, sent back by the peer because our store lost it (it was
    /// restored from an older copy). Store it durably as our own; then the session is told
    /// so (only a [`Link`](crate::Link) drives a recovery: that call is not public).
    OwnRecovered(Message),
    /// The peer's store lost some of its own messages, which we hold: the peer's messages
    /// `from..=to` are read from the store and handed back to the session (only a
    /// [`Link`](crate::Link) does: that call is not public).
    ReturnRequested {
        /// First sequence number.
        from: u64,
        /// Last sequence number.
        to: u64,
    },
    /// The peer holds our messages up to this sequence number.
    Delivered {
        /// Cumulative: every message of ours up to here is delivered.
        up_to: u64,
    },
    /// The connection is over.
    Closed {
        /// Why.
        reason: Close,
        /// Who ended it.
        by: Side,
    },
}

/// A command the session cannot carry out in its current state: a bug in the driver, never
/// caused by the peer.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// `accept_peer` without a pending [`Event::PeerHello`].
    NotAwaitingAccept,
    /// `send` before [`Event::Established`] or after close.
    NotEstablished,
    /// `send` with no window left; wait for acks.
    WindowFull,
    /// `send` out of sequence.
    OutOfOrder {
        /// The sequence number the session expected.
        expected: u64,
        /// The one it got.
        got: u64,
    },
    /// `send` with a sequence number or Lamport counter outside 1..=2^53.
    CounterOutOfRange,
    /// `send` with a text outside the limits.
    Text(TextError),
    /// `send_returned` with messages other than exactly the ones the peer asked for.
    NotRequested,
    /// A storage completion that is not the next one the link awaits.
    UnexpectedCompletion,
    /// `confirm_persisted` outside what was received and not yet confirmed.
    PersistOutOfRange {
        /// The value passed.
        up_to: u64,
        /// Already confirmed up to here.
        persisted: u64,
        /// Received up to here.
        received: u64,
    },
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::NotAwaitingAccept => write!(f, "no peer is waiting to be accepted"),
            ApiMisuse::NotEstablished => write!(f, "the session is not established"),
            ApiMisuse::WindowFull => write!(f, "the send window is full"),
            ApiMisuse::UnexpectedCompletion => {
                write!(f, "a storage completion out of the order of the requests")
            }
            ApiMisuse::OutOfOrder { expected, got } => {
                write!(f, "message {got} sent out of order; expected {expected}")
            }
            ApiMisuse::CounterOutOfRange => {
                write!(f, "a message counter is outside 1..={MAX_COUNTER}")
            }
            ApiMisuse::Text(e) => write!(f, "{e}"),
            ApiMisuse::NotRequested => {
                write!(f, "returned messages are not the ones the peer asked for")
            }
            ApiMisuse::PersistOutOfRange {
                up_to,
                persisted,
                received,
            } => write!(
                f,
                "confirmed persistence up to {up_to}, outside {persisted}..={received}"
            ),
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// Getting our own messages back from the peer, one [`Frame::Recover`] batch at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Recovery {
    /// The peer holds our messages up to here: recovery ends when we do too.
    target: u64,
    /// The last sequence number of the batch asked for.
    batch_to: u64,
    /// The next returned sequence number expected.
    next: u64,
    /// Stored durably up to here.
    confirmed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    AwaitingHello,
    AwaitingAccept,
    AwaitingSync,
    Established,
    Closed,
}

/// One connection's protocol state, as a pure state machine: bytes and time in, events and
/// bytes out. The product drives it through a [`Link`](crate::Link), which adds the secure
/// channel and the store; the fuzz scripts and the benches drive a bare one.
///
/// # Call order for a driver
/// 1. Create it with [`Session::new`]; it has already queued its hello.
/// 2. Feed what arrives: [`handle_input`](Session::handle_input) with bytes,
///    [`handle_eof`](Session::handle_eof) when the peer closes the stream,
///    [`handle_timeout`](Session::handle_timeout) when [`poll_timeout`](Session::poll_timeout)
///    is reached.
/// 3. Drain [`poll_event`](Session::poll_event) and act on each [`Event`]: accept the peer,
///    persist received messages and then [`confirm_persisted`](Session::confirm_persisted),
///    record deliveries.
/// 4. Give it outgoing messages with [`send`](Session::send) while
///    [`send_capacity`](Session::send_capacity) is above zero, in sequence from
///    [`next_send_seq`](Session::next_send_seq).
/// 5. Write [`poll_transmit`](Session::poll_transmit) to the socket and report how much went
///    out with [`advance_transmit`](Session::advance_transmit).
/// 6. Once [`is_closed`](Session::is_closed) and nothing is left to transmit, close the
///    socket.
///
/// A [`Link`](crate::Link) does steps 3 and 4 against a [`Store`](crate::Store).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    decoder: FrameDecoder,
    out: SendBuffer,
    events: VecDeque<Event>,
    peer: Option<PeerHello>,
    temporary: bool,
    /// A sync that arrived while the driver had not yet accepted the peer.
    early_sync: Option<SyncPoint>,

    // Sending side.
    next_send_seq: u64,
    /// Text bytes of each message in flight, by sequence number, and their sum.
    in_flight_sizes: VecDeque<(u64, usize)>,
    in_flight_bytes: usize,
    peer_acked: u64,
    /// Our own last sequence number as the store said at accept time.
    own_last_seq: u64,
    /// Our store lost own messages the peer holds: getting them back.
    recovery: Option<Recovery>,
    /// The peer asked for its own messages back: the range not yet answered.
    return_requested: Option<(u64, u64)>,
    /// Text bytes of the peer's messages received and not yet acked, by sequence number:
    /// the receiver's bound on what a peer may send without waiting for acks.
    unacked_sizes: VecDeque<(u64, usize)>,
    unacked_bytes: usize,
    /// The peer lost our copies of its messages up to here (its store went back) and asks
    /// for them back (0: it lost none).
    peer_recovers_to: u64,
    /// The highest of the peer's messages sent back to it in this session.
    returned_up_to: u64,

    // Receiving side.
    /// The peer's last sequence number as its sync announced it.
    peer_last_seq: u64,
    received_up_to: u64,
    persisted_up_to: u64,
    ack_written: u64,
    duplicates_dropped: u64,

    // Timers.
    started_ms: u64,
    last_rx_ms: u64,
    last_tx_ms: u64,
    /// The driver stopped reading the peer ([`Session::pause_reading`]): its silence is
    /// ours, so it is no sign of a dead peer.
    reading_paused: bool,
    closed: Option<Close>,
    /// A close before the peer is accepted withdraws the hello ([`Session::withhold_hello`]).
    hello_withheld: bool,
}

impl Session {
    /// A new session at time `now_ms`, with its hello already queued for transmission.
    pub fn new(mut config: SessionConfig, now_ms: u64) -> Session {
        config.window = config.window.clamp(1, MAX_IN_FLIGHT_MESSAGES);
        config.window_bytes = config
            .window_bytes
            .clamp(MAX_TEXT_BYTES, MAX_IN_FLIGHT_BYTES);
        // A zero timer would be due forever and spin its driver.
        config.keepalive_interval_ms = config.keepalive_interval_ms.max(1);
        config.idle_timeout_ms = config.idle_timeout_ms.max(1);
        config.handshake_timeout_ms = config.handshake_timeout_ms.max(1);
        let hello = Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            device: config.device,
            name: config.name.clone(),
            temporary: config.temporary,
        });
        let mut session = Session {
            temporary: config.temporary,
            config,
            state: State::AwaitingHello,
            decoder: FrameDecoder::new(),
            out: SendBuffer::default(),
            events: VecDeque::new(),
            peer: None,
            early_sync: None,
            next_send_seq: 1,
            in_flight_sizes: VecDeque::new(),
            in_flight_bytes: 0,
            peer_acked: 0,
            own_last_seq: 0,
            recovery: None,
            return_requested: None,
            unacked_sizes: VecDeque::new(),
            unacked_bytes: 0,
            peer_recovers_to: 0,
            returned_up_to: 0,
            peer_last_seq: 0,
            received_up_to: 0,
            persisted_up_to: 0,
            ack_written: 0,
            duplicates_dropped: 0,
            started_ms: now_ms,
            last_rx_ms: now_ms,
            reading_paused: false,
            last_tx_ms: now_ms,
            closed: None,
            hello_withheld: false,
        };
        session.write_frame(&hello, now_ms);
        session
    }

    // ----- getters -----

    /// The peer, once its hello has arrived. Only with the `testing` feature: a driver asks
    /// its link ([`crate::Link::peer`]), which knows the peer once it is accepted.
    #[cfg(feature = "testing")]
    pub fn peer(&self) -> Option<&PeerHello> {
        self.peer.as_ref()
    }

    /// Whether the session is temporary (either side asked). Final once the peer's hello has
    /// arrived.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Whether messages flow (handshake and sync done, not closed).
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the session is over. Transmit what is left, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<&Close> {
        self.closed.as_ref()
    }

    /// How many more messages [`send`](Self::send) accepts now.
    pub fn send_capacity(&self) -> u64 {
        if self.state != State::Established || self.in_flight_bytes >= self.config.window_bytes {
            return 0;
        }
        self.config.window - self.in_flight()
    }

    /// Text bytes sent and not yet acked. Only with the `testing` feature (the tests of the
    /// byte window).
    #[cfg(feature = "testing")]
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// The sequence number the next [`send`](Self::send) must carry.
    pub fn next_send_seq(&self) -> u64 {
        self.next_send_seq
    }

    /// Messages sent and not yet acked.
    pub fn in_flight(&self) -> u64 {
        self.next_send_seq - 1 - self.peer_acked
    }

    /// Whether our own messages lost to a restore are still coming back from the peer. Until
    /// they are, the driver numbers no new message (a message written meanwhile waits): a
    /// recovered message may be one that waits here too, written before the restore.
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// Whether the peer's store went back and it still asks for its lost messages from us:
    /// they have not all been sent back yet. A side that leaves once settled waits for this
    /// too (the peer gets its history back in one connection, not a batch per connection).
    pub fn peer_is_recovering(&self) -> bool {
        self.returned_up_to < self.peer_recovers_to
    }

    /// The peer holds our messages up to here.
    pub fn peer_acked(&self) -> u64 {
        self.peer_acked
    }

    /// The peer's last own sequence number when the chat was synchronized: the re-sync is
    /// complete once [`received_up_to`](Self::received_up_to) reaches it.
    pub fn peer_last_seq(&self) -> u64 {
        self.peer_last_seq
    }

    /// We have received the peer's messages up to here (persisted or not).
    pub fn received_up_to(&self) -> u64 {
        self.received_up_to
    }

    /// The driver has confirmed the peer's messages durable up to here.
    pub fn persisted_up_to(&self) -> u64 {
        self.persisted_up_to
    }

    /// The highest cumulative ack this session has written for the peer.
    pub fn acked_up_to(&self) -> u64 {
        self.ack_written
    }

    /// Messages dropped because they had already been received. Only with the `testing`
    /// feature (the tests of the re-sync).
    #[cfg(feature = "testing")]
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates_dropped
    }

    /// Bytes buffered by the frame decoder (an incomplete frame).
    pub fn buffered_input(&self) -> usize {
        self.decoder.buffered()
    }

    /// Whether there are bytes to transmit.
    pub(crate) fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.ack_due()
    }

    /// Whether the session still reads from the peer.
    pub fn wants_read(&self) -> bool {
        self.state != State::Closed
    }

    // ----- input -----

    /// Feeds bytes received from the peer. A malformed frame or a protocol violation closes
    /// the session (a close frame is queued and [`Event::Closed`] emitted); nothing here
    /// panics or returns an error.
    pub fn handle_input(&mut self, mut bytes: &[u8], now_ms: u64) {
        if self.state == State::Closed || bytes.is_empty() {
            return;
        }
        self.last_rx_ms = now_ms;
        while self.state != State::Closed {
            match self.decoder.decode(&mut bytes) {
                Ok(Some(frame)) => self.handle_frame(frame, now_ms),
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        FrameError::UnsupportedVersion(_) => CloseCode::VersionMismatch,
                        _ => CloseCode::MalformedFrame,
                    };
                    self.close_by_local(Close::new(code, e.to_string()), now_ms);
                }
            }
        }
    }

    /// The stream ended: the peer's side closed it, or whatever stood between (a proxy, a
    /// relay) did — from here the two look the same, and the words say only what is known.
    pub fn handle_eof(&mut self, _now_ms: u64) {
        if self.state == State::Closed {
            return;
        }
        let detail = if self.decoder.buffered() > 0 {
            "the other end went away in the middle of a frame"
        } else {
            "the other end went away without closing the chat"
        };
        self.finish(Close::new(CloseCode::ConnectionLost, detail), Side::Peer);
    }

    /// Time has reached `now_ms`: send keepalives, detect a dead peer or a stalled handshake.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.state == State::Closed {
            return;
        }
        if self.state != State::Established
            && now_ms
                >= self
                    .started_ms
                    .saturating_add(self.config.handshake_timeout_ms)
        {
            let detail = format!(
                "the handshake did not finish within {} ms",
                self.config.handshake_timeout_ms
            );
            self.close_by_local(Close::new(CloseCode::Timeout, detail), now_ms);
        } else if !self.reading_paused
            && now_ms >= self.last_rx_ms.saturating_add(self.config.idle_timeout_ms)
        {
            let detail = format!(
                "nothing arrived from the peer for {} ms",
                self.config.idle_timeout_ms
            );
            self.close_by_local(Close::new(CloseCode::Timeout, detail), now_ms);
        } else if now_ms
            >= self
                .last_tx_ms
                .saturating_add(self.config.keepalive_interval_ms)
        {
            self.write_frame(&Frame::Ping, now_ms);
        }
    }

    // ----- reading paused -----

    /// The driver stops reading from the peer for a while (whoever shows what arrives is far
    /// behind, so nothing more is taken in until it catches up). The peer's silence from now
    /// on is the driver's doing: the dead-peer timeout does not run until
    /// [`resume_reading`](Self::resume_reading). Keepalives still go out, so the peer does
    /// not give up on us either; what it sends meanwhile waits in the network and in its
    /// window, unacked.
    pub fn pause_reading(&mut self) {
        self.reading_paused = true;
    }

    /// The driver reads again: the dead-peer timeout counts from `now_ms`.
    pub fn resume_reading(&mut self, now_ms: u64) {
        if self.reading_paused {
            self.reading_paused = false;
            self.last_rx_ms = self.last_rx_ms.max(now_ms);
        }
    }

    /// Whether the driver said it stopped reading ([`pause_reading`](Self::pause_reading)).
    pub fn is_reading_paused(&self) -> bool {
        self.reading_paused
    }

    // ----- commands -----

    /// Accepts the peer announced by [`Event::PeerHello`], resuming the chat from `resume`.
    /// In a temporary session `resume` is ignored: nothing was stored, nothing is resumed.
    pub fn accept_peer(&mut self, resume: ChatResume, now_ms: u64) -> Result<(), ApiMisuse> {
        if self.state != State::AwaitingAccept {
            return Err(ApiMisuse::NotAwaitingAccept);
        }
        let resume = if self.temporary {
            ChatResume::default()
        } else {
            resume
        };
        self.received_up_to = resume.received_up_to;
        self.own_last_seq = resume.last_own_seq;
        self.persisted_up_to = resume.received_up_to;
        self.ack_written = resume.received_up_to;
        self.state = State::AwaitingSync;
        self.write_frame(
            &Frame::Sync(SyncPoint {
                received_up_to: resume.received_up_to,
                // Messages waiting unnumbered are numbered right after our last one (unless
                // the peer holds more of ours than we do): announce where they will end, for
                // the peer's progress display.
                last_seq: resume
                    .last_own_seq
                    .saturating_add(resume.unnumbered)
                    .min(MAX_COUNTER - 1),
            }),
            now_ms,
        );
        if let Some(sync) = self.early_sync.take() {
            self.handle_sync(sync, now_ms);
        }
        Ok(())
    }

    /// Sends one of our messages. It must carry [`next_send_seq`](Self::next_send_seq), and
    /// [`send_capacity`](Self::send_capacity) must be above zero. In a non-temporary session
    /// the message must already be stored durably.
    pub fn send(&mut self, message: &Message, now_ms: u64) -> Result<(), ApiMisuse> {
        if self.state != State::Established {
            return Err(ApiMisuse::NotEstablished);
        }
        if message.seq != self.next_send_seq {
            return Err(ApiMisuse::OutOfOrder {
                expected: self.next_send_seq,
                got: message.seq,
            });
        }
        if self.send_capacity() == 0 {
            return Err(ApiMisuse::WindowFull);
        }
        if message.seq > MAX_COUNTER || message.lamport == 0 || message.lamport > MAX_COUNTER {
            return Err(ApiMisuse::CounterOutOfRange);
        }
        check_text(&message.text).map_err(ApiMisuse::Text)?;
        encode_message_frame(message, self.out.tail());
        self.last_tx_ms = now_ms;
        self.in_flight_sizes
            .push_back((message.seq, message.text.len()));
        self.in_flight_bytes += message.text.len();
        self.next_send_seq += 1;
        Ok(())
    }

    /// The driver has stored the peer's messages durably up to `up_to` (cumulative). The
    /// session may now ack them.
    pub fn confirm_persisted(&mut self, up_to: u64) -> Result<(), ApiMisuse> {
        if up_to < self.persisted_up_to || up_to > self.received_up_to {
            return Err(ApiMisuse::PersistOutOfRange {
                up_to,
                persisted: self.persisted_up_to,
                received: self.received_up_to,
            });
        }
        self.persisted_up_to = up_to;
        Ok(())
    }

    /// The driver has stored our own recovered messages ([`Event::OwnRecovered`]) durably up
    /// to `up_to`. At the end of a batch the next one is asked for; at the end of the last,
    /// recovery is over.
    pub(crate) fn confirm_recovered(&mut self, up_to: u64, now_ms: u64) -> Result<(), ApiMisuse> {
        let Some(recovery) = self.recovery.as_mut() else {
            return Err(ApiMisuse::NotRequested);
        };
        if up_to < recovery.confirmed || up_to >= recovery.next {
            return Err(ApiMisuse::PersistOutOfRange {
                up_to,
                persisted: recovery.confirmed,
                received: recovery.next - 1,
            });
        }
        recovery.confirmed = up_to;
        if up_to == recovery.batch_to {
            if up_to == recovery.target {
                self.recovery = None;
            } else {
                self.request_recovery(up_to + 1, now_ms);
            }
        }
        Ok(())
    }

    /// Answers the peer's [`Event::ReturnRequested`]: `messages` are the peer's own messages
    /// it asked for, read from the store, exactly `from..=to` in order.
    pub(crate) fn send_returned(
        &mut self,
        messages: &[Message],
        now_ms: u64,
    ) -> Result<(), ApiMisuse> {
        let Some((from, to)) = self.return_requested else {
            return Err(ApiMisuse::NotRequested);
        };
        let exact = messages.len() as u64 == to - from + 1
            && messages.iter().zip(from..).all(|(m, seq)| m.seq == seq);
        if !exact {
            return Err(ApiMisuse::NotRequested);
        }
        if self.state != State::Established {
            return Err(ApiMisuse::NotEstablished);
        }
        self.return_requested = None;
        self.returned_up_to = self.returned_up_to.max(to);
        for message in messages {
            self.write_frame(&Frame::Returned(message.clone()), now_ms);
        }
        Ok(())
    }

    /// Until [`Session::release_hello`], a close before the peer is accepted — ours, or the
    /// peer's (its close, the end of its stream) — withdraws the queued hello if none of it
    /// was transmitted: a driver that holds the session's output
    /// until it admits the peer (a listener, `Link::require_admission`) lets only the close
    /// out to a peer it never admitted.
    pub(crate) fn withhold_hello(&mut self) {
        self.hello_withheld = true;
    }

    /// The peer is admitted: the hello goes out with the rest.
    pub(crate) fn release_hello(&mut self) {
        self.hello_withheld = false;
    }

    /// Refuses the peer before saying anything (a listener at its limit): the queued hello
    /// is withdrawn if none of it was transmitted yet (before or after the peer's hello),
    /// so that only the close frame goes out and the peer learns nothing but the reason.
    pub(crate) fn refuse(&mut self, reason: Close, now_ms: u64) {
        let before_accept = matches!(self.state, State::AwaitingHello | State::AwaitingAccept);
        if before_accept && self.out.nothing_sent() {
            self.out.clear();
        }
        self.close(reason, now_ms);
    }

    /// Ends the session with `reason`: a close frame is queued, [`Event::Closed`] emitted.
    pub fn close(&mut self, reason: Close, now_ms: u64) {
        if self.state != State::Closed {
            self.close_by_local(reason, now_ms);
        }
    }

    // ----- output -----

    /// The next event, if any. Drain after every input and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write to the peer. Report what was written with
    /// [`advance_transmit`](Self::advance_transmit).
    #[must_use]
    pub fn poll_transmit(&mut self, now_ms: u64) -> &[u8] {
        if self.ack_due() {
            self.ack_written = self.persisted_up_to;
            let ack = Frame::Ack {
                up_to: self.ack_written,
            };
            self.write_frame(&ack, now_ms);
        }
        self.out.pending()
    }

    /// `n` bytes of [`poll_transmit`](Self::poll_transmit) have been written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.state == State::Closed {
            return None;
        }
        let idle = if self.reading_paused {
            u64::MAX
        } else {
            self.last_rx_ms.saturating_add(self.config.idle_timeout_ms)
        };
        let keepalive = self
            .last_tx_ms
            .saturating_add(self.config.keepalive_interval_ms);
        let mut next = idle.min(keepalive);
        if self.state != State::Established {
            next = next.min(
                self.started_ms
                    .saturating_add(self.config.handshake_timeout_ms),
            );
        }
        Some(next)
    }

    // ----- internals -----

    fn ack_due(&self) -> bool {
        self.state == State::Established && self.persisted_up_to > self.ack_written
    }

    fn write_frame(&mut self, frame: &Frame, now_ms: u64) {
        encode_frame(frame, self.out.tail());
        self.last_tx_ms = now_ms;
    }

    fn violation(&mut self, detail: String, now_ms: u64) {
        self.close_by_local(Close::new(CloseCode::ProtocolViolation, detail), now_ms);
    }

    fn close_by_local(&mut self, reason: Close, now_ms: u64) {
        // A listener that has not admitted the peer says nothing of itself, even as it
        // closes (a deadline missed, a malformed frame): only the close goes out.
        let before_accept = matches!(self.state, State::AwaitingHello | State::AwaitingAccept);
        if self.hello_withheld && before_accept && self.out.nothing_sent() {
            self.out.clear();
        }
        self.write_frame(&Frame::Close(reason.clone()), now_ms);
        self.finish(reason, Side::Local);
    }

    fn finish(&mut self, reason: Close, by: Side) {
        // The peer ended it (a close, the end of its stream) before it was accepted: a
        // withheld hello is not sent after all.
        let before_accept = matches!(self.state, State::AwaitingHello | State::AwaitingAccept);
        if by == Side::Peer && self.hello_withheld && before_accept && self.out.nothing_sent() {
            self.out.clear();
        }
        self.state = State::Closed;
        self.closed = Some(reason.clone());
        self.events.push_back(Event::Closed { reason, by });
    }

    fn handle_frame(&mut self, frame: Frame, now_ms: u64) {
        match (self.state, frame) {
            (_, Frame::Close(close)) => self.finish(close, Side::Peer),
            (_, Frame::Ping) => {}
            (State::AwaitingHello, Frame::Hello(hello)) => self.handle_hello(hello, now_ms),
            (State::AwaitingAccept, Frame::Sync(sync)) if self.early_sync.is_none() => {
                self.early_sync = Some(sync);
            }
            (State::AwaitingSync, Frame::Sync(sync)) => self.handle_sync(sync, now_ms),
            (State::Established, Frame::Message(message)) => self.handle_message(message, now_ms),
            (State::Established, Frame::Ack { up_to }) => self.handle_ack(up_to, now_ms),
            (State::Established, Frame::Recover { from, to }) => {
                self.handle_recover(from, to, now_ms);
            }
            (State::Established, Frame::Returned(message)) => {
                self.handle_returned(message, now_ms);
            }
            (state, frame) => self.violation(
                format!("unexpected frame kind {} in state {state:?}", frame.kind()),
                now_ms,
            ),
        }
    }

    fn handle_hello(&mut self, hello: Hello, now_ms: u64) {
        if hello.version != PROTOCOL_VERSION {
            let detail = format!(
                "peer speaks protocol version {}, this device speaks {PROTOCOL_VERSION}",
                hello.version
            );
            self.close_by_local(Close::new(CloseCode::VersionMismatch, detail), now_ms);
            return;
        }
        if hello.device == self.config.device {
            let detail = "the peer presents this device's own identity; to chat on one \
                          machine, give each side its own data directory";
            self.close_by_local(Close::new(CloseCode::SelfConnection, detail), now_ms);
            return;
        }
        self.temporary = self.config.temporary || hello.temporary;
        let peer = PeerHello {
            device: hello.device,
            name: hello.name,
            peer_temporary: hello.temporary,
            temporary: self.temporary,
        };
        self.peer = Some(peer.clone());
        self.state = State::AwaitingAccept;
        self.events.push_back(Event::PeerHello(peer));
    }

    fn handle_sync(&mut self, sync: SyncPoint, now_ms: u64) {
        if sync.received_up_to >= MAX_COUNTER {
            // Our next message would be numbered beyond the protocol's range: no honest peer
            // holds 2^53 messages.
            let detail = format!("sync claims {} messages received", sync.received_up_to);
            self.violation(detail, now_ms);
            return;
        }
        // The peer is the authority on what it holds: re-sync starts right after it, even if
        // this device believed more had been delivered. If it holds more than we remember
        // writing (our store went back in time), we ask for those messages back before
        // numbering anything new, so no number is ever used twice.
        self.peer_acked = sync.received_up_to;
        self.next_send_seq = sync.received_up_to + 1;
        self.peer_last_seq = sync.last_seq;
        if !self.temporary && sync.last_seq < self.received_up_to {
            // It will ask for its messages back up to what we hold (rule 2 of §2.1).
            self.peer_recovers_to = self.received_up_to;
        }
        self.state = State::Established;
        self.events.push_back(Event::Established {
            peer_received_up_to: sync.received_up_to,
            incoming: sync.last_seq.saturating_sub(self.received_up_to),
        });
        if !self.temporary && sync.received_up_to > self.own_last_seq {
            self.recovery = Some(Recovery {
                target: sync.received_up_to,
                batch_to: self.own_last_seq,
                next: self.own_last_seq + 1,
                confirmed: self.own_last_seq,
            });
            self.request_recovery(self.own_last_seq + 1, now_ms);
        }
    }

    /// Asks for the next batch of our own messages, from `from`.
    fn request_recovery(&mut self, from: u64, now_ms: u64) {
        let Some(recovery) = self.recovery.as_mut() else {
            return;
        };
        let to = recovery
            .target
            .min(from.saturating_add(MAX_RECOVER_BATCH - 1));
        recovery.batch_to = to;
        recovery.next = from;
        self.write_frame(&Frame::Recover { from, to }, now_ms);
    }

    fn handle_recover(&mut self, from: u64, to: u64, now_ms: u64) {
        if self.temporary || self.return_requested.is_some() || to > self.received_up_to {
            let detail = format!(
                "asked for its messages {from}..={to} back (this device holds up to {}{})",
                self.received_up_to,
                if self.return_requested.is_some() {
                    ", and an earlier request is unanswered"
                } else {
                    ""
                }
            );
            self.violation(detail, now_ms);
            return;
        }
        self.return_requested = Some((from, to));
        self.events.push_back(Event::ReturnRequested { from, to });
    }

    fn handle_returned(&mut self, message: Message, now_ms: u64) {
        let expected = self
            .recovery
            .filter(|r| r.next <= r.batch_to)
            .map(|r| r.next);
        if expected != Some(message.seq) {
            let detail = match expected {
                Some(next) => format!(
                    "returned message {} was not asked for (the next asked for is {next})",
                    message.seq
                ),
                None => format!(
                    "returned message {} was not asked for (none is)",
                    message.seq
                ),
            };
            self.violation(detail, now_ms);
            return;
        }
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.next += 1;
        }
        self.events.push_back(Event::OwnRecovered(message));
    }

    fn handle_message(&mut self, message: Message, now_ms: u64) {
        if message.seq <= self.received_up_to {
            self.duplicates_dropped += 1;
            return;
        }
        if message.seq != self.received_up_to + 1 {
            let detail = format!(
                "message {} arrived, expected {}",
                message.seq,
                self.received_up_to + 1
            );
            self.violation(detail, now_ms);
            return;
        }
        if message.seq - self.ack_written > MAX_IN_FLIGHT_MESSAGES {
            let detail = format!(
                "more than {MAX_IN_FLIGHT_MESSAGES} messages sent without waiting for an ack"
            );
            self.violation(detail, now_ms);
            return;
        }
        self.forget_acked_sizes();
        self.unacked_sizes
            .push_back((message.seq, message.text.len()));
        self.unacked_bytes += message.text.len();
        if self.unacked_bytes > MAX_UNACKED_BYTES {
            let detail = format!(
                "more than {MAX_UNACKED_BYTES} bytes of text sent without waiting for an ack"
            );
            self.violation(detail, now_ms);
            return;
        }
        self.received_up_to = message.seq;
        if self.temporary {
            self.persisted_up_to = message.seq;
            self.events.push_back(Event::TemporaryMessage(message));
        } else {
            self.events.push_back(Event::MessageToPersist(message));
        }
    }

    /// Drops the sizes of the peer's messages covered by the acks written so far.
    fn forget_acked_sizes(&mut self) {
        while let Some(&(seq, bytes)) = self.unacked_sizes.front() {
            if seq > self.ack_written {
                break;
            }
            self.unacked_sizes.pop_front();
            self.unacked_bytes -= bytes;
        }
    }

    fn handle_ack(&mut self, up_to: u64, now_ms: u64) {
        let sent = self.next_send_seq - 1;
        if up_to < self.peer_acked || up_to > sent {
            let detail = format!(
                "ack up to {up_to} outside {}..={sent} (acks never go back, nor beyond what was sent)",
                self.peer_acked
            );
            self.violation(detail, now_ms);
            return;
        }
        if up_to > self.peer_acked {
            self.peer_acked = up_to;
            while let Some(&(seq, bytes)) = self.in_flight_sizes.front() {
                if seq > up_to {
                    break;
                }
                self.in_flight_sizes.pop_front();
                self.in_flight_bytes -= bytes;
            }
            self.events.push_back(Event::Delivered { up_to });
        }
    }
}
