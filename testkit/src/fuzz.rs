//! The checks behind coverage-guided fuzzing, shared by the cargo-fuzz targets in `fuzz/` and
//! by the stable regression test `core/tests/fuzz_regressions.rs`, so that what the fuzzer
//! explores on nightly and what CI replays on stable are one and the same code.
//!
//! - [`check_frame_decoder`]: arbitrary bytes through the streaming [`FrameDecoder`], split
//!   into pieces at points the input chooses. It never panics, never buffers more than one
//!   frame ([`FRAME_BUFFER_LIMIT`]), never grows the heap by more than
//!   [`DECODE_HEAP_BUDGET`] in one call (when [`MeteredAllocator`] is installed), decodes
//!   the same frames and the same error whatever the split, and every decoded frame
//!   re-encodes to a frame that decodes to the same value.
//! - [`check_session`]: a structured [`SessionScript`] (built with `arbitrary`) drives either
//!   one [`Session`] whose driver and peer are both the script ([`World::Scripted`]: hostile
//!   frames, raw bytes, timeouts, user sends, persist confirmations, disconnects), or two
//!   [`Link`](socketfalco_core::Link)s with [`MemoryStore`](crate::MemoryStore)s on a
//!   [`Pair`] ([`World::Linked`]: crashes, store failures, cut and slow pipes, injected
//!   frames). After every action it checks the session's invariants: no panic, bounded
//!   buffers, acks never beyond what was persisted, events and wire frames in a sane order,
//!   nothing after a close, timers that are never due again right after they fired. A
//!   script that injected nothing hostile must end, after one clean reconnection, with both
//!   devices holding the same chat and nothing waiting.
//!
//! Fuzz inputs for the session target are decoded exactly as libfuzzer-sys does it:
//! [`session_script_from_bytes`]. [`SessionScript::to_fuzz_bytes`] goes the other way; it
//! builds the seed corpus from [`seed_scripts`].
//!
//! Every check is an `assert!` with a message: an invariant failure is a panic, which is what
//! the fuzzer detects. Runs are kept small: at most [`MAX_ACTIONS`] actions, at most
//! [`MAX_RAW_BYTES`] raw bytes per action.

use crate::{Device, Pair, Pipe, DEVICE_A, DEVICE_B};
use arbitrary::{Arbitrary, Unstructured};
use socketfalco_core::limits::{
    LENGTH_PREFIX_BYTES, MAX_CLOSE_DETAIL_BYTES, MAX_COUNTER, MAX_FRAME_BYTES,
    MAX_IN_FLIGHT_MESSAGES, MAX_NOISE_MESSAGE, MAX_TEXT_BYTES, PROTOCOL_VERSION,
};
use socketfalco_core::{
    check_text, encode_frame, ApiMisuse, ChatResume, Close, CloseCode, ComposeError, DeviceId,
    Event, Frame, FrameDecoder, FrameError, Hello, Message, Session, SessionConfig, Side, Store,
    SyncPoint,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most bytes a [`FrameDecoder`] may hold at any time: one length prefix plus one frame.
pub const FRAME_BUFFER_LIMIT: usize = LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES;

/// Most the heap may grow during one [`FrameDecoder::decode`] call, the returned frame
/// included: the partial-frame buffer (which may double while it grows) plus the decoded
/// text, with room to spare. Anything above means an allocation driven by a hostile length
/// instead of by bytes actually received.
pub const DECODE_HEAP_BUDGET: usize = 4 * FRAME_BUFFER_LIMIT;

/// Actions after this many are ignored, to keep each run short.
pub const MAX_ACTIONS: usize = 128;

/// Raw byte strings in a script are cut to this length.
pub const MAX_RAW_BYTES: usize = 4096;

/// Most bytes a session may queue for the peer in one action on top of the messages the user
/// sent in it: a close with its longest detail, an ack, a ping, a sync, a hello. More means
/// the peer can make us amplify its input.
pub const OUTPUT_GROWTH_SLACK: usize = 1024;

/// Most bytes a link's secure channel may buffer on top of the frame decoder: one Noise
/// message and its length.
pub const LINK_NOISE_BUFFER_LIMIT: usize = MAX_NOISE_MESSAGE + 2;

/// Shortest keepalive in the linked world: above the largest pipe latency a script sets
/// (255 ms), so that [`Pair::drive`] can settle.
pub const LINKED_MIN_KEEPALIVE_MS: u64 = 300;

/// Messages the user writes in one `Write` action, at most.
pub const MAX_WRITES_PER_ACTION: u8 = 4;

// ---------------------------------------------------------------------------------------
// Heap meter
// ---------------------------------------------------------------------------------------

static METER_INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Heap bytes allocated minus freed by this thread (negative when it frees what another
    // thread allocated), and the highest value seen since the last reset.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note_heap(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn size_delta(size: usize) -> isize {
    isize::try_from(size).unwrap_or(isize::MAX)
}

/// A global allocator that forwards to [`System`] and counts, per thread, how far the heap
/// grows, so that [`peak_heap_growth`] can tell how much one call allocated. The fuzz targets
/// and the regression test install it with `#[global_allocator]`; without it the heap checks
/// are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeteredAllocator;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping around it touches only const-initialized
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for MeteredAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            if !METER_INSTALLED.load(Ordering::Relaxed) {
                METER_INSTALLED.store(true, Ordering::Relaxed);
            }
            note_heap(size_delta(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note_heap(size_delta(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.dealloc(ptr, layout) };
        note_heap(-size_delta(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note_heap(size_delta(new_size).wrapping_sub(size_delta(layout.size())));
        }
        new
    }
}

/// Runs `f` and returns its result with how far this thread's heap grew above its level at
/// the start, at the highest point. `None` when [`MeteredAllocator`] is not the global
/// allocator.
pub fn peak_heap_growth<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    if !METER_INSTALLED.load(Ordering::Relaxed) {
        return (f(), None);
    }
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    let growth = usize::try_from(peak.wrapping_sub(start)).unwrap_or(0);
    (result, Some(growth))
}

// ---------------------------------------------------------------------------------------
// frame_decoder
// ---------------------------------------------------------------------------------------

/// What decoding one stream gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<FrameError>,
    /// Bytes of an incomplete frame left in the decoder at the end (no error).
    buffered: usize,
}

/// The `frame_decoder` fuzz target.
///
/// Input layout: the low four bits of the first byte say how many piece sizes follow (each
/// one byte: `0` means "the rest of the stream in one piece", `n` means `n` bytes; they are
/// used in a cycle); the remaining bytes are the stream.
///
/// Checks: no panic; `buffered() <= FRAME_BUFFER_LIMIT` after every call; heap growth per
/// call within [`DECODE_HEAP_BUDGET`] (with [`MeteredAllocator`]); a call that returns
/// `Ok(None)` has used up its input; errors are sticky and consume nothing; the stream in
/// pieces decodes to exactly what it decodes to in one piece; each decoded frame re-encodes
/// within the frame limit to bytes that decode to the same frame and re-encode identically.
pub fn check_frame_decoder(data: &[u8]) {
    let Some((&header, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(header & 0x0f).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let whole = decode_in_pieces(stream, &[]);
    if !sizes.is_empty() {
        let pieces = decode_in_pieces(stream, sizes);
        assert_eq!(
            whole, pieces,
            "the stream decodes differently in pieces {sizes:?} than in one piece"
        );
    }
    // Byte by byte, the hardest split, on short streams (it is quadratic in nothing, but
    // slow per byte).
    if stream.len() <= 512 {
        let bytewise = decode_in_pieces(stream, &[1]);
        assert_eq!(
            whole, bytewise,
            "the stream decodes differently byte by byte than in one piece"
        );
    }
    for frame in &whole.frames {
        check_round_trip(frame);
    }
}

fn decode_in_pieces(stream: &[u8], sizes: &[u8]) -> Decoded {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut next_size = sizes.iter().copied().cycle();
    while pos < stream.len() {
        let left = stream.len() - pos;
        let size = match next_size.next() {
            None | Some(0) => left,
            Some(n) => usize::from(n).min(left),
        };
        let mut input = &stream[pos..pos + size];
        pos += size;
        loop {
            let before = input.len();
            let (result, growth) = peak_heap_growth(|| decoder.decode(&mut input));
            assert!(
                decoder.buffered() <= FRAME_BUFFER_LIMIT,
                "the decoder buffers {} bytes, over one frame ({FRAME_BUFFER_LIMIT})",
                decoder.buffered()
            );
            if let Some(growth) = growth {
                assert!(
                    growth <= DECODE_HEAP_BUDGET,
                    "one decode call grew the heap by {growth} bytes (budget \
                     {DECODE_HEAP_BUDGET}) on a piece of {before} bytes"
                );
            }
            match result {
                Ok(Some(frame)) => {
                    assert!(input.len() < before, "a frame decoded out of no input");
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(
                        input.is_empty(),
                        "the decoder asked for more input with {} bytes unread",
                        input.len()
                    );
                    break;
                }
                Err(error) => {
                    let mut again = input;
                    assert_eq!(
                        decoder.decode(&mut again),
                        Err(error.clone()),
                        "decoder errors must be sticky"
                    );
                    assert_eq!(again.len(), input.len(), "a failed decoder consumed input");
                    assert_eq!(decoder.buffered(), 0, "a failed decoder keeps a buffer");
                    return Decoded {
                        frames,
                        error: Some(error),
                        buffered: 0,
                    };
                }
            }
        }
    }
    Decoded {
        frames,
        error: None,
        buffered: decoder.buffered(),
    }
}

/// Re-encodes `frame` and checks that the bytes decode to the same frame and re-encode to
/// the same bytes.
pub fn check_round_trip(frame: &Frame) {
    let mut bytes = Vec::new();
    encode_frame(frame, &mut bytes);
    let payload_len = bytes.len() - LENGTH_PREFIX_BYTES;
    assert!(
        payload_len <= MAX_FRAME_BYTES,
        "a decoded frame re-encodes to {payload_len} bytes, over the frame limit: {frame:?}"
    );
    let mut decoder = FrameDecoder::new();
    let mut input = bytes.as_slice();
    let again = match decoder.decode(&mut input) {
        Ok(Some(again)) => again,
        other => panic!("a decoded frame re-encodes to bytes that give {other:?}: {frame:?}"),
    };
    assert!(input.is_empty(), "re-encoded frame has trailing bytes");
    assert_eq!(&again, frame, "round trip changed the frame");
    let mut bytes_again = Vec::new();
    encode_frame(&again, &mut bytes_again);
    assert_eq!(bytes_again, bytes, "encoding is not deterministic");
}

// ---------------------------------------------------------------------------------------
// session: the script
// ---------------------------------------------------------------------------------------

/// A session fuzz input: a world and what happens in it.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct SessionScript {
    /// Who takes part.
    pub world: World,
    /// What happens, in order (at most [`MAX_ACTIONS`] are played).
    pub actions: Vec<Action>,
}

/// Who takes part in a [`SessionScript`].
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// One [`Session`] of device A. The script is both its driver (accept, persist
    /// confirmations, sends, timers, socket writes) and its peer (bytes and frames).
    Scripted {
        /// The session's settings.
        local: LocalConfig,
        /// The clock at the start.
        start: StartTime,
    },
    /// Two devices on a [`Pair`], each a [`Link`](socketfalco_core::Link) over a
    /// [`MemoryStore`](crate::MemoryStore). The script plays users, network and
    /// failures, and may inject bytes and frames into either side.
    Linked {
        /// Device A's settings.
        a: LocalConfig,
        /// Device B's settings.
        b: LocalConfig,
        /// Connections run the Noise channel (as in the product); false: plaintext.
        secure: bool,
    },
}

/// One side's [`SessionConfig`], from a few meaningful choices.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConfig {
    /// Ask for a temporary session.
    pub temporary: bool,
    /// The send window.
    pub window: WindowPick,
    /// The timers.
    pub timers: TimerPick,
}

