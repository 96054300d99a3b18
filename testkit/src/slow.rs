//! [`SlowCommits`]: any store, with every group commit slowed down: a slow disk on demand.

use socketfalco_core::{ChatOpening, DeviceId, Message, PeerHello, Store};

/// A store whose every group commit takes at least `delay` more (a test double for a slow
/// disk): the fairness example shows with it that the event loop never waits for the disk,
/// and the transport's tests drive a storage thread with it (it says it waits for a disk,
/// whatever it wraps). Every call is forwarded; only [`Store::commit_group`] sleeps.
pub struct SlowCommits<S> {
    /// The store underneath.
    pub inner: S,
    /// Added to each group commit.
    pub delay: std::time::Duration,
}

impl<S: Store> Store for SlowCommits<S> {
    type Error = S::Error;

    fn open_chat(
        &mut self,
        peer: &PeerHello,
        key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, S::Error> {
        self.inner.open_chat(peer, key)
    }

    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, S::Error> {
        self.inner
            .compose_batch(peer, texts, sent_at_ms, number_after)
    }

    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, S::Error> {
        self.inner.number_waiting(peer, after)
    }

    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, S::Error> {
        self.inner.own_messages(peer, from_seq, max)
    }

    fn persist_received(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), S::Error> {
        self.inner.persist_received(peer, batch)
    }

    fn peer_messages(
        &mut self,
        peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, S::Error> {
        self.inner.peer_messages(peer, from, to)
    }

    fn restore_own(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), S::Error> {
        self.inner.restore_own(peer, batch)
    }

    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), S::Error> {
        self.inner.mark_delivered(peer, up_to)
    }

    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), S::Error> {
        self.inner.set_delivered(peer, up_to)
    }

    fn waits_for_disk(&self) -> bool {
        true
    }

    fn begin_group(&mut self) -> Result<(), S::Error> {
        self.inner.begin_group()
    }

    fn commit_group(&mut self) -> Result<(), S::Error> {
        std::thread::sleep(self.delay);
        self.inner.commit_group()
    }
}
