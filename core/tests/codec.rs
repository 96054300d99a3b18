//! The frame codec under good and hostile input: golden frames, streaming in any piece size,
//! and one test per class of malformed input.

use socketfalco_core::limits::{
    MAX_CLOSE_DETAIL_BYTES, MAX_COUNTER, MAX_FRAME_BYTES, MAX_RECOVER_BATCH, MAX_TEXT_BYTES,
    MAX_UNACKED_BYTES, PROTOCOL_VERSION,
};
use socketfalco_core::{
    encode_frame, Close, CloseCode, Event, Frame, FrameDecoder, FrameError, Hello, Message,
    NameError, Session, SessionConfig, Side, SyncPoint, TextError,
};
use socketfalco_testkit::golden::{frames_dir, from_hex, to_hex};
use socketfalco_testkit::{DEVICE_A, DEVICE_B};

// The kind bytes of docs/PROTOCOL.md, written out rather than taken from the core: the
// hostile frames below are built as a peer would build them, from the document.
const KIND_HELLO: u8 = 1;
const KIND_MESSAGE: u8 = 3;
const KIND_ACK: u8 = 4;
const KIND_RECOVER: u8 = 7;

/// Every frame kind once, with the file its golden bytes live in.
fn golden_frames() -> Vec<(&'static str, &'static str, Frame)> {
    vec![
        (
            "hello",
            "Hello from device aaaa…, name \"alice\", not temporary",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                device: DEVICE_A,
                name: "alice".into(),
                temporary: false,
            }),
        ),
        (
            "hello-temporary",
            "Hello from device bbbb…, name \"Bøb\" (non-ASCII), temporary",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                device: DEVICE_B,
                name: "Bøb".into(),
                temporary: true,
            }),
        ),
        (
            "sync",
            "Sync: holds the peer's messages up to 41, own last seq 7",
            Frame::Sync(SyncPoint {
                received_up_to: 41,
                last_seq: 7,
            }),
        ),
        (
            "message",
            "Message seq 3, lamport 9, sent 2023-11-14T22:13:20Z, text \"hello bob\"",
            Frame::Message(Message {
                seq: 3,
                lamport: 9,
                sent_at_ms: 1_700_000_000_000,
                text: "hello bob".into(),
            }),
        ),
        (
            "message-negative-time",
            "Message with a wall clock before 1970 (negative ms) and multi-line UTF-8 text",
            Frame::Message(Message {
                seq: MAX_COUNTER,
                lamport: 1,
                sent_at_ms: -5,
                text: "ligne 1\nligne 2 — ✓".into(),
            }),
        ),
        (
            "ack",
            "Cumulative ack up to 1000",
            Frame::Ack { up_to: 1000 },
        ),
        ("ping", "Keepalive", Frame::Ping),
        (
            "recover",
            "Recover: send back my own messages 6 to 8 (my store went back in time)",
            Frame::Recover { from: 6, to: 8 },
        ),
        (
            "returned",
            "Returned: the receiver's own message seq 6, lamport 11, sent back",
            Frame::Returned(Message {
                seq: 6,
                lamport: 11,
                sent_at_ms: 1_700_000_000_000,
                text: "r-two".into(),
            }),
        ),
        (
            "close-busy",
            "Close: busy, with a detail",
            Frame::Close(Close::new(CloseCode::Busy, "in a chat with someone else")),
        ),
        (
            "close-unknown-code",
            "Close with a code from a newer version (700), kept as Other(700)",
            Frame::Close(Close::new(CloseCode::Other(700), "")),
        ),
    ]
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out);
    out
}

fn decode_all(bytes: &[u8], piece: usize) -> Result<Vec<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        let mut input = chunk;
        while let Some(frame) = decoder.decode(&mut input)? {
            frames.push(frame);
        }
        assert!(input.is_empty(), "the decoder must use up its input");
    }
    assert_eq!(decoder.buffered(), 0, "no partial frame left");
    Ok(frames)
}

/// Golden frames: each file's bytes decode to the expected value and re-encode byte for
/// byte. A change to the wire format fails here. `UPDATE_GOLDEN=1` rewrites the files.
#[test]
fn golden_frames_decode_and_reencode_byte_for_byte() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, description, frame) in golden_frames() {
        let path = frames_dir().join(format!("{name}.hex"));
        let encoded = encode(&frame);
        if update {
            let text = format!("# {description}\n{}\n", to_hex(&encoded));
            std::fs::write(&path, text).unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        let golden = from_hex(&text);
        assert_eq!(
            decode_all(&golden, usize::MAX).unwrap(),
            std::slice::from_ref(&frame),
            "{name}"
        );
        assert_eq!(
            to_hex(&encoded),
            to_hex(&golden),
            "{name}: the encoding changed"
        );
    }
}

