//! The core without I/O: bare sessions, links with stores, and a store with O(1) calls.

use crate::data::{message, SENT_AT_MS};
use socketfalco_core::{
    ChatHead, ChatOpening, ChatResume, DeviceId, Event, Link, Message, Notice, PeerHello, Role,
    Session, SessionConfig, StaticKeypair, Store,
};
use socketfalco_testkit::{DEVICE_A, DEVICE_B};
use std::convert::Infallible;

/// A one-chat in-memory [`Store`] whose every call is O(1) (amortized) or O(batch), so that
/// a bench of 100,000 messages measures the protocol and not the store. Same contract as the
/// harness's `MemoryStore`, without its failure switch and without per-peer maps (one chat:
/// the peer passed in is ignored).
#[derive(Clone, Debug, Default)]
pub struct BenchStore {
    /// Own messages; `own[i].seq == own_first_seq + i`.
    pub own: Vec<Message>,
    own_first_seq: u64,
    /// The peer's messages, if [`keep_received`](Self::keep_received).
    pub received: Vec<Message>,
    /// Keep received messages (a store that holds them, as a real one does on disk); if
    /// false only the count and the last sequence number are kept, so that the heap shows
    /// the protocol's working memory alone.
    pub keep_received: bool,
    /// Highest received sequence number.
    pub received_up_to: u64,
    /// Received messages stored so far.
    pub received_count: u64,
    /// The peer holds our messages up to here.
    pub delivered_up_to: u64,
    /// Calls that wrote (commits).
    pub commits: u64,
    max_lamport: u64,
}

impl BenchStore {
    /// An empty store that keeps what it receives.
    pub fn new() -> BenchStore {
        BenchStore {
            keep_received: true,
            own_first_seq: 1,
            ..BenchStore::default()
        }
    }

    /// An empty store that only counts what it receives.
    pub fn counting() -> BenchStore {
        BenchStore {
            keep_received: false,
            ..BenchStore::new()
        }
    }

    /// Adds `count` own messages with `text`, written while offline: a backlog waiting for
    /// the next connection.
    pub fn with_backlog(mut self, count: u64, text: &str) -> BenchStore {
        self.own.reserve(count as usize);
        for _ in 0..count {
            let Ok(m) = self.head().compose(text, SENT_AT_MS) else {
                unreachable!("the bench texts are valid");
            };
            self.max_lamport = m.lamport;
            self.own.push(m);
        }
        self
    }

    fn head(&self) -> ChatHead {
        ChatHead {
            last_own_seq: self
                .own
                .last()
                .map_or(0, |m| m.seq)
                .max(self.delivered_up_to),
            max_lamport: self.max_lamport,
        }
    }
}

impl Store for BenchStore {
    type Error = Infallible;

