//! End-to-end: the real `socketfalco` binary, two processes, separate data directories,
//! real sockets on 127.0.0.1 with ephemeral ports. Sessions run with `--json` so the tests
//! read events, not prose.

mod common;

use common::stories;
use common::via::Via;
use common::{stderr, stdout, Device, Session, Start, BIN, WAIT};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn first_start_up_creates_an_identity_named_after_the_os_user() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("-ls")
        .env("USER", "averyveryverylongname")
        .env("USERNAME", "averyveryverylongname")
        .stdin(Stdio::null())
        .run_to_end()
        .unwrap();
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("first start-up"), "{err}");
    assert!(err.contains("-eN"), "says how to change the name: {err}");
    assert!(
        stdout(&out).starts_with("You are averyveryverylo ("),
        "{}",
        stdout(&out)
    );
    // The second start-up says nothing of the kind and keeps the same identity.
    let again = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("-ls")
        .run_to_end()
        .unwrap();
    assert!(!stderr(&again).contains("first start-up"));
    assert_eq!(
        stdout(&again).lines().next(),
        stdout(&out).lines().next(),
        "same device id"
    );
}

#[test]
fn edit_name_validates_and_reports_old_and_new() {
    let alice = Device::new("alice");
    let out = alice.run(&["-editName", "Alicia"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "name changed: alice → Alicia");
    for bad in ["A", "abcdefghijklmnop"] {
        let out = alice.run(&["-eN", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains("invalid name"), "{}", stderr(&out));
    }
    // A name that would spoof another ("Bob" read backwards by a terminal that reorders), or
    // would drive the terminal: refused, and the error spells the characters out.
    for (bad, spelled) in [
        ("mal\u{202e}boB", "mal\\u{202e}boB"),
        ("a\x1b[2Jb", "a\\u{1b}[2Jb"),
    ] {
        let out = alice.run(&["-eN", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = stderr(&out);
        assert!(err.contains(spelled), "{err}");
        assert!(
            !err.contains('\x1b') && !err.contains('\u{202e}'),
            "{err:?}"
        );
    }
    assert!(stdout(&alice.run(&["-ls"])).starts_with("You are Alicia"));
}

#[test]
fn a_chat_both_ways_then_listed_by_both() {
    stories::a_chat_both_ways_then_listed_by_both(&Via::Direct);
}

#[test]
fn offline_messages_from_edit_chat_are_delivered_with_roles_swapped() {
    stories::offline_messages_from_edit_chat_are_delivered_with_roles_swapped(&Via::Direct);
}

#[test]
fn a_killed_peer_loses_nothing_and_nothing_is_doubled() {
    stories::a_killed_peer_loses_nothing_and_nothing_is_doubled(&Via::Direct);
}

#[test]
fn a_temporary_session_leaves_no_trace_on_either_side() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, port) = alice.listen();
    // The original's form: -c -t ADDRESS.
    let port_s = port.to_string();
    let mut caller =
        Session::spawn(bob.command(&["-c", "-t", "127.0.0.1", "-p", &port_s, "--json"]));
    let connected = listener.wait_for("connected", |e| e["event"] == "connected");
    assert_eq!(connected["temporary"], true, "the listener is told");
    assert_eq!(connected["peer_temporary"], true);
    caller.say("off the record");
    let m = listener.received("off the record");
    assert_eq!(m["stored"], false);
    listener.say("understood");
    caller.received("understood");
    caller.finish();
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();
    assert!(alice.list().is_empty(), "alice stored a chat");
    assert!(bob.list().is_empty(), "bob stored a chat");
}

#[test]
fn silent_and_garbage_connections_never_keep_a_peer_out() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, port) = alice.listen();
    // Ten connections that say nothing and stay open (a port scanner, `nc` left running).
    let idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0x00, 0x01, 0x00, 0x00, 1, 2, 3],
        b"48656c6c6f20776f726c64\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.write_all(&garbage);
        // Every connection starts with the encrypted handshake, which garbage fails or never
        // completes (then the end of the stream ends it): the listener closes without a word
        // in the clear — not even its hello, which travels encrypted. Read to EOF.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(
            !reply.windows(5).any(|w| w == b"alice"),
            "the listener's hello leaked in the clear: {reply:?}"
        );
    }
    // A connection that says nothing and hangs up.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    // With the silent ones still open, a real peer connects and chats as usual.
    let mut caller = bob.connect(port);
    caller.wait_for("connected", |e| e["event"] == "connected");
    caller.say("still there?");
    listener.received("still there?");
    listener.say("yes");
    caller.received("yes");
    caller.finish();
    listener.wait_for("bob left", |e| e["event"] == "peer_left");
    // Unauthenticated connections never appear in the chat view.
    let lefts = listener
        .seen
        .iter()
        .filter(|l| l.contains("peer_left"))
        .count();
    assert_eq!(
        lefts, 1,
        "only the real peer's leaving is shown: {:?}",
        listener.seen
    );
    drop(idle);
    listener.kill();
}