/// A send window.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPick {
    /// The default (1,024).
    Default,
    /// One message at a time.
    One,
    /// A small window.
    Small(u8),
    /// The protocol's maximum.
    Max,
    /// Zero and `u64::MAX`: both clamped by the session.
    Absurd(bool),
}

/// Timer settings.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerPick {
    /// 5 s keepalive, 20 s idle, 10 s handshake.
    Default,
    /// 50 ms keepalive, 200 ms idle, 150 ms handshake.
    Short,
    /// Chosen values, each at least 1 ms.
    Custom {
        /// Keepalive interval.
        keepalive: u16,
        /// Idle timeout.
        idle: u16,
        /// Handshake timeout.
        handshake: u16,
    },
}

/// The clock at a session's start.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    /// 0 ms.
    Zero,
    /// A chosen time.
    At(u64),
    /// Just below `u64::MAX`: every deadline saturates.
    NearEnd(u16),
}

/// One step of a [`SessionScript`]. Actions that make no sense in the world at hand do
/// nothing.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Linked: one round of the pair at the current time.
    Step,
    /// Raw bytes from the peer (Linked: injected into device B if `to_b`, else A).
    Bytes {
        /// Linked: which device receives them.
        to_b: bool,
        /// The bytes.
        #[arbitrary(with = raw_bytes)]
        bytes: Vec<u8>,
    },
    /// A well-formed frame, with field values chosen to hurt, from the peer.
    Frame {
        /// Linked: which device receives it.
        to_b: bool,
        /// The frame.
        frame: FrameSpec,
        /// How its bytes arrive.
        delivery: Delivery,
    },
    /// Time passes; timers that come due fire, as a driver would fire them.
    Advance {
        /// How long, in milliseconds.
        ms: u16,
    },
    /// The driver wakes up and calls `handle_timeout` although nothing is due.
    Wake {
        /// Linked: which device.
        b: bool,
    },
    /// The user writes messages.
    Write {
        /// Linked: which device's user.
        b: bool,
        /// How many (1 to [`MAX_WRITES_PER_ACTION`]).
        count: u8,
        /// The text.
        text: TextPick,
    },
    /// Scripted: the driver accepts the peer, resuming from these values.
    Accept {
        /// The peer's messages held.
        received_up_to: Num,
        /// Own last sequence number.
        last_own_seq: Num,
    },
    /// Scripted: the driver reports the peer's messages durable up to here.
    Persist {
        /// The value passed to `confirm_persisted`.
        up_to: Num,
    },
    /// Scripted: the driver sends a message out of sequence; it must be refused.
    Misuse {
        /// The sequence number it carries.
        seq: Num,
    },
    /// The socket takes bytes of the session's output (Linked: the pair settles).
    Transmit {
        /// How many.
        amount: Amount,
    },
    /// The stream ends without a close frame.
    Eof {
        /// Linked: which device sees it.
        b: bool,
    },
    /// The driver closes the session.
    Close {
        /// Linked: which device.
        b: bool,
        /// The close code, as on the wire.
        code: u16,
    },
    /// Linked: the connection breaks; both sides see the end of the stream.
    Disconnect,
    /// Linked: a new connection (fresh sessions on both sides).
    Connect,
    /// Linked: a device crashes; its store survives.
    Crash {
        /// Which device.
        b: bool,
    },
    /// Linked: a device's next store writes fail.
    StoreFail {
        /// Which device.
        b: bool,
        /// How many writes (0 to 3).
        writes: u8,
    },
    /// Linked: how the pipe from a device behaves.
    Pipe {
        /// The pipe from B (else from A).
        from_b: bool,
        /// Latency in milliseconds.
        latency: u8,
        /// Largest piece delivered at once (0: no limit).
        max_piece: u8,
        /// Drop everything silently.
        blackhole: bool,
        /// Break the connection after this many more bytes.
        cut_after: Option<u16>,
        /// Flip the lowest bit of the byte at this offset of the stream.
        flip_bit_at: Option<u16>,
    },
}

/// A number chosen relative to where the session stands, so that the fuzzer reaches both
/// the values that matter (the next one, the last one) and the absurd ones.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Num {
    /// 0.
    Zero,
    /// A small number.
    Small(u8),
    /// The session's `received_up_to`, plus or minus a little.
    Received(i8),
    /// The session's `persisted_up_to`, plus or minus a little.
    Persisted(i8),
    /// The last sequence number the session sent, plus or minus a little.
    Sent(i8),
    /// What the peer acked, plus or minus a little.
    PeerAcked(i8),
    /// `u64::MAX` minus a little.
    NearMax(u8),
    /// Anything.
    Raw(u64),
}

/// Where a session stands, for [`Num`].
#[derive(Clone, Copy, Debug, Default)]
struct NumContext {
    received: u64,
    persisted: u64,
    sent: u64,
    peer_acked: u64,
}

impl NumContext {
    fn of(session: &Session) -> NumContext {
        NumContext {
            received: session.received_up_to(),
            persisted: session.persisted_up_to(),
            sent: session.next_send_seq().wrapping_sub(1),
            peer_acked: session.peer_acked(),
        }
    }
}

impl Num {
    fn resolve(self, at: NumContext) -> u64 {
        let near = |base: u64, delta: i8| base.wrapping_add_signed(i64::from(delta));
        match self {
            Num::Zero => 0,
            Num::Small(n) => u64::from(n),
            Num::Received(d) => near(at.received, d),
            Num::Persisted(d) => near(at.persisted, d),
            Num::Sent(d) => near(at.sent, d),
            Num::PeerAcked(d) => near(at.peer_acked, d),
            Num::NearMax(d) => u64::MAX - u64::from(d),
            Num::Raw(n) => n,
        }
    }
}

