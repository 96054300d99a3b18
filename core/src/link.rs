//! A session joined to a store: the standard driver logic every front end shares.
//!
//! [`Link`] wraps a [`Session`] and, on each [`pump`](Link::pump), does what the session's
//! events ask of a driver against a [`Store`]: it opens the chat when the peer says hello,
//! persists each batch of received messages in one store call and only then confirms it (so
//! one cumulative ack covers the batch), records deliveries, and keeps the send window full
//! from the store. Temporary sessions keep their messages in memory and never write to the
//! store (an encrypted one only has its key checked against the pin). The real binary, the in-memory harness and the simulator all drive this same code,
//! so what the tests prove is what users run.
//!
//! A link is plain ([`Link::new`]) or encrypted ([`Link::new_secure`]): an encrypted link runs
//! a Noise handshake ([`crate::secure`]) before any frame and hands the static key the peer
//! proved to [`Store::open_chat`], which binds it to the peer's device id in the same
//! transaction that opens the chat (pinned on first contact: trust on first use). A peer
//! whose key does not match is refused before anything is stored or sent: the user is warned
//! ([`Notice::KeyMismatch`]), the peer gets a close that does not say why.
//!
//! A driver's loop works on the link's bytes, which are ciphertext for an encrypted link:
//! feed input with [`Link::handle_input`], call [`Link::pump`], write
//! [`Link::poll_transmit`] and report it with [`Link::advance_transmit`], show
//! [`Link::poll_notice`], sleep until input or [`Link::poll_timeout`].

use crate::frame::{Close, CloseCode};
use crate::ids::DeviceId;
use crate::message::{check_text, ChatHead, Message, TextError};
use crate::secure::{PublicKey, Role, SecureChannel, StaticKeypair};
use crate::session::{Event, PeerHello, Session, SessionConfig, Side};
use crate::store::{ChatOpening, ChatResume, Store};
use std::collections::VecDeque;
use std::fmt;

/// Most own messages read from the store in one call while filling the send window.
const REFILL_BATCH: usize = 256;

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
    },
    /// A message from the peer, already stored if `stored`.
    Received {
        /// The message.
        message: Message,
        /// Whether it is stored (false in a temporary session).
        stored: bool,
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
    },
    /// The connection is over.
    Closed {
        /// Why.
        reason: Close,
        /// Who ended it.
        by: Side,
    },
}

/// Why [`Link::compose`] could not write a message.
#[derive(Debug)]
pub enum ComposeError<E> {
    /// The peer is not known yet (no hello received): there is no chat to write in.
    NoPeer,
    /// The text is outside the limits.
    Text(TextError),
    /// The store failed; nothing was written.
    Store(E),
}