/// Alice listening for one peer at most, bob that peer, and carol who comes next.
struct BusyListener {
    /// Held so that its folder lives as long as the listener.
    _alice: Device,
    /// Held likewise, for bob's session.
    _bob: Device,
    carol: Device,
    listener: Session,
    port: u16,
    /// Bob's session.
    first: Session,
}

fn busy_listener() -> BusyListener {
    let (alice, bob, carol) = (
        Device::new("alice"),
        Device::new("bob"),
        Device::new("carol"),
    );
    let (mut listener, port) = alice.listen_with(|cmd| {
        cmd.args(["--max-peers", "1"]);
    });
    let mut first = bob.connect(port);
    first.connected();
    listener.wait_for("connected", |e| e["event"] == "connected");
    BusyListener {
        _alice: alice,
        _bob: bob,
        carol,
        listener,
        port,
        first,
    }
}

#[test]
fn a_line_for_a_busy_listener_goes_if_it_frees_up_in_time_or_is_reported_not_sent() {
    let mut busy = busy_listener();
    // Carol pipes a line and ends her input while the listener stays busy: her caller keeps
    // trying through the grace period of leaving, then lists the line, which is neither sent
    // nor stored (no chat to store it in yet), and fails.
    let port_s = busy.port.to_string();
    let args = ["-c", "127.0.0.1", "-p", &port_s, "--json"];
    let out = busy.carol.run_with_input(&args, "are you there?\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 line(s) were not sent"),
        "{}",
        stderr(&out)
    );
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let attempts = events.iter().filter(|e| e["event"] == "connecting").count();
    assert!(
        attempts >= 2,
        "it tried again before giving up: {events:#?}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["kind"]),
        (&"error".into(), &"fatal".into())
    );
    let not_sent = events.iter().find(|e| e["event"] == "not_sent");
    assert_eq!(
        not_sent.map(|e| e["texts"].clone()),
        Some(serde_json::json!(["are you there?"])),
        "{events:#?}"
    );
    // The same, but bob leaves within the grace period: the line goes, and all is well.
    let mut second = busy.carol.connect(busy.port);
    second.wait_for("busy", |e| e["event"] == "peer_left");
    second.say("my turn");
    second.wait_for("waiting", |e| e["event"] == "pending");
    second.end_input();
    busy.first.finish();
    busy.listener.received("my turn");
    let events = second.finish();
    assert!(
        events.iter().any(|e| e["event"] == "delivered"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "not_sent"),
        "{events:#?}"
    );
    busy.listener.kill();
}

