//! Where a ceiling's two threads run. A loopback ping-pong costs a few µs when the scheduler
//! keeps both ends on one CPU and tens of µs when they are on two (waking a thread on an
//! idle CPU is the price, and on a guest whose idle vCPUs halt it goes through the
//! hypervisor), and the scheduler picks one or the other from run to run — so a yardstick
//! left to it changes with chance. The round-trip ceilings pin their two threads instead:
//! on two CPUs ([`Placement::AcrossCores`]: two devices, as two machines would be) or both on
//! one ([`Placement::OneCore`]). Linux only (`sched_setaffinity`); elsewhere, and on a
//! machine with one CPU allowed, nothing is pinned and [`Placement::cpus`] says so.

use std::sync::OnceLock;

/// Where the two ends of a ceiling run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The near end on one CPU, the far end on another.
    AcrossCores,
    /// Both ends on the same CPU.
    OneCore,
}

impl Placement {
    /// Both placements, across cores first (the two-device yardstick).
    pub const ALL: [Placement; 2] = [Placement::AcrossCores, Placement::OneCore];

    /// How the bench prints it.
    pub fn label(self) -> &'static str {
        match self {
            Placement::AcrossCores => "across cores",
            Placement::OneCore => "one core",
        }
    }

    /// The CPUs of the near and the far end, from those the process's threads may run on
    /// ([`free_cpus`]); `None` where threads cannot be pinned (not Linux, or fewer than two
    /// CPUs allowed).
    pub fn cpus(self) -> Option<(usize, usize)> {
        let allowed = free_cpus()?;
        let (&near, &far) = (allowed.first()?, allowed.get(1)?);
        Some(match self {
            Placement::AcrossCores => (near, far),
            Placement::OneCore => (near, near),
        })
    }
}

/// The CPUs the first thread that asked, or pinned, could run on: asked again while that
/// thread is pinned to one of them, its own set would say one CPU, and every placement would
/// then look as if it could not be pinned.
fn free_cpus() -> Option<&'static [usize]> {
    static FREE: OnceLock<Option<Vec<usize>>> = OnceLock::new();
    FREE.get_or_init(sys::allowed).as_deref()
}

/// The calling thread pinned to one CPU until this is dropped, when it may again run where
/// it could before.
pub struct Pinned {
    before: Option<sys::Saved>,
}

/// Pins the calling thread to `cpu` (nothing where threads cannot be pinned).
pub fn pin_current(cpu: usize) -> Pinned {
    let _ = free_cpus();
    Pinned {
        before: sys::pin(cpu),
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(before) = self.before.take() {
            sys::restore(before);
        }
    }
}

#[cfg(target_os = "linux")]
mod sys {
    /// A thread's former CPU set.
    pub type Saved = libc::cpu_set_t;

    fn current() -> Option<libc::cpu_set_t> {
        // SAFETY: `cpu_set_t` is plain data (all zeros is the empty set), and the kernel
        // writes at most `size_of::<cpu_set_t>()` bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
                .then_some(set)
        }
    }

    fn set(set: &libc::cpu_set_t) -> bool {
        // SAFETY: `set` is a valid `cpu_set_t`; pid 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
    }

    /// The CPUs the calling thread may run on, in order.
    pub fn allowed() -> Option<Vec<usize>> {
        let set = current()?;
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `CPU_ISSET` reads the set within its size (`cpu < max`).
        Some(
            (0..max)
                .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
                .collect(),
        )
    }

    /// Pins the calling thread to `cpu`; returns the set it had.
    pub fn pin(cpu: usize) -> Option<Saved> {
        let before = current()?;
        // SAFETY: as above; `CPU_SET` writes within the set's size for `cpu` below it.
        let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return None;
        }
        unsafe { libc::CPU_SET(cpu, &mut only) };
        set(&only).then_some(before)
    }

    /// Gives the calling thread its former set back.
    pub fn restore(before: Saved) {
        let _ = set(&before);
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    /// Nothing is saved where nothing is pinned.
    pub type Saved = ();

    pub fn allowed() -> Option<Vec<usize>> {
        None
    }

    pub fn pin(_cpu: usize) -> Option<Saved> {
        None
    }

    pub fn restore(_before: Saved) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_and_gets_its_set_back() {
        let before = sys::allowed().expect("the thread's CPU set");
        let cpu = *before.last().expect("at least one CPU");
        {
            let _pinned = pin_current(cpu);
            assert_eq!(sys::allowed(), Some(vec![cpu]));
        }
        assert_eq!(sys::allowed(), Some(before));
    }

    #[test]
    fn across_cores_is_two_cpus_and_one_core_is_one() {
        let Some((near, far)) = Placement::AcrossCores.cpus() else {
            return; // One CPU allowed: nothing to tell apart.
        };
        assert_ne!(near, far);
        assert_eq!(Placement::OneCore.cpus(), Some((near, near)));
    }

    #[test]
    fn a_placement_names_the_same_cpus_while_the_asking_thread_is_pinned() {
        let across = Placement::AcrossCores.cpus();
        let Some((near, _)) = across else {
            return; // One CPU allowed: nothing to tell apart.
        };
        let _pinned = pin_current(near);
        assert_eq!(Placement::AcrossCores.cpus(), across);
        assert_eq!(Placement::OneCore.cpus(), Some((near, near)));
    }
}
