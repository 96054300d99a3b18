//! The storage thread: every storage request of the endpoint's links is carried out here,
//! many per durable commit, so that the event loop never waits for a disk.
//!
//! The loop hands requests over ([`Storage::submit`]) and goes on reading, decoding and
//! writing; the thread takes everything queued since its previous commit, carries it out in
//! one group ([`Store::begin_group`] … [`Store::commit_group`]: one fsync for the received
//! batches of every chat, the typed lines and the delivery marks together), then sends the
//! completions back and wakes the loop through its [`mio::Waker`]. While one commit runs, the
//! next group queues up; the disk is the only limit.
//!
//! The rules of [`socketfalco_core::StoreRequest`] hold here: a link's requests take effect
//! and complete in the order they came (one thread, one queue); once one of a link's
//! requests failed, its later ones fail without being carried out; a completion is sent only
//! after the commit that made its effect durable. The delivery marks are advisory and cost no
//! commit of their own: they wait for the next group that commits anyway (at most
//! [`MARK_DELAY`]), or for the end; held back, they still come before every later request
//! of their link, so the order holds.

use mio::{Token, Waker};
use socketfalco_core::{execute, RequestId, Store, StoreReply, StoreRequest};
use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

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

/// The loop's handle on the storage thread.
pub struct Storage<S> {
    jobs: Option<Sender<Job<S>>>,
    completions: Receiver<Completion>,
    thread: Option<JoinHandle<S>>,
}

impl<S: Store + Send + 'static> Storage<S> {
    /// Starts the thread that owns `store`; it wakes the loop with `waker` whenever
    /// completions are ready.
    pub fn start(store: S, waker: Arc<Waker>) -> std::io::Result<Storage<S>> {
        let (jobs, queue) = mpsc::channel();
        let (done, completions) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("storage".into())
            .spawn(move || run(store, &queue, &done, &waker))?;
        Ok(Storage {
            jobs: Some(jobs),
            completions,
            thread: Some(thread),
        })
    }

    /// Queues one request.
    pub fn submit(&self, origin: Origin, id: RequestId, request: StoreRequest) {
        if let Some(jobs) = &self.jobs {
            // A send fails only if the thread is gone; `next_completion` reports that.
            let _ = jobs.send(Job::Request {
                origin,
                id,
                request,
            });
        }
    }

    /// Queues a piece of bookkeeping to run inside the next group.
    pub fn task(&self, task: impl FnOnce(&mut S) + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Task(Box::new(task)));
        }
    }

    /// The next completion, if one is ready. `Err` if the storage thread is gone (it
    /// panicked): nothing more will complete.
    pub fn next_completion(&self) -> Result<Option<Completion>, String> {
        match self.completions.try_recv() {
            Ok(completion) => Ok(Some(completion)),
            Err(mpsc::TryRecvError::Empty) => {
                if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                    Err("the storage thread stopped".into())
                } else {
                    Ok(None)
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => Err("the storage thread stopped".into()),
        }
    }

    /// Carries out everything queued (delivery marks included), stops the thread and hands
    /// the store back. `None` if the thread panicked.
    pub fn stop(&mut self) -> Option<S> {
        self.jobs = None;
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

impl<S> Drop for Storage<S> {
    fn drop(&mut self) {
        // Everything queued is carried out before the thread ends.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: one group per turn, until the loop hangs up.
fn run<S: Store>(
    mut store: S,
    queue: &Receiver<Job<S>>,
    done: &Sender<Completion>,
    waker: &Waker,
) -> S {
    let mut failed: HashSet<Token> = HashSet::new();
    let mut held_marks: Vec<Job<S>> = Vec::new();
    let mut open = true;
    while open || !held_marks.is_empty() {
        let first = if !open {
            None
        } else if held_marks.is_empty() {
            queue.recv().ok()
        } else {
            match queue.recv_timeout(MARK_DELAY) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        };
        if open && first.is_none() && held_marks.is_empty() {
            // The loop hung up with nothing queued.
            break;
        }
        let timed_out = first.is_none();
        let mut group: Vec<Job<S>> = first.into_iter().collect();
        while group.len() < MAX_GROUP_JOBS {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let only_marks = group.iter().all(is_mark);
        if only_marks && open && !timed_out {
            // Advisory: they wait for a commit that happens anyway.
            held_marks.append(&mut group);
            continue;
        }
        let mut jobs = std::mem::take(&mut held_marks);
        jobs.append(&mut group);
        let completions = commit_group(&mut store, jobs, &mut failed);
        if !completions.is_empty() {
            for completion in completions {
                let _ = done.send(completion);
            }
            let _ = waker.wake();
        }
    }
    store
}

fn is_mark<S>(job: &Job<S>) -> bool {
    matches!(job, Job::Request { request, .. } if request.is_delivery_mark())
}

/// Carries out `jobs` in one durable commit and returns the completions to send.
fn commit_group<S: Store>(
    store: &mut S,
    jobs: Vec<Job<S>>,
    failed: &mut HashSet<Token>,
) -> Vec<Completion> {
    let mut completions = Vec::new();
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
        completions.push(Completion { origin, id, result });
    }
    if begun.is_ok() {
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