#[test]
fn a_caller_past_the_listeners_limit_waits_its_turn_and_an_unreachable_address_fails_clearly() {
    let mut busy = busy_listener();
    // One peer at most: carol is told the listener is busy, and tries again later instead of
    // giving up.
    let mut second = busy.carol.connect(busy.port);
    let refused = second.wait_for("busy", |e| e["event"] == "peer_left");
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("busy"),
        "{refused}"
    );
    second.wait_for("retry", |e| e["event"] == "reconnecting");
    busy.listener
        .wait_for("refusal", |e| e["event"] == "busy_refused");
    assert!(
        busy.carol.list().is_empty(),
        "a refused caller stores no chat"
    );
    // Once bob leaves, carol's next attempt gets in.
    busy.first.finish();
    second.wait_for("connected", |e| e["event"] == "connected");
    second.say("my turn");
    busy.listener.received("my turn");
    second.finish();
    busy.listener.kill();

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = busy.carol.run(&["-c", "127.0.0.1", "-p", &closed_port]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("could not connect"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn connecting_to_our_own_listener_is_refused_clearly() {
    let alice = Device::new("alice");
    let (listener, port) = alice.listen();
    let port_s = port.to_string();
    let out = alice.run(&["-c", "127.0.0.1", "-p", &port_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("own identity"), "{}", stderr(&out));
    listener.kill();
    assert!(alice.list().is_empty(), "no chat with ourselves was stored");
}

/// `-eC` beside a running listener on the same data directory: its lines are delivered by
/// the listener, and the listener's session shows them as the user's own, each once.
#[test]
fn a_listener_and_an_offline_writer_share_one_data_directory() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.wait_for("connected", |e| e["event"] == "connected");
    // While alice's listener holds the chat, alice also writes with -eC from another process.
    let lines: String = (0..50).map(|i| format!("side door {i}\n")).collect();
    let out = alice.run_with_input(&["-eC", &bob.id()], &lines);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("locked"));
    // The running listener picks them up and delivers them.
    caller.received("side door 49");
    caller.finish();
    // The caller's clean end closes the chat; the listener's delivery mark is written by
    // its clean end at the latest.
    let events = listener.finish();
    assert_eq!(alice.list()[0]["waiting"], 0);
    // The listener's session showed them among alice's own lines, each once, in order.
    let written: Vec<String> = (0..50).map(|i| format!("side door {i}")).collect();
    assert_eq!(own_lines_shown(&events), written);
}

/// `-eC` beside a running listener while its peer is away: when the peer is back, the
/// listener sends the lines and its session shows them as the user's own, each once — and
/// not the lines it had shown before.
#[test]
fn a_listener_shows_the_lines_written_beside_it_while_its_peer_was_away() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.connected();
    caller.say("hello before");
    caller.finish();
    let out = alice.run_with_input(
        &["-eC", &bob.id()],
        "while you were away 1\nwhile you were away 2\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut caller = bob.connect(port);
    caller.received("while you were away 2");
    caller.finish();
    let events = listener.finish();
    assert_eq!(
        own_lines_shown(&events),
        ["while you were away 1", "while you were away 2"]
    );
}

/// The texts of the user's own lines a session's `--json` events showed, in order.
fn own_lines_shown(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["event"] == "message" && e["direction"] == "out")
        .filter_map(|e| e["text"].as_str())
        .collect()
}