/// A frame for the peer to send, each field chosen to hurt.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum FrameSpec {
    /// A hello.
    Hello {
        /// The protocol version (`None`: ours).
        version: Option<u16>,
        /// The device it claims to be.
        device: DevicePick,
        /// The name it gives.
        name: TextPick,
        /// It asks for a temporary session.
        temporary: bool,
    },
    /// A sync.
    Sync {
        /// It holds our messages up to here.
        received_up_to: Num,
        /// Its own last sequence number.
        last_seq: Num,
    },
    /// A message.
    Message {
        /// Sequence number.
        seq: Num,
        /// Lamport counter.
        lamport: Num,
        /// Wall clock.
        sent_at_ms: i64,
        /// Text.
        text: TextPick,
    },
    /// An ack.
    Ack {
        /// Up to.
        up_to: Num,
    },
    /// A ping.
    Ping,
    /// A close.
    Close {
        /// The code on the wire.
        code: u16,
        /// The detail (not cut to the limit).
        detail: TextPick,
    },
}

/// A device id for a hello.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePick {
    /// The expected peer (B for device A, A for device B).
    Peer,
    /// The receiving device's own id.
    Own,
    /// Any 16 bytes.
    Raw([u8; 16]),
}

/// A text for a message, a name or a close detail.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum TextPick {
    /// A short numbered text.
    Short(u8),
    /// Multi-line, multi-byte UTF-8.
    Unicode,
    /// `n` × 97 bytes.
    Long(u8),
    /// Exactly [`MAX_TEXT_BYTES`] bytes.
    Max,
    /// One byte over [`MAX_TEXT_BYTES`].
    OverMax,
    /// Nothing.
    Empty,
    /// Bytes, as UTF-8 with replacement characters.
    Raw(#[arbitrary(with = raw_bytes)] Vec<u8>),
}

impl TextPick {
    fn text(&self) -> String {
        match self {
            TextPick::Short(n) => format!("m{n}"),
            TextPick::Unicode => "ligne 1\nligne 2 — ✓ Bøb".to_string(),
            TextPick::Long(n) => "0123456789abcdef".repeat(6).repeat(usize::from(*n)) + "!",
            TextPick::Max => "a".repeat(MAX_TEXT_BYTES),
            TextPick::OverMax => "a".repeat(MAX_TEXT_BYTES + 1),
            TextPick::Empty => String::new(),
            TextPick::Raw(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// How a frame's bytes reach the session.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// All at once.
    Whole,
    /// In two pieces, cut after this many bytes.
    Split(u16),
    /// One byte at a time.
    Bytewise,
    /// Only the first bytes; the rest never comes (the stream is misaligned from here).
    Truncated(u16),
}

/// How many bytes of pending output the socket takes.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// Everything.
    All,
    /// At most this many.
    Some(u16),
}

/// Reads a byte string the way the seed encoder writes it: a little-endian `u16` length
/// (modulo [`MAX_RAW_BYTES`] + 1), then as many bytes as remain up to it.
fn raw_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let len = usize::from(u16::arbitrary(u)?) % (MAX_RAW_BYTES + 1);
    let len = len.min(u.len());
    Ok(u.bytes(len)?.to_vec())
}

/// Decodes a session fuzz input exactly as libfuzzer-sys's `fuzz_target!` does for a typed
/// input: inputs shorter than the type's minimal size are skipped, then
/// `arbitrary_take_rest`.
pub fn session_script_from_bytes(data: &[u8]) -> Option<SessionScript> {
    if data.len() < <SessionScript as Arbitrary>::size_hint(0).0 {
        return None;
    }
    SessionScript::arbitrary_take_rest(Unstructured::new(data)).ok()
}

// ---------------------------------------------------------------------------------------
// session: the checks
// ---------------------------------------------------------------------------------------

/// Plays `script` and checks the invariants after every action. The regression test runs
/// this, so a crash file of a known core bug fails until the bug is fixed.
pub fn check_session(script: SessionScript) {
    run_session(script, false);
}

/// The `session` fuzz target: [`check_session`], except that structured frames which hit a
/// core bug already found and reported ([`known_core_bug`]) are not delivered, so that the
/// fuzzer keeps looking for new ones instead of rediscovering the old one every second.
pub fn check_session_past_known_bugs(script: SessionScript) {
    run_session(script, true);
}

/// Core bugs found by fuzzing and not fixed yet, by the frame that triggers them. Remove an
/// entry when the core is fixed (its crash file in `testdata/fuzz/session/` then passes).
///
/// None today. Fixed so far: `crash-sync-received-up-to-max` (a sync claiming `u64::MAX`
/// overflowed `next_send_seq`), `crash-sync-at-max-counter-then-send` (a sync at
/// `MAX_COUNTER` made the session send a sequence number the peer refuses) and
/// `crash-lamport-at-max-counter` (a peer's Lamport counter at `MAX_COUNTER` made our later
/// messages unsendable). To add one: match its triggering frame here and return why.
pub fn known_core_bug(frame: &Frame) -> Option<&'static str> {
    let _ = frame;
    None
}

fn run_session(script: SessionScript, skip_known_bugs: bool) {
    let actions = &script.actions[..script.actions.len().min(MAX_ACTIONS)];
    match script.world {
        World::Scripted { local, start } => {
            let mut world = ScriptedWorld::new(local, start);
            world.skip_known_bugs = skip_known_bugs;
            for action in actions {
                world.play(action);
            }
        }
        World::Linked { a, b, secure } => {
            let mut world = LinkedWorld::new(a, b, secure);
            world.skip_known_bugs = skip_known_bugs;
            for action in actions {
                world.play(action);
            }
            world.heal_and_check_convergence();
        }
    }
}

fn config_for(device: DeviceId, name: &str, local: LocalConfig) -> SessionConfig {
    let mut config = SessionConfig::new(device, name);
    config.temporary = local.temporary;
    config.window = match local.window {
        WindowPick::Default => config.window,
        WindowPick::One => 1,
        WindowPick::Small(n) => u64::from(n % 8) + 1,
        WindowPick::Max => MAX_IN_FLIGHT_MESSAGES,
        WindowPick::Absurd(high) => {
            if high {
                u64::MAX
            } else {
                0
            }
        }
    };
    match local.timers {
        TimerPick::Default => {}
        TimerPick::Short => {
            config.keepalive_interval_ms = 50;
            config.idle_timeout_ms = 200;
            config.handshake_timeout_ms = 150;
        }
        TimerPick::Custom {
            keepalive,
            idle,
            handshake,
        } => {
            // Zero timers are a driver bug the core does not guard against (a zero
            // keepalive is due forever); keep them at 1 ms or more.
            config.keepalive_interval_ms = u64::from(keepalive.max(1));
            config.idle_timeout_ms = u64::from(idle.max(1));
            config.handshake_timeout_ms = u64::from(handshake.max(1));
        }
    }
    config
}

fn effective_window(config: &SessionConfig) -> u64 {
    config.window.clamp(1, MAX_IN_FLIGHT_MESSAGES)
}

fn build_frame(spec: &FrameSpec, receiver: DeviceId, peer: DeviceId, at: NumContext) -> Frame {
    match spec {
        FrameSpec::Hello {
            version,
            device,
            name,
            temporary,
        } => Frame::Hello(Hello {
            version: version.unwrap_or(PROTOCOL_VERSION),
            device: match device {
                DevicePick::Peer => peer,
                DevicePick::Own => receiver,
                DevicePick::Raw(bytes) => DeviceId(*bytes),
            },
            name: match name {
                TextPick::Short(n) => format!("peer{n}"),
                other => other.text(),
            },
            temporary: *temporary,
        }),
        FrameSpec::Sync {
            received_up_to,
            last_seq,
        } => Frame::Sync(SyncPoint {
            received_up_to: received_up_to.resolve(at),
            last_seq: last_seq.resolve(at),
        }),
        FrameSpec::Message {
            seq,
            lamport,
            sent_at_ms,
            text,
        } => Frame::Message(Message {
            seq: seq.resolve(at),
            lamport: lamport.resolve(at),
            sent_at_ms: *sent_at_ms,
            text: text.text(),
        }),
        FrameSpec::Ack { up_to } => Frame::Ack {
            up_to: up_to.resolve(at),
        },
        FrameSpec::Ping => Frame::Ping,
        FrameSpec::Close { code, detail } => Frame::Close(Close {
            code: CloseCode::from_wire(*code),
            detail: detail.text(),
        }),
    }
}

/// The frame's bytes in the pieces `delivery` asks for.
fn deliver(frame: &Frame, delivery: Delivery) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    encode_frame(frame, &mut bytes);
    match delivery {
        Delivery::Whole => vec![bytes],
        Delivery::Split(at) => {
            let at = usize::from(at).min(bytes.len());
            let (first, second) = bytes.split_at(at);
            vec![first.to_vec(), second.to_vec()]
        }
        Delivery::Bytewise if bytes.len() <= 256 => bytes.chunks(1).map(<[u8]>::to_vec).collect(),
        Delivery::Bytewise => bytes.chunks(7).map(<[u8]>::to_vec).collect(),
        Delivery::Truncated(keep) => {
            bytes.truncate(usize::from(keep) % bytes.len().max(1));
            vec![bytes]
        }
    }
}