#[test]
fn a_stream_decodes_the_same_in_pieces_of_any_size() {
    let frames: Vec<Frame> = golden_frames().into_iter().map(|(_, _, f)| f).collect();
    let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
    for piece in [1, 2, 3, 4, 5, 7, 64, 4096, usize::MAX] {
        assert_eq!(
            decode_all(&stream, piece).unwrap(),
            frames,
            "piece size {piece}"
        );
    }
}

#[test]
fn the_largest_message_fits_in_a_frame_and_one_byte_more_does_not() {
    let big = Frame::Message(Message {
        seq: MAX_COUNTER,
        lamport: MAX_COUNTER,
        sent_at_ms: i64::MIN,
        text: "é".repeat(MAX_TEXT_BYTES / 2),
    });
    let bytes = encode(&big);
    assert!(bytes.len() - 4 <= MAX_FRAME_BYTES);
    assert_eq!(decode_all(&bytes, 1000).unwrap(), [big]);

    let mut too_long = Vec::new();
    too_long.push(KIND_MESSAGE);
    let body = (1u64, 1u64, 0i64, "a".repeat(MAX_TEXT_BYTES + 1));
    ciborium::into_writer(&body, &mut too_long).unwrap();
    assert_eq!(
        decode_all(&framed(&too_long), too_long.len() + 4),
        Err(FrameError::Text(TextError::TooLong {
            bytes: MAX_TEXT_BYTES + 1
        }))
    );
}