    fn open_chat(
        &mut self,
        _peer: &PeerHello,
        _key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, Infallible> {
        // The bench measures the message path: every key is accepted, none is kept.
        self.commits += 1;
        Ok(ChatOpening::Opened(ChatResume {
            received_up_to: self.received_up_to,
            last_own_seq: self.own.last().map_or(0, |m| m.seq),
            unnumbered: 0,
            delivered_up_to: self.delivered_up_to,
        }))
    }

    /// Numbers every message at once, even offline: a bench store is never restored from
    /// an older copy, which is what waiting for the sync protects against.
    fn compose_batch(
        &mut self,
        _peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, Infallible> {
        self.commits += 1;
        let mut messages = Vec::with_capacity(texts.len());
        for text in texts {
            let mut head = self.head();
            head.last_own_seq = head.last_own_seq.max(number_after.unwrap_or(0));
            let Ok(m) = head.compose(text, sent_at_ms) else {
                unreachable!("Link::compose checks the text first");
            };
            if self.own.is_empty() {
                self.own_first_seq = m.seq;
            }
            self.max_lamport = m.lamport;
            self.own.push(m.clone());
            messages.push(m);
        }
        Ok(messages)
    }

    fn number_waiting(&mut self, _peer: DeviceId, _after: u64) -> Result<u64, Infallible> {
        Ok(0)
    }

    fn peer_messages(
        &mut self,
        _peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, Infallible> {
        Ok(self
            .received
            .iter()
            .filter(|m| (from..=to).contains(&m.seq))
            .cloned()
            .collect())
    }

    fn restore_own(&mut self, _peer: DeviceId, batch: &[Message]) -> Result<(), Infallible> {
        self.commits += 1;
        for m in batch {
            if m.seq == self.own.last().map_or(0, |last| last.seq) + 1 {
                if self.own.is_empty() {
                    self.own_first_seq = m.seq;
                }
                self.max_lamport = self.max_lamport.max(m.lamport);
                self.own.push(m.clone());
            }
        }
        Ok(())
    }

    fn set_delivered(&mut self, _peer: DeviceId, up_to: u64) -> Result<(), Infallible> {
        self.commits += 1;
        self.delivered_up_to = up_to;
        Ok(())
    }

    /// Held in memory: a driver may run it inline, with no storage thread.
    fn waits_for_disk(&self) -> bool {
        false
    }

    fn own_messages(
        &mut self,
        _peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, Infallible> {
        let start = usize::try_from(from_seq.saturating_sub(self.own_first_seq))
            .unwrap_or(usize::MAX)
            .min(self.own.len());
        let end = start.saturating_add(max).min(self.own.len());
        Ok(self.own[start..end].to_vec())
    }

    fn persist_received(&mut self, _peer: DeviceId, batch: &[Message]) -> Result<(), Infallible> {
        self.commits += 1;
        for m in batch {
            if m.seq > self.received_up_to {
                self.received_up_to = m.seq;
                self.received_count += 1;
                self.max_lamport = self.max_lamport.max(m.lamport);
                if self.keep_received {
                    self.received.push(m.clone());
                }
            }
        }
        Ok(())
    }

    fn mark_delivered(&mut self, _peer: DeviceId, up_to: u64) -> Result<(), Infallible> {
        self.commits += 1;
        self.delivered_up_to = self.delivered_up_to.max(up_to);
        Ok(())
    }
}

/// Two bare sessions wired back to back, handshake done: the protocol core alone (codec,
/// state machine, acks), no store and no [`Link`]. The receiver "persists" by counting and
/// confirms once per round, as a driver does once per readiness event.
#[derive(Debug)]
pub struct SessionPair {
    /// The sender.
    pub a: Session,
    /// The receiver.
    pub b: Session,
    now_ms: u64,
    /// Highest sequence number `b` received.
    pub received_up_to: u64,
    /// Highest sequence number `a` saw acked.
    pub delivered_up_to: u64,
    /// Bytes carried each way.
    pub bytes_a_to_b: u64,
    /// Bytes carried from `b` to `a` (acks).
    pub bytes_b_to_a: u64,
}

impl SessionPair {
    /// Two new sessions ("alice" sending, "bob" receiving) after the handshake.
    pub fn established(window: u64) -> SessionPair {
        let mut config_a = SessionConfig::new(DEVICE_A, "alice");
        config_a.window = window;
        let mut config_b = SessionConfig::new(DEVICE_B, "bob");
        config_b.window = window;
        let mut pair = SessionPair {
            a: Session::new(config_a, 0),
            b: Session::new(config_b, 0),
            now_ms: 0,
            received_up_to: 0,
            delivered_up_to: 0,
            bytes_a_to_b: 0,
            bytes_b_to_a: 0,
        };
        for _ in 0..4 {
            pair.round();
        }
        assert!(
            pair.a.is_established() && pair.b.is_established(),
            "handshake"
        );
        pair
    }

    /// Moves everything pending each way once and handles the events. Returns whether any
    /// byte moved.
    pub fn round(&mut self) -> bool {
        let now = self.now_ms;
        let out = self.a.poll_transmit(now);
        let n_ab = out.len();
        self.b.handle_input(out, now);
        self.a.advance_transmit(n_ab);
        self.received_up_to = drain(&mut self.b, now).0.max(self.received_up_to);
        let out = self.b.poll_transmit(now);
        let n_ba = out.len();
        self.a.handle_input(out, now);
        self.b.advance_transmit(n_ba);
        self.delivered_up_to = drain(&mut self.a, now).1.max(self.delivered_up_to);
        self.bytes_a_to_b += n_ab as u64;
        self.bytes_b_to_a += n_ba as u64;
        n_ab + n_ba > 0
    }

    /// Sends `count` more messages with `text` from `a` to `b`, filling the window and
    /// moving bytes until `b` has acked them all. Returns the bytes carried from `a` to `b`.
    pub fn send(&mut self, count: u64, text: &str) -> u64 {
        let before = self.bytes_a_to_b;
        let target = self.a.next_send_seq() - 1 + count;
        let mut m = message(self.a.next_send_seq(), text);
        while self.delivered_up_to < target {
            while self.a.send_capacity() > 0 && self.a.next_send_seq() <= target {
                m.seq = self.a.next_send_seq();
                m.lamport = m.seq;
                if let Err(e) = self.a.send(&m, self.now_ms) {
                    panic!("send: {e}");
                }
            }
            if !self.round() {
                panic!("stalled at {} of {target}", self.delivered_up_to);
            }
        }
        self.bytes_a_to_b - before
    }
}

/// Handles a bare session's events as a driver would: accepts the peer, "persists" (counts)
/// received messages and confirms them. Returns the highest received and delivered numbers.
fn drain(session: &mut Session, now_ms: u64) -> (u64, u64) {
    let (mut received, mut delivered) = (0, 0);
    while let Some(event) = session.poll_event() {
        match event {
            Event::PeerHello(_) => {
                if let Err(e) = session.accept_peer(ChatResume::default(), now_ms) {
                    panic!("accept: {e}");
                }
            }
            Event::MessageToPersist(m) => received = m.seq,
            Event::Delivered { up_to } => delivered = up_to,
            Event::Closed { reason, .. } => panic!("closed: {reason}"),
            Event::Established { .. }
            | Event::TemporaryMessage(_)
            | Event::OwnRecovered(_)
            | Event::ReturnRequested { .. } => {}
        }
    }
    if received > 0 {
        if let Err(e) = session.confirm_persisted(received) {
            panic!("confirm: {e}");
        }
    }
    (received, delivered)
}

/// Two [`Link`]s — the driver logic every front end shares, plain or encrypted — with their
/// stores, wired back to back with no I/O. Each [`step`](Self::step) is what two drivers do on one readiness event
/// each: transmit, feed the other side, pump (one store batch, one ack).
#[derive(Debug)]
pub struct LinkPair<SA: Store, SB: Store> {
    /// The first device's link ("alice").
    pub a: Link,
    /// The second device's link ("bob").
    pub b: Link,
    /// Alice's store.
    pub store_a: SA,
    /// Bob's store.
    pub store_b: SB,
    now_ms: u64,
    /// Highest sequence number of alice's that bob's link reported delivered to alice.
    pub delivered_to_b: u64,
    /// Messages bob's link reported received (and stored).
    pub received_by_b: u64,
    /// Bytes carried from `a` to `b`.
    pub bytes_a_to_b: u64,
}

impl<SA: Store, SB: Store> LinkPair<SA, SB>
where
    SA::Error: std::fmt::Debug,
    SB::Error: std::fmt::Debug,
{
    /// Connects alice (with `store_a`) and bob (with `store_b`) and drives the handshake
    /// (and any re-sync) to the end. With `secure`, the links run the Noise handshake and
    /// encrypt everything, as the product does; alice dials (initiates).
    pub fn connect(store_a: SA, store_b: SB, secure: bool) -> LinkPair<SA, SB> {
        let link = |device: DeviceId, name: &str, role: Role| {
            let config = SessionConfig::new(device, name);
            if secure {
                let keypair = StaticKeypair::from_secret(
                    [device.0, device.0].concat().try_into().unwrap_or([7; 32]),
                );
                Link::new_secure(config, 0, role, &keypair, [device.0[0]; 32])
            } else {
                Link::new(config, 0)
            }
        };
        let mut pair = LinkPair {
            a: link(DEVICE_A, "alice", Role::Initiator),
            b: link(DEVICE_B, "bob", Role::Responder),
            store_a,
            store_b,
            now_ms: 0,
            delivered_to_b: 0,
            received_by_b: 0,
            bytes_a_to_b: 0,
        };
        pair.drive();
        assert!(pair.a.session().is_established() && pair.b.session().is_established());
        pair
    }

    /// One readiness event on each side. Returns whether any byte moved.
    pub fn step(&mut self) -> bool {
        let now = self.now_ms;
        let out = self.a.poll_transmit(now);
        let n_ab = out.len();
        self.b.handle_input(out, now);
        self.a.advance_transmit(n_ab);
        if let Err(e) = self.b.pump_with(&mut self.store_b, now) {
            panic!("bob's store: {e:?}");
        }
        while let Some(notice) = self.b.poll_notice() {
            match notice {
                Notice::Received { .. } => self.received_by_b += 1,
                Notice::Closed { reason, .. } => panic!("bob closed: {reason}"),
                _ => {}
            }
        }
        let out = self.b.poll_transmit(now);
        let n_ba = out.len();
        self.a.handle_input(out, now);
        self.b.advance_transmit(n_ba);
        if let Err(e) = self.a.pump_with(&mut self.store_a, now) {
            panic!("alice's store: {e:?}");
        }
        while let Some(notice) = self.a.poll_notice() {
            match notice {
                Notice::Delivered { up_to } => self.delivered_to_b = up_to,
                Notice::Closed { reason, .. } => panic!("alice closed: {reason}"),
                _ => {}
            }
        }
        self.bytes_a_to_b += n_ab as u64;
        n_ab + n_ba > 0
    }

    /// Steps until nothing moves.
    pub fn drive(&mut self) {
        while self.step() {}
    }

    /// Alice types `count` lines of `text`, `burst` at a time between readiness events (each
    /// burst stored in one request, as the endpoint stores the lines typed since its last
    /// turn, then sent as the window allows), until bob has acked them all.
    pub fn type_lines(&mut self, count: u64, text: &str, burst: u64) {
        let mut target = 0;
        let mut typed = 0;
        while typed < count {
            // As the endpoint writes a burst of typed lines: one store request for all.
            let n = burst.min(count - typed);
            let texts: Vec<String> = (0..n).map(|_| text.to_owned()).collect();
            match self
                .a
                .compose_with(&mut self.store_a, &texts, SENT_AT_MS, self.now_ms)
            {
                Ok(m) => target = m.last().map_or(target, |m| m.seq),
                Err(e) => panic!("compose: {e:?}"),
            }
            typed += n;
            self.step();
        }
        while self.delivered_to_b < target {
            if !self.step() {
                panic!("stalled at {} of {target}", self.delivered_to_b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SHORT_LINE;

    #[test]
    fn bare_sessions_deliver_everything_with_acks() {
        let mut pair = SessionPair::established(64);
        let bytes = pair.send(1_000, SHORT_LINE);
        assert_eq!(pair.received_up_to, 1_000);
        assert_eq!(pair.delivered_up_to, 1_000);
        assert!(bytes > 1_000 * SHORT_LINE.len() as u64);
    }

    #[test]
    fn links_deliver_typed_lines_plain_and_encrypted() {
        for secure in [false, true] {
            let mut pair = LinkPair::connect(BenchStore::new(), BenchStore::new(), secure);
            pair.type_lines(700, SHORT_LINE, 256);
            assert_eq!(pair.store_b.received.len(), 700);
            assert_eq!(pair.store_a.delivered_up_to, 700);
            assert_eq!(pair.received_by_b, 700);
        }
    }

    #[test]
    fn a_backlog_is_resent_after_reconnect() {
        let pair = LinkPair::connect(
            BenchStore::new().with_backlog(3_000, SHORT_LINE),
            BenchStore::counting(),
            true,
        );
        assert_eq!(pair.store_b.received_count, 3_000);
        assert_eq!(pair.store_b.received_up_to, 3_000);
        assert_eq!(pair.store_a.delivered_up_to, 3_000);
    }
}