/// The invariants every session keeps at every moment, whoever drives it.
fn check_session_state(session: &Session, window: u64, what: &str) {
    let acked = session.acked_up_to();
    let persisted = session.persisted_up_to();
    let received = session.received_up_to();
    assert!(
        acked <= persisted && persisted <= received,
        "{what}: acked {acked} <= persisted {persisted} <= received {received} broken"
    );
    let sent = session.next_send_seq().checked_sub(1);
    assert!(
        sent.is_some_and(|sent| session.peer_acked() <= sent),
        "{what}: the peer acked {} but the next send seq is {}",
        session.peer_acked(),
        session.next_send_seq()
    );
    let in_flight = session.in_flight();
    assert!(
        in_flight <= window,
        "{what}: {in_flight} messages in flight, window {window}"
    );
    if session.is_established() {
        assert_eq!(
            session.send_capacity(),
            window - in_flight,
            "{what}: send capacity"
        );
    } else {
        assert_eq!(
            session.send_capacity(),
            0,
            "{what}: capacity while not established"
        );
    }
    assert!(
        session.buffered_input() <= FRAME_BUFFER_LIMIT,
        "{what}: {} bytes of input buffered, over one frame",
        session.buffered_input()
    );
    if session.is_closed() {
        assert!(
            session.close_reason().is_some(),
            "{what}: closed without a reason"
        );
        assert!(
            session.poll_timeout().is_none(),
            "{what}: a closed session wants a timer"
        );
        assert!(!session.wants_read(), "{what}: a closed session reads");
        assert!(!session.is_established(), "{what}: closed and established");
    } else {
        assert!(
            session.close_reason().is_none(),
            "{what}: a close reason while open"
        );
        assert!(
            session.poll_timeout().is_some(),
            "{what}: an open session without a timer"
        );
        assert!(
            session.wants_read(),
            "{what}: an open session does not read"
        );
    }
}

/// One [`Session`] whose driver and peer are the script.
struct ScriptedWorld {
    skip_known_bugs: bool,
    session: Session,
    window: u64,
    now: u64,
    /// What the peer reads of the session's output.
    wire: FrameDecoder,
    /// Frames the session has put on the wire so far, by kind, for order checks.
    hello_on_wire: bool,
    sync_on_wire: bool,
    close_on_wire: bool,
    last_ack_on_wire: u64,
    /// Sequence numbers sent with `send`, not yet seen on the wire.
    sent_not_on_wire: VecDeque<u64>,
    /// Bytes already taken by the socket.
    transmitted: usize,
    /// `transmitted` + pending output after the previous action.
    queued_before: usize,
    /// Message bytes the user queued during the current action.
    user_bytes: usize,
    // What the driver has seen and done.
    peer_hello_seen: bool,
    accepted: bool,
    resume: ChatResume,
    established_seen: bool,
    closed_seen: bool,
    /// The driver's own record of what it confirmed durable: the ground truth for acks.
    confirmed: u64,
    next_incoming: u64,
    delivered: u64,
}

impl ScriptedWorld {
    fn new(local: LocalConfig, start: StartTime) -> ScriptedWorld {
        let config = config_for(DEVICE_A, "alice", local);
        let window = effective_window(&config);
        let now = match start {
            StartTime::Zero => 0,
            StartTime::At(t) => t,
            StartTime::NearEnd(d) => u64::MAX - u64::from(d),
        };
        let mut world = ScriptedWorld {
            skip_known_bugs: false,
            session: Session::new(config, now),
            window,
            now,
            wire: FrameDecoder::new(),
            hello_on_wire: false,
            sync_on_wire: false,
            close_on_wire: false,
            last_ack_on_wire: 0,
            sent_not_on_wire: VecDeque::new(),
            transmitted: 0,
            queued_before: 0,
            user_bytes: 0,
            peer_hello_seen: false,
            accepted: false,
            resume: ChatResume::default(),
            established_seen: false,
            closed_seen: false,
            confirmed: 0,
            next_incoming: 1,
            delivered: 0,
        };
        world.check("new session");
        world
    }

    fn ctx(&self) -> NumContext {
        NumContext::of(&self.session)
    }

    fn input(&mut self, bytes: &[u8]) {
        let now = self.now;
        let session = &mut self.session;
        let (_, growth) = peak_heap_growth(|| session.handle_input(bytes, now));
        if let Some(growth) = growth {
            let budget = DECODE_HEAP_BUDGET + 8 * bytes.len();
            assert!(
                growth <= budget,
                "handle_input of {} bytes grew the heap by {growth} bytes (budget {budget})",
                bytes.len()
            );
        }
    }

