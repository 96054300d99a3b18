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
//!
//! A disk can also go back in time: a store restored from a backup or a synced folder, or a
//! disk that lost its write cache. [`StoreHistory`] keeps the states a device's store
//! committed (each commit through a [`Disk`] that has one records the state after it) so that
//! the `restore` fault can put the store back to any earlier commit: the last
//! [`RECENT_STATES`] exactly, older ones sampled (at most [`OLDER_STATES`], thinned by half
//! when full, the empty store always kept).

use socketfalco_core::{ChatOpening, DeviceId, Message, PeerHello, Store};
use socketfalco_testkit::{MemoryStore, MemoryStoreError};
use std::collections::VecDeque;
use std::fmt;

/// States of the latest commits a [`StoreHistory`] keeps, every one.
pub const RECENT_STATES: usize = 48;
/// Older states it keeps, sampled; the first is the empty store.
pub const OLDER_STATES: usize = 16;

/// One committed state of a store.
#[derive(Clone, Debug)]
struct State {
    /// Its commit number, in the order the commits were made (across restores).
    commit: u64,
    /// The line of states it belongs to (a restore starts a new one).
    branch: usize,
    /// Commits along its own past, from the empty store.
    depth: u64,
    store: MemoryStore,
}

/// The committed states of one device's store, for the `restore` fault.
///
/// The states form a tree: a restore goes back to an earlier state, and the commits after it
/// start a new branch from there; the abandoned future stays in the history. A restore goes
/// back along the store's **own past** (the states its current state grew from: a lost
/// write cache, a backup of this very store), or, with `any`, to **any** state the store ever
/// committed, counted in the order the commits were made (a backup taken before an earlier
/// restore, from the abandoned future).
#[derive(Clone, Debug)]
pub struct StoreHistory {
    /// Commits recorded so far.
    commits: u64,
    /// Each branch's parent branch and the depth at which it left it (branch 0: the root).
    branches: Vec<(usize, u64)>,
    /// The current state's branch and depth.
    branch: usize,
    depth: u64,
    /// The latest states, the latest last.
    recent: VecDeque<State>,
    /// Older samples, by commit; the first is the empty store.
    older: Vec<State>,
}

impl Default for StoreHistory {
    fn default() -> Self {
        StoreHistory {
            commits: 0,
            branches: vec![(0, 0)],
            branch: 0,
            depth: 0,
            recent: VecDeque::new(),
            older: vec![State {
                commit: 0,
                branch: 0,
                depth: 0,
                store: MemoryStore::new(),
            }],
        }
    }
}

impl StoreHistory {
    /// An empty history: only the empty store (commit 0).
    pub fn new() -> StoreHistory {
        StoreHistory::default()
    }

    /// Commits recorded so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Commits along the current state's own past.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// States kept.
    pub fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }

    /// Whether only the empty store is kept.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.older.len() <= 1
    }

    /// The store committed a new state.
    pub fn record(&mut self, store: &MemoryStore) {
        self.commits += 1;
        self.depth += 1;
        self.recent.push_back(State {
            commit: self.commits,
            branch: self.branch,
            depth: self.depth,
            store: store.clone(),
        });
        if self.recent.len() > RECENT_STATES {
            if let Some(oldest) = self.recent.pop_front() {
                if self.older.len() >= OLDER_STATES {
                    // Keep the empty store and every other sample: the older, the sparser.
                    let mut i = 0;
                    self.older.retain(|_| {
                        i += 1;
                        i == 1 || i % 2 == 0
                    });
                }
                self.older.push(oldest);
            }
        }
    }

    /// Whether `state` is in the current state's own past.
    fn is_ancestor(&self, state: &State) -> bool {
        let (mut branch, mut limit) = (self.branch, self.depth);
        loop {
            if state.branch == branch {
                return state.depth <= limit;
            }
            if branch == 0 {
                return false;
            }
            (branch, limit) = self.branches[branch];
        }
    }

    /// Goes back `back` commits: along the current state's own past, or with `any` in the
    /// order the commits were made, to that state or the nearest older one kept (the empty
    /// store at the latest). The commits that follow start a new branch from it. Returns
    /// the state's commit number and the state.
    pub fn restore(&mut self, back: u64, any: bool) -> (u64, MemoryStore) {
        let found = if any {
            let target = self.commits.saturating_sub(back);
            self.recent
                .iter()
                .rev()
                .chain(self.older.iter().rev())
                .find(|s| s.commit <= target)
        } else {
            let target = self.depth.saturating_sub(back);
            self.recent
                .iter()
                .rev()
                .chain(self.older.iter().rev())
                .find(|s| s.depth <= target && self.is_ancestor(s))
        };
        let state = found.unwrap_or(&self.older[0]).clone();
        self.branches.push((state.branch, state.depth));
        self.branch = self.branches.len() - 1;
        self.depth = state.depth;
        (state.commit, state.store)
    }
}

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
    history: Option<&'a mut StoreHistory>,
    crashed: bool,
    /// Successful commits through this handle.
    pub commits: u32,
    /// Write calls attempted through this handle (successful, failed or cut by a crash).
    pub writes: u32,
    /// Write calls that failed (simulated disk failures) through this handle.
    pub failures: u32,
}

