//! A session joined to a store: the standard driver logic every front end shares. See
//! [`Link`].

use crate::frame::{Close, CloseCode};
use crate::message::{check_text, ChatHead, Message, TextError};
use crate::secure::{PublicKey, Role, SecureChannel, SecureError, StaticKeypair};
use crate::session::{ApiMisuse, Event, PeerHello, Session, SessionConfig, Side};
use crate::store::{execute, ChatOpening, ChatResume, Store, StoreReply, StoreRequest};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// The batch a request shared with the link, back in the link's hands: the driver has
/// dropped its share by the time the completion comes (a copy only if it has not).
fn unshare<T: Clone>(shared: Arc<Vec<T>>) -> Vec<T> {
    Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone())
}

/// Most own messages read from the store in one request while filling the send window: a
/// read waits behind the storage thread's current commit, so one read per commit must cover
/// what the window lets go meanwhile (docs/PERFORMANCE.md).
const REFILL_BATCH: usize = 1024;

/// Most of the peer's messages in one persist request. A read of the socket can bring a
/// whole window (4,096 messages); in requests of this size, a driver that commits many
/// requests at once keeps each commit short (another chat's line waits for one at most), and
/// the first acks go out sooner.
const PERSIST_BATCH: usize = 256;

/// Most own messages composed in this session that a link keeps in memory while the send
/// window is full ([`Link`]'s `unsent`), and most bytes of their text: past either, they are
/// read back from the store as the window opens, as before. As large as the window, so a
/// stream of typed lines is sent from memory.
const MAX_UNSENT: usize = 4_096;
const MAX_UNSENT_BYTES: usize = 2 * 1024 * 1024;

/// Names one storage request of a link; its completion carries the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RequestId(pub u64);

/// What a user interface may show, from [`Link::poll_notice`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Notice {
    /// The peer is accepted and synchronized.
    Connected {
        /// Who.
        peer: PeerHello,
        /// How many of the peer's messages arrive in this re-sync.
        incoming: u64,
        /// How many of ours go out in this re-sync.
        outgoing: u64,
        /// How far this device had got in the chat when the session opened (the default in
        /// a temporary session): the history up to here is what a view shows above this
        /// session's lines, without the re-sync's, which arrive as [`Notice::Received`].
        held: ChatResume,
    },
    /// A message from the peer, already stored if `stored`.
    Received {
        /// The message.
        message: Message,
        /// Whether it is stored (false in a temporary session).
        stored: bool,
    },
    /// Lines given to [`Link::compose_batch`] are written: durable (kept in memory in a
    /// temporary session), and sent as the window allows. A message with `seq` 0 waits
    /// unnumbered for the next sync.
    Composed {
        /// The request that wrote them (what [`Link::compose_batch`] returned).
        request: RequestId,
        /// The messages, in order.
        messages: Vec<Message>,
    },
    /// An own message this link did not write is sent: another process on this device's
    /// store wrote it into the chat while the session ran (`-eC` beside a running session),
    /// or before, after the session opened. Shown once, as the user's own line; the lines
    /// the user had when the session opened, and those written through this link, are
    /// never announced here.
    WrittenElsewhere {
        /// The message, numbered.
        message: Message,
    },
    /// Lines given to [`Link::compose_batch`] could not be stored: nothing of them was
    /// written.
    ComposeFailed {
        /// The request (what [`Link::compose_batch`] returned).
        request: RequestId,
        /// The texts.
        texts: Vec<String>,
        /// The store's error.
        reason: String,
    },
    /// The peer holds our messages up to `up_to`.
    Delivered {
        /// Cumulative sequence number.
        up_to: u64,
    },
    /// The peer presented a device id whose pinned key is another: possibly an impostor,
    /// possibly a reinstall. The connection is refused (a [`Notice::Closed`] follows) and
    /// nothing was stored or sent.
    KeyMismatch {
        /// Who the peer claims to be.
        peer: PeerHello,
        /// The key it proved.
        presented: PublicKey,
        /// The key pinned for that device id.
        pinned: PublicKey,
    },
    /// The peer proved its key (on a plain link: said hello), and the link waits for the
    /// driver's [`Link::admit`] or [`Link::refuse`] before it opens the chat. Only on a link
    /// made with [`Link::require_admission`]. Nothing is stored yet.
    PeerProved {
        /// Who the peer says it is (the key check against the pin comes with the admission).
        peer: PeerHello,
        /// The key it proved (`None` on a plain link): a driver may admit a device it knows
        /// by this key before strangers.
        key: Option<PublicKey>,
    },
    /// Own messages this device had lost (its store went back: a restore from an older
    /// copy) came back from the peer and are stored again, up to `up_to`. They are whatever
    /// the peer returned as ours: the user is told, since only the peer vouches for them.
    Restored {
        /// How many, in this batch.
        count: u64,
        /// The newest one's sequence number.
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

/// Why [`Link::compose_batch`] could not take lines.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ComposeError {
    /// The peer is not known yet (no hello received): there is no chat to write in.
    NoPeer,
    /// The text is outside the limits.
    Text(TextError),
    /// The store failed; nothing was written.
    Store(String),
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComposeError::NoPeer => write!(f, "not connected to a peer yet"),
            ComposeError::Text(e) => write!(f, "{e}"),
            ComposeError::Store(e) => write!(f, "could not store the message: {e}"),
        }
    }
}

impl std::error::Error for ComposeError {}

/// What a link does with the completion of a request it made.
#[derive(Debug)]
enum Awaiting {
    /// Accept the peer (or refuse its key) with what the store found.
    Open(PeerHello, Option<PublicKey>),
    /// Tell the user the lines are stored; send the ones numbered next in line. (The texts
    /// are for a failure's notice.)
    Compose(Arc<Vec<String>>),
    /// The same lines, already numbered and sent before their commit
    /// ([`Link::handle_store_written`]): only tell the user once the completion says they
    /// are durable.
    ComposeSent(Arc<Vec<String>>),
    /// Read again if something was numbered.
    Number,
    /// Send what was read (`max` asked for).
    ReadOwn(usize),
    /// Confirm the batch to the session and show it.
    Persist(Arc<Vec<Message>>),
    /// Send the peer's own messages back.
    ReadPeer,
    /// Confirm the recovered batch up to this sequence number (newest, how many).
    Restore(u64, u64),
    /// Nothing (an advisory delivery mark; only a failure matters).
    Mark,
}

/// The encrypted layer of a link.
#[derive(Debug)]
struct Secure {
    channel: SecureChannel,
    own_key: PublicKey,
    /// Plaintext decrypted from one input, on its way to the session.
    plain: Vec<u8>,
}

/// The outcome of [`Link::check_peer_key`].
enum KeyCheck {
    /// Go on, with the key the peer proved (None: plain link).
    Accepted(Option<PublicKey>),
    /// The session is closed.
    Refused,
}

/// What a user interface has been shown of the user's own lines in one chat: every own
/// message up to a sequence number, the numbers of lines typed through a link, and the time
/// and text of lines stored unnumbered (which are numbered later, with a new Lamport counter:
/// time and text are what stays). A driver carries it from one link of a chat to the next
/// ([`Link::own_lines_shown`], [`Link::inherit_own_lines_shown`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnLinesShown {
    up_to: u64,
    composed: VecDeque<(u64, u64)>,
    unnumbered: Vec<(i64, String)>,
}