    fn play(&mut self, action: &Action) {
        self.user_bytes = 0;
        match action {
            Action::Step | Action::Disconnect | Action::Connect => {}
            Action::Crash { .. } | Action::StoreFail { .. } | Action::Pipe { .. } => {}
            Action::Bytes { bytes, .. } => self.input(bytes),
            Action::Frame {
                frame, delivery, ..
            } => {
                let frame = build_frame(frame, DEVICE_A, DEVICE_B, self.ctx());
                if !(self.skip_known_bugs && known_core_bug(&frame).is_some()) {
                    for piece in deliver(&frame, *delivery) {
                        self.input(&piece);
                    }
                }
            }
            Action::Advance { ms } => {
                self.now = self.now.saturating_add(u64::from(*ms));
                if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.session.handle_timeout(self.now);
                    let next = self.session.poll_timeout();
                    assert!(
                        next.is_none_or(|t| t > self.now),
                        "right after handle_timeout({}) the next timeout {next:?} is due \
                         already: the driver would spin",
                        self.now
                    );
                }
            }
            Action::Wake { .. } => self.spurious_wake(),
            Action::Write { count, text, .. } => {
                for _ in 0..(count % MAX_WRITES_PER_ACTION) + 1 {
                    self.user_send(text);
                }
            }
            Action::Accept {
                received_up_to,
                last_own_seq,
            } => {
                // A correct store never holds counters beyond what the wire allows.
                let resume = ChatResume {
                    received_up_to: received_up_to.resolve(self.ctx()).min(MAX_COUNTER),
                    last_own_seq: last_own_seq.resolve(self.ctx()).min(MAX_COUNTER),
                    unnumbered: 0,
                    delivered_up_to: 0,
                };
                self.accept(resume);
            }
            Action::Persist { up_to } => {
                let up_to = up_to.resolve(self.ctx());
                self.persist(up_to);
            }
            Action::Misuse { seq } => {
                let seq = seq.resolve(self.ctx());
                if seq != self.session.next_send_seq() {
                    let message = Message {
                        seq,
                        lamport: 1,
                        sent_at_ms: 0,
                        text: "misuse".into(),
                    };
                    let before = self.session.poll_transmit(self.now).len();
                    let result = self.session.send(&message, self.now);
                    assert!(
                        result.is_err(),
                        "send accepted seq {seq}, expected {}",
                        self.session.next_send_seq()
                    );
                    assert_eq!(
                        self.session.poll_transmit(self.now).len(),
                        before,
                        "a refused send wrote bytes"
                    );
                }
            }
            Action::Transmit { amount } => self.transmit(*amount),
            Action::Eof { .. } => self.session.handle_eof(self.now),
            Action::Close { code, .. } => {
                let reason = Close::new(CloseCode::from_wire(*code), "the script closes");
                self.session.close(reason, self.now);
            }
        }
        self.check("after an action");
    }

    fn spurious_wake(&mut self) {
        let due = self.session.poll_timeout().is_some_and(|t| t <= self.now);
        if due {
            return;
        }
        let timeout = self.session.poll_timeout();
        let pending = self.session.poll_transmit(self.now).len();
        self.session.handle_timeout(self.now);
        assert_eq!(
            self.session.poll_timeout(),
            timeout,
            "a wake-up with nothing due moved the timer"
        );
        assert_eq!(
            self.session.poll_transmit(self.now).len(),
            pending,
            "a wake-up with nothing due wrote bytes"
        );
        assert!(
            !self.session.is_closed() || self.closed_seen,
            "a wake-up with nothing due closed the session"
        );
    }

    fn user_send(&mut self, text: &TextPick) {
        let text = text.text();
        let seq = self.session.next_send_seq();
        let message = Message {
            seq,
            lamport: seq,
            sent_at_ms: 1_700_000_000_000,
            text,
        };
        let capacity = self.session.send_capacity();
        let text_ok = check_text(&message.text).is_ok();
        let result = self.session.send(&message, self.now);
        let expected_ok = self.session.is_established() && capacity > 0 && text_ok;
        match result {
            Ok(()) => {
                assert!(
                    expected_ok,
                    "send accepted: capacity {capacity}, text ok {text_ok}, established {}",
                    self.session.is_established()
                );
                assert_eq!(
                    self.session.next_send_seq(),
                    seq.wrapping_add(1),
                    "send did not count"
                );
                self.sent_not_on_wire.push_back(seq);
                self.user_bytes += message.text.len() + 64;
            }
            Err(e) => {
                assert!(!expected_ok, "send refused a valid message: {e}");
                assert_eq!(self.session.next_send_seq(), seq, "a refused send counted");
            }
        }
    }

    fn accept(&mut self, resume: ChatResume) {
        let expected_ok = self.peer_hello_seen && !self.accepted && !self.session.is_closed();
        match self.session.accept_peer(resume, self.now) {
            Ok(()) => {
                assert!(expected_ok, "accept_peer succeeded without a pending hello");
                self.accepted = true;
                let resume = if self.session.is_temporary() {
                    ChatResume::default()
                } else {
                    resume
                };
                self.resume = resume;
                self.confirmed = resume.received_up_to;
                self.next_incoming = resume.received_up_to.wrapping_add(1);
            }
            Err(e) => {
                assert!(!expected_ok, "accept_peer refused a pending hello: {e}");
                assert_eq!(e, ApiMisuse::NotAwaitingAccept);
            }
        }
    }

    fn persist(&mut self, up_to: u64) {
        let persisted = self.session.persisted_up_to();
        let received = self.session.received_up_to();
        let expected_ok = persisted <= up_to && up_to <= received;
        match self.session.confirm_persisted(up_to) {
            Ok(()) => {
                assert!(
                    expected_ok,
                    "confirm_persisted({up_to}) accepted outside {persisted}..={received}"
                );
                self.confirmed = self.confirmed.max(up_to);
            }
            Err(e) => assert!(!expected_ok, "confirm_persisted refused {up_to}: {e}"),
        }
    }

    fn transmit(&mut self, amount: Amount) {
        let out = self.session.poll_transmit(self.now);
        let n = match amount {
            Amount::All => out.len(),
            Amount::Some(n) => usize::from(n).min(out.len()),
        };
        let mut input = &out[..n];
        let mut frames = Vec::new();
        loop {
            match self.wire.decode(&mut input) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => panic!("the session wrote bytes that do not decode: {e}"),
            }
        }
        self.session.advance_transmit(n);
        self.transmitted += n;
        for frame in frames {
            self.check_wire_frame(frame);
        }
    }

    fn check_wire_frame(&mut self, frame: Frame) {
        assert!(
            !self.close_on_wire,
            "the session wrote {frame:?} after its close frame"
        );
        if !self.hello_on_wire {
            assert!(
                matches!(&frame, Frame::Hello(h) if h.device == DEVICE_A && h.version == PROTOCOL_VERSION),
                "the first frame on the wire is {frame:?}, not our hello"
            );
            self.hello_on_wire = true;
            return;
        }
        match frame {
            Frame::Hello(_) => panic!("a second hello on the wire"),
            Frame::Sync(sync) => {
                assert!(self.accepted, "a sync before the peer was accepted");
                assert!(!self.sync_on_wire, "a second sync on the wire");
                assert_eq!(
                    sync,
                    SyncPoint {
                        received_up_to: self.resume.received_up_to,
                        last_seq: self.resume.last_own_seq
                    },
                    "the sync does not carry the resume point"
                );
                self.sync_on_wire = true;
            }
            Frame::Message(message) => {
                let expected = self.sent_not_on_wire.pop_front();
                assert_eq!(
                    Some(message.seq),
                    expected,
                    "a message on the wire that was not sent, or out of order"
                );
            }
            Frame::Ack { up_to } => {
                assert!(self.sync_on_wire, "an ack before our sync");
                assert!(
                    up_to > self.last_ack_on_wire,
                    "ack {up_to} after ack {}: acks must only grow",
                    self.last_ack_on_wire
                );
                let limit = if self.session.is_temporary() {
                    self.session.received_up_to()
                } else {
                    self.confirmed
                };
                assert!(
                    up_to <= limit,
                    "the session acked up to {up_to} but only {limit} was persisted \
                     (temporary: {})",
                    self.session.is_temporary()
                );
                self.last_ack_on_wire = up_to;
            }
            Frame::Ping => {}
            Frame::Recover { from, to } => {
                assert!(self.sync_on_wire, "a recover request before our sync");
                assert!(
                    from > self.resume.last_own_seq && from <= to,
                    "recover {from}..={to} with our own last seq {}",
                    self.resume.last_own_seq
                );
            }
            Frame::Returned(message) => {
                panic!(
                    "returned message {} on the wire: nobody asked the driver",
                    message.seq
                )
            }
            Frame::Close(close) => {
                assert!(
                    self.session.is_closed(),
                    "a close frame from an open session"
                );
                assert_eq!(
                    Some(&close),
                    self.session.close_reason(),
                    "the close frame differs from the close reason"
                );
                self.close_on_wire = true;
            }
        }
    }

    fn check_event(&mut self, event: Event) {
        assert!(!self.closed_seen, "an event after Closed: {event:?}");
        let event_kind = match &event {
            Event::TemporaryMessage(_) => EventKind::Temporary,
            _ => EventKind::Other,
        };
        match event {
            Event::PeerHello(peer) => {
                assert!(!self.peer_hello_seen, "a second PeerHello");
                assert_ne!(peer.device, DEVICE_A, "PeerHello for our own identity");
                self.peer_hello_seen = true;
            }
            Event::Established { .. } => {
                assert!(self.accepted, "Established before accept_peer");
                assert!(!self.established_seen, "a second Established");
                self.established_seen = true;
            }
            Event::MessageToPersist(message) | Event::TemporaryMessage(message) => {
                assert!(self.established_seen, "a message before Established");
                assert_eq!(
                    matches!(event_kind, EventKind::Temporary),
                    self.session.is_temporary(),
                    "a stored message in a temporary session, or the reverse"
                );
                assert_eq!(
                    message.seq, self.next_incoming,
                    "messages handed to the driver out of sequence"
                );
                check_text(&message.text)
                    .unwrap_or_else(|e| panic!("an invalid text reached the driver: {e}"));
                self.next_incoming = self.next_incoming.wrapping_add(1);
            }
            Event::OwnRecovered(message) => {
                assert!(
                    self.established_seen,
                    "a returned message before Established"
                );
                assert!(
                    message.seq > self.resume.last_own_seq,
                    "own message {} returned, which we hold",
                    message.seq
                );
            }
            Event::ReturnRequested { from, to } => {
                assert!(
                    self.established_seen,
                    "a recover request before Established"
                );
                assert!(
                    from <= to && to <= self.session.received_up_to(),
                    "asked to return {from}..={to}, holding up to {}",
                    self.session.received_up_to()
                );
            }
            Event::Delivered { up_to } => {
                let sent = self.session.next_send_seq() - 1;
                assert!(
                    up_to > self.delivered && up_to <= sent,
                    "Delivered up to {up_to}: before {}, sent {sent}",
                    self.delivered
                );
                self.delivered = up_to;
            }
            Event::Closed { reason, by } => {
                assert!(self.session.is_closed(), "Closed while the session is open");
                assert_eq!(
                    Some(&reason),
                    self.session.close_reason(),
                    "Closed event and close reason differ"
                );
                if by == Side::Local {
                    assert!(
                        reason.detail.len() <= MAX_CLOSE_DETAIL_BYTES,
                        "our close detail is over the limit"
                    );
                }
                self.closed_seen = true;
            }
        }
    }

    fn check(&mut self, what: &str) {
        let was_closed = self.closed_seen;
        while let Some(event) = self.session.poll_event() {
            self.check_event(event);
        }
        assert_eq!(
            self.session.is_closed(),
            self.closed_seen,
            "{what}: is_closed and the Closed event disagree"
        );
        check_session_state(&self.session, self.window, what);
        if self.accepted && !self.session.is_temporary() {
            assert_eq!(
                self.session.persisted_up_to(),
                self.confirmed,
                "{what}: persisted_up_to moved without the driver"
            );
        }
        if self.accepted && self.session.is_temporary() {
            assert_eq!(
                self.session.persisted_up_to(),
                self.session.received_up_to(),
                "{what}: a temporary session acks on receipt"
            );
        }
        let queued = self.transmitted + self.session.poll_transmit(self.now).len();
        let growth = queued.saturating_sub(self.queued_before);
        if was_closed {
            assert_eq!(growth, 0, "{what}: a closed session wrote more bytes");
        }
        assert!(
            growth <= self.user_bytes + OUTPUT_GROWTH_SLACK,
            "{what}: output grew by {growth} bytes, {} of them from the user",
            self.user_bytes
        );
        self.queued_before = queued;
    }
}

enum EventKind {
    Temporary,
    Other,
}

/// Two linked devices on a [`Pair`].
struct LinkedWorld {
    skip_known_bugs: bool,
    pair: Pair,
    /// Something was injected that no honest peer sends: convergence is not promised.
    hostile: bool,
    windows: [u64; 2],
}

impl LinkedWorld {
    fn new(a: LocalConfig, b: LocalConfig, secure: bool) -> LinkedWorld {
        let mut pair = Pair::new();
        pair.secure = secure;
        pair.a.config = config_for(DEVICE_A, "alice", a);
        pair.b.config = config_for(DEVICE_B, "bob", b);
        // `Pair::drive` settles only if no keepalive comes due while bytes are in a pipe:
        // with a keepalive shorter than the latency, each delivered ping finds the next one
        // due and the pair never settles (timeout-linked-keepalive-below-latency). Keep
        // keepalives above the largest latency a script can set.
        for config in [&mut pair.a.config, &mut pair.b.config] {
            config.keepalive_interval_ms =
                config.keepalive_interval_ms.max(LINKED_MIN_KEEPALIVE_MS);
        }
        let windows = [
            effective_window(&pair.a.config),
            effective_window(&pair.b.config),
        ];
        pair.connect();
        let mut world = LinkedWorld {
            skip_known_bugs: false,
            pair,
            hostile: false,
            windows,
        };
        world.check("new pair");
        world
    }

