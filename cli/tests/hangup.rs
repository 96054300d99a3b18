//! A terminal that goes away (issue 11): the real binary runs on a real pseudo-terminal, as
//! in a terminal window or over SSH, and the test closes the terminal's master side, which is
//! what closing the window or dropping the connection does: the session (the controlling
//! terminal's session leader) gets SIGHUP, and reads of the terminal give end of file or EIO.
//! Whatever the session was doing — connected as caller or listener, waiting for a peer,
//! reconnecting to a peer that is gone, asking for the name at first start-up, editing a chat
//! offline — it must end within 3 s, without burning CPU (the bug was a read loop at 100%
//! that even SIGTERM could not end), and every line typed before is stored and later
//! delivered. Some sessions run on a terminal that is not their controlling terminal: no
//! SIGHUP then, only end of file and EIO, so the reading alone must notice.
//!
//! Unix only: Windows has no pseudo-terminal to hang up (its console close is a control event,
//! covered in the README's Platforms section).
#![cfg(unix)]

mod common;

use common::{Device, Session};
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a session may take to end once its terminal is gone (the issue's bound).
const END_WITHIN: Duration = Duration::from_secs(3);

/// CPU time a session may use between the hang-up and its exit, in clock ticks (usually
/// 1/100 s): far below the ticks of a spinning process over [`END_WITHIN`], far above what
/// storing, closing and exiting cost on a loaded machine.
const CPU_TICKS_ALLOWED: u64 = 100;

/// A session running on a pseudo-terminal. The test types into the master side and reads
/// everything the session draws.
struct Terminal {
    master: Option<OwnedFd>,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Terminal {
    /// Starts `cmd` with a new pseudo-terminal as stdin, stdout and stderr; `controlling`:
    /// in a session of its own with that terminal as its controlling terminal (as a shell in
    /// a terminal window runs it), so that the hang-up sends it SIGHUP.
    fn spawn(mut cmd: Command, controlling: bool) -> Terminal {
        let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills two descriptors; name and termios may be null.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: both descriptors are ours alone from here on.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        for fd in [&master, &slave] {
            // SAFETY: sets close-on-exec on our own descriptor, so no other child inherits it.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        if controlling {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("the binary starts");
        // The parent's copies of the slave side close with `cmd`.
        drop(cmd);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (screen, stop) = (Arc::clone(&screen), Arc::clone(&stop));
            let fd = master.as_raw_fd();
            // Reads with poll(2) and a timeout rather than blocking in read(2): the master
            // must really close when the test closes it, and a read in progress would hold it.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    if unsafe { libc::poll(&mut p, 1, 20) } <= 0 || p.revents & libc::POLLIN == 0 {
                        if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    }
                    // SAFETY: reads into our buffer from the master, open until `stop`.
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        screen.lock().unwrap().extend_from_slice(&buf[..n as usize]);
                    }
                }
            })
        };
        Terminal {
            master: Some(master),
            child,
            screen,
            stop,
            reader: Some(reader),
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the session has drawn `text`; returns the whole screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + common::WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?} on the terminal; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` as a user would (Enter is "\r" on a terminal).
    fn type_keys(&self, keys: &str) {
        let fd = self.master.as_ref().expect("terminal open").as_raw_fd();
        // SAFETY: writes from a valid buffer to our own descriptor.
        let n = unsafe { libc::write(fd, keys.as_ptr().cast(), keys.len()) };
        assert_eq!(n, keys.len() as isize, "{}", io::Error::last_os_error());
    }

    /// Types a line and waits until the session shows it as a message of its own.
    fn type_line(&self, line: &str) {
        self.type_keys(&format!("{line}\r"));
        self.wait_for(&format!(": {line}"));
    }

    /// Closes the terminal, as closing its window does; returns the session's CPU ticks then.
    fn close(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.reader.take().unwrap().join().unwrap();
        let ticks = cpu_ticks(self.child.id()).expect("the session still runs");
        drop(self.master.take());
        ticks
    }

    /// After [`Terminal::close`]: waits up to [`END_WITHIN`] for the session to exit and
    /// checks that it did not burn CPU meanwhile.
    fn ends_promptly(mut self, ticks_at_close: u64) -> ExitStatus {
        let pid = self.child.id();
        let start = Instant::now();
        loop {
            // A zombie keeps its CPU times until it is reaped.
            if let Some((state, ticks)) = stat(pid) {
                if state == 'Z' {
                    let used = ticks - ticks_at_close;
                    assert!(
                        used <= CPU_TICKS_ALLOWED,
                        "the session used {used} ticks of CPU after its terminal closed"
                    );
                    let status = self.child.wait().unwrap();
                    eprintln!(
                        "ended {:?} after the hang-up, {used} CPU ticks, {status:?}",
                        start.elapsed()
                    );
                    return status;
                }
            }
            if start.elapsed() > END_WITHIN {
                let before = cpu_ticks(pid).unwrap_or(0);
                std::thread::sleep(Duration::from_secs(1));
                let after = cpu_ticks(pid).unwrap_or(0);
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the session still ran {END_WITHIN:?} after its terminal closed; CPU ticks \
                     at the close {ticks_at_close}, then {before}, one second later {after}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // A failed test must not leave a session running.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The process state and its user + system CPU time in clock ticks, from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state (field 3), … utime (14), stime (15).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((state, utime + stime))
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, ticks)| ticks)
}

/// The peer saw a normal close from this side: "the user left", as after `quit`.
fn saw_the_user_leave(peer: &mut Session) {
    let left = peer.wait_for("peer left", |e| e["event"] == "peer_left");
    assert_eq!(left["code"], 0, "a normal close: {left}");
    assert_eq!(left["by"], "peer", "{left}");
    assert!(
        left["reason"]
            .as_str()
            .unwrap_or("")
            .contains("the user left"),
        "{left}"
    );
}

/// A caller on a terminal, connected to a `--json` listener.
fn connected_caller(alice: &Device, bob: &Device, controlling: bool) -> (Terminal, Session) {
    let (mut listener, port) = alice.listen();
    let caller = Terminal::spawn(
        bob.command(&["-c", "127.0.0.1", "-p", &port.to_string()]),
        controlling,
    );
    caller.wait_for("connected to Alice");
    listener.connected();
    (caller, listener)
}

#[test]
fn closing_the_terminal_of_a_connected_caller_ends_it_like_quit() {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let (mut caller, mut listener) = connected_caller(&alice, &bob, true);
    for line in ["first line", "second line"] {
        caller.type_line(line);
        listener.received(line);
    }
    let ticks = caller.close();
    let status = caller.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
    saw_the_user_leave(&mut listener);
    listener.finish();
    let both = ["first line", "second line"];
    assert_eq!(bob.history(&alice), both);
    assert_eq!(alice.history(&bob), both);
}

#[test]
fn closing_the_terminal_of_a_connected_listener_ends_it_like_quit() {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let listener = Terminal::spawn(
        alice.command(&["-l", "-p", "0", "--bind", "127.0.0.1"]),
        true,
    );
    let screen = listener.wait_for(" — waiting for a peer");
    let port: u16 = screen
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port on the terminal:\n{screen}"));
    let mut caller = bob.connect(port);
    caller.connected();
    listener.wait_for("connected to Bob");
    let mut listener = listener;
    listener.type_line("typed by Alice");
    caller.received("typed by Alice");
    let ticks = listener.close();
    let status = listener.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
    saw_the_user_leave(&mut caller);
    caller.finish();
    assert_eq!(alice.history(&bob), ["typed by Alice"]);
    assert_eq!(bob.history(&alice), ["typed by Alice"]);
}

/// A caller on a terminal whose handshake never finishes: the listener's port accepts and
/// says nothing (the device and the accepted stream are returned, to keep them).
fn caller_of_a_silent_listener() -> (Device, Terminal, std::net::TcpStream) {
    let bob = Device::new("Bob");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    let caller = Terminal::spawn(
        bob.command(&["-c", "127.0.0.1", "-p", &port.to_string()]),
        true,
    );
    caller.wait_for("connecting to 127.0.0.1");
    let accepted = holder.join().unwrap().unwrap();
    (bob, caller, accepted)
}

/// A caller whose handshake never finishes (the listener's port accepts and says nothing):
/// closing its terminal ends it at once, without quit's grace period for a handshake.
#[test]
fn closing_the_terminal_of_a_caller_still_connecting_ends_it() {
    let (_bob, mut caller, _accepted) = caller_of_a_silent_listener();
    let ticks = caller.close();
    let status = caller.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
}

/// Ctrl-C while the handshake waits on a silent peer leaves within quit's grace period; a
/// second Ctrl-C leaves at once, and the prompt says so meanwhile.
#[test]
fn a_second_ctrl_c_leaves_at_once_while_a_handshake_waits() {
    let (_bob, mut caller, _accepted) = caller_of_a_silent_listener();
    caller.type_keys("\x03");
    caller.wait_for("Ctrl-C again: at once");
    caller.type_keys("\x03");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = caller.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < END_WITHIN,
            "still running {END_WITHIN:?} after the second Ctrl-C; the terminal shows:\n{}",
            caller.screen()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// A listener still waiting for its first peer.
#[test]
fn closing_the_terminal_of_a_waiting_listener_ends_it() {
    let alice = Device::new("Alice");
    let mut listener = Terminal::spawn(
        alice.command(&["-l", "-p", "0", "--bind", "127.0.0.1"]),
        true,
    );
    listener.wait_for(" — waiting for a peer");
    let ticks = listener.close();
    let status = listener.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
}

/// The caller's peer is gone, so it is waiting to reconnect: what was typed meanwhile is
/// stored, and delivered at the next connection after the terminal closed.
#[test]
fn closing_the_terminal_of_a_reconnecting_caller_keeps_what_was_typed() {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let (mut caller, listener) = connected_caller(&alice, &bob, true);
    caller.type_line("before");
    listener.kill();
    caller.wait_for("reconnecting in");
    caller.type_line("while the peer is away");
    let ticks = caller.close();
    let status = caller.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
    assert_eq!(bob.history(&alice), ["before", "while the peer is away"]);
    // The next connection delivers it.
    let (mut listener, port) = alice.listen();
    let script = bob.connect(port);
    listener.received("while the peer is away");
    script.finish();
    listener.finish();
    assert_eq!(alice.history(&bob), ["before", "while the peer is away"]);
}

/// No SIGHUP (the terminal is not the session's controlling terminal), only end of file and
/// EIO on the terminal; then SIGTERM too. Either ends the session cleanly.
#[test]
fn a_terminal_gone_without_sighup_then_sigterm_ends_a_connected_caller() {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let (mut caller, mut listener) = connected_caller(&alice, &bob, false);
    caller.type_line("no hang-up signal");
    listener.received("no hang-up signal");
    let ticks = caller.close();
    // SAFETY: signals our own child, which has not been reaped.
    assert_eq!(
        unsafe { libc::kill(caller.child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = caller.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
    saw_the_user_leave(&mut listener);
    listener.finish();
    assert_eq!(alice.history(&bob), ["no hang-up signal"]);
}

/// Offline chat editing (`-eC`) on a terminal that is not the controlling one: end of file
/// and EIO alone end it; the line typed before is stored.
#[test]
fn closing_the_terminal_of_an_offline_chat_editor_keeps_what_was_typed() {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let (caller, listener) = connected_caller(&alice, &bob, true);
    drop(caller);
    drop(listener);
    let editor = Terminal::spawn(bob.command(&["-eC", &alice.id()]), false);
    editor.wait_for("(lines are stored");
    let mut editor = editor;
    editor.type_line("written offline");
    let ticks = editor.close();
    let status = editor.ends_promptly(ticks);
    assert!(status.success(), "{status:?}");
    assert_eq!(bob.history(&alice), ["written offline"]);
}

/// Alice, whose script session received two lines from Bob: unread.
fn alice_with_two_unread_from_bob() -> (Device, Device) {
    let (alice, bob) = (Device::new("Alice"), Device::new("Bob"));
    let (mut listener, port) = alice.listen();
    let mut caller = bob.connect(port);
    caller.connected();
    for line in ["one", "two"] {
        caller.say(line);
        listener.received(line);
    }
    caller.finish();
    listener.finish();
    assert_eq!(alice.list()[0]["unread"], 2);
    (alice, bob)
}

/// Unread counts: what a script session received stays unread; a chat view open on a
/// terminal (`-eC` shows the newest lines) reads the chat.
#[test]
fn a_chat_view_on_a_terminal_reads_the_chat() {
    let (alice, bob) = alice_with_two_unread_from_bob();
    let mut view = Terminal::spawn(alice.command(&["-eC", &bob.id()]), false);
    view.wait_for("(lines are stored");
    let ticks = view.close();
    assert!(view.ends_promptly(ticks).success());
    assert_eq!(alice.list()[0]["unread"], 0);
}

/// A temporary session with the peer of a stored chat shows none of its stored lines, so it
/// leaves them unread.
#[test]
fn a_temporary_session_leaves_the_stored_chat_unread() {
    let (alice, bob) = alice_with_two_unread_from_bob();
    let (mut temporary, port) = bob.listen_with(|cmd| {
        cmd.arg("-t");
    });
    let mut session = Terminal::spawn(
        alice.command(&["-c", "127.0.0.1", "-p", &port.to_string()]),
        false,
    );
    session.wait_for("temporary session");
    temporary.connected();
    session.type_keys("quit\r");
    let status = session.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    temporary.kill();
    assert_eq!(alice.list()[0]["unread"], 2);
}

/// First start-up asks for a name; closing the terminal then ends the process (SIGHUP) and
/// stores nothing, so the next start asks again.
#[test]
fn closing_the_terminal_at_the_name_prompt_ends_the_process() {
    let device = Device::unnamed();
    let prompt = Terminal::spawn(
        device.command(&["-l", "-p", "0", "--bind", "127.0.0.1"]),
        true,
    );
    prompt.wait_for("Choose your name");
    prompt.type_keys("Ali");
    let mut prompt = prompt;
    let ticks = prompt.close();
    let status = prompt.ends_promptly(ticks);
    assert!(!status.success(), "no name was given: {status:?}");
    let out = device.run(&["-ls"]);
    assert!(
        common::stderr(&out).contains("first start-up"),
        "the next start creates the identity anew: {}",
        common::stderr(&out)
    );
}
