//! What fuzzing found, guarded on stable: every file in `testdata/fuzz/frame_decoder/` and
//! `testdata/fuzz/session/` (seeds, the minimized corpus, past crashes) is replayed through
//! the very checks the cargo-fuzz targets run (`socketfalco_testkit::fuzz`). Session
//! inputs are decoded exactly as libfuzzer-sys decodes them. See `docs/FUZZING.md`.
//!
//! A crash that is a core bug not fixed yet is listed in [`KNOWN_CORE_BUGS`]: it is left out
//! of the corpus replay and has its own `#[ignore = "core bug: …"]` test, to un-ignore with
//! the fix. Fixed findings keep a named test each (`fixed_core_bug_*`).
//!
//! The seed corpus is written by `write_seed_corpus` (ignored; run by hand):
//! `cargo test -p socketfalco-core --test fuzz_regressions -- --ignored write_seed_corpus`.

use socketfalco_core::limits::MAX_FRAME_BYTES;
use socketfalco_testkit::fuzz::{
    check_frame_decoder, check_session, seed_scripts, session_script_from_bytes, Action, Amount,
    LocalConfig, SessionScript, TextPick, TimerPick, WindowPick, World, MAX_ACTIONS,
};
use socketfalco_testkit::golden::golden_frames;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

// The heap checks need the meter. Linux only: elsewhere thread-locals may allocate on first
// use, which an allocator must not do.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: socketfalco_testkit::fuzz::MeteredAllocator =
    socketfalco_testkit::fuzz::MeteredAllocator;

/// Crash files of core bugs that are not fixed yet: `(target, file name)`.
/// None today: the two found so far are fixed (see the regression tests below).
const KNOWN_CORE_BUGS: &[(&str, &str)] = &[];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(target)
}

/// Every file of a corpus folder, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the corpus folder is gone)", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            (name, bytes)
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Replays every file of `target` except the known core bugs through `check`, on every
/// core (encrypted pair scripts are slow in a debug build), and fails with the list of files
/// whose check panicked.
fn replay(target: &str, check: impl Fn(&[u8]) + Sync) {
    let files = corpus(target);
    assert!(
        files.len() >= 10,
        "testdata/fuzz/{target}/ holds {} files: the corpus must not vanish",
        files.len()
    );
    let files: Vec<&(String, Vec<u8>)> = files
        .iter()
        .filter(|(name, _)| !KNOWN_CORE_BUGS.contains(&(target, name.as_str())))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let (files, check) = (&files, &check);
                scope.spawn(move || {
                    files
                        .iter()
                        .skip(worker)
                        .step_by(threads)
                        .filter(|(_, bytes)| {
                            catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err()
                        })
                        .map(|(name, _)| name.clone())
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    failures.sort();
    assert!(
        failures.is_empty(),
        "fuzz inputs in testdata/fuzz/{target}/ fail their checks (see the panics above): \
         {failures:?}"
    );
}

fn replay_session(bytes: &[u8]) {
    if let Some(script) = session_script_from_bytes(bytes) {
        check_session(script);
    }
}

/// Replays one known crash file, by name.
fn replay_one(target: &str, name: &str) {
    let path = corpus_dir(target).join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match target {
        "frame_decoder" => check_frame_decoder(&bytes),
        "session" => replay_session(&bytes),
        other => panic!("no fuzz target {other}"),
    }
}

#[test]
fn frame_decoder_corpus_and_crashes_replay_clean() {
    replay("frame_decoder", check_frame_decoder);
}

#[test]
fn session_corpus_and_crashes_replay_clean() {
    replay("session", replay_session);
}

/// Fuzz finding (fixed in the core): a peer's sync claimed to hold our messages up to
/// `MAX_COUNTER`, a valid frame; the session set `next_send_seq = MAX_COUNTER + 1` and `send()`
/// accepted that message, writing a frame the peer's decoder refuses. A sync at the limit is
/// now a protocol violation and `send()` refuses counters outside `1..=MAX_COUNTER`.
#[test]
fn fixed_core_bug_sync_at_max_counter_then_send() {
    replay_one("session", "crash-sync-at-max-counter-then-send");
}

/// Fuzz finding (fixed in the core): one valid peer message with Lamport counter
/// `MAX_COUNTER` made every message this device composed afterwards carry `MAX_COUNTER + 1`,
/// stored and never deliverable. Lamport counters now saturate at the limit.
#[test]
fn fixed_core_bug_lamport_at_max_counter() {
    replay_one("session", "crash-lamport-at-max-counter");
}

/// Fuzz finding (fixed in the core before this test existed): a sync claiming `u64::MAX`
/// overflowed `next_send_seq` (a panic); the decoder now refuses counters above `MAX_COUNTER`.
#[test]
fn fixed_core_bug_sync_received_up_to_max() {
    replay_one("session", "crash-sync-received-up-to-max");
}

#[test]
fn every_known_core_bug_has_its_crash_file() {
    for (target, name) in KNOWN_CORE_BUGS {
        assert!(
            corpus_dir(target).join(name).is_file(),
            "{target}/{name} is listed as a known core bug but the file is missing"
        );
    }
}

/// The seed scripts are written in the byte layout `arbitrary` reads: each seed file decodes
/// back to its script, and the files on disk are the current encoding.
#[test]
fn session_seeds_decode_back_to_their_scripts() {
    for (name, script) in seed_scripts() {
        let bytes = script.to_fuzz_bytes();
        let decoded = session_script_from_bytes(&bytes);
        assert_eq!(
            decoded.as_ref(),
            Some(&script),
            "{name}: the fuzz encoding does not decode back"
        );
        let path = corpus_dir("session").join(name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (write_seed_corpus writes it: see the module docs)",
                path.display()
            )
        });
        assert!(
            on_disk == bytes,
            "{name}: the seed file is stale; rerun write_seed_corpus"
        );
    }
}

