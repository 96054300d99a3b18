//! End-to-end: the always-on listener — the real binary serving several peers at once, a
//! `/to` that reaches only its chat, a listener killed mid-stream that all peers resync
//! with, the headless `-l --serve`, a contact let in before a stranger, and hundreds of
//! silent connections that neither keep a peer out nor grow the listener's memory.

mod common;

use common::{Device, Session, DEAD_PEER_TIMEOUT, WAIT};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A `--json` listener for `device` on 127.0.0.1:`port` (a fixed port: it is restarted on
/// it), with `extra` options.
fn listener_on(device: &Device, port: u16, extra: &[&str]) -> Session {
    let port = port.to_string();
    let mut args = vec!["-l", "-p", &port, "--bind", "127.0.0.1", "--json"];
    args.extend_from_slice(extra);
    let mut session = Session::spawn(device.command(&args));
    session.wait_for("listening", |e| e["event"] == "listening");
    session
}

/// A free port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The texts of a chat as `-eC --json` shows them, in order.
fn texts(device: &Device, peer: &Device) -> Vec<String> {
    device.history(peer)
}

fn assert_no_duplicates(texts: &[String], what: &str) {
    let unique: BTreeSet<&String> = texts.iter().collect();
    assert_eq!(
        unique.len(),
        texts.len(),
        "{what}: a line is doubled: {texts:?}"
    );
}

#[test]
fn three_peers_chat_with_one_listener_at_once_and_resync_after_it_is_killed() {
    let alice = Device::new("alice");
    let peers = [
        Device::new("bob"),
        Device::new("carol"),
        Device::new("dave"),
    ];
    let port = free_port();
    let mut listener = listener_on(&alice, port, &[]);
    let mut callers: Vec<Session> = peers.iter().map(|p| p.connect(port)).collect();
    for caller in &mut callers {
        caller.connected();
    }
    for peer in &peers {
        let name = peer.name().to_owned();
        listener.wait_for("all three chats", |e| {
            e["event"] == "connected" && e["name"] == name.as_str()
        });
    }
    // Lines both ways, interleaved across the three chats.
    for i in 0..5 {
        for (caller, peer) in callers.iter_mut().zip(&peers) {
            caller.say(&format!("{} to alice {i}", peer.name()));
        }
        for peer in &peers {
            listener.say(&format!("/to {} alice to {} {i}", peer.name(), peer.name()));
        }
    }
    for (caller, peer) in callers.iter_mut().zip(&peers) {
        for i in 0..5 {
            listener.received(&format!("{} to alice {i}", peer.name()));
            caller.received(&format!("alice to {} {i}", peer.name()));
        }
    }
    // Every incoming line names its chat.
    let bob_id = peers[0].id();
    let from_bob = listener.received("bob to alice 0");
    assert_eq!(from_bob["peer"], bob_id.as_str());

    // The listener is killed while all three stream; it comes back on the same port and
    // every peer reconnects by itself.
    for i in 0..20 {
        for (caller, peer) in callers.iter_mut().zip(&peers) {
            caller.say(&format!("{} burst {i}", peer.name()));
        }
        if i == 10 {
            listener.kill();
            listener = listener_on(&alice, port, &[]);
        }
    }
    // A caller notices at once when the kill resets its connection; where the system leaves
    // it open (seen under wine), only by the dead-peer timeout, and then it reconnects.
    for caller in &mut callers {
        caller.wait_for_within(DEAD_PEER_TIMEOUT + WAIT, "all delivered", |e| {
            e["event"] == "delivered" && e["up_to"].as_u64() >= Some(25)
        });
    }
    for caller in callers {
        caller.finish();
    }
    listener.finish();
    for peer in &peers {
        let mine = texts(&alice, peer);
        let theirs = texts(peer, &alice);
        assert_eq!(
            mine,
            theirs,
            "{}: the same chat in the same order",
            peer.name()
        );
        assert_no_duplicates(&mine, peer.name());
        assert_eq!(mine.len(), 5 + 5 + 20, "{}: {mine:?}", peer.name());
        for line in &mine {
            assert!(line.contains(peer.name()), "{line:?} is in the wrong chat");
        }
    }
}

/// What the listener's user types goes to the chat they chose, or to the first that
/// connected: a peer connecting later takes nothing over, and when the peer written to leaves,
/// the next line waits for it — it never goes to whoever else is connected.
#[test]
fn typed_lines_never_move_to_another_peer_when_one_comes_or_goes() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let carol = Device::new("carol");
    let port = free_port();
    let mut listener = listener_on(&alice, port, &[]);
    let mut first = bob.connect(port);
    first.connected();
    listener.wait_for("bob", |e| e["event"] == "connected" && e["name"] == "bob");
    let mut other = carol.connect(port);
    other.connected();
    listener.wait_for("carol", |e| {
        e["event"] == "connected" && e["name"] == "carol"
    });
    listener.say("still for bob");
    first.received("still for bob");
    // Bob goes; what alice types next is his, stored to wait.
    first.finish();
    listener.wait_for("bob gone", |e| e["event"] == "peer_left");
    listener.say("for bob only");
    listener.wait_for("stored for bob", |e| {
        e["event"] == "message" && e["direction"] == "out" && e["text"] == "for bob only"
    });
    other.say("carol is here");
    listener.received("carol is here");
    // Bob comes back and gets it; carol never does.
    let mut again = bob.connect(port);
    again.received("for bob only");
    again.finish();
    let carols = other.finish();
    assert!(
        carols
            .iter()
            .all(|e| !e["text"].as_str().is_some_and(|t| t.contains("bob"))),
        "a line for bob reached carol: {carols:?}"
    );
    listener.end_input();
    let (status, _, stderr) = listener.exit_events();
    assert!(status.success(), "{stderr}");
    assert_eq!(texts(&alice, &carol), ["carol is here"]);
}

