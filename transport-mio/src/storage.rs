//! The storage thread: every storage request of the endpoint's links is carried out here,
//! many per durable commit, so that the event loop never waits for a disk.
//!
//! The loop hands requests over ([`Storage::submit`]) and goes on reading, decoding and
//! writing; the thread takes what queued since its previous commit, carries it out in one
//! group ([`Store::begin_group`] … [`Store::commit_group`]: one fsync for the received
//! batches of every chat, the typed lines and the delivery marks together), then sends the
//! completions back and wakes the loop through its [`mio::Waker`]. While one commit runs, the
//! next group queues up; the disk is the only limit. A group takes one request of each chat
//! in turn (one round while several chats wait; a lone chat's requests until the group is
//! full), up to [`MAX_GROUP_ROWS`] messages while several chats are established, so a chat
//! re-syncing a long backlog delays another chat's live line by at most one short commit
//! ([`MAX_LONE_GROUP_ROWS`] while one is: nobody waits then), and [`MAX_GROUP_BYTES`] of text.
//!
//! The rules of [`socketfalco_core::StoreRequest`] hold here: a link's requests take effect
//! and complete in the order they came (one thread, one queue per chat); once one of a link's
//! requests failed, its later ones fail without being carried out; a completion is sent only
//! after the commit that made its effect durable. Before that commit, a link's compose that
//! numbered lines is reported as [`Stage::Written`], so the lines go on the wire while the
//! commit runs (docs/PROTOCOL.md §6.2): the round trip waits for one commit's time instead of
//! two. The delivery marks are advisory and cost no commit, nor even a wake-up, of their own:
//! the loop's side holds them and hands them over with the next request or task (in one
//! send, before it: the order holds), or alone once they have waited [`MARK_DELAY`], or at
//! the end: showing a line as delivered wakes no storage thread.

use crate::affinity::{Home, StorageSide, ThreadRef};
use mio::{Token, Waker};
use socketfalco_core::{execute, DeviceId, RequestId, Store, StoreReply, StoreRequest};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest a delivery mark waits for a commit that happens anyway.
pub const MARK_DELAY: Duration = Duration::from_millis(250);

/// Most jobs in one group: bounds one transaction's size (and the time until its
/// completions come back) while a flood of requests queues.
pub const MAX_GROUP_JOBS: usize = 16_384;

/// Who made a request: whose completion it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Origin {
    /// The link of the connection on this token (tokens are never reused).
    Link(Token),
    /// The endpoint itself: a line for a chat with no connection, which stands alone (no
    /// order with other requests, no fail-stop).
    Endpoint,
}

/// The result of one request, back on the loop.
#[derive(Debug)]
pub struct Completion {
    /// Who asked.
    pub origin: Origin,
    /// Which request.
    pub id: RequestId,
    /// What the store returned, or its error.
    pub result: Result<StoreReply, String>,
    /// Whether the effect is durable, or only carried out in a group still committing.
    pub stage: Stage,
}

/// How far a request has got when its completion is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Carried out inside a group whose commit is still running: sent for a link's compose
    /// that numbered its lines (`Link::handle_store_written`), so they go on the wire while
    /// the commit runs. The request's durable completion follows.
    Written,
    /// Durable, or failed: the request's completion.
    Durable,
}

/// What one send on the channel carries: one job, or held delivery marks followed by the
/// job that takes them along (one wake-up, their order kept).
enum Parcel<S> {
    One(Job<S>),
    Many(Vec<Job<S>>),
}

/// Delivery marks the loop holds back, and since when the oldest waits.
struct HeldMarks<S> {
    marks: Vec<Job<S>>,
    since: Option<Instant>,
}

impl<S> HeldMarks<S> {
    fn take(&mut self) -> Vec<Job<S>> {
        self.since = None;
        std::mem::take(&mut self.marks)
    }
}

/// Work for the storage thread.
enum Job<S> {
    Request {
        origin: Origin,
        id: RequestId,
        request: StoreRequest,
    },
    /// Bookkeeping of the front end (the peer's last address, a read marker), carried out
    /// in the next group; its errors are the task's own business.
    Task(Box<dyn FnOnce(&mut S) + Send>),
}