#[test]
fn usage_errors_exit_with_status_2_and_help_shows_the_original_commands() {
    let out = Command::new(BIN).arg("-bogus").run_to_end().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).run_to_end().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("-h").run_to_end().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    for form in [
        "-listen",
        "-list",
        "-connect",
        "-editName",
        "-editChat",
        "-help",
    ] {
        assert!(help.contains(form), "help lacks {form}");
    }
    let out = Command::new(BIN).arg("--version").run_to_end().unwrap();
    assert!(stdout(&out).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_and_ambiguous_chats_are_clear_errors() {
    let alice = Device::new("alice");
    let out = alice.run(&["-eC", "0000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).is_empty());
}

#[test]
fn edit_chat_can_show_only_the_newest_or_the_recent_messages() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.connected();
    for i in 0..5 {
        caller.say(&format!("line {i}"));
        listener.received(&format!("line {i}"));
    }
    caller.finish();
    listener.finish();
    let texts = |args: &[&str]| -> Vec<String> {
        let id = bob.id();
        let mut all = vec!["-eC", id.as_str(), "--json"];
        all.extend_from_slice(args);
        let out = alice.run(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "history")
            .map(|v| v["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&[]).len(), 5);
    assert_eq!(texts(&["--last", "2"]), ["line 3", "line 4"]);
    assert_eq!(texts(&["--since", "1h"]).len(), 5);
    assert!(texts(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(texts(&["--since", "1h", "--last", "1"]), ["line 4"]);
    let out = alice.run(&["-eC", &bob.id(), "--since", "someday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a date"), "{}", stderr(&out));
}

#[test]
fn printing_into_a_closed_pipe_is_no_panic() {
    // `socketfalco -ls | head -1`, where head has already gone: each printing command ends
    // quietly, its work done, never with a panic (exit 101).
    let alice = Device::new("alice");
    for args in [
        &["-ls"][..],
        &["-ls", "--json"],
        &["--fingerprint"],
        &["--invite", "127.0.0.1:4000"],
        &["-eN", "Alicia"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = alice
            .command(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    assert!(stdout(&alice.run(&["-ls"])).starts_with("You are Alicia"));
}

/// A warning during a `--json` session — here `--notify` with no desktop notification service
/// to show it — is an event a program reading the output sees, and stays on standard error.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn a_warning_of_a_json_session_is_an_event_too() {
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let (mut listener, port) = alice.listen_with(|cmd| {
        cmd.arg("--notify")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
    });
    let mut caller = bob.connect(port);
    caller.connected();
    caller.say("are you there?");
    listener.received("are you there?");
    let warning = listener.wait_for("the warning", |e| {
        e["event"] == "error"
            && e["kind"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("desktop notifications are not available"))
    });
    caller.finish();
    listener.end_input();
    let (status, _, stderr) = listener.exit_events();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("desktop notifications are not available"),
        "{warning}: {stderr}"
    );
}

/// Runs `device` with `args` and `input` on its standard input, expects exit status 1 and
/// returns its `--json` events.
fn script_that_fails(device: &Device, args: &[&str], input: &str) -> Vec<serde_json::Value> {
    let out = device.run_with_input(args, input);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `-eC` fed by a script: a line that is not one (here longer than the limit) is refused with
/// an input error and the next lines are still stored; the exit status says that not
/// everything was stored, and the last `--json` event says why.
#[test]
fn a_refused_line_written_offline_fails_the_script_but_not_the_lines_after_it() {
    let (alice, bob) = common::alice_and_bob_met_and_parted();
    let too_long = "x".repeat(socketfalco_core::limits::MAX_TEXT_BYTES + 1);
    let input = format!("before\n{too_long}\nafter\n");
    let events = script_that_fails(&bob, &["-eC", &alice.id(), "--json"], &input);
    let kinds: Vec<String> = events
        .iter()
        .map(|e| format!("{}/{}", e["event"], e["kind"]).replace('"', ""))
        .collect();
    assert_eq!(
        kinds,
        ["history/null", "error/input", "history/null", "error/fatal"],
        "{events:?}"
    );
    assert!(
        events[3]["message"]
            .as_str()
            .unwrap()
            .contains("1 line(s) were refused"),
        "{events:?}"
    );
    assert_eq!(bob.history(&alice), ["before", "after"]);
}

/// `-eC` fed a long script at once: thousands of lines, a refused one among them, are
/// stored complete and in order (many to a transaction), each printed once, the refused one
/// in its place.
#[test]
fn a_long_script_written_offline_is_stored_whole_and_in_order() {
    let (alice, bob) = common::alice_and_bob_met_and_parted();
    let too_long = "x".repeat(socketfalco_core::limits::MAX_TEXT_BYTES + 1);
    let lines: Vec<String> = (0..3_000).map(|i| format!("line {i}")).collect();
    let mut input = String::new();
    for (i, line) in lines.iter().enumerate() {
        input.push_str(line);
        input.push('\n');
        if i == 1_234 {
            input.push_str(&too_long);
            input.push('\n');
        }
    }
    let events = script_that_fails(&bob, &["-eC", &alice.id(), "--json"], &input);
    let shown: Vec<String> = events
        .iter()
        .map(|e| match e["event"].as_str() {
            Some("history") => e["text"].as_str().unwrap_or("?").to_owned(),
            _ => format!("{}/{}", e["event"], e["kind"]).replace('"', ""),
        })
        .collect();
    let mut expected: Vec<String> = lines.clone();
    expected.insert(1_235, "error/input".to_owned());
    expected.push("error/fatal".to_owned());
    assert_eq!(
        shown.len(),
        expected.len(),
        "{:?}",
        &shown[shown.len().saturating_sub(3)..]
    );
    assert!(
        shown == expected,
        "the output differs from the lines in order"
    );
    assert_eq!(bob.history(&alice), lines);
}

/// A data folder whose database is gone or empty beside its key (a restore that missed the
/// database) is refused with what to do, not silently made a new device on the old key;
/// moving the key away is starting anew, on purpose.
#[test]
fn a_key_without_its_database_is_refused_not_made_a_new_device() {
    let bob = Device::new("Bob");
    let before = bob.id();
    let db = bob.path().join("socketfalco.db");
    for emptied in [false, true] {
        if emptied {
            std::fs::write(&db, b"").unwrap();
        } else {
            std::fs::remove_file(&db).unwrap();
        }
        for args in [&["-ls"][..], &["-eN", "Robert"][..]] {
            let out = bob.run(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
            let err = stderr(&out);
            assert!(err.contains("has this device's key"), "{args:?}: {err}");
            assert!(err.contains("Restore the whole folder"), "{args:?}: {err}");
        }
    }
    std::fs::rename(bob.path().join("identity.key"), bob.path().join("old.key")).unwrap();
    let out = bob.run(&["-eN", "Robert"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(bob.id(), before, "a new device, on purpose");
}

/// A script session whose line is refused (longer than the limit) still sends the others, and
/// ends with exit status 1 and a last `fatal` event saying so.
#[test]
fn a_refused_line_of_a_script_session_fails_its_exit_status() {
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let (mut listener, port) = alice.listen();
    let too_long = "x".repeat(socketfalco_core::limits::MAX_TEXT_BYTES + 1);
    let port_s = port.to_string();
    let out = bob.run_with_input(
        &["-c", "127.0.0.1", "-p", &port_s, "--json"],
        &format!("{too_long}\nthe short one\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "fatal", "{last}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("1 line(s) were refused"),
        "{last}"
    );
    listener.received("the short one");
    listener.end_input();
    let _ = listener.exit_events();
}

/// Lines piped to a caller whose first connection fails at once are printed back as not
/// sent (they were read, and are not stored), whichever part of the program held them.
#[test]
fn lines_piped_to_a_caller_that_cannot_connect_are_reported_not_sent() {
    let bob = Device::new("Bob");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let out = bob.run_with_input(&["-c", "127.0.0.1", "-p", &port, "--json"], "a1\nb2\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mut unsent = Vec::new();
    for line in stdout(&out).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["event"] == "not_sent" {
            for text in event["texts"].as_array().unwrap() {
                unsent.push(text.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(unsent, ["a1", "b2"], "{}", stdout(&out));
}

/// A line of a script that is not UTF-8 is refused on its own: the lines after it are sent
/// (or, offline, stored), and the exit status says one was refused.
#[test]
fn a_line_that_is_not_utf8_is_refused_and_the_rest_go_on() {
    let alice = Device::new("Alice");
    let bob = Device::new("Bob");
    let (mut listener, port) = alice.listen();
    let port_s = port.to_string();
    let out = bob.run_with_bytes(&["-c", "127.0.0.1", "-p", &port_s], b"u1\n\xff\nu3\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("line 2: the line is not valid UTF-8"),
        "{}",
        stdout(&out)
    );
    listener.received("u1");
    listener.received("u3");
    listener.end_input();
    let _ = listener.exit_events();
    let out = bob.run_with_bytes(&["-eC", &alice.id()], b"o1\n\xfe\no3\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mine: Vec<String> = bob.history(&alice);
    assert!(
        mine.ends_with(&[
            "u1".to_owned(),
            "u3".to_owned(),
            "o1".to_owned(),
            "o3".to_owned()
        ]),
        "{mine:?}"
    );
}
