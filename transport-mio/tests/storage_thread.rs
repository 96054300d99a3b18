//! The storage thread as the event loop sees it: a compose that numbers lines is reported
//! written before its group commits (docs/PROTOCOL.md §6.2), and its durable completion
//! follows with the same lines; everything else completes once, durable. A delivery mark
//! is held on the loop's side and goes with the next request, or alone once due, or at the
//! end.

use mio::{Events, Poll, Token, Waker};
use socketfalco_core::{RequestId, StoreReply, StoreRequest};
use socketfalco_testkit::{MemoryStore, SlowCommits, DEVICE_B};
use socketfalco_transport::storage::{Completion, Origin, Stage, Storage, MARK_DELAY};
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

fn mark(up_to: u64) -> StoreRequest {
    StoreRequest::MarkDelivered {
        peer: DEVICE_B,
        up_to,
    }
}

#[test]
fn a_delivery_mark_waits_on_the_loops_side_for_the_next_request_or_its_time() {
    let (mut poll, mut storage) = start();
    let link = Origin::Link(Token(5));
    assert_eq!(storage.marks_due_in(), None, "nothing held yet");
    storage.submit(link, RequestId(1), mark(1));
    let due = storage
        .marks_due_in()
        .expect("the mark is held, not handed over");
    assert!(due <= MARK_DELAY, "due in {due:?}");

    // The next request takes it along, and it comes first: the link's order holds.
    let read = StoreRequest::ReadOwn {
        peer: DEVICE_B,
        from_seq: 1,
        max: 10,
    };
    storage.submit(link, RequestId(2), read);
    assert_eq!(storage.marks_due_in(), None, "handed over with the read");
    let got = completions(&mut poll, &storage, 2);
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        [RequestId(1), RequestId(2)]
    );
    assert!(matches!(got[0].result, Ok(StoreReply::Done)), "{got:?}");

    // Alone, it goes once it is due (the loop calls this every turn), not before.
    storage.submit(link, RequestId(3), mark(2));
    storage.send_due_marks();
    assert!(storage.marks_due_in().is_some(), "not due yet: still held");
    while let Some(left) = storage.marks_due_in().filter(|left| !left.is_zero()) {
        std::thread::sleep(left);
    }
    storage.send_due_marks();
    assert_eq!(storage.marks_due_in(), None);
    let got = completions(&mut poll, &storage, 1);
    assert_eq!(got[0].id, RequestId(3));

    // At the end, a held mark is carried out before the store comes back.
    storage.submit(link, RequestId(4), mark(3));
    let store = storage.stop().expect("the thread ends cleanly");
    assert_eq!(store.inner.chats[&DEVICE_B].delivered_up_to, 3);
}