impl<'a> Disk<'a> {
    /// The disk of one device for one driver call.
    pub fn new(store: &'a mut MemoryStore, faults: &'a mut DiskFaults) -> Disk<'a> {
        Disk {
            store,
            faults,
            history: None,
            crashed: false,
            commits: 0,
            writes: 0,
            failures: 0,
        }
    }

    /// The same, recording the state after each commit in `history`.
    pub fn with_history(
        store: &'a mut MemoryStore,
        faults: &'a mut DiskFaults,
        history: &'a mut StoreHistory,
    ) -> Disk<'a> {
        let mut disk = Disk::new(store, faults);
        disk.history = Some(history);
        disk
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
            self.failures += 1;
            return Err(DiskError::Failed);
        }
        Ok(())
    }

    fn after_write<T>(&mut self, result: Result<T, MemoryStoreError>) -> Result<T, DiskError> {
        let value = result.map_err(DiskError::Store)?;
        self.commits += 1;
        if let Some(history) = self.history.as_mut() {
            history.record(self.store);
        }
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
    use socketfalco_testkit::DEVICE_B;

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

    #[test]
    fn the_history_goes_back_any_number_of_commits() {
        let held = |s: &MemoryStore| s.chats.get(&DEVICE_B).map_or(0, |c| c.unnumbered.len());
        let history = |n: i64| {
            let mut store = MemoryStore::new();
            let mut faults = DiskFaults::default();
            let mut history = StoreHistory::new();
            let mut disk = Disk::with_history(&mut store, &mut faults, &mut history);
            for i in 0..n {
                assert!(disk.compose(DEVICE_B, &format!("m{i}"), i).is_ok());
            }
            history
        };
        assert_eq!(history(200).commits(), 200);
        assert!(history(200).len() <= RECENT_STATES + OLDER_STATES);
        // The latest commits exactly.
        for back in 0..RECENT_STATES as u64 {
            let (commit, state) = history(200).restore(back, false);
            assert_eq!(commit, 200 - back);
            assert_eq!(held(&state), 200 - back as usize);
        }
        // Older ones: the nearest kept state at or before the one asked for.
        let (commit, state) = history(200).restore(120, false);
        assert!(commit <= 80, "{commit}");
        assert_eq!(held(&state), commit as usize);
        // Before the first commit: the empty store.
        let (commit, state) = history(200).restore(1_000, true);
        assert_eq!(commit, 0);
        assert!(state.chats.is_empty());
    }

    #[test]
    fn a_restore_goes_back_along_its_own_past_or_to_any_state() {
        let mut store = MemoryStore::new();
        let mut faults = DiskFaults::default();
        let mut history = StoreHistory::new();
        for i in 0..10 {
            let mut disk = Disk::with_history(&mut store, &mut faults, &mut history);
            assert!(disk.compose(DEVICE_B, &format!("m{i}"), i).is_ok());
        }
        // Back to commit 4, then 3 commits on a new branch: commits 11..=13, depth 7.
        let (commit, restored) = history.restore(6, false);
        assert_eq!(commit, 4);
        store = restored;
        for i in 0..3 {
            let mut disk = Disk::with_history(&mut store, &mut faults, &mut history);
            assert!(disk.compose(DEVICE_B, &format!("n{i}"), i).is_ok());
        }
        assert_eq!((history.commits(), history.depth()), (13, 7));
        // Its own past: 2 back is commit 11 (depth 5), 4 back is commit 3 (depth 3).
        let mut own_past = history.clone();
        assert_eq!(own_past.restore(2, false).0, 11);
        let mut own_past = history.clone();
        assert_eq!(own_past.restore(4, false).0, 3);
        // Any state: 4 back is commit 9, from the abandoned future.
        let (commit, state) = history.restore(4, true);
        assert_eq!(commit, 9);
        assert_eq!(state.chats[&DEVICE_B].unnumbered.len(), 9);
        assert_eq!(history.depth(), 9);
    }
}
