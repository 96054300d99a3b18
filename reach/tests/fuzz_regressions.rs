//! The `reach` fuzz target's check on stable (`socketfalco_testkit::fuzz_reach`): every file
//! of `testdata/fuzz/reach/` (the seeds written by `write_seed_corpus`, the fuzzer's corpus,
//! past findings), then every seed mutated and many random inputs from a fixed seed — so
//! `cargo test` guards the parsers a proxy, a relay or a pasted text reaches even without
//! the fuzzer. See `docs/FUZZING.md`.
//!
//! Seeds: `cargo test -p socketfalco-reach --test fuzz_regressions -- --ignored write_seed_corpus`.

use socketfalco_reach::invite::Invite;
use socketfalco_testkit::fuzz_reach::check_reach;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz/reach")
}

/// The corpus, sorted by file name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the corpus folder is gone)", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    files
}

#[test]
fn the_corpus_passes_the_check() {
    let files = corpus();
    assert!(files.len() >= 10, "the corpus must not vanish");
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(|| check_reach(bytes));
        assert!(
            outcome.is_ok(),
            "testdata/fuzz/reach/{name} fails the check"
        );
    }
}

/// xorshift64*: a fixed sequence, the same on every run and platform.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_seeds_and_random_bytes_pass_the_check() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, bytes)| bytes).collect();
    let mut random = Random(0x5eed_fa1c_0000_0001);
    for round in 0..20_000 {
        let mut input = if round % 2 == 0 {
            seeds[random.below(seeds.len())].clone()
        } else {
            let len = random.below(300);
            (0..len).map(|_| random.next() as u8).collect()
        };
        // A few byte flips, insertions and cuts.
        for _ in 0..random.below(4) {
            if input.is_empty() {
                break;
            }
            let at = random.below(input.len());
            match random.below(3) {
                0 => input[at] ^= 1 << random.below(8),
                1 => input.insert(at, random.next() as u8),
                _ => input.truncate(at.max(1)),
            }
        }
        let outcome = std::panic::catch_unwind(|| check_reach(&input));
        assert!(outcome.is_ok(), "round {round} fails the check: {input:?}");
    }
}

/// The seeds: one well-formed exchange per parser and split, and the usual refusals.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with = |selector: u8, bytes: &[u8]| {
        let mut input = vec![selector];
        input.extend_from_slice(bytes);
        input
    };
    // Method "no authentication", then a reply for 127.0.0.1:30000, then the peer's bytes.
    let socks_ok: Vec<u8> = [
        &[0x05, 0x00][..],
        &[0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x75, 0x30],
        b"noise",
    ]
    .concat();
    let socks_auth: Vec<u8> = [
        &[0x05, 0x02, 0x01, 0x00][..],
        &[0x05, 0x00, 0x00, 0x03, 4],
        b"host",
        &[0x75, 0x30],
    ]
    .concat();
    let socks_v6: Vec<u8> = [
        &[0x05, 0x00, 0x05, 0x00, 0x00, 0x04][..],
        &[0; 16],
        &[0, 80],
    ]
    .concat();
    let refused = [0x05, 0x00, 0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    let invite = Invite {
        key: [7; 32],
        onion: Some(
            "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion:30000".to_owned(),
        ),
        relay: Some("relay.example.org:4001".to_owned()),
        address: Some("[2001:db8::1]:30000".to_owned()),
    }
    .encode()
    .unwrap();
    let onion = b"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
    vec![
        ("seed-socks5-no-auth", with(0x00, &socks_ok)),
        ("seed-socks5-no-auth-bytewise", with(0x08, &socks_ok)),
        ("seed-socks5-password", with(0x80, &socks_auth)),
        ("seed-socks5-password-pieces-3", with(0x98, &socks_auth)),
        ("seed-socks5-ipv6-reply", with(0x00, &socks_v6)),
        ("seed-socks5-refused", with(0x00, &refused)),
        ("seed-socks5-no-method", with(0x80, &[0x05, 0xff])),
        (
            "seed-socks5-bad-password",
            with(0x80, &[0x05, 0x02, 0x01, 0x01]),
        ),
        ("seed-transit-ok", with(0x02, b"ok\nthe peer's bytes")),
        ("seed-transit-ok-bytewise", with(0x0a, b"ok\n")),
        ("seed-transit-impatient", with(0x02, b"impatient\n")),
        ("seed-transit-bad-handshake", with(0x03, b"bad handshake\n")),
        (
            "seed-transit-other",
            with(0x02, b"HTTP/1.1 400 Bad Request\r\n"),
        ),
        ("seed-invite", with(0x04, invite.as_bytes())),
        (
            "seed-invite-upper",
            with(0x04, invite.to_uppercase().as_bytes()),
        ),
        (
            "seed-proxy-url",
            with(0x05, b"socks5h://alice:s3cret@127.0.0.1:9050"),
        ),
        ("seed-proxy-url-v6", with(0x05, b"socks5://[::1]:1080/")),
        ("seed-onion", with(0x06, onion)),
        ("seed-onion-v2", with(0x07, b"expyuzz4wqqyqhjn.onion")),
    ]
}

#[test]
#[ignore = "writes testdata/fuzz/reach/seed-*; run by hand"]
fn write_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn the_seeds_on_disk_are_the_seeds_written_here() {
    for (name, bytes) in seeds() {
        let path = corpus_dir().join(name);
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            on_disk,
            bytes,
            "{} is stale: write the seeds again",
            path.display()
        );
    }
}
