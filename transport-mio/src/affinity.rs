//! One CPU for an endpoint's event loop and its storage thread, while that CPU serves them
//! well (Linux; elsewhere nothing is pinned).
//!
//! A durable line costs two hand-offs between the loop and the storage thread on each side
//! (the request over, its completion back), and each is a wake-up. Waking a thread on a CPU
//! that is running costs a few µs; waking it on an idle CPU that has halted costs what the
//! machine takes to bring that CPU back, tens of µs on a virtual machine whose idle CPUs do
//! not poll (Linux's `haltpoll` with `guest_halt_poll_ns = 0`), and the scheduler, which
//! likes idle CPUs, picks one whenever it can. So [`SharedCpu::pin`] puts the loop and its
//! storage thread on one CPU: the storage thread spends its time waiting for the disk, so the
//! two seldom want the CPU at once, and a hand-off wakes a thread on a CPU that is awake
//! (docs/PERFORMANCE.md measures what this saves). The CPU is the one the loop runs on, unless
//! another endpoint of the process has its pair there and a CPU with fewer is allowed: two
//! devices in one process (benchmarks, tests) then run side by side as two machines would.
//! The user interface's thread, which hands the loop its lines and reads its outputs, may
//! join the pair ([`Companions`], through `Control::share_cpu`): its hand-offs are on a line's
//! path too.
//!
//! Sharing a CPU is right while the pair takes turns, wrong while both have work: a burst
//! of thousands of lines wants the storage thread committing on one CPU while the loop
//! reads, decodes and writes on another. So the storage thread places itself
//! ([`StorageSide`]): on the pair's CPU ([`Home`]) whenever it has caught up and waits for
//! work, on any CPU whenever work queued behind the group it just committed.
//!
//! A thread started by a pinned thread inherits its CPU, and nothing here would ever let it
//! go: the binary's own helper threads (terminal keys, standard input, notifications, the
//! tor control connection) call [`run_anywhere`] first.
//!
//! A pinned thread cannot leave a CPU that other work keeps busy, so the pair is watched:
//! once a second in which its threads, each time they were woken, waited longer than
//! [`MEAN_WAIT`] on average before they ran (the kernel's per-thread run-queue figures,
//! `/proc/self/task/<tid>/schedstat`), the pair is let go to wherever the scheduler puts it
//! for [`RELEASE_FOR`], then pinned again. A wake-up that finds its partner running costs a
//! few µs of waiting; a CPU shared with busy work costs hundreds. Where the kernel does not
//! report the figures, nothing is pinned. The decision is [`Policy`], pure and tested
//! without threads; the system calls are in `sys`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the run-queue figures are looked at (on a turn of the loop that comes after
/// it: an idle loop looks at nothing).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Longest the pinned pair's threads may wait for their CPU on average, per time they were
/// woken, before the pair is let go: waiting for a partner to go back to sleep takes a few
/// µs; a time slice of busy work, milliseconds.
pub const MEAN_WAIT: Duration = Duration::from_micros(100);

/// Fewest times the pair must have run in a look for its mean wait to count.
pub const MIN_RUNS: u64 = 20;

/// How long a pair let go stays free before it is pinned again.
pub const RELEASE_FOR: Duration = Duration::from_secs(30);

/// What the watch asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes.
    Stay,
    /// Let both threads run on any CPU allowed to the process.
    Release,
    /// Pin both again.
    Pin,
}

/// A thread's run-queue figures so far (or the sum of several threads'): how long it
/// waited to run, and how many times it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    /// Time spent runnable but not running.
    pub waited: Duration,
    /// Times it was put on a CPU.
    pub runs: u64,
}

/// The watch over a pinned pair: when to let it go, when to pin it again.
#[derive(Debug)]
pub struct Policy {
    pinned: bool,
    /// When the state last changed.
    since: Instant,
    /// When the figures were last looked at, and what they were.
    checked: Instant,
    waits: Option<Waits>,
}

impl Policy {
    /// A pair pinned at `now`, with its figures so far.
    pub fn pinned(now: Instant, waits: Option<Waits>) -> Policy {
        Policy {
            pinned: true,
            since: now,
            checked: now,
            waits,
        }
    }