    fn device(&mut self, b: bool) -> &mut Device {
        if b {
            &mut self.pair.b
        } else {
            &mut self.pair.a
        }
    }

    /// Feeds bytes to a device: raw (`network`: through the link, so through the secure
    /// channel when there is one: an attacker on the path), or straight into the session
    /// (an authenticated but hostile peer).
    fn inject(&mut self, to_b: bool, pieces: &[Vec<u8>], network: bool) {
        self.hostile = true;
        let now = self.pair.now_ms;
        let device = self.device(to_b);
        if let Some(link) = device.link.as_mut() {
            for piece in pieces {
                if network {
                    link.handle_input(piece, now);
                } else {
                    link.inject_plaintext(piece, now);
                }
            }
            let _ = link.pump_with(&mut device.store, now);
            while link.poll_notice().is_some() {}
        }
    }

    fn play(&mut self, action: &Action) {
        let now = self.pair.now_ms;
        match action {
            Action::Step => {
                self.pair.step();
            }
            Action::Bytes { to_b, bytes } => {
                self.inject(*to_b, std::slice::from_ref(bytes), true);
            }
            Action::Frame {
                to_b,
                frame,
                delivery,
            } => {
                let (receiver, peer) = if *to_b {
                    (DEVICE_B, DEVICE_A)
                } else {
                    (DEVICE_A, DEVICE_B)
                };
                let at = self
                    .device(*to_b)
                    .link
                    .as_ref()
                    .map_or_else(NumContext::default, |l| NumContext::of(l.session()));
                let frame = build_frame(frame, receiver, peer, at);
                if !(self.skip_known_bugs && known_core_bug(&frame).is_some()) {
                    self.inject(*to_b, &deliver(&frame, *delivery), false);
                }
            }
            Action::Advance { ms } => self.pair.advance(u64::from(*ms)),
            Action::Wake { b } => {
                if let Some(link) = self.device(*b).link.as_mut() {
                    if link.poll_timeout().is_some_and(|t| t > now) {
                        link.wake_session_early(now);
                    }
                }
            }
            Action::Write { b, count, text } => {
                let text = text.text();
                for _ in 0..(count % MAX_WRITES_PER_ACTION) + 1 {
                    self.write(*b, &text);
                }
            }
            Action::Accept { .. } | Action::Persist { .. } => {}
            Action::Misuse { seq } => {
                if let Some(link) = self.pair.a.link.as_mut() {
                    let seq = seq.resolve(NumContext::of(link.session()));
                    if seq != link.session().next_send_seq() {
                        let message = Message {
                            seq,
                            lamport: 1,
                            sent_at_ms: 0,
                            text: "misuse".into(),
                        };
                        assert!(
                            link.send_unchecked(&message, now).is_err(),
                            "send accepted an out-of-sequence message"
                        );
                    }
                }
            }
            Action::Transmit { .. } => self.pair.drive(),
            Action::Eof { b } => {
                if let Some(link) = self.device(*b).link.as_mut() {
                    link.handle_eof(now);
                }
            }
            Action::Close { b, code } => {
                if let Some(link) = self.device(*b).link.as_mut() {
                    let reason = Close::new(CloseCode::from_wire(*code), "the script closes");
                    link.close(reason, now);
                }
            }
            Action::Disconnect => self.pair.disconnect(),
            Action::Connect => self.pair.connect(),
            Action::Crash { b } => self.pair.crash(!*b),
            Action::StoreFail { b, writes } => {
                self.device(*b).store.fail_next_writes = u32::from(writes % 4);
            }
            Action::Pipe {
                from_b,
                latency,
                max_piece,
                blackhole,
                cut_after,
                flip_bit_at,
            } => {
                // Without the secure channel a flipped bit may change a message unnoticed
                // (as TCP's checksum may miss it): convergence is then not promised.
                if flip_bit_at.is_some() && !self.pair.secure {
                    self.hostile = true;
                }
                let pipe = if *from_b {
                    &mut self.pair.b_to_a
                } else {
                    &mut self.pair.a_to_b
                };
                pipe.latency_ms = u64::from(*latency);
                pipe.max_piece = usize::from(*max_piece);
                pipe.blackhole = *blackhole;
                pipe.cut_after = cut_after.map(u64::from);
                pipe.flip_bit_at = flip_bit_at.map(|at| pipe.carried + u64::from(at));
            }
        }
        self.check("after an action");
    }

    /// The user writes: through the link when the peer is known, else offline into the
    /// store. Failures (a failing store, an invalid text) are the user's to see, not bugs.
    fn write(&mut self, b: bool, text: &str) {
        let now = self.pair.now_ms;
        let (device, peer, wall) = if b {
            (&mut self.pair.b, DEVICE_A, self.pair.wall_b_ms)
        } else {
            (&mut self.pair.a, DEVICE_B, self.pair.wall_a_ms)
        };
        if let Some(link) = device.link.as_mut() {
            match link.compose_one_with(&mut device.store, text, wall, now) {
                Err(ComposeError::NoPeer) => {}
                Ok(_) | Err(_) => return,
            }
        }
        let _ = device.store.compose(peer, text, wall);
    }

    fn check(&mut self, what: &str) {
        for (i, device) in [&self.pair.a, &self.pair.b].into_iter().enumerate() {
            let who = if i == 0 { "device a" } else { "device b" };
            let peer_id = if i == 0 { DEVICE_B } else { DEVICE_A };
            let chat = device.store.chats.get(&peer_id);
            let stored_received = chat.and_then(|c| c.received.last()).map_or(0, |m| m.seq);
            if let Some(chat) = chat {
                for (n, m) in chat.received.iter().enumerate() {
                    assert_eq!(
                        m.seq,
                        n as u64 + 1,
                        "{what}: {who} stored the peer's messages with a gap"
                    );
                }
                assert!(
                    chat.own.windows(2).all(|w| w[0].seq < w[1].seq),
                    "{what}: {who} stored own messages out of order"
                );
                // What we write must be sendable: a counter beyond the wire's range makes
                // the peer refuse the frame, on every connection, forever.
                for m in &chat.own {
                    assert!(
                        (1..=MAX_COUNTER).contains(&m.seq)
                            && (1..=MAX_COUNTER).contains(&m.lamport),
                        "{what}: {who} wrote a message the peer must refuse: seq {}, lamport {} \
                         (wire range 1..={MAX_COUNTER})",
                        m.seq,
                        m.lamport
                    );
                }
                if !self.hostile {
                    let last_own = chat.own.last().map_or(0, |m| m.seq);
                    assert!(
                        chat.delivered_up_to <= last_own,
                        "{what}: {who} marked {} delivered but wrote only {last_own}",
                        chat.delivered_up_to
                    );
                }
            }
            let Some(link) = device.link.as_ref() else {
                continue;
            };
            let session = link.session();
            check_session_state(session, self.windows[i], &format!("{what}, {who}"));
            assert!(
                link.buffered_input() <= FRAME_BUFFER_LIMIT + LINK_NOISE_BUFFER_LIMIT,
                "{what}: {who} buffers {} bytes of input",
                link.buffered_input()
            );
            if link.peer().is_some() && !session.is_temporary() {
                assert!(
                    session.acked_up_to() <= stored_received,
                    "{what}: {who} acked up to {} but stored only up to {stored_received}",
                    session.acked_up_to()
                );
            }
        }
    }

    /// For a script that injected nothing: clear every fault, reconnect once with default
    /// settings, settle, and check that both devices hold the same chat with nothing
    /// waiting.
    fn heal_and_check_convergence(&mut self) {
        if self.hostile {
            return;
        }
        for device in [&mut self.pair.a, &mut self.pair.b] {
            device.store.fail_next_writes = 0;
            device.config.temporary = false;
            let window = device.config.window;
            device.config = SessionConfig::new(device.id, device.config.name.clone());
            device.config.window = window;
        }
        self.pair.a_to_b = Pipe::default();
        self.pair.b_to_a = Pipe::default();
        self.pair.disconnect();
        self.pair.connect();
        self.pair.drive();
        self.check("after healing");
        assert!(
            self.pair.is_established(),
            "after healing the pair is not established"
        );
        let (a, b) = (self.pair.history(true), self.pair.history(false));
        assert!(
            a == b,
            "after healing the devices hold different chats:\n a: {a:?}\n b: {b:?}"
        );
        assert_eq!(self.pair.waiting(true), 0, "after healing a still waits");
        assert_eq!(self.pair.waiting(false), 0, "after healing b still waits");
    }
}

// ---------------------------------------------------------------------------------------
// Seeds: scripts → fuzz input bytes
// ---------------------------------------------------------------------------------------

