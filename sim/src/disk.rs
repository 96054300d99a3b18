//! [`Disk`]: a device's durable [`MemoryStore`] seen through the faults a real disk and a
//! real process have — a store call that fails, and a process that dies between two commits.
//!
//! `MemoryStore` has the SQLite store's contract: each successful call is one durable
//! commit. A crash "inside" a store call therefore happens between commits: the calls made
//! before it are kept, the one it interrupts and everything after never happen.
//!
//! Every method of [`Store`] is forwarded; [`Store::open_chat`], which also binds the peer's
//! key on an encrypted link, is a write for the faults (a commit), except for a temporary
//! peer, whose opening writes nothing.

use socketfalco_core::harness::{MemoryStore, MemoryStoreError};
use socketfalco_core::{ChatOpening, DeviceId, Message, PeerHello, Store};
use std::fmt;

/// Faults armed on one device's disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// The process dies at the next write call after this many more commits.
    pub crash_after: Option<u32>,
    /// Write calls that succeed before the failures start.
    pub fail_after: u32,
    /// Write calls that fail (nothing of them takes effect).
    pub fail_count: u32,
}

/// Why a [`Disk`] call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The process died; nothing more happens on this device until it restarts.
    Crashed,
    /// A simulated storage failure: this call took no effect.
    Failed,
    /// The storage model itself refused.
    Store(MemoryStoreError),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Crashed => write!(f, "the process died"),
            DiskError::Failed => write!(f, "simulated disk failure"),
            DiskError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// A [`Store`] over a device's [`MemoryStore`] that applies its armed [`DiskFaults`].
pub struct Disk<'a> {
    store: &'a mut MemoryStore,
    faults: &'a mut DiskFaults,
    crashed: bool,
    /// Successful commits through this handle.
    pub commits: u32,
    /// Write calls attempted through this handle (successful, failed or cut by a crash).
    pub writes: u32,
}

impl<'a> Disk<'a> {
    /// The disk of one device for one driver call.
    pub fn new(store: &'a mut MemoryStore, faults: &'a mut DiskFaults) -> Disk<'a> {
        Disk {
            store,
            faults,
            crashed: false,
            commits: 0,
            writes: 0,
        }
    }

    /// Whether the process died during this driver call.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    fn before_write(&mut self) -> Result<(), DiskError> {
        self.writes += 1;
        if self.crashed {
            return Err(DiskError::Crashed);
        }
        if self.faults.crash_after == Some(0) {
            self.faults.crash_after = None;
            self.crashed = true;
            return Err(DiskError::Crashed);
        }
        if self.faults.fail_count > 0 && self.faults.fail_after == 0 {
            self.faults.fail_count -= 1;
            return Err(DiskError::Failed);
        }
        Ok(())
    }

    fn after_write<T>(&mut self, result: Result<T, MemoryStoreError>) -> Result<T, DiskError> {
        let value = result.map_err(DiskError::Store)?;
        self.commits += 1;
        if let Some(n) = self.faults.crash_after.as_mut() {
            *n = n.saturating_sub(1);
        }
        if self.faults.fail_count > 0 {
            self.faults.fail_after = self.faults.fail_after.saturating_sub(1);
        }
        Ok(value)
    }
}

impl Store for Disk<'_> {
    type Error = DiskError;

    fn open_chat(
        &mut self,
        peer: &PeerHello,
        key: Option<[u8; 32]>,
    ) -> Result<ChatOpening, DiskError> {
        if peer.temporary {
            // Only a read: the key is checked, nothing is written.
            if self.crashed {
                return Err(DiskError::Crashed);
            }
            return self.store.open_chat(peer, key).map_err(DiskError::Store);
        }
        self.before_write()?;
        let result = self.store.open_chat(peer, key);
        self.after_write(result)
    }

    fn compose_batch(
        &mut self,
        peer: DeviceId,
        texts: &[String],
        sent_at_ms: i64,
        number_after: Option<u64>,
    ) -> Result<Vec<Message>, DiskError> {
        self.before_write()?;
        let result = self
            .store
            .compose_batch(peer, texts, sent_at_ms, number_after);
        self.after_write(result)
    }

    fn number_waiting(&mut self, peer: DeviceId, after: u64) -> Result<u64, DiskError> {
        if self.crashed {
            return Err(DiskError::Crashed);
        }
        // Nothing waiting: a read, as in the SQLite store (no commit to crash in).
        if self
            .store
            .chats
            .get(&peer)
            .is_none_or(|c| c.unnumbered.is_empty())
        {
            return Ok(0);
        }
        self.before_write()?;
        let result = self.store.number_waiting(peer, after);
        self.after_write(result)
    }

    fn own_messages(
        &mut self,
        peer: DeviceId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, DiskError> {
        if self.crashed {
            return Err(DiskError::Crashed);
        }
        self.store
            .own_messages(peer, from_seq, max)
            .map_err(DiskError::Store)
    }

    fn persist_received(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), DiskError> {
        self.before_write()?;
        let result = self.store.persist_received(peer, batch);
        self.after_write(result)
    }

    fn peer_messages(
        &mut self,
        peer: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, DiskError> {
        if self.crashed {
            return Err(DiskError::Crashed);
        }
        self.store
            .peer_messages(peer, from, to)
            .map_err(DiskError::Store)
    }

    fn restore_own(&mut self, peer: DeviceId, batch: &[Message]) -> Result<(), DiskError> {
        self.before_write()?;
        let result = self.store.restore_own(peer, batch);
        self.after_write(result)
    }

    fn set_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), DiskError> {
        self.before_write()?;
        let result = self.store.set_delivered(peer, up_to);
        self.after_write(result)
    }

    fn mark_delivered(&mut self, peer: DeviceId, up_to: u64) -> Result<(), DiskError> {
        self.before_write()?;
        let result = self.store.mark_delivered(peer, up_to);
        self.after_write(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketfalco_core::harness::DEVICE_B;

    #[test]
    fn a_crash_keeps_the_commits_before_it() {
        let mut store = MemoryStore::new();
        let mut faults = DiskFaults {
            crash_after: Some(1),
            ..DiskFaults::default()
        };
        let mut disk = Disk::new(&mut store, &mut faults);
        assert!(disk.compose(DEVICE_B, "kept", 1).is_ok());
        assert_eq!(disk.compose(DEVICE_B, "lost", 2), Err(DiskError::Crashed));
        assert!(disk.crashed());
        assert_eq!(disk.compose(DEVICE_B, "dead", 3), Err(DiskError::Crashed));
        assert_eq!(store.chats[&DEVICE_B].unnumbered.len(), 1);
        assert_eq!(faults, DiskFaults::default(), "the crash is used up");
    }

    #[test]
    fn failures_start_after_the_successes() {
        let mut store = MemoryStore::new();
        let mut faults = DiskFaults {
            crash_after: None,
            fail_after: 1,
            fail_count: 1,
        };
        let mut disk = Disk::new(&mut store, &mut faults);
        assert!(disk.compose(DEVICE_B, "one", 1).is_ok());
        assert_eq!(disk.compose(DEVICE_B, "two", 2), Err(DiskError::Failed));
        assert!(disk.compose(DEVICE_B, "three", 3).is_ok());
        assert!(!disk.crashed());
        assert_eq!(store.chats[&DEVICE_B].unnumbered.len(), 2);
    }
}
