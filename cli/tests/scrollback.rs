//! Everyday chat on a real terminal: the real binary runs in tmux (a real terminal emulator,
//! driven with send-keys and read with capture-pane) on a real SQLite database holding
//! 200,000 messages. The chat view opens on its last screenful with the unread marker, PgUp
//! pages back, a line arriving while the user reads back is counted under the page and does
//! not move it, End returns and shows it, and `-ls` counts unread lines before and after.
//! With several peers, the prompt counts the unread lines of the other chats, `--bell` rings
//! for a line in another chat (never for one seen where it arrives), and `/to` reads the chat
//! it switches to. A first contact shows the pinned fingerprint.
//!
//! tmux is required on Linux (CI installs it; see `.ci/run`): the tests fail there without it.
//! Elsewhere (Windows under wine) they are skipped with a printed reason.

mod common;

use common::{Device, WAIT};
use socketfalco::store::Database;
use socketfalco_core::{DeviceId, Message, PeerHello, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many messages the big chat holds.
const MESSAGES: u64 = 200_000;
/// How many of them (the newest) are unread.
const UNREAD: u64 = 10;
/// The terminal's size.
const WIDTH: u16 = 100;
const HEIGHT: u16 = 30;

/// Whether tmux can be used; on Linux its absence is a failure (CI installs it).
fn tmux_present() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if cfg!(target_os = "linux") {
            panic!("tmux is needed for these tests on Linux (apt-get install tmux; .ci/run does)");
        }
        eprintln!("skipped: tmux is not installed on this platform");
    }
    found
}