/// Writes values in the byte layout `arbitrary` (1.x, with its derive) reads them from, so
/// that hand-written scripts become fuzz inputs. The round trip is checked by the regression
/// test for every seed.
trait FuzzEncode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// The fields of a struct or of an enum variant, in declaration order: what
/// `#[derive(Arbitrary)]` reads one after another.
fn fields(out: &mut Vec<u8>, fields: &[&dyn FuzzEncode]) {
    for field in fields {
        field.encode(out);
    }
}

/// Variant `index` of an enum of `count` variants, with its fields: the `u32` that
/// `#[derive(Arbitrary)]` maps to that variant, then the fields.
fn variant(out: &mut Vec<u8>, index: u32, count: u32, variant_fields: &[&dyn FuzzEncode]) {
    let tag = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    debug_assert_eq!((u64::from(tag) * u64::from(count)) >> 32, u64::from(index));
    out.extend_from_slice(&tag.to_le_bytes());
    fields(out, variant_fields);
}

macro_rules! encode_le {
    ($($t:ty),*) => {$(
        impl FuzzEncode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_le!(u8, u16, u64, i8, i64);

impl FuzzEncode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: FuzzEncode> FuzzEncode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(value) = self {
            value.encode(out);
        }
    }
}

impl FuzzEncode for [u8; 16] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

/// A raw byte string, as `raw_bytes` reads it: a `u16` length, then the bytes (cut at
/// [`MAX_RAW_BYTES`]).
struct Raw<'a>(&'a [u8]);

impl FuzzEncode for Raw<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = self.0.len().min(MAX_RAW_BYTES);
        (len as u16).encode(out);
        out.extend_from_slice(&self.0[..len]);
    }
}

impl FuzzEncode for SessionScript {
    fn encode(&self, out: &mut Vec<u8>) {
        self.world.encode(out);
        for action in &self.actions {
            true.encode(out);
            action.encode(out);
        }
    }
}

impl FuzzEncode for World {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            World::Scripted { local, start } => variant(out, 0, 2, &[local, start]),
            World::Linked { a, b, secure } => variant(out, 1, 2, &[a, b, secure]),
        }
    }
}

impl FuzzEncode for LocalConfig {
    fn encode(&self, out: &mut Vec<u8>) {
        fields(out, &[&self.temporary, &self.window, &self.timers]);
    }
}

impl FuzzEncode for WindowPick {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            WindowPick::Default => variant(out, 0, 5, &[]),
            WindowPick::One => variant(out, 1, 5, &[]),
            WindowPick::Small(n) => variant(out, 2, 5, &[n]),
            WindowPick::Max => variant(out, 3, 5, &[]),
            WindowPick::Absurd(high) => variant(out, 4, 5, &[high]),
        }
    }
}

impl FuzzEncode for TimerPick {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TimerPick::Default => variant(out, 0, 3, &[]),
            TimerPick::Short => variant(out, 1, 3, &[]),
            TimerPick::Custom {
                keepalive,
                idle,
                handshake,
            } => variant(out, 2, 3, &[keepalive, idle, handshake]),
        }
    }
}

impl FuzzEncode for StartTime {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StartTime::Zero => variant(out, 0, 3, &[]),
            StartTime::At(t) => variant(out, 1, 3, &[t]),
            StartTime::NearEnd(d) => variant(out, 2, 3, &[d]),
        }
    }
}

impl FuzzEncode for Action {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 17;
        match self {
            Action::Step => variant(out, 0, N, &[]),
            Action::Bytes { to_b, bytes } => variant(out, 1, N, &[to_b, &Raw(bytes)]),
            Action::Frame {
                to_b,
                frame,
                delivery,
            } => variant(out, 2, N, &[to_b, frame, delivery]),
            Action::Advance { ms } => variant(out, 3, N, &[ms]),
            Action::Wake { b } => variant(out, 4, N, &[b]),
            Action::Write { b, count, text } => variant(out, 5, N, &[b, count, text]),
            Action::Accept {
                received_up_to,
                last_own_seq,
            } => variant(out, 6, N, &[received_up_to, last_own_seq]),
            Action::Persist { up_to } => variant(out, 7, N, &[up_to]),
            Action::Misuse { seq } => variant(out, 8, N, &[seq]),
            Action::Transmit { amount } => variant(out, 9, N, &[amount]),
            Action::Eof { b } => variant(out, 10, N, &[b]),
            Action::Close { b, code } => variant(out, 11, N, &[b, code]),
            Action::Disconnect => variant(out, 12, N, &[]),
            Action::Connect => variant(out, 13, N, &[]),
            Action::Crash { b } => variant(out, 14, N, &[b]),
            Action::StoreFail { b, writes } => variant(out, 15, N, &[b, writes]),
            Action::Pipe {
                from_b,
                latency,
                max_piece,
                blackhole,
                cut_after,
                flip_bit_at,
            } => {
                let pipe: [&dyn FuzzEncode; 6] = [
                    from_b,
                    latency,
                    max_piece,
                    blackhole,
                    cut_after,
                    flip_bit_at,
                ];
                variant(out, 16, N, &pipe);
            }
        }
    }
}

impl FuzzEncode for Num {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 8;
        match self {
            Num::Zero => variant(out, 0, N, &[]),
            Num::Small(n) => variant(out, 1, N, &[n]),
            Num::Received(d) => variant(out, 2, N, &[d]),
            Num::Persisted(d) => variant(out, 3, N, &[d]),
            Num::Sent(d) => variant(out, 4, N, &[d]),
            Num::PeerAcked(d) => variant(out, 5, N, &[d]),
            Num::NearMax(d) => variant(out, 6, N, &[d]),
            Num::Raw(n) => variant(out, 7, N, &[n]),
        }
    }
}

impl FuzzEncode for FrameSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 6;
        match self {
            FrameSpec::Hello {
                version,
                device,
                name,
                temporary,
            } => variant(out, 0, N, &[version, device, name, temporary]),
            FrameSpec::Sync {
                received_up_to,
                last_seq,
            } => variant(out, 1, N, &[received_up_to, last_seq]),
            FrameSpec::Message {
                seq,
                lamport,
                sent_at_ms,
                text,
            } => variant(out, 2, N, &[seq, lamport, sent_at_ms, text]),
            FrameSpec::Ack { up_to } => variant(out, 3, N, &[up_to]),
            FrameSpec::Ping => variant(out, 4, N, &[]),
            FrameSpec::Close { code, detail } => variant(out, 5, N, &[code, detail]),
        }
    }
}

impl FuzzEncode for DevicePick {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DevicePick::Peer => variant(out, 0, 3, &[]),
            DevicePick::Own => variant(out, 1, 3, &[]),
            DevicePick::Raw(bytes) => variant(out, 2, 3, &[bytes]),
        }
    }
}

impl FuzzEncode for TextPick {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 7;
        match self {
            TextPick::Short(n) => variant(out, 0, N, &[n]),
            TextPick::Unicode => variant(out, 1, N, &[]),
            TextPick::Long(n) => variant(out, 2, N, &[n]),
            TextPick::Max => variant(out, 3, N, &[]),
            TextPick::OverMax => variant(out, 4, N, &[]),
            TextPick::Empty => variant(out, 5, N, &[]),
            TextPick::Raw(bytes) => variant(out, 6, N, &[&Raw(bytes)]),
        }
    }
}

impl FuzzEncode for Delivery {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Delivery::Whole => variant(out, 0, 4, &[]),
            Delivery::Split(at) => variant(out, 1, 4, &[at]),
            Delivery::Bytewise => variant(out, 2, 4, &[]),
            Delivery::Truncated(keep) => variant(out, 3, 4, &[keep]),
        }
    }
}

impl FuzzEncode for Amount {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amount::All => variant(out, 0, 2, &[]),
            Amount::Some(n) => variant(out, 1, 2, &[n]),
        }
    }
}