fn payload(kind: u8, body: &impl serde::Serialize) -> Vec<u8> {
    let mut p = vec![kind];
    ciborium::into_writer(body, &mut p).unwrap();
    p
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn every_class_of_malformed_input_is_a_typed_error() {
    let good_ack = payload(KIND_ACK, &(5u64,));
    let cases: Vec<(&str, Vec<u8>, FrameError)> = vec![
        (
            "absurd length prefix",
            vec![0xff, 0xff, 0xff, 0xff],
            FrameError::TooLarge {
                len: u32::MAX as u64,
            },
        ),
        (
            "one byte over the frame limit",
            ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec(),
            FrameError::TooLarge {
                len: MAX_FRAME_BYTES as u64 + 1,
            },
        ),
        ("empty frame", vec![0, 0, 0, 0], FrameError::Empty),
        (
            "unknown kind",
            framed(&[0x77, 0x80]),
            FrameError::UnknownKind(0x77),
        ),
        (
            "truncated CBOR",
            framed(&good_ack[..good_ack.len() - 1]),
            FrameError::Truncated,
        ),
        (
            "trailing bytes",
            framed(&[good_ack.as_slice(), &[0x00, 0x01]].concat()),
            FrameError::TrailingBytes { extra: 2 },
        ),
        (
            "invalid CBOR",
            framed(&[KIND_ACK, 0x1c]),
            FrameError::InvalidCbor { offset: 0 },
        ),
        (
            "empty text",
            framed(&payload(KIND_MESSAGE, &(1u64, 1u64, 0i64, ""))),
            FrameError::Text(TextError::Empty),
        ),
        (
            "name too long",
            framed(&payload(
                KIND_HELLO,
                &(
                    PROTOCOL_VERSION,
                    serde_bytes::Bytes::new(&[1; 16]),
                    "a".repeat(16),
                    false,
                ),
            )),
            FrameError::Name(NameError::TooLong),
        ),
        (
            "close detail too long",
            framed(&payload(6, &(0u16, "x".repeat(MAX_CLOSE_DETAIL_BYTES + 1)))),
            FrameError::CloseDetailTooLong,
        ),
        (
            "a sequence number of 0",
            framed(&payload(KIND_MESSAGE, &(0u64, 1u64, 0i64, "x"))),
            FrameError::CounterOutOfRange {
                field: "seq",
                value: 0,
                min: 1,
                max: MAX_COUNTER,
            },
        ),
        (
            "a Lamport counter beyond 2^53",
            framed(&payload(KIND_MESSAGE, &(1u64, MAX_COUNTER + 1, 0i64, "x"))),
            FrameError::CounterOutOfRange {
                field: "lamport",
                value: MAX_COUNTER + 1,
                min: 1,
                max: MAX_COUNTER,
            },
        ),
        (
            "an ack beyond 2^53",
            framed(&payload(KIND_ACK, &(u64::MAX,))),
            FrameError::CounterOutOfRange {
                field: "up_to",
                value: u64::MAX,
                min: 0,
                max: MAX_COUNTER,
            },
        ),
        (
            "hello of a future version in another shape",
            framed(&payload(KIND_HELLO, &(3u16, "new fields"))),
            FrameError::UnsupportedVersion(3),
        ),
        (
            "recover of nothing",
            framed(&payload(KIND_RECOVER, &(5u64, 4u64))),
            FrameError::CounterOutOfRange {
                field: "to",
                value: 4,
                min: 5,
                max: 5 + MAX_RECOVER_BATCH - 1,
            },
        ),
        (
            "recover of more than one batch",
            framed(&payload(KIND_RECOVER, &(1u64, MAX_RECOVER_BATCH + 1))),
            FrameError::CounterOutOfRange {
                field: "to",
                value: MAX_RECOVER_BATCH + 1,
                min: 1,
                max: MAX_RECOVER_BATCH,
            },
        ),
        (
            "recover from zero",
            framed(&payload(KIND_RECOVER, &(0u64, 1u64))),
            FrameError::CounterOutOfRange {
                field: "from",
                value: 0,
                min: 1,
                max: MAX_COUNTER,
            },
        ),
    ];
    for (what, bytes, expected) in cases {
        for piece in [1, usize::MAX] {
            assert_eq!(decode_all(&bytes, piece), Err(expected.clone()), "{what}");
        }
    }
    // Wrong types: an ack whose field is a string, a device id of the wrong size.
    for (what, bytes) in [
        ("ack with a string", framed(&payload(KIND_ACK, &("five",)))),
        (
            "ack with two fields",
            framed(&payload(KIND_ACK, &(5u64, 6u64))),
        ),
        (
            "device id of 3 bytes",
            framed(&payload(
                KIND_HELLO,
                &(
                    PROTOCOL_VERSION,
                    serde_bytes::Bytes::new(&[1; 3]),
                    "alice",
                    false,
                ),
            )),
        ),
        (
            "a map instead of an array",
            framed(&payload(
                KIND_ACK,
                &std::collections::BTreeMap::from([(1u8, 2u8)]),
            )),
        ),
    ] {
        assert!(
            matches!(
                decode_all(&bytes, usize::MAX),
                Err(FrameError::WrongShape(_))
            ),
            "{what}: {:?}",
            decode_all(&bytes, usize::MAX)
        );
    }
}

#[test]
fn an_oversize_prefix_is_refused_before_its_payload_is_buffered() {
    let mut decoder = FrameDecoder::new();
    let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
    assert!(matches!(
        decoder.decode(&mut input),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(decoder.buffered(), 0);
    // Errors are sticky: the stream is no longer aligned on frames.
    let mut more: &[u8] = &encode(&Frame::Ping);
    assert!(decoder.decode(&mut more).is_err());
}

/// A session fed garbage answers with a close frame and a reason, and stops.
#[test]
fn a_session_closes_cleanly_on_garbage_and_on_a_wrong_version() {
    for (what, bytes, code) in [
        (
            "HTTP",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            CloseCode::MalformedFrame,
        ),
        (
            "the original's hex text",
            b"48656c6c6f\n".to_vec(),
            CloseCode::MalformedFrame,
        ),
        (
            "version 1 hello (a peer of the version before own-history recovery)",
            encode(&Frame::Hello(Hello {
                version: 1,
                device: DEVICE_B,
                name: "bob".into(),
                temporary: false,
            })),
            CloseCode::VersionMismatch,
        ),
        (
            "version 3 hello",
            encode(&Frame::Hello(Hello {
                version: 3,
                device: DEVICE_B,
                name: "bob".into(),
                temporary: false,
            })),
            CloseCode::VersionMismatch,
        ),
        (
            "a message before any hello",
            encode(&Frame::Message(Message {
                seq: 1,
                lamport: 1,
                sent_at_ms: 0,
                text: "hi".into(),
            })),
            CloseCode::ProtocolViolation,
        ),
    ] {
        let mut session = Session::new(SessionConfig::new(DEVICE_A, "alice"), 0);
        let hello_len = session.poll_transmit(0).len();
        session.advance_transmit(hello_len);
        session.handle_input(&bytes, 1);
        assert!(session.is_closed(), "{what}");
        match session.poll_event() {
            Some(Event::Closed { reason, by }) => {
                assert_eq!((reason.code, by), (code, Side::Local), "{what}");
            }
            other => panic!("{what}: expected a close, got {other:?}"),
        }
        let out = decode_all(session.poll_transmit(1), usize::MAX).unwrap();
        assert!(
            matches!(&out[..], [Frame::Close(c)] if c.code == code),
            "{what}: the peer is told why: {out:?}"
        );
        session.handle_input(&encode(&Frame::Ping), 2);
        assert!(
            session.poll_event().is_none(),
            "a closed session ignores input"
        );
    }
}

/// A busy listener answers a second caller with a lone close frame (no session, no hello):
/// the caller learns why and stores nothing.
#[test]
fn a_busy_close_before_the_hello_reaches_the_peer() {
    let refusal = encode(&Frame::Close(Close::new(
        CloseCode::Busy,
        "in another chat",
    )));
    let mut caller = Session::new(SessionConfig::new(DEVICE_B, "bob"), 0);
    caller.handle_input(&refusal, 1);
    match caller.poll_event() {
        Some(Event::Closed { reason, by }) => {
            assert_eq!((reason.code, by), (CloseCode::Busy, Side::Peer));
            assert_eq!(reason.detail, "in another chat");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(caller.peer().is_none());
}

/// Alice's session, established with a bob driven by hand (his hello and sync), with what
/// it wrote so far taken off.
fn established_with_bob() -> Session {
    let mut a = Session::new(SessionConfig::new(DEVICE_A, "alice"), 0);
    let hello_b = encode(&Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        device: DEVICE_B,
        name: "bob".into(),
        temporary: false,
    }));
    a.handle_input(&hello_b, 0);
    assert!(matches!(a.poll_event(), Some(Event::PeerHello(_))));
    a.accept_peer(Default::default(), 0).unwrap();
    let sync = encode(&Frame::Sync(SyncPoint::default()));
    a.handle_input(&sync, 0);
    assert!(matches!(a.poll_event(), Some(Event::Established { .. })));
    let written = a.poll_transmit(0).len();
    a.advance_transmit(written);
    a
}

fn message_frame(seq: u64, text: &str) -> Vec<u8> {
    encode(&Frame::Message(Message {
        seq,
        lamport: seq,
        sent_at_ms: 0,
        text: text.into(),
    }))
}

#[test]
fn a_session_acks_what_its_driver_confirmed_and_never_beyond_what_it_received() {
    let mut a = established_with_bob();
    a.handle_input(
        &[message_frame(1, "one"), message_frame(2, "two")].concat(),
        0,
    );
    assert_eq!(a.received_up_to(), 2);
    assert!(
        a.poll_transmit(0).is_empty(),
        "no ack may be due before persistence"
    );
    assert_eq!(a.acked_up_to(), 0);
    a.confirm_persisted(1).unwrap();
    let ack = decode_all(a.poll_transmit(0), 1).unwrap();
    assert_eq!(ack, [Frame::Ack { up_to: 1 }]);
    assert_eq!(a.acked_up_to(), 1);
    assert!(
        a.confirm_persisted(3).is_err(),
        "cannot confirm beyond received"
    );
}

/// A peer may send at most MAX_UNACKED_BYTES of text without waiting for acks (what a
/// sender's byte window allows, and one message more): beyond that it is cut off, so one
/// connection never holds more of a peer's text than that. Acks written make room again.
#[test]
fn a_peer_sending_more_text_than_any_window_without_acks_is_cut_off() {
    let big = "x".repeat(MAX_TEXT_BYTES);
    let fits = MAX_UNACKED_BYTES / MAX_TEXT_BYTES;
    // Within the bound, with acks on the way: never cut off, however much in all.
    let mut a = established_with_bob();
    for seq in 1..=(3 * fits as u64) {
        a.handle_input(&message_frame(seq, &big), 0);
        a.confirm_persisted(seq).unwrap();
        let acked = a.poll_transmit(0).len();
        a.advance_transmit(acked);
    }
    assert!(!a.is_closed());
    // Without acks: cut off at the first message past the bound.
    let mut a = established_with_bob();
    for seq in 1..=fits as u64 {
        a.handle_input(&message_frame(seq, &big), 0);
    }
    assert!(
        !a.is_closed(),
        "{fits} messages of {MAX_TEXT_BYTES} bytes fit"
    );
    a.handle_input(&message_frame(fits as u64 + 1, &big), 0);
    assert!(a.is_closed());
    let close = a.close_reason().unwrap();
    assert_eq!(close.code, CloseCode::ProtocolViolation);
    assert!(
        close.detail.contains("without waiting for an ack"),
        "{close}"
    );
}

#[test]
fn duplicates_are_recognized_and_dropped() {
    // Bob sends message 1 twice.
    let mut a = established_with_bob();
    let m = message_frame(1, "once");
    a.handle_input(&[m.clone(), m].concat(), 0);
    assert!(matches!(a.poll_event(), Some(Event::MessageToPersist(_))));
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.duplicates_dropped(), 1);
    assert!(!a.is_closed());
}