/// A tmux server of the test's own (its own socket), running one command in one pane.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn start(args: &[&str]) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let command = std::iter::once(common::BIN)
            .chain(args.iter().copied())
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ");
        let tmux = Tmux { socket, _dir: dir };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-x"])
            .arg(WIDTH.to_string())
            .arg("-y")
            .arg(HEIGHT.to_string())
            .arg("-e")
            .arg("RUST_LOG=warn")
            // No desktop session: `--notify` fails the same way on every machine.
            .arg("-e")
            .arg("DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent")
            .arg(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux: {}", common::stderr(&out));
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    /// The screen, one string per row.
    fn screen(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        common::stdout(&out).lines().map(str::to_owned).collect()
    }

    /// Waits until the screen satisfies `pred`; returns it.
    #[track_caller]
    fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; the screen:\n{}",
                    screen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a listener's "listening on 127.0.0.1:PORT" line; returns the port.
    #[track_caller]
    fn listening_port(&self) -> u16 {
        const LISTENING: &str = "listening on 127.0.0.1:";
        let screen = self.wait_for("listening", |s| contains(s, LISTENING));
        screen
            .iter()
            .find_map(|row| row.split(LISTENING).nth(1))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("the port")
    }

    /// `device` listening in this terminal on a loopback port of its own (`-l -p 0 --bind
    /// 127.0.0.1`), with `extra` arguments; returns the port too.
    fn listen(device: &Device, extra: &[&str]) -> (Tmux, u16) {
        let data_dir = device.path().to_str().unwrap().to_owned();
        let mut args = vec![
            "--data-dir",
            &data_dir,
            "-l",
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let tmux = Tmux::start(&args);
        let port = tmux.listening_port();
        (tmux, port)
    }

    fn keys(&self, keys: &[&str]) {
        let out = self.command().arg("send-keys").args(keys).output().unwrap();
        assert!(out.status.success(), "send-keys: {}", common::stderr(&out));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Alice listening in tmux (with `extra` arguments), Bob connected to her as a `--json`
/// caller, and the chat on her screen: how several tests here begin. The devices live as
/// long as it does.
struct AliceAndBob {
    live: Tmux,
    caller: common::Session,
    _devices: [Device; 2],
}

impl AliceAndBob {
    fn start(extra: &[&str]) -> AliceAndBob {
        let alice = Device::new("Alice");
        let bob = Device::new("Bob");
        let (live, port) = Tmux::listen(&alice, extra);
        let mut caller = bob.connect(port);
        caller.connected();
        live.wait_for("the chat", |s| contains(s, "connected to Bob"));
        AliceAndBob {
            live,
            caller,
            _devices: [alice, bob],
        }
    }
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The message numbers on the screen ("… Bob: message 123"), top to bottom.
fn numbers(screen: &[String]) -> Vec<u64> {
    screen
        .iter()
        .filter_map(|row| row.split("Bob: message ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

fn contains(screen: &[String], text: &str) -> bool {
    screen.iter().any(|row| row.contains(text))
}

/// Stores `MESSAGES` messages from `peer` in the database in `dir`, the newest `UNREAD` of
/// them unread, through the store's own API (the way a long re-sync stores them).
fn seed(dir: &Path, peer: DeviceId) {
    let started = Instant::now();
    let mut db = Database::open(dir).unwrap();
    let hello = PeerHello {
        device: peer,
        name: "Bob".to_owned(),
        peer_temporary: false,
        temporary: false,
    };
    db.open_chat(&hello, None).unwrap();
    let base_ms = 1_767_225_600_000; // 2026-01-01
    let batch = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Message> {
        seqs.map(|seq| Message {
            seq,
            lamport: seq,
            sent_at_ms: base_ms + i64::try_from(seq).unwrap() * 1_000,
            text: format!("message {seq}"),
        })
        .collect()
    };
    let read_up_to = MESSAGES - UNREAD;
    let mut from = 1;
    while from <= read_up_to {
        let to = (from + 19_999).min(read_up_to);
        db.persist_received(peer, &batch(from..=to)).unwrap();
        from = to + 1;
    }
    db.mark_read(peer).unwrap();
    db.persist_received(peer, &batch(read_up_to + 1..=MESSAGES))
        .unwrap();
    eprintln!("seeded {MESSAGES} messages in {:?}", started.elapsed());
}

fn unread(device: &Device, peer: &str) -> u64 {
    let chats = device.list();
    let chat = chats
        .iter()
        .find(|c| c["chat"] == peer)
        .unwrap_or_else(|| panic!("no chat {peer} in {chats:?}"));
    chat["unread"].as_u64().unwrap()
}

/// Waits until the chat with `peer` has `n` unread lines (they are marked right after they
/// are drawn).
#[track_caller]
fn wait_unread(device: &Device, peer: &str, n: u64, otherwise: &str) {
    let deadline = Instant::now() + WAIT;
    while unread(device, peer) != n {
        assert!(Instant::now() < deadline, "{otherwise}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_long_chat_opens_on_its_last_screen_pages_back_and_is_read_live() {
    if !tmux_present() {
        return;
    }
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let bob_id = bob.id();
    seed(alice.path(), bob_id.parse().unwrap());
    assert_eq!(unread(&alice, &bob_id), UNREAD);
    let data_dir = alice.path().to_str().unwrap().to_owned();

    // -eC: the last screenful at once, the marker above the first unread line.
    let started = Instant::now();
    let view = Tmux::start(&["--data-dir", &data_dir, "-eC", &bob_id]);
    let opening = view.wait_for("the last line and the prompt", |s| {
        contains(s, &format!("Bob: message {MESSAGES}")) && contains(s, "Alice>")
    });
    eprintln!(
        "-eC on {MESSAGES} messages: the last line on screen after {:?} (process start included)",
        started.elapsed()
    );
    let marker = opening
        .iter()
        .position(|row| row.contains(&format!(" {UNREAD} unread ")))
        .unwrap_or_else(|| panic!("no unread marker:\n{}", opening.join("\n")));
    assert!(
        opening[marker + 1].contains(&format!("Bob: message {}", MESSAGES - UNREAD + 1)),
        "the marker is above the first unread line:\n{}",
        opening.join("\n")
    );
    let first_screen = numbers(&opening);
    assert_eq!(first_screen.last(), Some(&MESSAGES));
    assert!(first_screen.len() > 10, "a screenful: {first_screen:?}");
    // Viewing it read it.
    wait_unread(&alice, &bob_id, 0, "viewing did not read the chat");

    // PgUp twice: earlier lines, contiguous, right above what was shown.
    view.keys(&["PageUp"]);
    // A page is whole once its status row (drawn last) shows.
    let up1 = view.wait_for("a page back", |s| {
        contains(s, "reading back")
            && !numbers(s).is_empty()
            && numbers(s).last() < first_screen.first()
    });
    let up1_numbers = numbers(&up1);
    assert_eq!(
        up1_numbers.last().unwrap() + 1,
        *first_screen.first().unwrap(),
        "the first page ends right above the opening screen"
    );
    view.keys(&["PageUp"]);
    let up2 = view.wait_for("two pages back", |s| {
        contains(s, "reading back")
            && !numbers(s).is_empty()
            && numbers(s).last() < up1_numbers.first()
    });
    let up2_numbers = numbers(&up2);
    assert_eq!(
        up2_numbers.last().unwrap() + 1,
        *up1_numbers.first().unwrap(),
        "no line skipped between pages"
    );
    assert!(
        up2_numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "{up2_numbers:?}"
    );
    // End: the live view again, as it was.
    view.keys(&["End"]);
    view.wait_for("the live view", |s| {
        !contains(s, "reading back") && numbers(s).last() == Some(&MESSAGES)
    });
    view.keys(&["quit", "Enter"]);
    drop(view);

    // A live session: Bob connects, Alice reads back, Bob writes.
    let (live, port) = Tmux::listen(&alice, &[]);
    let mut caller = bob.connect(port);
    caller.connected();
    live.wait_for("first contact", |s| {
        contains(s, "first contact with Bob: key fingerprint")
            && contains(s, "--fingerprint\" on Bob's device")
    });
    // The session's log shows events, not the history: the first page is the chat's end.
    live.keys(&["PageUp"]);
    let reading = live.wait_for("a page back", |s| contains(s, "reading back"));
    let page: Vec<String> = reading[..reading.len() - 2].to_vec();
    assert_eq!(numbers(&page).last(), Some(&MESSAGES), "{page:?}");
    caller.say("hello while you read");
    let counted = live.wait_for("the new line counted", |s| contains(s, "1 new line below"));
    assert_eq!(
        counted[..counted.len() - 2],
        page[..],
        "the page did not move"
    );
    assert!(!contains(&counted, "hello while you read"));
    // Not read while Alice reads back; read as soon as she is back.
    assert_eq!(unread(&alice, &bob_id), 1);
    live.keys(&["End"]);
    live.wait_for("the new line", |s| {
        contains(s, "Bob: hello while you read") && !contains(s, "reading back")
    });
    wait_unread(&alice, &bob_id, 0, "the chat was not marked read");
    live.keys(&["quit", "Enter"]);
    caller.hang_up();
}

impl Tmux {
    /// Whether the terminal rang its bell (tmux keeps the flag once set).
    fn rang(&self) -> bool {
        let out = self
            .command()
            .args(["display", "-p", "#{window_bell_flag}"])
            .output()
            .unwrap();
        common::stdout(&out).trim() == "1"
    }
}

#[test]
fn the_prompt_counts_the_other_chats_unread_lines_and_the_bell_rings_for_them() {
    if !tmux_present() {
        return;
    }
    let alice = Device::new("Alice");
    let (bob, carol) = (Device::new("Bob"), Device::new("Carol"));
    let (live, port) = Tmux::listen(&alice, &["--bell"]);
    let mut from_bob = bob.connect(port);
    from_bob.connected();
    live.wait_for("Bob", |s| contains(s, "first contact with Bob"));
    from_bob.say("one");
    live.wait_for("Bob's line", |s| contains(s, "Bob: one"));
    // Seen where it arrives: read at once, no bell.
    wait_unread(&alice, &bob.id(), 0, "Bob's line was not read");
    assert!(!live.rang(), "the bell rang for a line in the current chat");
    // Carol connects: Bob's chat stays the current one (the line says how to switch);
    // Carol's line is for another one.
    let mut from_carol = carol.connect(port);
    from_carol.connected();
    live.wait_for("Carol", |s| {
        contains(
            s,
            "what you type still goes to Bob; /to Carol writes to Carol",
        ) && contains(s, "Alice→Bob>")
    });
    from_carol.say("two");
    live.wait_for("the unread count in the prompt", |s| {
        contains(s, "[1 unread] Alice→Bob>")
    });
    assert!(live.rang(), "no bell for a line in another chat");
    assert_eq!(unread(&alice, &carol.id()), 1);
    // Switching to Carol's chat reads it.
    live.keys(&["/to Carol", "Enter"]);
    live.wait_for("Carol's chat", |s| {
        s.iter().any(|row| row.starts_with("Alice→Carol>"))
    });
    wait_unread(
        &alice,
        &carol.id(),
        0,
        "switching did not read Carol's chat",
    );
    live.keys(&["quit", "Enter"]);
    from_bob.hang_up();
    from_carol.hang_up();
}

/// An `-eC` view beside a `--serve` listener on the same data folder shows what the listener
/// stores as it comes — a line of the peer's written while ours waited sorts before ours, and
/// is shown all the same — each line once, ours too when the listener numbers and sends them,
/// and then their delivery; a peer that renamed itself, under its new name.
#[test]
fn an_edit_view_beside_a_serving_listener_shows_each_line_once_and_the_delivery() {
    if !tmux_present() {
        return;
    }
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let (mut listener, port) = alice.listen_with(|cmd| {
        cmd.arg("--serve");
    });
    let mut caller = bob.connect(port);
    caller.connected();
    caller.say("bob 1");
    listener.received("bob 1");
    let data_dir = alice.path().to_str().unwrap().to_owned();
    let bob_id = bob.id();
    let view = Tmux::start(&["--data-dir", &data_dir, "-eC", &bob_id]);
    view.wait_for("the chat", |s| contains(s, "Bob: bob 1"));
    // Three lines typed here, and one of Bob's sent before they reach him: his sorts first.
    view.keys(&["mine 1", "Enter", "mine 2", "Enter", "mine 3", "Enter"]);
    view.wait_for("our lines", |s| contains(s, "Alice: mine 3"));
    caller.say("bob 2");
    caller.received("mine 3");
    let screen = view.wait_for("Bob's line and the delivery", |s| {
        contains(s, "Bob: bob 2") && contains(s, "✓ delivered up to #3")
    });
    for text in [
        "Alice: mine 1",
        "Alice: mine 2",
        "Alice: mine 3",
        "Bob: bob 2",
    ] {
        let shown = screen.iter().filter(|row| row.contains(text)).count();
        assert_eq!(
            shown,
            1,
            "{text:?} shown {shown} times:\n{}",
            screen.join("\n")
        );
    }
    // Bob renames himself and comes back: his next line is shown under his new name.
    caller.finish();
    listener.wait_for("Bob left", |e| e["event"] == "peer_left");
    common::assert_ok(&bob.run(&["-eN", "Robert"]));
    let mut caller = bob.connect(port);
    caller.connected();
    caller.say("bob 3");
    view.wait_for("Bob's line under his new name", |s| {
        contains(s, "Robert: bob 3")
    });
    view.keys(&["quit", "Enter"]);
    caller.finish();
    listener.kill();
}

/// A live session opens its chat's view like `-eC`: the last screenful of the history as it
/// stood when the session opened, then the connection, then the re-sync's lines — each once,
/// whichever of them the storage thread committed before the view was drawn.
#[test]
fn a_live_session_opens_on_the_chats_last_screen_and_shows_resync_lines_once() {
    if !tmux_present() {
        return;
    }
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    // A first session: Bob says 40 lines.
    let (mut listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.connected();
    for i in 1..=40 {
        caller.say(&format!("old {i:02}"));
    }
    listener.received("old 40");
    caller.finish();
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();
    // Bob writes three more offline: they come in the next session's re-sync. Alice writes
    // two: numbered and sent in that re-sync, they are shown once, then delivered.
    let out = bob.run_with_input(&["-eC", &alice.id()], "new 1\nnew 2\nnew 3\n");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = alice.run_with_input(&["-eC", &bob.id()], "mine 1\nmine 2\n");
    assert!(out.status.success(), "{}", common::stderr(&out));

    let (live, port) = Tmux::listen(&alice, &[]);
    let mut caller = bob.connect(port);
    caller.connected();
    let screen = live.wait_for("the re-sync's lines", |s| contains(s, "Bob: new 3"));
    let row = |text: &str| {
        let rows: Vec<usize> = screen
            .iter()
            .enumerate()
            .filter(|(_, r)| r.contains(text))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "{text:?} once on the screen:\n{}",
            screen.join("\n")
        );
        rows[0]
    };
    let (old, connected) = (row("Bob: old 40"), row("connected to Bob"));
    let news = [row("Bob: new 1"), row("Bob: new 2"), row("Bob: new 3")];
    assert!(
        old < connected,
        "the history above the connection:\n{}",
        screen.join("\n")
    );
    assert!(
        connected < news[0] && news[0] < news[1] && news[1] < news[2],
        "the re-sync below it, in order:\n{}",
        screen.join("\n")
    );
    assert!(
        contains(&screen, "Bob: old 39"),
        "a screenful, not one line"
    );
    let mine = [row("Alice: mine 1"), row("Alice: mine 2")];
    assert!(
        old < mine[0] && mine[0] < mine[1] && mine[1] < connected,
        "alice's waiting lines in the chat as it opened:\n{}",
        screen.join("\n")
    );
    caller.received("mine 2");
    live.wait_for("their delivery", |s| contains(s, "✓ delivered up to #2"));
    // Bob leaves and comes back: the chat's screenful is not printed again.
    caller.finish();
    let mut caller = bob.connect(port);
    caller.connected();
    let screen = live.wait_for("connected again", |s| {
        s.iter().filter(|r| r.contains("connected to Bob")).count() == 2
    });
    let scrolled = live.scrolled();
    let printed = scrolled
        .iter()
        .filter(|r| r.contains("Bob: old 40"))
        .count();
    assert_eq!(printed, 1, "printed again:\n{}", screen.join("\n"));
    live.keys(&["quit", "Enter"]);
    caller.hang_up();
}

impl Tmux {
    /// Everything the terminal scrolled past and shows, one string per row.
    fn scrolled(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-S", "-"])
            .output()
            .unwrap();
        common::stdout(&out).lines().map(str::to_owned).collect()
    }
}

/// A quiet status: twenty seconds of reconnecting leave at most three status lines in the
/// terminal's scrolled output (the loss, and no line per attempt); the attempts live in the
/// prompt, which updates in place.
#[test]
fn twenty_seconds_of_reconnecting_leave_at_most_three_status_lines() {
    if !tmux_present() {
        return;
    }
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let (listener, port) = alice.listen();
    let data_dir = bob.path().to_str().unwrap().to_owned();
    let port_text = port.to_string();
    let live = Tmux::start(&["--data-dir", &data_dir, "-c", "127.0.0.1", "-p", &port_text]);
    live.wait_for("connected", |s| contains(s, "connected to Alice"));
    listener.kill();
    live.wait_for("the countdown in the prompt", |s| {
        contains(s, "[reconnecting in")
    });
    std::thread::sleep(Duration::from_secs(20));
    let screen = live.wait_for("the prompt still counting", |s| {
        contains(s, "[reconnecting in")
    });
    assert!(
        screen.iter().any(|row| row.contains("attempt")),
        "the attempts live in the prompt:\n{}",
        screen.join("\n")
    );
    let scrolled = live.scrolled();
    let after = scrolled
        .iter()
        .position(|row| row.contains("connected to Alice"))
        .expect("the connected line");
    // Status lines start with what they report (a wrapped line's rest does not).
    let starts = [
        "disconnected",
        "not connected",
        "connecting",
        "reconnect",
        "connection",
        "back",
        "trying",
        "still",
    ];
    let status: Vec<&String> = scrolled[after + 1..]
        .iter()
        .filter(|row| starts.iter().any(|s| row.starts_with(s)))
        .collect();
    assert!(
        status.len() <= 3,
        "{} status lines in 20 s of reconnecting:\n{}",
        status.len(),
        scrolled.join("\n")
    );
    live.keys(&["quit", "Enter"]);
}

/// A warning while the view is up — here `--notify` with no desktop notification service — is
/// a line of the chat, never a log line written over the view wherever the cursor is.
#[test]
fn a_warning_is_shown_as_a_line_of_the_chat_not_written_over_the_view() {
    if !tmux_present() || !cfg!(all(unix, not(target_os = "macos"))) {
        return;
    }
    let mut chat = AliceAndBob::start(&["--notify"]);
    // Reading back: a line that comes in now is notified.
    chat.live.keys(&["PPage"]);
    chat.live
        .wait_for("a page", |s| contains(s, "End to return"));
    chat.caller.say("are you there?");
    chat.live.wait_for("the line counted below the page", |s| {
        contains(s, "1 new line below")
    });
    chat.live.keys(&["End"]);
    let screen = chat.live.wait_for("the warning", |s| {
        contains(s, "Bob: are you there?")
            && contains(s, "warning: desktop notifications are not available")
    });
    assert!(
        screen.iter().all(|row| !row.contains("WARN")),
        "no log line on the screen:\n{}",
        screen.join("\n")
    );
    chat.live.keys(&["quit", "Enter"]);
    chat.caller.hang_up();
}

/// A burst of keys far longer than one read of the terminal (a paste into a terminal without
/// bracketed paste): every key is taken as it comes, and the Enter after them sends the line
/// at once — not when some later key happens to be pressed.
#[test]
fn a_long_burst_of_keys_is_taken_whole_and_the_enter_after_it_sends_it() {
    if !tmux_present() {
        return;
    }
    let mut chat = AliceAndBob::start(&[]);
    let mut burst: String = (0..3_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    burst.push_str(" END OF THE BURST");
    chat.live.keys(&["-l", &burst]);
    // The whole burst reaches the editor before Enter is pressed.
    chat.live
        .wait_for("the end of the burst on the prompt line", |s| {
            s.iter()
                .any(|row| row.trim_end().ends_with("END OF THE BURST"))
        });
    chat.live.keys(&["Enter"]);
    let line = chat.caller.wait_for("the line", common::is_incoming);
    assert_eq!(line["text"].as_str().map(str::len), Some(burst.len()));
    chat.live.keys(&["quit", "Enter"]);
    chat.caller.hang_up();
}

/// A window resized while a line is being typed: the next key (here Enter) is taken at once,
/// not left waiting for another key. A page read back is drawn again at the new size.
#[test]
fn keys_after_a_resize_are_taken_at_once_and_a_page_is_drawn_again() {
    if !tmux_present() {
        return;
    }
    let mut chat = AliceAndBob::start(&[]);
    let resize = |x: u16, y: u16| {
        let out = chat
            .live
            .command()
            .args(["resize-window", "-x", &x.to_string(), "-y", &y.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "resize: {}", common::stderr(&out));
    };
    for (round, (x, y)) in [(80, 24), (WIDTH, HEIGHT)].into_iter().enumerate() {
        let line = format!("typed then resized {round}");
        chat.live.keys(&[&line]);
        chat.live.wait_for("the typed line", |s| contains(s, &line));
        resize(x, y);
        // The resize reaches the program before the key does.
        std::thread::sleep(Duration::from_millis(300));
        chat.live.keys(&["Enter"]);
        chat.caller.received(&line);
    }
    // A page of a longer chat, read back while the window shrinks and grows again: each time
    // drawn whole at the new size, the status row on its second-last row.
    for i in 1..=40 {
        chat.caller.say(&format!("filler {i:02}"));
    }
    chat.live
        .wait_for("the lines", |s| contains(s, "Bob: filler 40"));
    chat.live.keys(&["PPage"]);
    chat.live
        .wait_for("a page", |s| contains(s, "End to return"));
    for (x, y) in [(60, 15), (WIDTH, HEIGHT)] {
        resize(x, y);
        let rows = usize::from(y);
        let screen = chat.live.wait_for("the page at the new size", |s| {
            s.len() == rows
                && s[rows - 2].contains("End to return")
                && s[..rows - 2].iter().all(|row| row.contains("filler"))
        });
        assert!(
            screen
                .iter()
                .all(|row| row.chars().count() <= usize::from(x)),
            "{}",
            screen.join("\n")
        );
    }
    chat.live.keys(&["End"]);
    resize(WIDTH, HEIGHT);
    chat.live.keys(&["quit", "Enter"]);
    chat.caller.hang_up();
}