impl SessionScript {
    /// The fuzz input that [`session_script_from_bytes`] reads back as this script (raw byte
    /// strings over [`MAX_RAW_BYTES`] are cut).
    pub fn to_fuzz_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Meaningful session scripts for the seed corpus, by file name: handshakes, messages both
/// ways, acks, persistence, closes, timeouts, crashes, store failures, and the hostile
/// classes (absurd sync, ack and sequence values, wrong version, own identity, garbage).
pub fn seed_scripts() -> Vec<(&'static str, SessionScript)> {
    let default = LocalConfig {
        temporary: false,
        window: WindowPick::Default,
        timers: TimerPick::Default,
    };
    let temporary = LocalConfig {
        temporary: true,
        ..default
    };
    let small_window = LocalConfig {
        window: WindowPick::One,
        ..default
    };
    let short_timers = LocalConfig {
        timers: TimerPick::Short,
        ..default
    };
    let scripted = |local: LocalConfig, actions: Vec<Action>| SessionScript {
        world: World::Scripted {
            local,
            start: StartTime::Zero,
        },
        actions,
    };
    let linked = |a: LocalConfig, b: LocalConfig, actions: Vec<Action>| SessionScript {
        world: World::Linked { a, b, secure: true },
        actions,
    };
    let frame = |frame: FrameSpec| Action::Frame {
        to_b: false,
        frame,
        delivery: Delivery::Whole,
    };
    let hello = || {
        frame(FrameSpec::Hello {
            version: None,
            device: DevicePick::Peer,
            name: TextPick::Short(0),
            temporary: false,
        })
    };
    let sync = |received: Num, last: Num| {
        frame(FrameSpec::Sync {
            received_up_to: received,
            last_seq: last,
        })
    };
    let accept = || Action::Accept {
        received_up_to: Num::Zero,
        last_own_seq: Num::Zero,
    };
    let message = |seq: Num| {
        frame(FrameSpec::Message {
            seq,
            lamport: Num::Small(1),
            sent_at_ms: 1_700_000_000_000,
            text: TextPick::Short(7),
        })
    };
    let transmit = || Action::Transmit {
        amount: Amount::All,
    };
    let write = |b: bool, count: u8| Action::Write {
        b,
        count,
        text: TextPick::Short(1),
    };
    let handshake = || vec![transmit(), hello(), accept(), sync(Num::Zero, Num::Zero)];
    let with = |mut head: Vec<Action>, tail: Vec<Action>| {
        head.extend(tail);
        head
    };

    vec![
        ("seed-scripted-handshake", scripted(default, handshake())),
        (
            "seed-scripted-messages-persist-ack",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        message(Num::Received(1)),
                        message(Num::Received(1)),
                        transmit(),
                        Action::Persist {
                            up_to: Num::Received(0),
                        },
                        transmit(),
                        message(Num::Received(0)),
                        message(Num::Received(1)),
                        Action::Persist {
                            up_to: Num::Received(0),
                        },
                        transmit(),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-send-and-acks",
            scripted(
                small_window,
                with(
                    handshake(),
                    vec![
                        write(false, 2),
                        transmit(),
                        frame(FrameSpec::Ack {
                            up_to: Num::Sent(0),
                        }),
                        write(false, 1),
                        Action::Misuse { seq: Num::Sent(5) },
                        transmit(),
                        frame(FrameSpec::Ack {
                            up_to: Num::Sent(1),
                        }),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-early-sync",
            scripted(
                default,
                vec![
                    hello(),
                    sync(Num::Small(3), Num::Small(9)),
                    Action::Accept {
                        received_up_to: Num::Small(2),
                        last_own_seq: Num::Small(5),
                    },
                    transmit(),
                    message(Num::Small(3)),
                    Action::Persist {
                        up_to: Num::Received(0),
                    },
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-temporary",
            scripted(
                temporary,
                with(
                    handshake(),
                    vec![message(Num::Received(1)), write(false, 1), transmit()],
                ),
            ),
        ),
        (
            "seed-scripted-peer-closes",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        frame(FrameSpec::Close {
                            code: 1,
                            detail: TextPick::Short(3),
                        }),
                        transmit(),
                        message(Num::Received(1)),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-local-close-then-input",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        Action::Close { b: false, code: 0 },
                        transmit(),
                        message(Num::Received(1)),
                        Action::Advance { ms: 60_000 },
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-eof-mid-frame",
            scripted(
                default,
                vec![
                    Action::Frame {
                        to_b: false,
                        frame: FrameSpec::Hello {
                            version: None,
                            device: DevicePick::Peer,
                            name: TextPick::Unicode,
                            temporary: false,
                        },
                        delivery: Delivery::Truncated(9),
                    },
                    Action::Eof { b: false },
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-timers",
            scripted(
                short_timers,
                with(
                    handshake(),
                    vec![
                        Action::Advance { ms: 30 },
                        Action::Advance { ms: 30 },
                        Action::Wake { b: false },
                        transmit(),
                        frame(FrameSpec::Ping),
                        Action::Advance { ms: 250 },
                        transmit(),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-handshake-timeout",
            scripted(
                default,
                vec![transmit(), Action::Advance { ms: 10_000 }, transmit()],
            ),
        ),
        (
            "seed-scripted-clock-near-end",
            SessionScript {
                world: World::Scripted {
                    local: default,
                    start: StartTime::NearEnd(100),
                },
                actions: with(handshake(), vec![Action::Advance { ms: 200 }]),
            },
        ),
        (
            "seed-scripted-wrong-version",
            scripted(
                default,
                vec![
                    frame(FrameSpec::Hello {
                        version: Some(2),
                        device: DevicePick::Peer,
                        name: TextPick::Short(1),
                        temporary: false,
                    }),
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-own-identity",
            scripted(
                default,
                vec![
                    frame(FrameSpec::Hello {
                        version: None,
                        device: DevicePick::Own,
                        name: TextPick::Short(1),
                        temporary: false,
                    }),
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-garbage",
            scripted(
                default,
                vec![
                    Action::Bytes {
                        to_b: false,
                        bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                    },
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-oversize-prefix",
            scripted(
                default,
                vec![
                    Action::Bytes {
                        to_b: false,
                        bytes: vec![0x00, 0x02, 0x00, 0x01, 0x03],
                    },
                    transmit(),
                ],
            ),
        ),
        (
            "seed-scripted-hostile-sync",
            scripted(
                default,
                with(
                    vec![transmit(), hello(), accept()],
                    vec![
                        sync(Num::Raw(1 << 40), Num::NearMax(0)),
                        write(false, 1),
                        transmit(),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-hostile-ack",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        write(false, 1),
                        frame(FrameSpec::Ack {
                            up_to: Num::NearMax(0),
                        }),
                        transmit(),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-gap-and-flood",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        message(Num::Received(2)),
                        transmit(),
                        message(Num::Raw(5000)),
                    ],
                ),
            ),
        ),
        (
            "seed-scripted-largest-message",
            scripted(
                default,
                with(
                    handshake(),
                    vec![
                        Action::Frame {
                            to_b: false,
                            frame: FrameSpec::Message {
                                seq: Num::Received(1),
                                lamport: Num::Small(1),
                                sent_at_ms: -5,
                                text: TextPick::Max,
                            },
                            delivery: Delivery::Split(4000),
                        },
                        frame(FrameSpec::Message {
                            seq: Num::Received(1),
                            lamport: Num::Small(1),
                            sent_at_ms: 0,
                            text: TextPick::OverMax,
                        }),
                        transmit(),
                    ],
                ),
            ),
        ),
        (
            "seed-linked-chat",
            linked(
                default,
                default,
                vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    write(false, 2),
                    write(true, 1),
                    Action::Step,
                    Action::Step,
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
        (
            "seed-linked-offline-then-resync",
            linked(
                default,
                small_window,
                vec![
                    Action::Disconnect,
                    write(false, 3),
                    write(true, 3),
                    Action::Connect,
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
        (
            "seed-linked-crash-and-store-failure",
            linked(
                default,
                default,
                vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    Action::StoreFail { b: true, writes: 1 },
                    write(false, 2),
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    Action::Crash { b: true },
                    write(false, 1),
                    Action::Connect,
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
        (
            "seed-linked-slow-cut-pipe",
            linked(
                default,
                default,
                vec![
                    Action::Pipe {
                        from_b: false,
                        latency: 40,
                        max_piece: 3,
                        blackhole: false,
                        cut_after: Some(200),
                        flip_bit_at: None,
                    },
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    write(false, 3),
                    Action::Advance { ms: 1000 },
                    Action::Connect,
                    Action::Advance { ms: 1000 },
                ],
            ),
        ),
        (
            "seed-linked-silent-peer-times-out",
            linked(
                short_timers,
                default,
                vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    Action::Pipe {
                        from_b: true,
                        latency: 0,
                        max_piece: 0,
                        blackhole: true,
                        cut_after: None,
                        flip_bit_at: None,
                    },
                    Action::Advance { ms: 1000 },
                ],
            ),
        ),
        (
            "seed-linked-temporary",
            linked(
                temporary,
                default,
                vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    write(false, 1),
                    write(true, 1),
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
        (
            "seed-linked-plaintext-chat",
            SessionScript {
                world: World::Linked {
                    a: default,
                    b: small_window,
                    secure: false,
                },
                actions: vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    write(false, 3),
                    write(true, 2),
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            },
        ),
        (
            "seed-linked-flipped-bit",
            linked(
                default,
                default,
                vec![
                    Action::Pipe {
                        from_b: false,
                        latency: 0,
                        max_piece: 0,
                        blackhole: false,
                        cut_after: None,
                        flip_bit_at: Some(300),
                    },
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    write(false, 4),
                    write(false, 4),
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
        (
            "seed-linked-injected-sync",
            linked(
                default,
                default,
                vec![
                    Action::Transmit {
                        amount: Amount::All,
                    },
                    Action::Frame {
                        to_b: true,
                        frame: FrameSpec::Ack {
                            up_to: Num::Sent(0),
                        },
                        delivery: Delivery::Whole,
                    },
                    write(false, 1),
                    Action::Transmit {
                        amount: Amount::All,
                    },
                ],
            ),
        ),
    ]
}