#[test]
fn serve_runs_headless_and_delivers_lines_written_meanwhile() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let carol = Device::new("carol");
    let port = free_port();
    // Alice knows both: one chat each, once.
    let listener = listener_on(&alice, port, &[]);
    for peer in [&bob, &carol] {
        let mut caller = peer.connect(port);
        caller.connected();
        caller.finish();
    }
    listener.finish();

    // Headless, standard input closed at once: it keeps running.
    let mut serve = listener_on(&alice, port, &["--serve"]);
    drop(serve.stdin.take());
    let out = alice.run_with_input(&["-eC", &bob.id()], "for bob, written meanwhile\n");
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(serve.child.try_wait().unwrap().is_none(), "--serve ended");

    let mut b = bob.connect(port);
    b.received("for bob, written meanwhile");
    b.finish();

    let out = alice.run_with_input(&["-eC", &carol.id()], "for carol, before\n");
    assert!(out.status.success());
    let mut c = carol.connect(port);
    c.received("for carol, before");
    // Written while carol is connected: delivered without a new connection.
    let out = alice.run_with_input(&["-eC", &carol.id()], "for carol, while connected\n");
    assert!(out.status.success());
    let started = Instant::now();
    c.received("for carol, while connected");
    assert!(started.elapsed() < WAIT);
    c.finish();

    // SIGTERM ends it cleanly.
    #[cfg(unix)]
    {
        let pid = serve.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let (status, _, stderr) = serve.exit();
        assert!(status.success(), "exit {status:?}: {stderr}");
    }
    #[cfg(not(unix))]
    serve.kill();
}

/// Every place of a `--serve --max-peers 1` listener is held by a stranger (Carol, whom
/// Alice never wrote to). Alice then writes to Bob, offline, from another process: Bob is a
/// contact from then on. Bob calls: refused as busy once at most (the listener reads its
/// contacts again when it refuses one), then let in in Carol's place; Carol is told the
/// listener is busy and keeps trying, and Bob gets the line.
#[test]
fn a_contact_gets_the_place_of_a_stranger_at_a_full_serving_listener() {
    let (alice, bob) = common::alice_and_bob_met_and_parted();
    let carol = Device::new("Carol");
    let port = free_port();
    let mut serve = listener_on(&alice, port, &["--serve", "--max-peers", "1"]);
    let mut c = carol.connect(port);
    c.connected();
    serve.wait_for("carol in", |e| {
        e["event"] == "connected" && e["name"] == "Carol"
    });

    let out = alice.run_with_input(&["-eC", &bob.id()], "for bob, a contact now\n");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut b = bob.connect(port);
    let made = serve.wait_for("room made", |e| e["event"] == "made_room");
    assert_eq!(made["name"], "Bob", "{made}");
    assert_eq!(made["put_out"], carol.id(), "{made}");
    assert_eq!(made["put_out_name"], "Carol", "{made}");
    b.received("for bob, a contact now");
    let left = c.wait_for("carol put out", |e| e["event"] == "peer_left");
    assert_eq!(left["code"], 1, "closed as busy: {left}");
    // Carol tries again by herself, and is refused while Bob holds the place.
    serve.wait_for("carol refused", |e| e["event"] == "busy_refused");
    assert!(c.child.try_wait().unwrap().is_none(), "carol gave up");
}

