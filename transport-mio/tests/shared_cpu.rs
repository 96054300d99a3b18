//! An endpoint whose store has a storage thread keeps its event loop and that thread on one
//! CPU while it runs (Linux, two CPUs or more, and a kernel that reports run-queue waits),
//! gives the loop's thread back every CPU when it ends, and pins nothing when told not to; a
//! thread started by a pinned one runs anywhere once it asks (`run_anywhere`).
//! The storage thread leaves the shared CPU while work waits behind its group, and comes
//! back once it has caught up. The affinity is read back from the kernel
//! (`/proc/self/task/<tid>/status`).
#![cfg(target_os = "linux")]

use socketfalco_core::{RequestId, SessionConfig, StoreRequest};
use socketfalco_testkit::{MemoryStore, SlowCommits, DEVICE_A, DEVICE_B};
use socketfalco_transport::affinity::SharedCpu;
use socketfalco_transport::storage::{Origin, Storage};
use socketfalco_transport::{Command, Endpoint, EndpointConfig, Output, Role};
use std::fs;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tests run one at a time: each looks for the one thread named "storage".
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The CPUs each thread of this process named `name` may run on (`Cpus_allowed_list`).
fn allowed_of_threads_named(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/task").expect("the task list") {
        let dir = entry.expect("a task").path();
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            continue; // it ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let status = fs::read_to_string(dir.join("status")).expect("its status");
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list");
        found.push(list.trim().to_owned());
    }
    found
}