    /// Whether the pair is pinned now.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Whether a look is due at `now` (at most one per [`CHECK_EVERY`]).
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.checked) >= CHECK_EVERY
    }

    /// Takes a look at `now` with the pair's figures so far (`None`: unknown, which lets
    /// the pair go and keeps it free). Call it when [`due`](Self::due).
    pub fn look(&mut self, now: Instant, waits: Option<Waits>) -> Action {
        let before = self.waits;
        self.checked = now;
        self.waits = waits;
        if self.pinned {
            let slow = match (before, waits) {
                (Some(before), Some(now)) => {
                    let runs = now.runs.saturating_sub(before.runs);
                    let waited = now.waited.saturating_sub(before.waited);
                    runs >= MIN_RUNS
                        && waited > MEAN_WAIT.saturating_mul(runs.min(u32::MAX as u64) as u32)
                }
                _ => true,
            };
            if slow {
                self.pinned = false;
                self.since = now;
                return Action::Release;
            }
        } else if now.saturating_duration_since(self.since) >= RELEASE_FOR && waits.is_some() {
            self.pinned = true;
            self.since = now;
            return Action::Pin;
        }
        Action::Stay
    }
}

/// A thread that can be pinned: the kernel's id of it (Linux), nothing elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadRef(sys::Tid);

impl ThreadRef {
    /// The calling thread.
    pub fn current() -> ThreadRef {
        ThreadRef(sys::current_tid())
    }
}

/// The CPU of a pinned pair, where its storage thread goes whenever it has caught up: set
/// on the loop's side, read by the storage thread.
#[derive(Debug)]
pub struct Home {
    cpu: AtomicUsize,
    /// Bumped whenever the loop's side placed the storage thread itself (so the thread's
    /// idea of where it is no longer holds).
    placed: AtomicUsize,
    /// Every CPU the pair may use (the loop's, when it was first pinned): where the storage
    /// thread goes when it leaves. Not the thread's own at its start, which the loop may
    /// already have narrowed.
    free: Mutex<Option<sys::CpuSet>>,
}

const NOWHERE: usize = usize::MAX;

impl Default for Home {
    fn default() -> Home {
        Home {
            cpu: AtomicUsize::new(NOWHERE),
            placed: AtomicUsize::new(0),
            free: Mutex::new(None),
        }
    }
}

impl Home {
    /// Makes `cpu` the pair's (`None`: it has none) and puts the storage thread `tid` there
    /// (or on `allowed`) at once.
    fn place(&self, cpu: Option<usize>, tid: sys::Tid, allowed: &sys::CpuSet) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) = Some(*allowed);
        self.cpu.store(cpu.unwrap_or(NOWHERE), Ordering::Release);
        let set = cpu.and_then(sys::only).unwrap_or(*allowed);
        // A storage thread that has ended refuses: nothing to place then.
        let _ = sys::set(tid, &set);
        self.placed.fetch_add(1, Ordering::AcqRel);
    }

    /// The pair's CPU, while it is pinned.
    pub fn get(&self) -> Option<usize> {
        Some(self.cpu.load(Ordering::Acquire)).filter(|&cpu| cpu != NOWHERE)
    }
}

/// Where the storage thread put itself, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The loop's side placed it since (or nothing is known yet).
    Unknown,
    /// On every CPU allowed.
    Free,
    /// On this CPU alone.
    On(usize),
}

/// The storage thread's side: made on the storage thread, which calls
/// [`caught_up`](Self::caught_up) before it waits for work and
/// [`backed_up`](Self::backed_up) when work waits behind the group it just committed.
pub struct StorageSide {
    home: Arc<Home>,
    tid: sys::Tid,
    placement: Placement,
    /// `Home::placed` when `placement` was last set.
    seen: usize,
}

impl StorageSide {
    /// The calling thread's side, going home to `home`.
    pub fn new(home: Arc<Home>) -> StorageSide {
        StorageSide {
            home,
            tid: sys::current_tid(),
            placement: Placement::Unknown,
            seen: 0,
        }
    }

    /// Before waiting for work: onto the pair's CPU while it has one, else onto any.
    pub fn caught_up(&mut self) {
        match self.home.get() {
            Some(cpu) => self.go(Placement::On(cpu)),
            None => self.go(Placement::Free),
        }
    }

    /// Work waits behind the group just committed: onto any CPU, beside a busy loop.
    pub fn backed_up(&mut self) {
        self.go(Placement::Free);
    }

    fn go(&mut self, want: Placement) {
        let placed = self.home.placed.load(Ordering::Acquire);
        if placed != self.seen {
            self.seen = placed;
            self.placement = Placement::Unknown;
        }
        if want == self.placement {
            return;
        }
        let set = match want {
            Placement::On(cpu) => sys::only(cpu),
            // Never placed by the loop's side: nowhere else to go, nothing to leave.
            _ => *self.home.free.lock().unwrap_or_else(|e| e.into_inner()),
        };
        if let Some(set) = set {
            if sys::set(self.tid, &set) {
                self.placement = want;
            }
        }
    }
}