/// The loop's handle on its storage: a storage thread, or — for a store whose calls never
/// wait for a disk ([`Store::waits_for_disk`] false: the in-memory stores of tests and
/// benchmarks) — the store itself, driven inline, since a thread would only add a hop.
pub struct Storage<S> {
    backend: Backend<S>,
}

enum Backend<S> {
    Thread {
        jobs: Option<Sender<Parcel<S>>>,
        completions: Receiver<Completion>,
        thread: Option<JoinHandle<S>>,
        /// The thread, for watching it beside the loop ([`crate::affinity`]).
        thread_ref: ThreadRef,
        /// The CPU it goes to whenever it has caught up, while the loop's is shared.
        home: Arc<Home>,
        /// How many chats the endpoint has established (see [`Storage::set_live_chats`]).
        live_chats: Arc<AtomicUsize>,
        /// Delivery marks not handed over yet, in order, and since when the oldest waits:
        /// they go with the next job, or alone once [`MARK_DELAY`] has passed.
        held_marks: RefCell<HeldMarks<S>>,
    },
    Inline(RefCell<Inline<S>>),
}

/// A store driven on the loop's thread: each request is carried out as it is submitted, its
/// completion queued for the loop's next look.
struct Inline<S> {
    store: Option<S>,
    done: VecDeque<Completion>,
    failed: HashSet<Token>,
}