/// Peak resident memory of a process, from /proc (Linux).
#[cfg(target_os = "linux")]
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn five_hundred_idle_connections_keep_neither_a_peer_out_nor_memory_up() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let carol = Device::new("carol");
    let port = free_port();
    let mut listener = listener_on(&alice, port, &[]);
    let mut b = bob.connect(port);
    b.connected();
    let idle: Vec<std::net::TcpStream> = (0..500)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() >= 450, "only {} connections opened", idle.len());
    // The connected peer keeps chatting, and a new one gets in.
    b.say("still here");
    listener.received("still here");
    let mut c = carol.connect(port);
    c.connected();
    c.say("me too");
    listener.received("me too");
    let listener_pid = listener.child.id();
    let peak = peak_rss_kib(listener_pid);
    assert!(peak < 64 * 1024, "the listener's peak memory is {peak} KiB");
    let events: Vec<serde_json::Value> = listener
        .seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !events.iter().any(|e| e["event"] == "peer_left"),
        "unauthenticated connections do not appear: {events:?}"
    );
    drop(idle);
    b.finish();
    c.finish();
    listener.finish();
}

/// A `--serve` listener whose output nobody reads (a stalled pipe, a stuck log reader) still
/// ends on SIGTERM: everything it received is stored, and the events it could not write do
/// not hold the process.
#[cfg(unix)]
#[test]
fn a_serving_listener_whose_output_is_not_read_still_ends_on_sigterm() {
    use std::io::BufRead;
    use std::process::Stdio;
    let (alice, bob) = (Device::new("alice"), Device::new("bob"));
    let mut cmd = alice.command(&["-l", "--serve", "--json", "-p", "0", "--bind", "127.0.0.1"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // The first event says where it listens; then nothing more is read (the pipe stays open).
    let mut stalled = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stalled.read_line(&mut first).unwrap();
    let port = common::json(&first)["addr"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no listening event: {first}"));
    // Far more events than a pipe holds.
    let lines: String = (0..3_000)
        .map(|i| format!("{i:04} {}\n", "x".repeat(200)))
        .collect();
    let out = bob.run_with_input(&["-c", "127.0.0.1", "-p", &port.to_string()], &lines);
    common::assert_ok(&out);
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the listener still ran {WAIT:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(stalled);
    assert_eq!(bob.history(&alice).len(), 3_000);
    assert_eq!(alice.history(&bob).len(), 3_000);
}

/// A `--serve` listener whose output is not read stops taking lines in once a few MiB of
/// events wait for it (instead of holding them all in memory): the peer's lines wait with
/// the peer, unacked. Once the output is read, every line arrives, once and in order.
#[test]
fn a_serving_listener_whose_output_is_not_read_stops_taking_lines_until_it_is() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    const LINES: usize = 30_000;
    let (alice, bob) = (Device::new("alice"), Device::new("bob"));
    let mut cmd = alice.command(&["-l", "--serve", "-v", "-p", "0", "--bind", "127.0.0.1"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    let port: u16 = first
        .split_whitespace()
        .find_map(|word| word.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no port in the listening line: {first}"));
    // The log, read all along: it says when the listener stops reading and starts again.
    let (log_tx, log) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let log_says = |what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => {}
                Err(_) => panic!("the listener's log never said {what:?}"),
            }
        }
    };

    // Far more than the events the listener holds for its output (each ~200 bytes of text).
    let mut caller = bob.connect(port);
    caller.connected();
    for i in 0..LINES {
        caller.say(&format!("{i:05} {}", "x".repeat(200)));
    }
    log_says("not reading from peers");
    // Paused: what it took in is stored, and it is far from everything.
    std::thread::sleep(Duration::from_secs(2));
    let held = alice.history(&bob).len();
    assert!(held < LINES * 2 / 3, "the listener took in {held} lines");

    // The output is read: every line comes, once and in order, and all are delivered.
    let mut shown = Vec::new();
    for line in (&mut output).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find(" xxx") {
            let number = line[..at].rsplit(' ').next().unwrap_or_default();
            shown.push(number.parse::<usize>().unwrap_or(usize::MAX));
        }
        if shown.len() == LINES {
            break;
        }
    }
    assert_eq!(shown, (0..LINES).collect::<Vec<_>>());
    log_says("reading from peers again");
    caller.wait_for("all delivered", |e| {
        e["event"] == "delivered" && e["up_to"].as_u64() == Some(LINES as u64)
    });
    caller.finish();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(alice.history(&bob).len(), LINES);
}