/// The meter sees allocations, so the heap checks are live in this test binary.
#[cfg(target_os = "linux")]
#[test]
fn the_heap_meter_is_installed() {
    let (_, growth) =
        socketfalco_testkit::fuzz::peak_heap_growth(|| std::hint::black_box(vec![0u8; 100_000]));
    assert!(growth.is_some_and(|g| g >= 100_000), "growth {growth:?}");
}

// ---------------------------------------------------------------------------------------
// Seed corpus generator
// ---------------------------------------------------------------------------------------

/// A frame_decoder input: the piece sizes, then the stream.
fn decoder_input(sizes: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(sizes.len() <= 15);
    let mut input = vec![sizes.len() as u8];
    input.extend_from_slice(sizes);
    input.extend_from_slice(stream);
    input
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

fn cbor_payload(kind: u8, body: &impl serde::Serialize) -> Vec<u8> {
    let mut payload = vec![kind];
    ciborium::into_writer(body, &mut payload).unwrap();
    payload
}

fn frame_decoder_seeds() -> Vec<(String, Vec<u8>)> {
    let golden = golden_frames();
    assert!(!golden.is_empty(), "no golden frames in testdata/frames");
    let mut seeds = Vec::new();
    for (name, bytes) in &golden {
        seeds.push((format!("seed-{name}"), decoder_input(&[], bytes)));
        seeds.push((
            format!("seed-{name}-split"),
            decoder_input(&[1, 3, 2, 0], bytes),
        ));
        seeds.push((
            format!("seed-{name}-truncated"),
            decoder_input(&[], &bytes[..bytes.len() - 1]),
        ));
    }
    let all: Vec<u8> = golden.iter().flat_map(|(_, b)| b.clone()).collect();
    seeds.push(("seed-all-golden".into(), decoder_input(&[], &all)));
    seeds.push((
        "seed-all-golden-pieces".into(),
        decoder_input(&[1, 4, 7, 64, 2, 5], &all),
    ));
    let hello_then_garbage = [golden[4].1.clone(), b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat();
    seeds.push((
        "seed-golden-then-http".into(),
        decoder_input(&[9], &hello_then_garbage),
    ));
    // One of each class of malformed input (core/tests/codec.rs).
    let good_ack = cbor_payload(4, &(5u64,));
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("absurd-prefix", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        (
            "prefix-one-over",
            ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec(),
        ),
        (
            "prefix-at-limit",
            (MAX_FRAME_BYTES as u32).to_be_bytes().to_vec(),
        ),
        ("empty-frame", vec![0, 0, 0, 0]),
        ("unknown-kind", framed(&[0x77, 0x80])),
        ("truncated-cbor", framed(&good_ack[..good_ack.len() - 1])),
        (
            "trailing-bytes",
            framed(&[good_ack.as_slice(), &[0x00, 0x01]].concat()),
        ),
        ("invalid-cbor", framed(&[4, 0x1c])),
        (
            "empty-text",
            framed(&cbor_payload(3, &(1u64, 1u64, 0i64, ""))),
        ),
        (
            "name-too-long",
            framed(&cbor_payload(
                1,
                &(
                    1u16,
                    serde_bytes::Bytes::new(&[1; 16]),
                    "a".repeat(16),
                    false,
                ),
            )),
        ),
        (
            "close-detail-too-long",
            framed(&cbor_payload(6, &(0u16, "x".repeat(257)))),
        ),
        (
            "hello-v2-other-shape",
            framed(&cbor_payload(1, &(2u16, "new fields"))),
        ),
        (
            "hello-v2-same-shape",
            framed(&cbor_payload(
                1,
                &(2u16, serde_bytes::Bytes::new(&[1; 16]), "\n", true),
            )),
        ),
        ("ack-with-string", framed(&cbor_payload(4, &("five",)))),
        (
            "device-id-3-bytes",
            framed(&cbor_payload(
                1,
                &(1u16, serde_bytes::Bytes::new(&[1; 3]), "alice", false),
            )),
        ),
        (
            "map-not-array",
            framed(&cbor_payload(
                4,
                &std::collections::BTreeMap::from([(1u8, 2u8)]),
            )),
        ),
        // Indefinite-length text and a tag: legal CBOR the encoder never writes.
        (
            "indefinite-text",
            framed(&[
                3, 0x84, 0x01, 0x01, 0x00, 0x7f, 0x62, b'h', b'i', 0x61, b'!', 0xff,
            ]),
        ),
        ("tagged-ack", framed(&[4, 0x81, 0xc1, 0x05])),
        // A text string announcing 2^63 bytes in a 12-byte frame.
        (
            "huge-text-length",
            framed(&[
                3, 0x84, 0x01, 0x01, 0x00, 0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ]),
        ),
        (
            "deep-nesting",
            framed(&[[2u8].as_slice(), &[0x81; 300]].concat()),
        ),
    ];
    for (name, stream) in malformed {
        seeds.push((
            format!("seed-malformed-{name}"),
            decoder_input(&[], &stream),
        ));
        seeds.push((
            format!("seed-malformed-{name}-bytewise"),
            decoder_input(&[1], &stream),
        ));
    }
    seeds
}

/// A simulation scenario (`testdata/sim/*.sim`, the simulator's text format) retold as a
/// linked session script, as closely as the fuzz world allows: connections, drops, sends,
/// crashes, store failures, time, latency, pieces and cuts. Clock skews, role swaps and
/// expectations have no counterpart and are left out; the fuzz checks replace the
/// expectations.
fn script_from_sim(text: &str) -> SessionScript {
    let default = LocalConfig {
        temporary: false,
        window: WindowPick::Default,
        timers: TimerPick::Default,
    };
    let mut configs = [default, default];
    let mut secure = true;
    let mut connected = false;
    let mut actions = Vec::new();
    // Pipe knobs per direction (from a, from b): latency, max piece, cut after.
    let mut pipes = [(0u8, 0u8, None::<u16>); 2];
    let side = |w: Option<&&str>| w.is_some_and(|w| w.starts_with('b'));
    let num = |w: Option<&&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(1);
    let pipe = |pipes: &[(u8, u8, Option<u16>); 2], from_b: bool| {
        let (latency, max_piece, cut_after) = pipes[usize::from(from_b)];
        Action::Pipe {
            from_b,
            latency,
            max_piece,
            blackhole: false,
            cut_after,
            flip_bit_at: None,
        }
    };
    for raw in text.lines() {
        for part in raw.split('#').next().unwrap_or("").split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let Some((&head, rest)) = words.split_first() else {
                continue;
            };
            match head {
                "option" if rest.first() == Some(&"plain-links") => secure = false,
                "connect" | "heal" => {
                    connected = true;
                    actions.push(Action::Connect);
                    actions.push(Action::Transmit {
                        amount: Amount::All,
                    });
                }
                "drop" => actions.push(Action::Disconnect),
                "temporary" if !connected => {
                    configs[usize::from(side(rest.first()))].temporary = rest.get(1) == Some(&"on");
                }
                "window" if !connected => {
                    let n = num(rest.get(1));
                    configs[usize::from(side(rest.first()))].window = match n {
                        1 => WindowPick::One,
                        2..=8 => WindowPick::Small(n as u8 - 1),
                        _ => WindowPick::Default,
                    };
                }
                "send" => {
                    let b = side(rest.first());
                    let count = num(rest.get(1)).min(16);
                    let size = rest
                        .iter()
                        .position(|w| *w == "size")
                        .map_or(0, |i| num(rest.get(i + 1)));
                    let text = if size == 0 {
                        TextPick::Short(count as u8)
                    } else {
                        TextPick::Long((size / 97).min(255) as u8)
                    };
                    let mut left = count;
                    while left > 0 {
                        let n = left.min(4);
                        actions.push(Action::Write {
                            b,
                            count: n as u8 - 1,
                            text: text.clone(),
                        });
                        left -= n;
                    }
                }
                "step" | "recv" | "flush" | "pump" => actions.push(Action::Step),
                "settle" => actions.push(Action::Transmit {
                    amount: Amount::All,
                }),
                "crash" => actions.push(Action::Crash {
                    b: side(rest.first()),
                }),
                "store-fail" => actions.push(Action::StoreFail {
                    b: side(rest.first()),
                    writes: num(rest.get(1)).min(3) as u8,
                }),
                "advance-clock" | "clock-jump" => {
                    let ms = num(rest.last()).min(120_000);
                    for _ in 0..ms.div_ceil(60_000) {
                        actions.push(Action::Advance {
                            ms: ms.min(60_000) as u16,
                        });
                    }
                }
                "latency" => {
                    let from_b = side(rest.first());
                    pipes[usize::from(from_b)].0 = num(rest.get(1)).min(255) as u8;
                    actions.push(pipe(&pipes, from_b));
                }
                "pieces" => {
                    let from_b = side(rest.first());
                    pipes[usize::from(from_b)].1 = num(rest.get(2)).min(255) as u8;
                    actions.push(pipe(&pipes, from_b));
                }
                "drop-after" => {
                    let from_b = side(rest.first());
                    pipes[usize::from(from_b)].2 =
                        Some(num(rest.get(1)).min(u64::from(u16::MAX)) as u16);
                    actions.push(pipe(&pipes, from_b));
                }
                _ => {}
            }
        }
    }
    actions.truncate(MAX_ACTIONS);
    SessionScript {
        world: World::Linked {
            a: configs[0],
            b: configs[1],
            secure,
        },
        actions,
    }
}

/// Session seeds from the simulation scenarios in `testdata/sim/` (none if the folder is
/// empty or missing).
fn sim_seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sim");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sim"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let script = script_from_sim(&std::fs::read_to_string(path).unwrap());
            (format!("seed-sim-{name}"), script.to_fuzz_bytes())
        })
        .collect()
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    println!("wrote {} files to {}", files.len(), dir.display());
}

/// Writes the seed corpus: `testdata/fuzz/frame_decoder/seed-*` from the golden frames and
/// the malformed-input classes, `testdata/fuzz/session/seed-*` from [`seed_scripts`] and
/// `seed-sim-*` from the simulation scenarios.
/// Files the fuzzer found are left alone.
#[test]
#[ignore = "generator: run by hand to rewrite the seed corpus"]
fn write_seed_corpus() {
    write_files(&corpus_dir("frame_decoder"), &frame_decoder_seeds());
    let mut session: Vec<(String, Vec<u8>)> = seed_scripts()
        .into_iter()
        .map(|(name, script)| (name.to_string(), script.to_fuzz_bytes()))
        .collect();
    session.extend(sim_seeds());
    write_files(&corpus_dir("session"), &session);
}