impl<S: Store + Send + 'static> Storage<S> {
    /// Starts the thread that owns `store` (it wakes the loop with `waker` whenever
    /// completions are ready), or drives the store inline if its calls never wait for a
    /// disk.
    pub fn start(store: S, waker: Arc<Waker>) -> std::io::Result<Storage<S>> {
        if !store.waits_for_disk() {
            return Ok(Storage {
                backend: Backend::Inline(RefCell::new(Inline {
                    store: Some(store),
                    done: VecDeque::new(),
                    failed: HashSet::new(),
                })),
            });
        }
        let (jobs, queue) = mpsc::channel();
        let (done, completions) = mpsc::channel();
        let live_chats = Arc::new(AtomicUsize::new(0));
        let chats = Arc::clone(&live_chats);
        let (told, who) = mpsc::sync_channel(1);
        let home = Arc::new(Home::default());
        let side = Arc::clone(&home);
        let thread = thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                let _ = told.send(ThreadRef::current());
                let mut side = StorageSide::new(side);
                run(store, &queue, &done, &waker, &chats, &mut side)
            })?;
        let thread_ref = who
            .recv()
            .map_err(|_| std::io::Error::other("the storage thread ended as it started"))?;
        Ok(Storage {
            backend: Backend::Thread {
                jobs: Some(jobs),
                completions,
                thread: Some(thread),
                thread_ref,
                home,
                live_chats,
                held_marks: RefCell::new(HeldMarks {
                    marks: Vec::new(),
                    since: None,
                }),
            },
        })
    }

    /// The storage thread and the CPU it goes to whenever it has caught up, if the store
    /// has a thread (not a store driven inline).
    pub fn thread(&self) -> Option<(ThreadRef, Arc<Home>)> {
        match &self.backend {
            Backend::Thread {
                thread_ref, home, ..
            } => Some((*thread_ref, Arc::clone(home))),
            Backend::Inline(_) => None,
        }
    }

    /// Tells the thread how many chats are established: with one (or none), no other chat's
    /// live line can wait behind a group, and groups grow to [`MAX_LONE_GROUP_ROWS`]; with
    /// more, they stay at [`MAX_GROUP_ROWS`].
    pub fn set_live_chats(&self, chats: usize) {
        if let Backend::Thread { live_chats, .. } = &self.backend {
            live_chats.store(chats, Ordering::Relaxed);
        }
    }

    /// Queues one request. A delivery mark is held on the loop's side, without waking the
    /// thread: it goes with the next request or task, or alone once it has waited
    /// [`MARK_DELAY`] ([`Storage::marks_due_in`], [`Storage::send_due_marks`]).
    pub fn submit(&self, origin: Origin, id: RequestId, request: StoreRequest) {
        match &self.backend {
            Backend::Thread { held_marks, .. } => {
                let mark = request.is_delivery_mark();
                let job = Job::Request {
                    origin,
                    id,
                    request,
                };
                if mark {
                    let mut held = held_marks.borrow_mut();
                    held.marks.push(job);
                    held.since.get_or_insert_with(Instant::now);
                } else {
                    self.send(job);
                }
            }
            Backend::Inline(inline) => {
                let mut inline = inline.borrow_mut();
                let Inline {
                    store,
                    done,
                    failed,
                } = &mut *inline;
                let Some(store) = store.as_mut() else {
                    return;
                };
                let job = Job::Request {
                    origin,
                    id,
                    request,
                };
                done.extend(commit_group(store, vec![job], failed, |_| {}));
            }
        }
    }

    /// Queues a piece of bookkeeping to run inside the next group.
    pub fn task(&self, task: impl FnOnce(&mut S) + Send + 'static) {
        match &self.backend {
            Backend::Thread { .. } => self.send(Job::Task(Box::new(task))),
            Backend::Inline(inline) => {
                if let Some(store) = inline.borrow_mut().store.as_mut() {
                    task(store);
                }
            }
        }
    }

    /// Whether a completion is ready now (the loop then does not sleep).
    pub fn has_completions(&self) -> bool {
        match &self.backend {
            Backend::Thread { .. } => false,
            Backend::Inline(inline) => !inline.borrow().done.is_empty(),
        }
    }

    /// The next completion, if one is ready. `Err` if the storage thread is gone (it
    /// panicked): nothing more will complete.
    pub fn next_completion(&self) -> Result<Option<Completion>, String> {
        let (completions, thread) = match &self.backend {
            Backend::Inline(inline) => return Ok(inline.borrow_mut().done.pop_front()),
            Backend::Thread {
                completions,
                thread,
                ..
            } => (completions, thread),
        };
        match completions.try_recv() {
            Ok(completion) => Ok(Some(completion)),
            Err(mpsc::TryRecvError::Empty) => {
                if thread.as_ref().is_some_and(JoinHandle::is_finished) {
                    Err("the storage thread stopped".into())
                } else {
                    Ok(None)
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => Err("the storage thread stopped".into()),
        }
    }

    /// How long until the held delivery marks are due to go alone, if any are held.
    pub fn marks_due_in(&self) -> Option<Duration> {
        match &self.backend {
            Backend::Thread { held_marks, .. } => held_marks
                .borrow()
                .since
                .map(|since| MARK_DELAY.saturating_sub(since.elapsed())),
            Backend::Inline(_) => None,
        }
    }

    /// Hands the held delivery marks over once they have waited [`MARK_DELAY`]; the thread
    /// commits them at once.
    pub fn send_due_marks(&self) {
        if self.marks_due_in() == Some(Duration::ZERO) {
            self.send_held_marks();
        }
    }

    /// Sends `job` to the thread, the held delivery marks before it.
    fn send(&self, job: Job<S>) {
        if let Backend::Thread {
            jobs: Some(jobs),
            held_marks,
            ..
        } = &self.backend
        {
            let mut held = held_marks.borrow_mut();
            let parcel = if held.marks.is_empty() {
                Parcel::One(job)
            } else {
                let mut marks = held.take();
                marks.push(job);
                Parcel::Many(marks)
            };
            // A send fails only if the thread is gone; `next_completion` reports it.
            let _ = jobs.send(parcel);
        }
    }

    /// Carries out everything queued (delivery marks included), stops the thread and hands
    /// the store back. `None` if the thread panicked.
    pub fn stop(&mut self) -> Option<S> {
        self.send_held_marks();
        match &mut self.backend {
            Backend::Inline(inline) => inline.get_mut().store.take(),
            Backend::Thread { jobs, thread, .. } => {
                *jobs = None;
                thread.take().and_then(|thread| thread.join().ok())
            }
        }
    }
}

impl<S> Storage<S> {
    /// Hands every held delivery mark over now.
    fn send_held_marks(&self) {
        if let Backend::Thread {
            jobs, held_marks, ..
        } = &self.backend
        {
            let marks = held_marks.borrow_mut().take();
            if let (Some(jobs), false) = (jobs, marks.is_empty()) {
                // A send fails only if the thread is gone; `next_completion` reports it.
                let _ = jobs.send(Parcel::Many(marks));
            }
        }
    }
}

impl<S> Drop for Storage<S> {
    fn drop(&mut self) {
        // Everything queued is carried out before the thread ends, the held marks too.
        self.send_held_marks();
        if let Backend::Thread { jobs, thread, .. } = &mut self.backend {
            *jobs = None;
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Most rows (messages stored) in one group while several chats are established: the
/// group's commit is what a live line of another chat may have to wait for, so it stays
/// short however much a re-sync queues (512 rows: about 1.3 ms of inserts here; 1,024 made
/// another chat's p99 10–14 ms instead of 8; `docs/PERFORMANCE.md` has the measurements).
pub const MAX_GROUP_ROWS: usize = 512;

/// Most rows in one group while at most one chat is established: nobody's live line waits
/// behind it, so a group takes what SQLite commits best (fewer commits per message: 100,000
/// lines through two binaries 242–265k msg/s against 188–259k with 512-row groups).
pub const MAX_LONE_GROUP_ROWS: usize = 2_048;

/// Most bytes of text in one group, whatever its rows: 512 rows of 4 KiB each, the longest
/// group that kept 4 KiB messages at their best rate (2,048 of them, 8 MiB a commit, took
/// 52 MiB/s instead of 74).
pub const MAX_GROUP_BYTES: usize = 2 << 20;

/// Which queue a job waits in: one per chat (its links' requests keep their order), one for
/// the front end's tasks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum QueueKey {
    Chat([u8; 16]),
    Tasks,
}

/// The jobs waiting for a group, by chat, served in turn: a chat that queued a whole re-sync
/// does not hold back another chat's live line for more than one group.
struct Queues<S> {
    by_key: HashMap<QueueKey, VecDeque<Job<S>>>,
    /// The keys with jobs, in serving order.
    turn: VecDeque<QueueKey>,
    len: usize,
}

impl<S> Queues<S> {
    fn new() -> Queues<S> {
        Queues {
            by_key: HashMap::new(),
            turn: VecDeque::new(),
            len: 0,
        }
    }

    fn push_parcel(&mut self, parcel: Parcel<S>) {
        match parcel {
            Parcel::One(job) => self.push(job),
            Parcel::Many(jobs) => jobs.into_iter().for_each(|job| self.push(job)),
        }
    }

    fn push(&mut self, job: Job<S>) {
        let key = match &job {
            Job::Request { request, .. } => QueueKey::Chat(chat_of(request).0),
            Job::Task(_) => QueueKey::Tasks,
        };
        self.len += 1;
        let queue = self.by_key.entry(key).or_default();
        if queue.is_empty() {
            self.turn.push_back(key);
        }
        queue.push_back(job);
    }

    /// One job from each chat in turn, until `max_rows` rows or [`MAX_GROUP_BYTES`] of text
    /// or nothing is left — and, while several chats wait, one round only: a live line then
    /// commits with at most one job of each other chat, not with as many as fit.
    fn take_group(&mut self, max_rows: usize) -> Vec<Job<S>> {
        let mut group = Vec::new();
        let mut rows = 0;
        let mut bytes = 0;
        let round = self.turn.len();
        while rows < max_rows
            && bytes < MAX_GROUP_BYTES
            && group.len() < MAX_GROUP_JOBS
            && (round <= 1 || group.len() < round)
        {
            let Some(key) = self.turn.pop_front() else {
                break;
            };
            let Some(queue) = self.by_key.get_mut(&key) else {
                continue;
            };
            if let Some(job) = queue.pop_front() {
                let (job_rows, job_bytes) = size_of(&job);
                rows += job_rows;
                bytes += job_bytes;
                self.len -= 1;
                group.push(job);
            }
            if queue.is_empty() {
                self.by_key.remove(&key);
            } else {
                self.turn.push_back(key);
            }
        }
        group
    }
}

/// The chat a request belongs to.
fn chat_of(request: &StoreRequest) -> DeviceId {
    match request {
        StoreRequest::OpenChat { peer, .. } => peer.device,
        StoreRequest::Compose { peer, .. }
        | StoreRequest::NumberWaiting { peer, .. }
        | StoreRequest::ReadOwn { peer, .. }
        | StoreRequest::PersistReceived { peer, .. }
        | StoreRequest::ReadPeer { peer, .. }
        | StoreRequest::RestoreOwn { peer, .. }
        | StoreRequest::MarkDelivered { peer, .. }
        | StoreRequest::SetDelivered { peer, .. } => *peer,
    }
}

/// What a job stores: messages (what a commit's length grows with) and bytes of their text.
fn size_of<S>(job: &Job<S>) -> (usize, usize) {
    fn texts<'a>(texts: impl Iterator<Item = &'a str>) -> usize {
        texts.map(str::len).sum()
    }
    match job {
        Job::Request { request, .. } => match request {
            StoreRequest::PersistReceived { batch, .. } => (
                batch.len().max(1),
                texts(batch.iter().map(|m| m.text.as_str())),
            ),
            StoreRequest::RestoreOwn { batch, .. } => (
                batch.len().max(1),
                texts(batch.iter().map(|m| m.text.as_str())),
            ),
            StoreRequest::Compose { texts: lines, .. } => {
                (lines.len().max(1), texts(lines.iter().map(String::as_str)))
            }
            StoreRequest::MarkDelivered { .. } | StoreRequest::SetDelivered { .. } => (0, 0),
            _ => (1, 0),
        },
        Job::Task(_) => (1, 0),
    }
}

/// The thread: one group per turn, until the loop hangs up and everything queued is done.
fn run<S: Store>(
    mut store: S,
    queue: &Receiver<Parcel<S>>,
    done: &Sender<Completion>,
    waker: &Waker,
    live_chats: &AtomicUsize,
    side: &mut StorageSide,
) -> S {
    let mut failed: HashSet<Token> = HashSet::new();
    let mut queues = Queues::new();
    let mut open = true;
    loop {
        if queues.len > 0 {
            // Work waits behind the group just committed: a burst, best met beside a busy
            // loop, not on its CPU.
            side.backed_up();
        } else {
            if !open {
                break;
            }
            match queue.try_recv() {
                // It came while the last group committed: the same.
                Ok(parcel) => {
                    side.backed_up();
                    queues.push_parcel(parcel);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    // Caught up: wait for work on the loop's CPU, if it is shared.
                    side.caught_up();
                    match queue.recv() {
                        Ok(parcel) => queues.push_parcel(parcel),
                        Err(_) => {
                            open = false;
                            continue;
                        }
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    continue;
                }
            }
        }
        // Everything that queued meanwhile: the next groups take it.
        while open {
            match queue.try_recv() {
                Ok(parcel) => queues.push_parcel(parcel),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        let max_rows = if live_chats.load(Ordering::Relaxed) > 1 {
            MAX_GROUP_ROWS
        } else {
            MAX_LONE_GROUP_ROWS
        };
        let group = queues.take_group(max_rows);
        let completions = commit_group(&mut store, group, &mut failed, |written| {
            // Lines numbered in this group go on the wire while it commits.
            for completion in written {
                let _ = done.send(completion);
            }
            let _ = waker.wake();
        });
        if !completions.is_empty() {
            for completion in completions {
                let _ = done.send(completion);
            }
            let _ = waker.wake();
        }
    }
    store
}

/// Carries out `jobs` in one durable commit and returns the completions to send. Before
/// the commit, `before_commit` is handed the [`Stage::Written`] completions of the links'
/// numbered composes, if there are any.
fn commit_group<S: Store>(
    store: &mut S,
    jobs: Vec<Job<S>>,
    failed: &mut HashSet<Token>,
    before_commit: impl FnOnce(Vec<Completion>),
) -> Vec<Completion> {
    let mut completions = Vec::new();
    let mut written = Vec::new();
    let begun = store.begin_group().map_err(|e| e.to_string());
    for job in jobs {
        let (origin, id, request) = match job {
            Job::Task(task) => {
                if begun.is_ok() {
                    task(store);
                }
                continue;
            }
            Job::Request {
                origin,
                id,
                request,
            } => (origin, id, request),
        };
        let earlier_failure = match origin {
            Origin::Link(token) => failed.contains(&token),
            Origin::Endpoint => false,
        };
        let result = match &begun {
            Err(e) => Err(e.clone()),
            Ok(()) if earlier_failure => {
                Err("an earlier storage request of this connection failed".to_owned())
            }
            Ok(()) => execute(store, &request).map_err(|e| e.to_string()),
        };
        if let (Err(_), Origin::Link(token)) = (&result, origin) {
            failed.insert(token);
        }
        if let (Origin::Link(_), Ok(StoreReply::Composed(messages))) = (origin, &result) {
            if messages.first().is_some_and(|m| m.seq != 0) {
                written.push(Completion {
                    origin,
                    id,
                    result: Ok(StoreReply::Composed(messages.clone())),
                    stage: Stage::Written,
                });
            }
        }
        completions.push(Completion {
            origin,
            id,
            result,
            stage: Stage::Durable,
        });
    }
    if begun.is_ok() {
        if !written.is_empty() {
            before_commit(written);
        }
        if let Err(e) = store.commit_group() {
            // Nothing of the group took effect: every request of it failed.
            let e = e.to_string();
            for completion in &mut completions {
                if let Origin::Link(token) = completion.origin {
                    failed.insert(token);
                }
                completion.result = Err(e.clone());
            }
        }
    }
    completions
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketfalco_core::Message;

    fn persist(chat: u8, id: u64, rows: usize) -> Job<()> {
        persist_texts(chat, id, rows, 1)
    }

    /// A persist request of `rows` messages of `bytes` bytes of text each.
    fn persist_texts(chat: u8, id: u64, rows: usize, bytes: usize) -> Job<()> {
        let message = Message {
            seq: 1,
            lamport: 1,
            sent_at_ms: 0,
            text: "x".repeat(bytes),
        };
        Job::Request {
            origin: Origin::Link(Token(usize::from(chat))),
            id: RequestId(id),
            request: StoreRequest::PersistReceived {
                peer: DeviceId([chat; 16]),
                batch: std::sync::Arc::new(vec![message; rows]),
            },
        }
    }

    fn ids(group: &[Job<()>]) -> Vec<(u8, u64)> {
        group
            .iter()
            .filter_map(|job| match job {
                Job::Request { origin, id, .. } => match origin {
                    Origin::Link(token) => Some((token.0 as u8, id.0)),
                    Origin::Endpoint => None,
                },
                Job::Task(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_group_serves_every_chat_in_turn_and_keeps_each_chats_order() {
        let mut queues = Queues::new();
        // Chat 1 queued a long re-sync before chat 2's live line arrived.
        for id in 1..=10 {
            queues.push(persist(1, id, 256));
        }
        queues.push(persist(2, 1, 1));
        let first = queues.take_group(MAX_GROUP_ROWS);
        assert_eq!(
            ids(&first),
            vec![(1, 1), (2, 1)],
            "the live line is in the first group, with one job of the other chat"
        );
        let second = queues.take_group(MAX_GROUP_ROWS);
        assert_eq!(
            ids(&second),
            vec![(1, 2), (1, 3)],
            "a lone chat fills a group, up to MAX_GROUP_ROWS rows"
        );
        let mut rest = Vec::new();
        while queues.len > 0 {
            rest.extend(ids(&queues.take_group(MAX_GROUP_ROWS)));
        }
        assert_eq!(rest, (4..=10).map(|id| (1, id)).collect::<Vec<_>>());
    }

    #[test]
    fn a_lone_chat_fills_a_longer_group_but_never_past_its_bytes() {
        let mut queues = Queues::new();
        for id in 1..=10 {
            queues.push(persist(1, id, 256));
        }
        assert_eq!(
            ids(&queues.take_group(MAX_LONE_GROUP_ROWS)),
            (1..=8).map(|id| (1, id)).collect::<Vec<_>>(),
            "2,048 rows of short lines in one group"
        );
        // 4 KiB messages: 256 of them are 1 MiB, so a group stops at two requests.
        let mut queues = Queues::new();
        for id in 1..=10 {
            queues.push(persist_texts(1, id, 256, 4096));
        }
        assert_eq!(
            ids(&queues.take_group(MAX_LONE_GROUP_ROWS)),
            [(1, 1), (1, 2)]
        );
    }

    #[test]
    fn delivery_marks_count_no_rows() {
        let mut queues: Queues<()> = Queues::new();
        queues.push(Job::Request {
            origin: Origin::Link(Token(1)),
            id: RequestId(1),
            request: StoreRequest::MarkDelivered {
                peer: DeviceId([1; 16]),
                up_to: 3,
            },
        });
        assert_eq!(queues.len, 1);
        queues.push(persist(1, 2, 1));
        assert_eq!(queues.len, 2);
        let group = queues.take_group(1);
        assert_eq!(
            group.len(),
            2,
            "the mark rides with the next request of its chat"
        );
    }
}
