//! The storage thread as the event loop sees it: a compose that numbers lines is reported
//! written before its group commits (docs/PROTOCOL.md §6.2), and its durable completion
//! follows with the same lines; everything else completes once, durable.

use mio::{Events, Poll, Token, Waker};
use socketfalco_core::{RequestId, StoreReply, StoreRequest};
use socketfalco_testkit::{MemoryStore, SlowCommits, DEVICE_B};
use socketfalco_transport::storage::{Completion, Origin, Stage, Storage};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A storage thread over an in-memory store whose group commits take a while (so that a
/// report made before the commit cannot be confused with one made after it).
fn start() -> (Poll, Storage<SlowCommits<MemoryStore>>) {
    let poll = Poll::new().expect("a poll");
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("a waker"));
    let store = SlowCommits {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(100),
    };
    let storage = Storage::start(store, waker).expect("the storage thread starts");
    (poll, storage)
}

/// The next `count` completions, waiting on the waker as the loop does (a guard of a
/// minute ends a test whose completions never come).
fn completions(
    poll: &mut Poll,
    storage: &Storage<SlowCommits<MemoryStore>>,
    count: usize,
) -> Vec<Completion> {
    let mut events = Events::with_capacity(4);
    let mut out = Vec::new();
    let guard = Instant::now();
    while out.len() < count {
        while let Some(completion) = storage.next_completion().expect("the thread runs") {
            out.push(completion);
        }
        assert!(
            guard.elapsed() < Duration::from_secs(60),
            "{} of {count} completions came: {out:?}",
            out.len()
        );
        if out.len() < count {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
        }
    }
    out
}

fn compose(number_after: Option<u64>, texts: &[&str]) -> StoreRequest {
    StoreRequest::Compose {
        peer: DEVICE_B,
        texts: Arc::new(texts.iter().map(|t| (*t).to_owned()).collect()),
        sent_at_ms: 7,
        number_after,
    }
}

fn lines(completion: &Completion) -> Vec<(u64, String)> {
    match &completion.result {
        Ok(StoreReply::Composed(messages)) => {
            messages.iter().map(|m| (m.seq, m.text.clone())).collect()
        }
        other => panic!("a compose's completion, got {other:?}"),
    }
}

#[test]
fn numbered_lines_are_reported_written_before_their_commit_then_durable() {
    let (mut poll, storage) = start();
    let link = Origin::Link(Token(5));
    storage.submit(link, RequestId(1), compose(Some(0), &["one", "two"]));
    let got = completions(&mut poll, &storage, 2);
    assert_eq!(
        got.iter().map(|c| (c.id, c.stage)).collect::<Vec<_>>(),
        [
            (RequestId(1), Stage::Written),
            (RequestId(1), Stage::Durable)
        ],
        "first the early report, then the completion"
    );
    let numbered = vec![(1, "one".to_owned()), (2, "two".to_owned())];
    assert_eq!(lines(&got[0]), numbered);
    assert_eq!(lines(&got[1]), numbered, "the same lines, now durable");
}

#[test]
fn lines_stored_unnumbered_and_other_requests_complete_once_durable() {
    let (mut poll, storage) = start();
    let link = Origin::Link(Token(5));
    // No session established: the line waits unnumbered, nothing to send early.
    storage.submit(link, RequestId(1), compose(None, &["offline"]));
    storage.submit(
        link,
        RequestId(2),
        StoreRequest::ReadOwn {
            peer: DEVICE_B,
            from_seq: 1,
            max: 10,
        },
    );
    // A line for a chat with no connection (the endpoint's own) is never reported early.
    storage.submit(Origin::Endpoint, RequestId(3), compose(Some(0), &["alone"]));
    let got = completions(&mut poll, &storage, 3);
    assert!(
        got.iter().all(|c| c.stage == Stage::Durable),
        "{:?}",
        got.iter().map(|c| (c.id, c.stage)).collect::<Vec<_>>()
    );
    assert_eq!(lines(&got[0]), [(0, "offline".to_owned())]);
}