/// Threads of the caller's that asked to run beside the pair (the user interface's): pinned
/// and let go with it. A thread that joins must outlive the endpoint's loop.
#[derive(Debug, Default)]
pub struct Companions {
    inner: Mutex<CompanionsInner>,
}

#[derive(Debug, Default)]
struct CompanionsInner {
    threads: Vec<sys::Tid>,
    /// The pair's CPU while it is pinned.
    cpu: Option<usize>,
}

impl Companions {
    /// Adds the calling thread to the pair's companions, and puts it on the pair's CPU at
    /// once if the pair is pinned.
    pub fn join_current(&self) {
        let tid = sys::current_tid();
        let mut inner = self.lock();
        if !inner.threads.contains(&tid) {
            inner.threads.push(tid);
        }
        if let Some(one) = inner.cpu.and_then(sys::only) {
            let _ = sys::set(tid, &one);
        }
    }

    /// Puts every companion on `cpu` (`Some`), or back on `allowed` (`None`).
    fn place(&self, cpu: Option<usize>, allowed: &sys::CpuSet) {
        let mut inner = self.lock();
        inner.cpu = cpu;
        let set = match cpu.and_then(sys::only) {
            Some(one) => one,
            None => *allowed,
        };
        for &tid in &inner.threads {
            // A companion that has ended refuses: nothing to place then.
            let _ = sys::set(tid, &set);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CompanionsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every CPU the process's threads had before any was pinned (the first pinned loop's).
static FREE_CPUS: Mutex<Option<sys::CpuSet>> = Mutex::new(None);

/// Lets the calling thread run on any CPU the process had before a loop was pinned: for a
/// thread started by a pinned one (it inherits the pin), which is no part of the pair.
/// Nothing happens where nothing was ever pinned.
pub fn run_anywhere() {
    let free = *FREE_CPUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = free {
        let _ = sys::set(sys::current_tid(), &set);
    }
}

/// How many pinned pairs of this process each CPU has (index: CPU number).
static PAIRS_ON: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The loop's thread and its storage thread on one CPU while the watch allows it. Made on
/// the loop's thread; dropped there, it gives both threads back every CPU they had.
pub struct SharedCpu {
    threads: [sys::Tid; 2],
    home: Arc<Home>,
    companions: Arc<Companions>,
    allowed: sys::CpuSet,
    /// The CPU the pair is pinned on, while it is.
    cpu: Option<usize>,
    policy: Policy,
}

impl SharedCpu {
    /// Pins the calling thread (the loop) and the `companions` on one CPU, and makes it the
    /// storage thread's `home` (the storage thread goes there itself, see [`StorageSide`]).
    /// `None` where that cannot be done or watched (not Linux, no schedstat, one CPU
    /// allowed, a refused system call): then nothing was changed.
    pub fn pin(
        storage: ThreadRef,
        home: Arc<Home>,
        companions: Arc<Companions>,
        now: Instant,
    ) -> Option<SharedCpu> {
        let threads = [sys::current_tid(), storage.0];
        let allowed = sys::allowed(threads[0])?;
        if sys::cpus(&allowed).len() < 2 {
            return None;
        }
        let waits = waits(&threads)?;
        FREE_CPUS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(allowed);
        let cpu = pin_loop(threads[0], &allowed)?;
        log::debug!("the event loop and its storage thread share CPU {cpu}");
        let shared = SharedCpu {
            threads,
            home,
            companions,
            allowed,
            cpu: Some(cpu),
            policy: Policy::pinned(now, Some(waits)),
        };
        shared.place_the_others();
        Some(shared)
    }

    /// Puts the storage thread and the companions where the loop is: on the pair's CPU
    /// while it has one, else on every CPU the loop had.
    fn place_the_others(&self) {
        self.home.place(self.cpu, self.threads[1], &self.allowed);
        self.companions.place(self.cpu, &self.allowed);
    }

    /// The CPU the pair is pinned on, while it is.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// Called on every turn of the loop: at most once per [`CHECK_EVERY`], looks at how long
    /// the pair waited for its CPU and lets it go, or pins it again.
    pub fn watch(&mut self, now: Instant) {
        if !self.policy.due(now) {
            return;
        }
        match self.policy.look(now, waits(&self.threads)) {
            Action::Stay => {}
            Action::Release => {
                log::debug!("the event loop and its storage thread waited for their CPU: let go");
                self.release();
            }
            Action::Pin => {
                self.cpu = pin_loop(self.threads[0], &self.allowed);
                self.place_the_others();
                if let Some(cpu) = self.cpu {
                    log::debug!("the event loop and its storage thread share CPU {cpu} again");
                }
            }
        }
    }

    fn release(&mut self) {
        let cpu = self.cpu.take();
        self.place_the_others();
        let _ = sys::set(self.threads[0], &self.allowed);
        if let Some(cpu) = cpu {
            let mut pairs = PAIRS_ON.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = pairs.get_mut(cpu) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

impl Drop for SharedCpu {
    fn drop(&mut self) {
        self.release();
    }
}

/// Both threads' run-queue figures together, if the kernel reports them.
fn waits(threads: &[sys::Tid; 2]) -> Option<Waits> {
    let mut total = Waits::default();
    for &tid in threads {
        let one = sys::run_queue(tid)?;
        total.waited += one.waited;
        total.runs += one.runs;
    }
    Some(total)
}

/// Of `allowed` CPUs, one with the fewest pairs of this process (`pairs`, by CPU number),
/// `current` among them if it is one.
pub fn choose_cpu(allowed: &[usize], pairs: &[usize], current: Option<usize>) -> Option<usize> {
    let on = |cpu: usize| pairs.get(cpu).copied().unwrap_or(0);
    let fewest = allowed.iter().map(|&cpu| on(cpu)).min()?;
    match current {
        Some(cpu) if allowed.contains(&cpu) && on(cpu) == fewest => Some(cpu),
        _ => allowed.iter().copied().find(|&cpu| on(cpu) == fewest),
    }
}

/// Pins the loop's thread on the CPU [`choose_cpu`] picks, and counts the pair there; the
/// CPU.
fn pin_loop(tid: sys::Tid, allowed: &sys::CpuSet) -> Option<usize> {
    let mut pairs = PAIRS_ON.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = choose_cpu(&sys::cpus(allowed), &pairs, sys::current_cpu())?;
    if !sys::set(tid, &sys::only(cpu)?) {
        return None;
    }
    if pairs.len() <= cpu {
        pairs.resize(cpu + 1, 0);
    }
    pairs[cpu] += 1;
    Some(cpu)
}

#[cfg(target_os = "linux")]
mod sys {
    //! The Linux calls: thread ids, affinity masks, the CPU a thread runs on, and the
    //! scheduler's statistics of a thread.

    use super::Waits;
    use std::time::Duration;

    pub type Tid = libc::pid_t;
    pub type CpuSet = libc::cpu_set_t;

    pub fn current_tid() -> Tid {
        // SAFETY: gettid takes no argument and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as Tid }
    }

    pub fn current_cpu() -> Option<usize> {
        // SAFETY: no argument; a negative result is an error.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }

    pub fn allowed(tid: Tid) -> Option<CpuSet> {
        // SAFETY: an all-zero cpu_set_t is valid; the kernel writes at most its size.
        unsafe {
            let mut set: CpuSet = std::mem::zeroed();
            (libc::sched_getaffinity(tid, std::mem::size_of::<CpuSet>(), &mut set) == 0)
                .then_some(set)
        }
    }

    /// The CPUs in `set`, by number.
    pub fn cpus(set: &CpuSet) -> Vec<usize> {
        // SAFETY: CPU_ISSET reads the set only, and only below its size.
        (0..8 * std::mem::size_of::<CpuSet>())
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
            .collect()
    }

    /// The set of `cpu` alone.
    pub fn only(cpu: usize) -> Option<CpuSet> {
        if cpu >= 8 * std::mem::size_of::<CpuSet>() {
            return None;
        }
        // SAFETY: an all-zero cpu_set_t is valid, and `cpu` is below its size.
        unsafe {
            let mut set: CpuSet = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            Some(set)
        }
    }

    pub fn set(tid: Tid, set: &CpuSet) -> bool {
        // SAFETY: the set is a valid cpu_set_t of the size given.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<CpuSet>(), set) == 0 }
    }

    /// How long the thread has waited on a run queue in all, and how many times it ran
    /// (`schedstat`'s second and third fields).
    pub fn run_queue(tid: Tid) -> Option<Waits> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        let mut fields = text.split_whitespace().skip(1);
        let nanos: u64 = fields.next()?.parse().ok()?;
        let runs: u64 = fields.next()?.parse().ok()?;
        Some(Waits {
            waited: Duration::from_nanos(nanos),
            runs,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! Elsewhere nothing is pinned: every call says it cannot.

    use super::Waits;

    pub type Tid = u8;
    pub type CpuSet = u8;

    pub fn current_tid() -> Tid {
        0
    }

    pub fn current_cpu() -> Option<usize> {
        None
    }

    pub fn allowed(_tid: Tid) -> Option<CpuSet> {
        None
    }

    pub fn cpus(_set: &CpuSet) -> Vec<usize> {
        Vec::new()
    }

    pub fn only(_cpu: usize) -> Option<CpuSet> {
        None
    }

    pub fn set(_tid: Tid, _set: &CpuSet) -> bool {
        false
    }

    pub fn run_queue(_tid: Tid) -> Option<Waits> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn waits(waited_us: u64, runs: u64) -> Option<Waits> {
        Some(Waits {
            waited: Duration::from_micros(waited_us),
            runs,
        })
    }

    #[test]
    fn a_pair_woken_often_that_waits_a_few_microseconds_stays_pinned() {
        let start = Instant::now();
        let mut policy = Policy::pinned(start, waits(0, 0));
        assert!(!policy.due(start + ms(999)));
        for second in 1..=60 {
            let now = start + Duration::from_secs(second);
            assert!(policy.due(now));
            // 10,000 wake-ups a second (a round trip every 0.4 ms), 5 µs each: 50 ms of
            // waiting in all, none of it long.
            assert_eq!(
                policy.look(now, waits(50_000 * second, 10_000 * second)),
                Action::Stay
            );
        }
        assert!(policy.is_pinned());
    }

    #[test]
    fn long_waits_let_the_pair_go_and_it_is_pinned_again_later() {
        let start = Instant::now();
        let mut policy = Policy::pinned(start, waits(0, 0));
        let one = start + Duration::from_secs(1);
        // 100 runs, 150 µs each on average: a CPU shared with busy work.
        assert_eq!(policy.look(one, waits(15_000, 100)), Action::Release);
        assert!(!policy.is_pinned());
        // While free, however slow, it stays free...
        for second in 2..31 {
            let now = start + Duration::from_secs(second);
            assert_eq!(
                policy.look(now, waits(15_000 * second, 100 * second)),
                Action::Stay
            );
        }
        // ...until RELEASE_FOR has passed since it was let go.
        let later = one + RELEASE_FOR;
        assert_eq!(policy.look(later, waits(500_000, 3_100)), Action::Pin);
        assert!(policy.is_pinned());
        assert_eq!(
            policy.look(later + ms(1_000), waits(500_010, 3_110)),
            Action::Stay
        );
    }

    #[test]
    fn a_few_long_waits_are_not_enough_to_judge() {
        let start = Instant::now();
        let mut policy = Policy::pinned(start, waits(0, 0));
        // A loop that ran 5 times in a second, once after a long wait: too few to tell.
        assert_eq!(
            policy.look(start + Duration::from_secs(1), waits(3_000, 5)),
            Action::Stay
        );
        // 20 runs and 2.1 ms: over 100 µs a run.
        assert_eq!(
            policy.look(start + Duration::from_secs(2), waits(5_100, 25)),
            Action::Release
        );
    }

    #[test]
    fn unknown_figures_let_the_pair_go_and_keep_it_free() {
        let start = Instant::now();
        let mut policy = Policy::pinned(start, waits(0, 0));
        assert_eq!(
            policy.look(start + Duration::from_secs(1), None),
            Action::Release
        );
        assert_eq!(
            policy.look(start + Duration::from_secs(40), None),
            Action::Stay
        );
        assert!(!policy.is_pinned());
    }

    #[test]
    fn a_second_pair_goes_to_the_cpu_with_fewest_pairs() {
        // The loop's own CPU when it has as few as any.
        assert_eq!(choose_cpu(&[0, 1], &[], Some(1)), Some(1));
        assert_eq!(choose_cpu(&[0, 1], &[1, 1], Some(1)), Some(1));
        // Another when the loop's has more.
        assert_eq!(choose_cpu(&[0, 1], &[1], Some(0)), Some(1));
        assert_eq!(
            choose_cpu(&[2, 5, 7], &[0, 0, 1, 0, 0, 1], Some(2)),
            Some(7)
        );
        // The loop's CPU is not allowed (it moved meanwhile): one that is.
        assert_eq!(choose_cpu(&[2, 3], &[], Some(0)), Some(2));
        assert_eq!(choose_cpu(&[], &[], Some(0)), None);
    }
}