impl<E: fmt::Display> fmt::Display for ComposeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComposeError::NoPeer => write!(f, "not connected to a peer yet"),
            ComposeError::Text(e) => write!(f, "{e}"),
            ComposeError::Store(e) => write!(f, "could not store the message: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ComposeError<E> {}

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

/// A [`Session`] plus the driver logic that joins it to a [`Store`].
#[derive(Debug)]
pub struct Link {
    session: Session,
    secure: Option<Secure>,
    peer: Option<PeerHello>,
    resume: ChatResume,
    /// Own messages of a temporary session, kept until the peer acks them.
    temp_outbox: VecDeque<Message>,
    temp_head: ChatHead,
    received: Vec<Message>,
    /// Own messages the peer sent back (our store had lost them), not yet stored.
    recovered: Vec<Message>,
    notices: VecDeque<Notice>,
    /// Simulator self-test only: confirm received messages before storing them.
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
    /// Admitted, and its chat opened.
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

    /// Whether this link is encrypted.
    pub fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// The static key the peer proved, once the encrypted handshake is done.
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.secure.as_ref().and_then(|s| s.channel.remote_static())
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
            let reason = Close::new(CloseCode::IntegrityFailure, e.to_string());
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
    }

    /// Admits the peer announced by [`Notice::PeerProved`]: its key is checked against the
    /// pin and the chat opened (one store transaction), then the link goes on as usual.
    /// Does nothing if no peer waits.
    pub fn admit<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        let Admission::Held(peer, key) =
            std::mem::replace(&mut self.admission, Admission::Admitted)
        else {
            return Ok(());
        };
        // The pump opens the chat, so a store failure closes the session as any other does.
        self.admission = Admission::Admitting(peer, key);
        self.pump(store, now_ms)
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

    /// Whether the driver should keep reading from the peer.
    pub fn wants_read(&self) -> bool {
        !self.session.is_closed() || self.awaiting_handshake_for_close()
    }

    /// Whether the session is closed and everything it could still say is written: the
    /// driver drops the connection.
    pub fn is_finished(&self) -> bool {
        self.session.is_closed() && !self.wants_write() && !self.awaiting_handshake_for_close()
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

    /// The session, for input, output and getters.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for input, output and getters.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
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

    /// Deliberately breaks the durability rule — received messages are acked before they
    /// are stored — so that the simulator can prove it catches such a bug. Never use it
    /// elsewhere.
    #[doc(hidden)]
    pub fn break_durability_for_simulator_self_test(&mut self) {
        self.ack_before_persist = true;
    }

    /// Acts on everything the session has produced: accepts the peer, persists received
    /// messages in one batch and confirms them, records deliveries, fills the send window.
    /// On a store failure the session is closed (the peer re-sends next time) and the error
    /// returned.
    pub fn pump<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        let result = self.pump_inner(store, now_ms);
        if let Err(e) = &result {
            let detail = format!("this device could not store the chat: {e}");
            self.session
                .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
            self.drain_events(store, now_ms)?;
        }
        result
    }

    /// Writes a new own message: stored durably (unless the session is temporary) before it
    /// is returned, and sent as soon as the window allows. See [`Link::compose_batch`].
    pub fn compose<S: Store>(
        &mut self,
        store: &mut S,
        text: &str,
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<Message, ComposeError<S::Error>> {
        let mut messages = self.compose_batch(store, &[text.to_owned()], sent_at_ms, now_ms)?;
        Ok(messages.remove(0))
    }

    /// Writes several new own messages at once ([`Store::compose_batch`]: one durable commit
    /// for all), then sends them as the window allows. Every text is checked first; one
    /// outside the limits refuses the whole batch. While the session is not established, or
    /// still recovering our own history, the messages are stored unnumbered (`seq` 0) and
    /// numbered once it is (docs/PROTOCOL.md §2).
    pub fn compose_batch<S: Store>(
        &mut self,
        store: &mut S,
        texts: &[String],
        sent_at_ms: i64,
        now_ms: u64,
    ) -> Result<Vec<Message>, ComposeError<S::Error>> {
        for text in texts {
            check_text(text).map_err(ComposeError::Text)?;
        }
        let peer = self.peer.as_ref().ok_or(ComposeError::NoPeer)?;
        let messages = if peer.temporary {
            let mut messages = Vec::with_capacity(texts.len());
            for text in texts {
                let message = self
                    .temp_head
                    .compose(text, sent_at_ms)
                    .map_err(ComposeError::Text)?;
                self.temp_head.observe(&message, true);
                self.temp_outbox.push_back(message.clone());
                messages.push(message);
            }
            messages
        } else {
            let number_after = (self.session.is_established() && !self.session.is_recovering())
                .then(|| self.session.next_send_seq() - 1);
            store
                .compose_batch(peer.device, texts, sent_at_ms, number_after)
                .map_err(ComposeError::Store)?
        };
        // The messages are stored: that is what the caller learns. A failure of the pump
        // that follows (storing a batch that arrived meanwhile) closes the session with its
        // own notice, and these messages go out on the next connection.
        let _ = self.pump(store, now_ms);
        Ok(messages)
    }

    fn pump_inner<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        match std::mem::replace(&mut self.admission, Admission::Admitted) {
            Admission::Admitting(peer, key) => self.open_peer(store, peer, key, now_ms)?,
            other => self.admission = other,
        }
        if self.ack_before_persist && !self.received.is_empty() {
            // The broken rule: this batch was acked on arrival, in an earlier pump.
            self.persist_received(store)?;
        }
        self.drain_events(store, now_ms)?;
        if !self.ack_before_persist && !self.received.is_empty() {
            self.persist_received(store)?;
        }
        if !self.recovered.is_empty() {
            self.restore_own(store, now_ms)?;
        }
        self.fill_window(store, now_ms)
    }

    fn drain_events<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::PeerHello(peer) => {
                    let key = match self.check_peer_key(now_ms) {
                        KeyCheck::Refused => continue,
                        KeyCheck::Accepted(key) => key,
                    };
                    if matches!(self.admission, Admission::Required) {
                        self.notices
                            .push_back(Notice::PeerProved { peer: peer.clone() });
                        self.admission = Admission::Held(peer, key);
                        continue;
                    }
                    self.open_peer(store, peer, key, now_ms)?;
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
                        store.set_delivered(peer.device, peer_received_up_to)?;
                        self.resume.delivered_up_to = peer_received_up_to;
                    }
                    let outgoing = self.resume.last_own_seq.saturating_sub(peer_received_up_to)
                        + self.resume.unnumbered;
                    self.notices.push_back(Notice::Connected {
                        peer,
                        incoming,
                        outgoing,
                    });
                }
                Event::MessageToPersist(message) => {
                    if self.ack_before_persist {
                        let _ = self.session.confirm_persisted(message.seq);
                    }
                    self.received.push(message);
                }
                Event::OwnRecovered(message) => self.recovered.push(message),
                Event::ReturnRequested { from, to } => {
                    let Some(peer) = self.peer.as_ref().map(|p| p.device) else {
                        continue;
                    };
                    let messages = store.peer_messages(peer, from, to)?;
                    if self.session.send_returned(&messages, now_ms).is_err() {
                        let detail = format!(
                            "this device cannot send back the peer's messages {from}..={to}: \
                             its store holds {} of them",
                            messages.len()
                        );
                        self.session
                            .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
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
                        Some(peer) => store.mark_delivered(peer.device, up_to)?,
                        None => {}
                    }
                    self.notices.push_back(Notice::Delivered { up_to });
                }
                Event::Closed { reason, by } => {
                    self.notices.push_back(Notice::Closed { reason, by });
                }
            }
        }
        Ok(())
    }

    /// Opens the chat with a peer whose key (if any) passed [`Link::check_peer_key`]: one
    /// store call binds the key and opens the chat (for a temporary peer it only checks the
    /// key), so no other process can pin between the two; then the session is accepted.
    fn open_peer<S: Store>(
        &mut self,
        store: &mut S,
        peer: PeerHello,
        key: Option<PublicKey>,
        now_ms: u64,
    ) -> Result<(), S::Error> {
        let opening = if peer.temporary && key.is_none() {
            ChatOpening::Opened(ChatResume::default())
        } else {
            store.open_chat(&peer, key.map(|k| k.0))?
        };
        match opening {
            ChatOpening::Opened(_) if peer.temporary => self.resume = ChatResume::default(),
            ChatOpening::Opened(resume) => self.resume = resume,
            ChatOpening::KeyMismatch { pinned } => {
                self.refuse_key(peer, key, PublicKey(pinned), now_ms);
                return Ok(());
            }
        }
        self.peer = Some(peer);
        // Cannot fail: the event said the session awaits exactly this.
        let _ = self.session.accept_peer(self.resume, now_ms);
        Ok(())
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

    fn persist_received<S: Store>(&mut self, store: &mut S) -> Result<(), S::Error> {
        let Some(peer) = self.peer.as_ref().map(|p| p.device) else {
            return Ok(());
        };
        store.persist_received(peer, &self.received)?;
        if let Some(last) = self.received.last() {
            // Cannot fail: these are exactly the messages received since the last confirm.
            let _ = self.session.confirm_persisted(last.seq);
        }
        for message in self.received.drain(..) {
            self.notices.push_back(Notice::Received {
                message,
                stored: true,
            });
        }
        Ok(())
    }

    fn restore_own<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        let Some(peer) = self.peer.as_ref().map(|p| p.device) else {
            return Ok(());
        };
        store.restore_own(peer, &self.recovered)?;
        if let Some(last) = self.recovered.last() {
            // Cannot fail: these are exactly the messages returned since the last confirm.
            let _ = self.session.confirm_recovered(last.seq, now_ms);
        }
        self.recovered.clear();
        Ok(())
    }

    fn fill_window<S: Store>(&mut self, store: &mut S, now_ms: u64) -> Result<(), S::Error> {
        let Some(peer) = self.peer.as_ref() else {
            return Ok(());
        };
        let peer_device: DeviceId = peer.device;
        let temporary = peer.temporary;
        while self.session.send_capacity() > 0 {
            let from = self.session.next_send_seq();
            let max = usize::try_from(self.session.send_capacity())
                .unwrap_or(REFILL_BATCH)
                .min(REFILL_BATCH);
            let batch: Vec<Message> = if temporary {
                self.temp_outbox
                    .iter()
                    .skip_while(|m| m.seq < from)
                    .take(max)
                    .cloned()
                    .collect()
            } else {
                let batch = store.own_messages(peer_device, from, max)?;
                // Nothing numbered is left to send: number what was written while no session
                // was established (another process's offline writes included), unless our
                // own history is still coming back from the peer.
                if batch.is_empty()
                    && !self.session.is_recovering()
                    && store.number_waiting(peer_device, from - 1)? > 0
                {
                    continue;
                }
                batch
            };
            if batch.is_empty() {
                break;
            }
            for message in &batch {
                if let Err(e) = self.session.send(message, now_ms) {
                    // Own numbering is contiguous by design (docs/PROTOCOL.md §2), so only a
                    // broken store gets here. Never stall in silence: close with the reason,
                    // which the user sees; the messages stay waiting.
                    let detail = format!("this device cannot send its next message: {e}");
                    self.session
                        .close(Close::new(CloseCode::StorageFailure, detail), now_ms);
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