impl OwnLinesShown {
    /// Own lines the driver wrote into the chat itself while no link had it open (stored
    /// unnumbered), which its user interface has shown.
    pub fn note_written_here(&mut self, messages: &[Message]) {
        self.unnumbered.extend(
            messages
                .iter()
                .filter(|m| m.seq == 0)
                .map(|m| (m.sent_at_ms, m.text.clone())),
        );
    }

    /// Records lines composed through a link: a range of numbers, or (stored unnumbered)
    /// their time and text.
    fn note_composed(&mut self, messages: &[Message]) {
        match (messages.first(), messages.last()) {
            (Some(first), Some(last)) if first.seq != 0 => {
                self.composed.push_back((first.seq, last.seq));
            }
            _ => self.note_written_here(messages),
        }
    }

    /// Whether own message `message` was shown; messages are asked about in the order they
    /// are sent. An unnumbered line it matches is taken off (it is sent once).
    fn knows(&mut self, message: &Message) -> bool {
        if message.seq <= self.up_to {
            return true;
        }
        while self
            .composed
            .front()
            .is_some_and(|&(_, last)| last < message.seq)
        {
            self.composed.pop_front();
        }
        if self
            .composed
            .front()
            .is_some_and(|&(first, _)| first <= message.seq)
        {
            return true;
        }
        match self
            .unnumbered
            .iter()
            .position(|(at, text)| *at == message.sent_at_ms && *text == message.text)
        {
            Some(i) => {
                self.unnumbered.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// A [`Session`] plus the driver logic that joins it to a store: the standard driver every
/// front end shares.
///
/// The link wraps a [`Session`] and, on each [`pump`](Link::pump), turns what the session's
/// events ask of a driver into storage effects: it asks to open the chat when the peer says
/// hello, to persist each batch of received messages (and confirms the batch to the session
/// only when the store's completion says it is durable, so one cumulative ack covers it), to
/// record deliveries, and to read our own messages to keep the send window full. The link
/// calls no store itself: it hands out [`StoreRequest`] values
/// ([`Link::poll_store_request`]) and takes their results back
/// ([`Link::handle_store_completion`]), as sans-IO as the session — so a driver may carry the
/// requests out on a storage thread that commits many at once while its event loop goes on
/// reading and writing. Drivers without such a thread (tests, the simulator, the fuzz
/// targets, benchmarks) use [`Link::pump_with`], which carries every request out at once.
/// Temporary sessions keep their messages in memory and never write to the store (an
/// encrypted one only has its key checked against the pin). The real binary, the in-memory
/// harness and the simulator all drive this same code, so what the tests prove is what users
/// run.
///
/// A link is plain ([`Link::new`]) or encrypted ([`Link::new_secure`]): an encrypted link runs
/// a Noise XX handshake (docs/PROTOCOL.md) before any frame and hands the static key the peer
/// proved to [`Store::open_chat`], which binds it to the peer's device id in the same
/// transaction that opens the chat (pinned on first contact: trust on first use). A peer
/// whose key does not match is refused before anything is stored or sent: the user is warned
/// ([`Notice::KeyMismatch`]), the peer gets a close that does not say why.
///
/// A driver's loop works on the link's bytes, which are ciphertext for an encrypted link:
/// feed input with [`Link::handle_input`], call [`Link::pump`], carry out
/// [`Link::poll_store_request`] and report with [`Link::handle_store_completion`], write
/// [`Link::poll_transmit`] and report it with [`Link::advance_transmit`], show
/// [`Link::poll_notice`], sleep until input, a completion or [`Link::poll_timeout`].
///
/// # Why the link repeats the session's calls
///
/// A driver talks to the link only: input, output, timers, closing. The link stands between
/// the session and the socket (on an encrypted link the session's bytes are plaintext and
/// the socket's are ciphertext, and a peer held for admission sees nothing of the session)
/// and between the session and the store (a received message is acked only once stored), so
/// a driver that called the session directly could send plaintext, ack what is not stored,
/// or leak our hello to a refused peer. The link therefore repeats the session's driver calls
/// that a driver needs, each with the link's own meaning — [`handle_input`](Link::handle_input),
/// [`handle_eof`](Link::handle_eof), [`handle_timeout`](Link::handle_timeout) (only when
/// due), [`poll_timeout`](Link::poll_timeout), [`poll_transmit`](Link::poll_transmit),
/// [`advance_transmit`](Link::advance_transmit), [`wants_write`](Link::wants_write),
/// [`wants_read`](Link::wants_read), [`buffered_input`](Link::buffered_input) (both layers),
/// [`close`](Link::close), [`refuse`](Link::refuse) and [`peer`](Link::peer) (the accepted
/// peer) — and hands out the session read-only ([`Link::session`]) for where it stands. The
/// session's other calls (accepting the peer, sending, confirming what is stored) are the
/// link's own work and are not repeated.
#[derive(Debug)]
pub struct Link {
    session: Session,
    secure: Option<Secure>,
    peer: Option<PeerHello>,
    resume: ChatResume,
    /// Own messages of a temporary session, kept until the peer acks them.
    temp_outbox: VecDeque<Message>,
    temp_head: ChatHead,
    /// The peer's messages received since the last persist request.
    received: Vec<Message>,
    /// Own messages the peer sent back (our store had lost them), not yet asked to be stored.
    recovered: Vec<Message>,
    notices: VecDeque<Notice>,
    /// Requests made and not yet taken by the driver.
    requests: VecDeque<(RequestId, StoreRequest)>,
    /// Requests whose completion is awaited, in the order they were made.
    awaiting: VecDeque<(RequestId, Awaiting)>,
    next_request: u64,
    /// A read of own messages (or a numbering of waiting ones) is in flight.
    refilling: bool,
    /// The store may hold numbered own messages not sent yet (beyond `unsent`).
    own_maybe_pending: bool,
    /// Own messages composed (and stored) in this session that the window could not take
    /// yet, contiguous from the session's next sequence number: sent from here as the window
    /// opens, so the store is not read back for them. Empty whenever `own_maybe_pending` is
    /// acted on: the store then holds all of them anyway.
    unsent: VecDeque<Message>,
    /// Bytes of text in `unsent`.
    unsent_bytes: usize,
    /// The store may hold own messages waiting unnumbered.
    waiting_maybe: bool,
    /// A request failed: the session is closed and no request is made any more.
    store_failed: bool,
    /// Why this device's storage failed, in full, for its own user: the close sent to the
    /// peer says only that it failed (a local error names local paths and is no business of
    /// the peer's), and this replaces it in the [`Notice::Closed`] reported here.
    local_failure: Option<String>,
    /// Composes whose lines were sent before their commit ([`Link::handle_store_written`])
    /// and are not confirmed durable yet, oldest first, with the first sequence number each
    /// wrote: a delivery beyond the first of them is shown once it is durable.
    sent_before_commit: VecDeque<(RequestId, u64)>,
    /// Own messages the user interface knows of, for [`Notice::WrittenElsewhere`]: every one
    /// up to a number (what the chat held when the session opened, its waiting lines
    /// included, unless an earlier link's was handed over), the numbers of this link's
    /// composes (ranges, oldest first), and the time and text of lines written unnumbered,
    /// through this link or by its driver ([`Link::note_written_here`]).
    own_shown: OwnLinesShown,
    /// The driver handed over what an earlier link had shown
    /// ([`Link::inherit_own_lines_shown`]): the chat's opening leaves `own_shown` be.
    own_lines_inherited: bool,
    /// The latest delivery the session reported, and the latest shown
    /// ([`Notice::Delivered`]).
    delivered: u64,
    delivered_shown: u64,
    /// Simulator self-test only: confirm received messages before storing them.
    #[cfg(feature = "simulator-self-test")]
    ack_before_persist: bool,
    /// [`Link::refuse`] closed the session before the encrypted handshake: finish the
    /// handshake so that the close can be delivered.
    close_after_handshake: bool,
    /// Where the link stands with the driver's admission ([`Link::require_admission`]).
    admission: Admission,
}

/// The driver's say on a proved peer before its chat is opened.
#[derive(Debug)]
enum Admission {
    /// Every peer is accepted (the default).
    Automatic,
    /// The next proved peer waits for [`Link::admit`].
    Required,
    /// A proved peer waits, with the key it proved.
    Held(PeerHello, Option<PublicKey>),
    /// Admitted; its chat is opened by the next pump.
    Admitting(PeerHello, Option<PublicKey>),
    /// Admitted, and its chat opened (or being opened).
    Admitted,
    /// Refused: only the close goes out.
    Refused,
}

impl Link {
    /// A link whose session starts at `now_ms` (its hello is queued).
    pub fn new(config: SessionConfig, now_ms: u64) -> Link {
        Link {
            session: Session::new(config, now_ms),
            secure: None,
            peer: None,
            resume: ChatResume::default(),
            temp_outbox: VecDeque::new(),
            temp_head: ChatHead::default(),
            received: Vec::new(),
            recovered: Vec::new(),
            notices: VecDeque::new(),
            requests: VecDeque::new(),
            awaiting: VecDeque::new(),
            next_request: 1,
            refilling: false,
            own_maybe_pending: false,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            waiting_maybe: false,
            store_failed: false,
            local_failure: None,
            sent_before_commit: VecDeque::new(),
            own_shown: OwnLinesShown::default(),
            own_lines_inherited: false,
            delivered: 0,
            delivered_shown: 0,
            #[cfg(feature = "simulator-self-test")]
            ack_before_persist: false,
            admission: Admission::Automatic,
            close_after_handshake: false,
        }
    }

    /// An encrypted link: a Noise XX handshake proving `keypair` (as `role`: the side that
    /// dialled initiates), with ephemeral keys from `seed` (32 random bytes per connection),
    /// then the session inside it.
    pub fn new_secure(
        config: SessionConfig,
        now_ms: u64,
        role: Role,
        keypair: &StaticKeypair,
        seed: [u8; 32],
    ) -> Link {
        let mut link = Link::new(config, now_ms);
        link.secure = Some(Secure {
            channel: SecureChannel::new(role, keypair, seed),
            own_key: keypair.public(),
            plain: Vec::new(),
        });
        link
    }

    /// Accepts only a peer that proves `key` (the key an invite names): any other fails
    /// the handshake — before this side proves its own key when it initiates — and the
    /// session closes with [`CloseCode::IdentityMismatch`]. No effect on a plain link.
    pub fn expect_peer_key(&mut self, key: PublicKey) {
        if let Some(secure) = self.secure.as_mut() {
            secure.channel.expect_remote(key);
        }
    }

    /// Bytes received from the peer (ciphertext for an encrypted link). Whatever fails —
    /// decryption, framing, the protocol — closes the session with a reason.
    pub fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        let Some(secure) = self.secure.as_mut() else {
            self.session.handle_input(bytes, now_ms);
            return;
        };
        // Even a closed session reads on: its close frame may still wait for the handshake
        // to finish (a busy listener refusing a caller).
        let result = secure.channel.read(bytes, &mut secure.plain);
        // What decrypted before a failure is authentic: the session gets it first.
        if !secure.plain.is_empty() {
            self.session.handle_input(&secure.plain, now_ms);
            secure.plain.clear();
        }
        if let Err(e) = result {
            let code = match e {
                SecureError::UnexpectedKey { .. } => CloseCode::IdentityMismatch,
                _ => CloseCode::IntegrityFailure,
            };
            let reason = Close::new(code, e.to_string());
            self.session.close(reason, now_ms);
        }
    }

    /// The peer closed its side of the stream.
    pub fn handle_eof(&mut self, now_ms: u64) {
        self.session.handle_eof(now_ms);
    }

    /// Acts on a due timer (keepalive, dead peer, stalled handshake).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.session.poll_timeout().is_some_and(|t| t <= now_ms) {
            self.session.handle_timeout(now_ms);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.session.poll_timeout()
    }

    /// Bytes to write to the peer (ciphertext for an encrypted link); report what was
    /// written with [`advance_transmit`](Self::advance_transmit).
    #[must_use]
    pub fn poll_transmit(&mut self, now_ms: u64) -> &[u8] {
        let holding = self.holding_output();
        let Some(secure) = self.secure.as_mut() else {
            if holding {
                return &[];
            }
            return self.session.poll_transmit(now_ms);
        };
        if secure.channel.is_established() && !holding {
            let plain = self.session.poll_transmit(now_ms);
            let n = plain.len();
            if n > 0 && secure.channel.write(plain) {
                self.session.advance_transmit(n);
            }
        }
        secure.channel.pending_output()
    }

    /// `n` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    pub fn advance_transmit(&mut self, n: usize) {
        match self.secure.as_mut() {
            Some(secure) => secure.channel.advance_output(n),
            None => self.session.advance_transmit(n),
        }
    }

    /// Whether there are bytes to write.
    pub fn wants_write(&self) -> bool {
        let session = !self.holding_output() && self.session.wants_write();
        match &self.secure {
            Some(secure) => {
                !secure.channel.pending_output().is_empty()
                    || (secure.channel.is_established() && session)
            }
            None => session,
        }
    }

    /// Until the driver has decided on the peer ([`Link::require_admission`]), nothing of
    /// the session goes out, not even our hello: a peer refused as busy learns only the
    /// reason, and stores nothing of us.
    fn holding_output(&self) -> bool {
        matches!(self.admission, Admission::Required | Admission::Held(..))
            && !self.session.is_closed()
    }

    /// Makes the link wait, once the peer has proved its key, for the driver's [`Link::admit`]
    /// or [`Link::refuse`] ([`Notice::PeerProved`]) before the chat is opened: a listener
    /// serving many peers decides there whether it has room, after the handshake (so that
    /// an unauthenticated connection never makes anyone busy) and before anything is stored.
    pub fn require_admission(&mut self) {
        self.admission = Admission::Required;
        self.session.withhold_hello();
    }

    /// Admits the peer announced by [`Notice::PeerProved`]: its key is checked against the
    /// pin and the chat opened (one store request), then the link goes on as usual. Does
    /// nothing if no peer waits.
    pub fn admit(&mut self, now_ms: u64) {
        let Admission::Held(peer, key) =
            std::mem::replace(&mut self.admission, Admission::Admitted)
        else {
            return;
        };
        self.admission = Admission::Admitting(peer, key);
        self.session.release_hello();
        self.pump(now_ms);
    }

    /// Refuses the peer (a listener at its limit, before or after [`Notice::PeerProved`]):
    /// the session is closed with `reason` before any hello of ours went out if none did,
    /// and on an encrypted link the handshake still runs so the peer can read why.
    pub fn refuse(&mut self, reason: Close, now_ms: u64) {
        if matches!(self.admission, Admission::Required | Admission::Held(..)) {
            self.admission = Admission::Refused;
        }
        self.session.refuse(reason, now_ms);
        self.close_after_handshake = self.secure.is_some();
    }

    /// Ends the session with `reason` (the user leaves, or a newer connection of the same
    /// device replaces this one): a close frame is queued and [`Notice::Closed`] follows.
    pub fn close(&mut self, reason: Close, now_ms: u64) {
        self.session.close(reason, now_ms);
    }

    /// Whether the driver should keep reading from the peer: not while the session is
    /// closed (unless a close waits for the handshake), nor while it flows and the driver
    /// paused reading ([`pause_reading`](Self::pause_reading)).
    pub fn wants_read(&self) -> bool {
        if self.session.is_reading_paused() && self.session.is_established() {
            return false;
        }
        !self.session.is_closed() || self.awaiting_handshake_for_close()
    }

    /// The driver stops reading from the peer once the session flows (whoever shows what
    /// arrives is far behind): [`wants_read`](Self::wants_read) says no, and the dead-peer
    /// timeout waits ([`Session::pause_reading`]). A handshake and its sync still go on, so
    /// a peer is let in and caught up to the point where its messages would flow.
    pub fn pause_reading(&mut self) {
        self.session.pause_reading();
    }

    /// The driver reads again (then it must read: what arrived meanwhile gave no new
    /// readiness); the dead-peer timeout counts from `now_ms`.
    pub fn resume_reading(&mut self, now_ms: u64) {
        self.session.resume_reading(now_ms);
    }

    /// Whether the session is closed, everything it could still say is written, and every
    /// storage request it made is completed: the driver drops the connection.
    pub fn is_finished(&self) -> bool {
        self.session.is_closed()
            && !self.wants_write()
            && !self.awaiting_handshake_for_close()
            && !self.has_store_work()
    }

    fn awaiting_handshake_for_close(&self) -> bool {
        self.close_after_handshake
            && self
                .secure
                .as_ref()
                .is_some_and(|s| !s.channel.is_established() && !s.channel.has_failed())
    }

    /// Bytes buffered of incomplete input (frame and, if encrypted, Noise message).
    pub fn buffered_input(&self) -> usize {
        self.session.buffered_input()
            + self
                .secure
                .as_ref()
                .map_or(0, |s| s.channel.buffered_input())
    }

    /// The session, to read where it stands (established, closed, in flight, acked, …).
    /// Read only: every input and output goes through the link, which stands between the
    /// session and the socket (the secure channel) and between the session and the store.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The accepted peer, if any.
    pub fn peer(&self) -> Option<&PeerHello> {
        self.peer.as_ref()
    }

    /// The next notice for the user interface.
    #[must_use]
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// The next storage request to carry out (see [`StoreRequest`] for the rules); its
    /// result goes back with [`Link::handle_store_completion`].
    #[must_use]
    pub fn poll_store_request(&mut self) -> Option<(RequestId, StoreRequest)> {
        self.requests.pop_front()
    }

    /// Whether a storage request waits to be taken or completed (an advisory delivery mark
    /// taken by the driver does not count: nothing waits for it).
    pub fn has_store_work(&self) -> bool {
        !self.requests.is_empty()
            || self
                .awaiting
                .iter()
                .any(|(_, awaiting)| !matches!(awaiting, Awaiting::Mark))
    }

    /// Deliberately breaks the durability rule — received messages are acked before they
    /// are stored — so that the simulator can prove it catches such a bug. Only with the
    /// `simulator-self-test` feature, which only the simulator enables.
    #[cfg(feature = "simulator-self-test")]
    pub fn break_durability_for_simulator_self_test(&mut self) {
        self.ack_before_persist = true;
    }

    /// Test hook (feature `testing`): feeds plaintext straight to the session, past the
    /// secure channel, as an authenticated but hostile peer would send it. (An attacker on
    /// the path goes through [`Link::handle_input`] and meets the channel first.) The fuzz
    /// scripts inject frames this way.
    #[cfg(feature = "testing")]
    pub fn inject_plaintext(&mut self, bytes: &[u8], now_ms: u64) {
        self.session.handle_input(bytes, now_ms);
    }

    /// Test hook (feature `testing`): runs the session's timer now, due or not — the
    /// spurious wake-up that [`Link::handle_timeout`] filters out, to check that the session
    /// ignores it.
    #[cfg(feature = "testing")]
    pub fn wake_session_early(&mut self, now_ms: u64) {
        self.session.handle_timeout(now_ms);
    }

    /// Test hook (feature `testing`): hands `message` straight to the session's `send`, past
    /// the store and the numbering the link keeps, to check that the session refuses what
    /// its contract does not allow (a message out of sequence).
    #[cfg(feature = "testing")]
    pub fn send_unchecked(&mut self, message: &Message, now_ms: u64) -> Result<(), ApiMisuse> {
        self.session.send(message, now_ms)
    }

    /// Whether this link acks on arrival (the simulator's self-test); false in every build
    /// without the `simulator-self-test` feature.
    fn acks_on_arrival(&self) -> bool {
        #[cfg(feature = "simulator-self-test")]
        return self.ack_before_persist;
        #[cfg(not(feature = "simulator-self-test"))]
        false
    }

    /// Acts on everything the session has produced: asks to open the chat for a peer, to
    /// persist received messages, to record deliveries, to read own messages for the send
    /// window. Call after input, a timeout or a completion.
    pub fn pump(&mut self, now_ms: u64) {
        if let Admission::Admitting(..) = self.admission {
            if let Admission::Admitting(peer, key) =
                std::mem::replace(&mut self.admission, Admission::Admitted)
            {
                self.open_peer(peer, key, now_ms);
            }
        }
        if self.acks_on_arrival() {
            // The broken rule: what arrived in an earlier pump was acked on arrival, and is
            // stored only now.
            self.persist_received();
        }
        self.drain_events(now_ms);
        if !self.acks_on_arrival() {
            self.persist_received();
        }
        if !self.recovered.is_empty() {
            let batch = std::mem::take(&mut self.recovered);
            let last = batch.last().map_or(0, |m| m.seq);
            let count = batch.len() as u64;
            match self.peer.as_ref().map(|p| p.device) {
                Some(peer) if !self.store_failed => {
                    self.request(
                        StoreRequest::RestoreOwn { peer, batch },
                        Some(Awaiting::Restore(last, count)),
                    );
                }
                _ => {}
            }
        }
        self.fill_window(now_ms);
    }

    /// Asks to store the peer's messages received since the last request, as one batch.
    fn persist_received(&mut self) {
        if self.received.is_empty() {
            return;
        }
        let received = std::mem::take(&mut self.received);
        let Some(peer) = self.peer.as_ref().map(|p| p.device) else {
            return;
        };
        if self.store_failed {
            return;
        }
        // A long burst in requests of at most PERSIST_BATCH: a driver that commits requests
        // in groups keeps each commit short (another chat's line waits for one at most).
        let mut received = received.into_iter().peekable();
        while received.peek().is_some() {
            let batch = Arc::new(received.by_ref().take(PERSIST_BATCH).collect::<Vec<_>>());
            let request = StoreRequest::PersistReceived {
                peer,
                batch: Arc::clone(&batch),
            };
            self.request(request, Some(Awaiting::Persist(batch)));
        }
    }

    /// Looks again for own messages to send: another process (an offline writer on the same
    /// store) may have written some. A driver calls it now and then while established.
    pub fn refill(&mut self, now_ms: u64) {
        self.own_maybe_pending = true;
        self.waiting_maybe = true;
        self.fill_window(now_ms);
    }

    /// Own lines the driver wrote into this link's chat itself, outside the link (stored
    /// unnumbered: no session was established for the chat when they were written), which
    /// its user interface has shown: when this link sends them, they are not announced as
    /// [`Notice::WrittenElsewhere`].
    pub fn note_written_here(&mut self, messages: &[Message]) {
        self.own_shown.note_written_here(messages);
    }

    /// What this link's user interface has been shown of the user's own lines in its chat,
    /// for the driver to hand to the chat's next link ([`Link::inherit_own_lines_shown`]).
    /// Every own message this link sent is in it (known, or announced as written
    /// elsewhere), with the lines it knew of and has not sent yet.
    pub fn own_lines_shown(&self) -> OwnLinesShown {
        let mut shown = self.own_shown.clone();
        let sent = self.session.next_send_seq().saturating_sub(1);
        shown.up_to = shown.up_to.max(sent);
        let up_to = shown.up_to;
        shown.composed.retain(|&(_, last)| last > up_to);
        shown
    }

    /// Takes what an earlier link of the same chat, in the same process, had shown its user
    /// interface ([`Link::own_lines_shown`], with the lines the driver wrote meanwhile:
    /// [`OwnLinesShown::note_written_here`]), instead of assuming that the user has seen
    /// every line the chat held when this link opened it. So a line another process wrote
    /// into the chat while no session ran (`-eC` while the peer was away) is announced as
    /// [`Notice::WrittenElsewhere`] when this link sends it. Call it before this link sends
    /// an own message — before or after the chat opens: when [`Notice::Connected`] is polled
    /// after a storage completion is early enough, for the link sends no own message before
    /// the request it makes next completes. A driver with no earlier link for the chat does
    /// not call it.
    pub fn inherit_own_lines_shown(&mut self, shown: OwnLinesShown) {
        self.own_lines_inherited = true;
        let mine = std::mem::replace(&mut self.own_shown, shown);
        self.own_shown.composed.extend(mine.composed);
        self.own_shown.unnumbered.extend(mine.unnumbered);
    }

    /// Takes the result of a storage request made by this link, in the order they were
    /// made. An `Err` (the store's error, as text) closes the session: the peer re-sends
    /// next time, and lines being composed are reported as not stored. A completion out of
    /// order is the driver's bug: it is refused and changes nothing.
    pub fn handle_store_completion(
        &mut self,
        id: RequestId,
        result: Result<StoreReply, String>,
        now_ms: u64,
    ) -> Result<(), ApiMisuse> {
        match self.awaiting.front() {
            Some((expected, _)) if *expected == id => {}
            _ => return Err(ApiMisuse::UnexpectedCompletion),
        }
        let Some((_, awaiting)) = self.awaiting.pop_front() else {
            return Err(ApiMisuse::UnexpectedCompletion);
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(reason) => {
                self.store_failure(id, awaiting, reason, now_ms);
                return Ok(());
            }
        };
        match (awaiting, reply) {
            (Awaiting::Open(peer, key), StoreReply::Opened(opening)) => {
                self.opened(peer, key, opening, now_ms);
            }
            (Awaiting::Compose(_), StoreReply::Composed(messages)) => {
                self.composed(id, messages, now_ms);
            }
            (Awaiting::ComposeSent(_), StoreReply::Composed(messages)) => {
                self.sent_before_commit
                    .retain(|&(request, _)| request != id);
                self.notices.push_back(Notice::Composed {
                    request: id,
                    messages,
                });
                self.show_delivered();
            }
            (Awaiting::Number, StoreReply::Numbered(n)) => {
                self.refilling = false;
                self.waiting_maybe = false;
                if n > 0 {
                    self.own_maybe_pending = true;
                }
            }
            (Awaiting::ReadOwn(max), StoreReply::Messages(messages)) => {
                self.refilling = false;
                self.own_read(max, &messages, now_ms);
            }
            (Awaiting::Persist(batch), StoreReply::Done) => self.persisted(batch),
            (Awaiting::ReadPeer, StoreReply::Messages(messages)) => {
                self.send_returned(&messages, now_ms);
            }
            (Awaiting::Mark, StoreReply::Done) => {}
            (Awaiting::Restore(last, count), StoreReply::Done) => {
                if !self.store_failed {
                    // Cannot fail: these are exactly the messages returned since the last
                    // confirm.
                    let _ = self.session.confirm_recovered(last, now_ms);
                    self.notices
                        .push_back(Notice::Restored { count, up_to: last });
                }
            }
            (awaiting, _) => {
                let reason = "the store answered a request with another kind of result";
                self.store_failure(id, awaiting, reason.to_owned(), now_ms);
                return Ok(());
            }
        }
        self.pump(now_ms);
        Ok(())
    }

    /// Takes word that a compose request was carried out inside a group commit that has not
    /// committed yet (docs/PROTOCOL.md §6.2): `messages` are the lines as numbered in that
    /// transaction. The link sends them now, as the window allows, so that the peer's commit
    /// runs while this one does; the user is told they are stored ([`Notice::Composed`]) only
    /// with the request's completion, which follows in its turn. If that completion is an
    /// error, the session closes as for any storage failure: the lines may have reached the
    /// peer without being stored here, and the next sync returns them (the rule for a store
    /// that went back in time, docs/PROTOCOL.md §2).
    ///
    /// A driver may call this once per compose request, before its completion. Lines stored
    /// unnumbered (no established session), and lines that are not next in line to be sent
    /// (a read of own messages is in flight, or the store holds earlier ones not sent yet),
    /// wait for the completion as usual: the call changes nothing. A call for a request that
    /// is not an awaited compose, or a second call, is refused.
    pub fn handle_store_written(
        &mut self,
        id: RequestId,
        messages: &[Message],
        now_ms: u64,
    ) -> Result<(), ApiMisuse> {
        let Some(index) = self.awaiting.iter().position(|(request, _)| *request == id) else {
            return Err(ApiMisuse::UnexpectedCompletion);
        };
        let Awaiting::Compose(texts) = &self.awaiting[index].1 else {
            return Err(ApiMisuse::UnexpectedCompletion);
        };
        let texts = Arc::clone(texts);
        let Some(first) = messages.first().map(|m| m.seq).filter(|&seq| seq != 0) else {
            return Ok(());
        };
        // Only lines next in line go early. Others wait for the completion, which comes after
        // those of the requests made before (a read of own messages in flight, say, whose
        // completion must be taken first or it would be taken as the last word).
        if self.store_failed || !self.next_in_line(messages) {
            return Ok(());
        }
        self.awaiting[index].1 = Awaiting::ComposeSent(texts);
        self.sent_before_commit.push_back((id, first));
        self.note_composed(messages);
        self.take_composed(messages, now_ms);
        self.pump(now_ms);
        Ok(())
    }

    /// Shows the latest delivery the session reported, but no further than the own lines
    /// known to be durable: a line sent before its commit is shown as delivered only after it
    /// is shown as stored.
    fn show_delivered(&mut self) {
        let durable = self
            .sent_before_commit
            .front()
            .map_or(u64::MAX, |&(_, first)| first - 1);
        let up_to = self.delivered.min(durable);
        if up_to > self.delivered_shown {
            self.delivered_shown = up_to;
            self.notices.push_back(Notice::Delivered { up_to });
        }
    }

    /// Takes new own messages: checked, then written to the store (unless the session is
    /// temporary) and sent as the window allows. The result comes as [`Notice::Composed`]
    /// (or [`Notice::ComposeFailed`]) carrying the returned id; only then are the lines
    /// durable and may be shown as sent. Every text is checked first; one outside the limits
    /// refuses the whole batch. While the session is not established, or still recovering
    /// our own history, the messages are stored unnumbered (`seq` 0) and numbered once it is
    /// (docs/PROTOCOL.md §2). All of them go in one store request: one durable commit.
    pub fn compose_batch(
        &mut self,
        texts: Vec<String>,
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<RequestId, ComposeError> {
        for text in &texts {
            check_text(text).map_err(ComposeError::Text)?;
        }
        let peer = self.peer.as_ref().ok_or(ComposeError::NoPeer)?;
        if peer.temporary {
            let mut messages = Vec::with_capacity(texts.len());
            for text in &texts {
                let message = self
                    .temp_head
                    .compose(text, sent_at_ms)
                    .map_err(ComposeError::Text)?;
                self.temp_head.observe(&message, true);
                self.temp_outbox.push_back(message.clone());
                messages.push(message);
            }
            let request = RequestId(self.next_request);
            self.next_request += 1;
            self.notices
                .push_back(Notice::Composed { request, messages });
            self.fill_window(now_ms);
            return Ok(request);
        }
        if self.store_failed {
            return Err(ComposeError::Store(
                "an earlier storage request of this connection failed".into(),
            ));
        }
        let live = self.session.is_established() && !self.session.is_recovering();
        let number_after = live.then(|| self.session.next_send_seq() - 1);
        if number_after.is_none() {
            self.waiting_maybe = true;
        }
        let texts = Arc::new(texts);
        let request = StoreRequest::Compose {
            peer: peer.device,
            texts: Arc::clone(&texts),
            sent_at_ms,
            number_after,
        };
        Ok(self.request(request, Some(Awaiting::Compose(texts))))
    }

    /// Carries out every storage request at once against `store`, in order, pumping after
    /// each completion, until the link asks for nothing more: the driver for a front end
    /// without a storage thread (tests, the simulator, fuzzing, benchmarks). The first store
    /// error is returned; the link has closed the session by then, and later requests of
    /// the link failed without being carried out.
    pub fn pump_with<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        self.pump(now_ms);
        let mut first_error = None;
        while let Some((id, request)) = self.poll_store_request() {
            let result = if first_error.is_some() {
                Err("an earlier storage request of this connection failed".to_owned())
            } else {
                match execute(store, &request) {
                    Ok(reply) => Ok(reply),
                    Err(e) => {
                        let text = e.to_string();
                        first_error = Some(e);
                        Err(text)
                    }
                }
            };
            // The request's share of its batch goes before the link takes the batch back.
            drop(request);
            // Cannot fail: completions go back in the order the requests came.
            let _ = self.handle_store_completion(id, result, now_ms);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// [`Link::compose_batch`] carried out at once against `store` ([`Link::pump_with`]):
    /// returns the messages as stored, without a [`Notice::Composed`].
    pub fn compose_with<S: Store>(
        &mut self,
        store: &mut S,
        texts: &[String],
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<Vec<Message>, ComposeError> {
        self.compose_owned_with(store, texts.to_vec(), sent_at_ms, now_ms)
    }

    fn compose_owned_with<S: Store>(
        &mut self,
        store: &mut S,
        texts: Vec<String>,
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<Vec<Message>, ComposeError> {
        let request = self.compose_batch(texts, sent_at_ms, now_ms)?;
        // A failure of another request (a batch that arrived meanwhile) closes the session
        // with its own notice; what matters here is this request's outcome.
        let _ = self.pump_with(store, now_ms);
        let position = self.notices.iter().position(|notice| match notice {
            Notice::Composed { request: r, .. } | Notice::ComposeFailed { request: r, .. } => {
                *r == request
            }
            _ => false,
        });
        match position.and_then(|i| self.notices.remove(i)) {
            Some(Notice::Composed { messages, .. }) => Ok(messages),
            Some(Notice::ComposeFailed { reason, .. }) => Err(ComposeError::Store(reason)),
            _ => Err(ComposeError::Store("the store did not answer".into())),
        }
    }

    /// One message, as [`Link::compose_with`].
    pub fn compose_one_with<S: Store>(
        &mut self,
        store: &mut S,
        text: &str,
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<Message, ComposeError> {
        let mut messages =
            self.compose_owned_with(store, vec![text.to_owned()], sent_at_ms, now_ms)?;
        Ok(messages.remove(0))
    }

    fn request(&mut self, request: StoreRequest, awaiting: Option<Awaiting>) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        if let Some(awaiting) = awaiting {
            self.awaiting.push_back((id, awaiting));
        }
        self.requests.push_back((id, request));
        id
    }

    /// A request failed: close the session (once) with the reason; lines being composed are
    /// reported as not stored. No request is made any more (fail-stop: a later batch must
    /// never be stored above a lost one).
    fn store_failure(&mut self, id: RequestId, awaiting: Awaiting, reason: String, now_ms: u64) {
        match awaiting {
            Awaiting::Compose(texts) => {
                self.notices.push_back(Notice::ComposeFailed {
                    request: id,
                    texts: unshare(texts),
                    reason: reason.clone(),
                });
            }
            Awaiting::ComposeSent(texts) => {
                self.sent_before_commit
                    .retain(|&(request, _)| request != id);
                self.notices.push_back(Notice::ComposeFailed {
                    request: id,
                    texts: unshare(texts),
                    reason: format!(
                        "{reason} (the lines were sent before their commit failed: if the peer \
                         got them, they come back to this device at the next connection)"
                    ),
                });
            }
            _ => {}
        }
        self.refilling = false;
        if !self.store_failed {
            self.store_failed = true;
            self.local_failure = Some(format!("this device could not store the chat: {reason}"));
            let detail = "the peer's device could not store the chat".to_owned();
            self.session
                .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
            self.drain_events(now_ms);
        }
    }

    fn drain_events(&mut self, now_ms: u64) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::PeerHello(peer) => {
                    let key = match self.check_peer_key(now_ms) {
                        KeyCheck::Refused => continue,
                        KeyCheck::Accepted(key) => key,
                    };
                    if matches!(self.admission, Admission::Required) {
                        self.notices.push_back(Notice::PeerProved {
                            peer: peer.clone(),
                            key,
                        });
                        self.admission = Admission::Held(peer, key);
                        continue;
                    }
                    self.open_peer(peer, key, now_ms);
                }
                Event::Established {
                    peer_received_up_to,
                    incoming,
                } => {
                    let Some(peer) = self.peer.clone() else {
                        continue;
                    };
                    if !peer.temporary && self.resume.delivered_up_to != peer_received_up_to {
                        // The sync is the authority: the mark may go down (the peer's store
                        // went back in time, and those messages are sent again now).
                        self.request(
                            StoreRequest::SetDelivered {
                                peer: peer.device,
                                up_to: peer_received_up_to,
                            },
                            Some(Awaiting::Mark),
                        );
                        self.resume.delivered_up_to = peer_received_up_to;
                    }
                    let outgoing = self.resume.last_own_seq.saturating_sub(peer_received_up_to)
                        + self.resume.unnumbered;
                    // What the chat held when the session opened, its waiting lines (which
                    // are numbered first) included: the user's own history — unless the
                    // driver said what an earlier link had shown.
                    if !self.own_lines_inherited {
                        self.own_shown.up_to = self
                            .resume
                            .last_own_seq
                            .saturating_add(self.resume.unnumbered);
                    }
                    self.own_maybe_pending = true;
                    self.waiting_maybe = self.resume.unnumbered > 0;
                    self.notices.push_back(Notice::Connected {
                        peer,
                        incoming,
                        outgoing,
                        held: self.resume,
                    });
                }
                Event::MessageToPersist(message) => {
                    if self.acks_on_arrival() {
                        let _ = self.session.confirm_persisted(message.seq);
                    }
                    self.received.push(message);
                }
                Event::OwnRecovered(message) => self.recovered.push(message),
                Event::ReturnRequested { from, to } => {
                    if let Some(peer) = self.peer.as_ref().map(|p| p.device) {
                        self.request(
                            StoreRequest::ReadPeer { peer, from, to },
                            Some(Awaiting::ReadPeer),
                        );
                    }
                }
                Event::TemporaryMessage(message) => {
                    self.temp_head.observe(&message, false);
                    self.notices.push_back(Notice::Received {
                        message,
                        stored: false,
                    });
                }
                Event::Delivered { up_to } => {
                    match &self.peer {
                        Some(peer) if peer.temporary => {
                            while self.temp_outbox.front().is_some_and(|m| m.seq <= up_to) {
                                self.temp_outbox.pop_front();
                            }
                        }
                        Some(peer) => {
                            let peer = peer.device;
                            self.request(
                                StoreRequest::MarkDelivered { peer, up_to },
                                Some(Awaiting::Mark),
                            );
                        }
                        None => {}
                    }
                    self.delivered = self.delivered.max(up_to);
                    self.show_delivered();
                }
                Event::Closed { mut reason, by } => {
                    if let Some(full) = self.local_failure.take() {
                        if by == Side::Local && reason.code == CloseCode::StorageFailure {
                            reason.detail = full;
                        }
                    }
                    self.notices.push_back(Notice::Closed { reason, by });
                }
            }
        }
    }

    /// Asks to open the chat with a peer whose key (if any) passed
    /// [`Link::check_peer_key`]: one store request binds the key and opens the chat (for a
    /// temporary peer it only checks the key), so no other process can pin between the two.
    fn open_peer(&mut self, peer: PeerHello, key: Option<PublicKey>, now_ms: u64) {
        if peer.temporary && key.is_none() {
            self.opened(
                peer,
                None,
                ChatOpening::Opened(ChatResume::default()),
                now_ms,
            );
            return;
        }
        let request = StoreRequest::OpenChat {
            peer: peer.clone(),
            key: key.map(|k| k.0),
        };
        self.request(request, Some(Awaiting::Open(peer, key)));
    }

    /// The store opened the chat (or refused the key): the session is accepted.
    fn opened(
        &mut self,
        peer: PeerHello,
        key: Option<PublicKey>,
        opening: ChatOpening,
        now_ms: u64,
    ) {
        match opening {
            ChatOpening::Opened(_) if peer.temporary => self.resume = ChatResume::default(),
            ChatOpening::Opened(resume) => self.resume = resume,
            ChatOpening::KeyMismatch { pinned } => {
                self.refuse_key(peer, key, PublicKey(pinned), now_ms);
                return;
            }
        }
        self.peer = Some(peer);
        // Fails only if the session closed meanwhile (a timeout): then there is nothing to
        // accept.
        let _ = self.session.accept_peer(self.resume, now_ms);
    }

    /// Lines are stored: tell the user, and send those numbered next in line at once (a
    /// live line needs no read of what was just written).
    fn composed(&mut self, request: RequestId, messages: Vec<Message>, now_ms: u64) {
        self.note_composed(&messages);
        if messages.iter().any(|m| m.seq != 0) {
            self.take_composed(&messages, now_ms);
        }
        self.notices
            .push_back(Notice::Composed { request, messages });
    }

    /// Newly numbered own messages: sent at once as far as the window allows, the rest kept
    /// in `unsent` — when they follow what is being sent and there is room; otherwise the
    /// store is read for them later (`own_maybe_pending`), as it holds them all.
    fn take_composed(&mut self, messages: &[Message], now_ms: u64) {
        if !self.next_in_line(messages) {
            self.read_own_later();
            return;
        }
        let mut rest = messages;
        if self.unsent.is_empty() {
            while let Some((first, tail)) = rest.split_first() {
                if self.session.send_capacity() == 0 || !self.session.is_established() {
                    break;
                }
                self.send_own(first, now_ms);
                rest = tail;
            }
        }
        let bytes: usize = rest.iter().map(|m| m.text.len()).sum();
        if self.unsent.len() + rest.len() > MAX_UNSENT
            || self.unsent_bytes + bytes > MAX_UNSENT_BYTES
        {
            self.read_own_later();
            return;
        }
        self.unsent.extend(rest.iter().cloned());
        self.unsent_bytes += bytes;
    }

    /// Whether `messages` are the next own messages to send, in order, with nothing to read
    /// from the store before them (no read or numbering in flight, none pending).
    fn next_in_line(&self, messages: &[Message]) -> bool {
        let expected = self
            .unsent
            .back()
            .map_or_else(|| self.session.next_send_seq(), |m| m.seq + 1);
        self.session.is_established()
            && !self.refilling
            && !self.own_maybe_pending
            && messages.first().is_some_and(|m| m.seq == expected)
            && messages.windows(2).all(|w| w[1].seq == w[0].seq + 1)
    }

    /// Sends what `unsent` holds as far as the window allows. If the session moved on
    /// meanwhile (its next number is not the first kept), the store decides instead.
    fn send_unsent(&mut self, now_ms: u64) {
        while self.session.is_established() && self.session.send_capacity() > 0 {
            let Some(front) = self.unsent.front() else {
                return;
            };
            if front.seq != self.session.next_send_seq() {
                self.read_own_later();
                return;
            }
            if let Some(message) = self.unsent.pop_front() {
                self.unsent_bytes -= message.text.len();
                self.send_own(&message, now_ms);
            }
        }
    }

    /// Own messages not sent yet are read from the store when the window opens; what
    /// `unsent` kept is dropped (the store holds it).
    fn read_own_later(&mut self) {
        self.forget_unsent();
        self.own_maybe_pending = true;
    }

    /// Drops what `unsent` kept (the store holds it all).
    fn forget_unsent(&mut self) {
        self.unsent.clear();
        self.unsent_bytes = 0;
    }

    /// Own messages read from the store: send them; read on while there may be more.
    fn own_read(&mut self, max: usize, messages: &[Message], now_ms: u64) {
        for message in messages {
            if !self.session.is_established()
                || self.session.send_capacity() == 0
                || message.seq != self.session.next_send_seq()
            {
                // The window or the session moved on meanwhile: read again later.
                return;
            }
            self.send_own(message, now_ms);
        }
        if messages.len() < max {
            self.own_maybe_pending = false;
        }
    }

    /// Records lines this link composed, as known to the user interface.
    fn note_composed(&mut self, messages: &[Message]) {
        self.own_shown.note_composed(messages);
    }

    /// Whether the user interface knows of own message `message` (see
    /// [`Notice::WrittenElsewhere`]); messages are asked about in the order they are sent.
    fn own_known(&mut self, message: &Message) -> bool {
        self.peer.as_ref().is_none_or(|p| p.temporary) || self.own_shown.knows(message)
    }

    fn send_own(&mut self, message: &Message, now_ms: u64) {
        let known = self.own_known(message);
        if let Err(e) = self.session.send(message, now_ms) {
            // Own numbering is contiguous by design (docs/PROTOCOL.md §2), so only a broken
            // store gets here. Never stall in silence: close with the reason, which the user
            // sees; the messages stay waiting.
            self.local_failure = Some(format!("this device cannot send its next message: {e}"));
            let detail = "the peer's device could not send its next message";
            self.session
                .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
            return;
        }
        if !known {
            self.own_shown.up_to = self.own_shown.up_to.max(message.seq);
            self.notices.push_back(Notice::WrittenElsewhere {
                message: message.clone(),
            });
        }
    }

    fn persisted(&mut self, batch: Arc<Vec<Message>>) {
        if self.store_failed {
            return;
        }
        let batch = unshare(batch);
        if let Some(last) = batch.last() {
            if !self.acks_on_arrival() {
                // Cannot fail: the batches are confirmed in the order they arrived.
                let _ = self.session.confirm_persisted(last.seq);
            }
        }
        for message in batch {
            self.notices.push_back(Notice::Received {
                message,
                stored: true,
            });
        }
    }

    fn send_returned(&mut self, messages: &[Message], now_ms: u64) {
        if self.session.send_returned(messages, now_ms).is_err() && !self.session.is_closed() {
            self.local_failure = Some(format!(
                "this device cannot send back the peer's messages: its store holds {} of \
                 those asked for",
                messages.len()
            ));
            let detail = "the peer's device could not send back the messages asked for";
            self.session
                .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
        }
    }

    /// On an encrypted link, the key the peer proved, to be bound to its device id by
    /// [`Store::open_chat`]; our own key is a self-connection and refused here. `None` on a
    /// plain link.
    fn check_peer_key(&mut self, now_ms: u64) -> KeyCheck {
        let Some(secure) = self.secure.as_ref() else {
            return KeyCheck::Accepted(None);
        };
        let Some(presented) = secure.channel.remote_static() else {
            // Unreachable: frames only flow after the handshake proved the key.
            let close = Close::new(CloseCode::Refused, "no key was proved");
            self.session.close(close, now_ms);
            return KeyCheck::Refused;
        };
        if presented == secure.own_key {
            let detail = "the peer presents this device's own key; to chat on one machine, give \
                          each side its own data directory";
            self.session
                .close(Close::new(CloseCode::SelfConnection, detail), now_ms);
            return KeyCheck::Refused;
        }
        KeyCheck::Accepted(Some(presented))
    }

    /// The store refused the peer's key: warn locally with both keys, and close with a
    /// reason that tells the peer nothing — not that its device id is known here, nor that a
    /// key is pinned for it (a prober learns only that it was refused).
    fn refuse_key(
        &mut self,
        peer: PeerHello,
        presented: Option<PublicKey>,
        pinned: PublicKey,
        now_ms: u64,
    ) {
        if let Some(presented) = presented {
            self.notices.push_back(Notice::KeyMismatch {
                peer,
                presented,
                pinned,
            });
        }
        // Code `Refused` without a detail, not `IdentityMismatch`: the code alone would tell a
        // prober that this device id is pinned here.
        self.session
            .close(Close::new(CloseCode::Refused, ""), now_ms);
    }

    /// Keeps the send window full: a temporary session from memory, a stored one by asking
    /// the store for the next own messages (one read in flight at a time), and, when nothing
    /// numbered is left, by numbering what was written while no session was established
    /// (another process's offline writes included) — unless our own history is still coming
    /// back from the peer.
    fn fill_window(&mut self, now_ms: u64) {
        let Some(peer) = self.peer.as_ref() else {
            return;
        };
        if !self.session.is_established() || self.session.send_capacity() == 0 {
            return;
        }
        let device = peer.device;
        if peer.temporary {
            let from = self.session.next_send_seq();
            let max = usize::try_from(self.session.send_capacity()).unwrap_or(usize::MAX);
            let batch: Vec<Message> = self
                .temp_outbox
                .iter()
                .skip_while(|m| m.seq < from)
                .take(max)
                .cloned()
                .collect();
            for message in &batch {
                self.send_own(message, now_ms);
            }
            return;
        }
        if self.refilling || self.store_failed {
            return;
        }
        if !self.own_maybe_pending {
            self.send_unsent(now_ms);
            if !self.unsent.is_empty() {
                // The window is full; more waits in memory.
                return;
            }
        }
        let from = self.session.next_send_seq();
        if self.own_maybe_pending {
            self.forget_unsent();
            let max = usize::try_from(self.session.send_capacity())
                .unwrap_or(REFILL_BATCH)
                .min(REFILL_BATCH);
            self.refilling = true;
            self.request(
                StoreRequest::ReadOwn {
                    peer: device,
                    from_seq: from,
                    max,
                },
                Some(Awaiting::ReadOwn(max)),
            );
        } else if self.waiting_maybe && !self.session.is_recovering() {
            self.refilling = true;
            self.request(
                StoreRequest::NumberWaiting {
                    peer: device,
                    after: from - 1,
                },
                Some(Awaiting::Number),
            );
        }
    }
}