fn own_allowed() -> String {
    let status = fs::read_to_string("/proc/thread-self/status").expect("own status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_owned()
}

/// Whether pinning can happen here at all: two CPUs allowed and schedstat readable.
fn machine_can_pin() -> bool {
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    two && fs::read_to_string("/proc/thread-self/schedstat").is_ok()
}

/// What each thread may run on while a listener listens, and its loop's thread after.
struct Seen {
    /// The loop's thread while it listens.
    loop_thread: String,
    /// Each thread named "storage" then.
    storage: Vec<String>,
    /// The test's own thread, which asked to share the loop's CPU, then.
    companion: String,
    /// The loop's thread before the endpoint started, and after it ended.
    loop_before: String,
    loop_after: String,
    /// The test's own thread after the endpoint ended.
    companion_after: String,
    /// A thread the test's thread started while it listened: at its start, and once it
    /// called `run_anywhere`.
    child_inherited: String,
    child_anywhere: String,
}

/// Runs a listener with a storage thread (commits slowed a little: a disk) on a thread named
/// `loop_name`, the test's thread asking to share its CPU; what each thread may run on.
fn affinity_while_listening(share_one_cpu: bool, loop_name: &str) -> Seen {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = EndpointConfig::new(SessionConfig::new(DEVICE_A, "alice"), None);
    config.share_one_cpu = share_one_cpu;
    let store = SlowCommits {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(1),
    };
    let bind = "127.0.0.1:0".parse().expect("an address");
    let (outputs_tx, outputs) = channel();
    let (after_tx, after) = channel();
    let thread = std::thread::Builder::new()
        .name(loop_name.to_owned())
        .spawn(move || {
            let before = own_allowed();
            let (mut endpoint, control) =
                Endpoint::new(Role::Listen { bind }, config, store).expect("an endpoint");
            let _ = outputs_tx.send(control);
            let result = endpoint.run(|_, output| {
                if let Output::Listening(_) = output {
                    let _ = after_tx.send(None);
                }
            });
            let _ = after_tx.send(Some((before, own_allowed())));
            result.map_err(|e| e.to_string())
        })
        .expect("the loop's thread");
    let control = outputs.recv().expect("the control");
    control.share_cpu();
    assert_eq!(
        after.recv_timeout(Duration::from_secs(10)),
        Ok(None),
        "it listens"
    );
    let loop_allowed = allowed_of_threads_named(loop_name);
    let storage = allowed_of_threads_named("storage");
    let companion = own_allowed();
    let (child_inherited, child_anywhere) = std::thread::spawn(|| {
        let inherited = own_allowed();
        socketfalco_transport::affinity::run_anywhere();
        (inherited, own_allowed())
    })
    .join()
    .expect("the child thread");
    control.send(Command::Quit);
    let (loop_before, loop_after) = after
        .recv_timeout(Duration::from_secs(10))
        .expect("it ends")
        .expect("the end, after the start");
    assert_eq!(thread.join().expect("no panic"), Ok(()));
    assert_eq!(loop_allowed.len(), 1, "one loop thread: {loop_allowed:?}");
    Seen {
        loop_thread: loop_allowed[0].clone(),
        storage,
        companion,
        loop_before,
        loop_after,
        companion_after: own_allowed(),
        child_inherited,
        child_anywhere,
    }
}

/// Whether a `Cpus_allowed_list` names exactly one CPU.
fn is_one_cpu(list: &str) -> bool {
    !list.contains(',') && !list.contains('-')
}

#[test]
fn the_loop_its_storage_thread_and_the_caller_share_one_cpu_and_get_every_cpu_back() {
    let all = own_allowed();
    let seen = affinity_while_listening(true, "shared-loop");
    assert_eq!(
        seen.storage.len(),
        1,
        "one storage thread: {:?}",
        seen.storage
    );
    assert_eq!(seen.loop_before, all);
    if machine_can_pin() {
        assert!(
            is_one_cpu(&seen.loop_thread),
            "the loop may run on {}",
            seen.loop_thread
        );
        assert_eq!(
            seen.storage[0], seen.loop_thread,
            "the storage thread beside the loop"
        );
        assert_eq!(
            seen.companion, seen.loop_thread,
            "the caller beside the loop"
        );
        assert_eq!(
            seen.child_inherited, seen.loop_thread,
            "a thread it starts inherits the pin"
        );
    } else {
        assert_eq!(
            seen.loop_thread, all,
            "nothing pinned where it cannot be watched"
        );
        assert_eq!(seen.companion, all);
    }
    assert_eq!(seen.loop_after, all, "the loop's thread has every CPU back");
    assert_eq!(seen.companion_after, all, "the caller has every CPU back");
    assert_eq!(seen.child_anywhere, all, "run_anywhere gives it every CPU");
}

#[test]
fn told_not_to_the_endpoint_pins_nothing() {
    let all = own_allowed();
    let seen = affinity_while_listening(false, "free-loop");
    assert_eq!(seen.loop_thread, all);
    assert_eq!(seen.storage, std::slice::from_ref(&all));
    assert_eq!(seen.companion, all);
    assert_eq!(seen.loop_after, all);
    assert_eq!(seen.companion_after, all);
}

/// What the thread named "storage" may run on (the one of this test: they run one at a time).
fn storage_allowed() -> String {
    let all = allowed_of_threads_named("storage");
    assert_eq!(all.len(), 1, "one storage thread: {all:?}");
    all[0].clone()
}

/// Polls `what` every 5 ms until `want` holds of it, or gives up after `within`: the last
/// value seen, and whether `want` held.
fn until(
    within: Duration,
    mut what: impl FnMut() -> String,
    want: impl Fn(&str) -> bool,
) -> (String, bool) {
    let start = std::time::Instant::now();
    loop {
        let seen = what();
        if want(&seen) || start.elapsed() > within {
            let held = want(&seen);
            return (seen, held);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A burst wants the storage thread committing on one CPU while the loop works on another:
/// once a request waits behind the group being committed, the storage thread leaves the
/// shared CPU, and it comes back once it has caught up.
#[test]
fn the_storage_thread_leaves_the_shared_cpu_while_work_waits_and_comes_back_after() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let all = own_allowed();
    let poll = mio::Poll::new().expect("a poll");
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("a waker"));
    let store = SlowCommits {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(300),
    };
    let storage = Storage::start(store, waker).expect("the storage thread");
    let (thread, home) = storage
        .thread()
        .expect("a store that waits for a disk has a thread");
    let Some(shared) = SharedCpu::pin(thread, home, Arc::default(), std::time::Instant::now())
    else {
        assert!(!machine_can_pin(), "pinning fails where it could be done");
        return;
    };
    let cpu = shared.cpu().expect("pinned").to_string();
    assert_eq!(storage_allowed(), cpu, "waiting for work on the loop's CPU");
    let compose = |text: &str| StoreRequest::Compose {
        peer: DEVICE_B,
        texts: Arc::new(vec![text.to_owned()]),
        sent_at_ms: 7,
        number_after: None,
    };
    storage.submit(Origin::Endpoint, RequestId(1), compose("first"));
    // The first group commits (300 ms); the second request waits behind it.
    std::thread::sleep(Duration::from_millis(50));
    storage.submit(Origin::Endpoint, RequestId(2), compose("second"));
    let (seen, left) = until(Duration::from_secs(10), storage_allowed, |s| s == all);
    assert!(left, "while work waited it stayed on {seen}");
    let (seen, back) = until(Duration::from_secs(10), storage_allowed, |s| s == cpu);
    assert!(back, "once caught up it stayed on {seen}, not {cpu}");
    let mut done = 0;
    let (mut poll, deadline) = (poll, std::time::Instant::now() + Duration::from_secs(10));
    let mut events = mio::Events::with_capacity(4);
    while done < 2 && std::time::Instant::now() < deadline {
        while let Some(completion) = storage.next_completion().expect("the thread runs") {
            assert!(completion.result.is_ok(), "{completion:?}");
            done += 1;
        }
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
    }
    assert_eq!(done, 2, "both requests completed");
    drop(shared);
    assert_eq!(storage_allowed(), all, "let go with the pair");
}
