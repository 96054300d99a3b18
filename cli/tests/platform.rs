//! Platform behaviour of the real `socketfalco` binary, with real processes and sockets on
//! 127.0.0.1: the default data folder (XDG on Linux, `%LOCALAPPDATA%` on Windows), data
//! folders whose names have spaces and non-ASCII characters, console input that is not a
//! terminal, and Ctrl-C / SIGTERM in a connected session.
//!
//! These run on Linux, on Windows, and cross-built for Windows under wine (`.ci/run`). The
//! one test wine cannot run says so where it is skipped; see the README's Platforms section.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_socketfalco");
/// How long any one step may take. Generous: CI machines are shared, wine is slow to start
/// processes. Nothing asserts that a step is fast, only that it happens.
const WAIT: Duration = Duration::from_secs(20);

/// The binary with a clean logging environment.
fn socketfalco() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a finished command succeeded, showing its output if not.
#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// One device: a data directory given with `--data-dir`.
struct Device {
    dir: PathBuf,
}

impl Device {
    /// A device in `dir` (created by the binary) named `name`.
    fn at(dir: PathBuf, name: &str) -> Device {
        let device = Device { dir };
        assert_ok(&device.run(&["-eN", name]));
        device
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = socketfalco();
        cmd.arg("--data-dir").arg(&self.dir).args(args);
        cmd
    }

    /// Runs a command to completion with empty stdin.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs")
    }

    fn list(&self) -> Vec<Value> {
        let out = self.run(&["-ls", "--json"]);
        assert_ok(&out);
        match serde_json::from_slice(&out.stdout).unwrap() {
            Value::Array(rows) => rows,
            other => panic!("-ls --json gave {other}"),
        }
    }

    /// This device's id, from the first line of `-ls`: "You are NAME (ID)".
    fn id(&self) -> String {
        let out = self.run(&["-ls"]);
        assert_ok(&out);
        let stdout = text(&out.stdout);
        let line = stdout.lines().next().unwrap_or_default();
        match (line.find('('), line.find(')')) {
            (Some(open), Some(close)) => line[open + 1..close].to_owned(),
            _ => panic!("no id in {stdout:?}"),
        }
    }

    /// The chat with `peer` as `-eC CHAT --json` shows it: the texts in order.
    fn history(&self, peer: &Device) -> Vec<String> {
        let out = self.run(&["-eC", &peer.id(), "--json"]);
        assert_ok(&out);
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["event"] == "history")
            .map(|v| v["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A `--json` listener on an ephemeral port of 127.0.0.1, once it listens.
    fn listen(&self) -> (Session, u16) {
        self.listen_with(|_| {})
    }

    fn listen_with(&self, prepare: impl FnOnce(&mut Command)) -> (Session, u16) {
        let mut cmd = self.command(&["-l", "-p", "0", "--bind", "127.0.0.1", "--json"]);
        prepare(&mut cmd);
        let mut session = Session::spawn(cmd);
        let event = session.wait_for("listening", |e| e["event"] == "listening");
        let addr = event["addr"].as_str().unwrap();
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        (session, port)
    }

    /// A caller to `port` on 127.0.0.1 with the options `extra`.
    fn connect_with(
        &self,
        port: u16,
        extra: &[&str],
        prepare: impl FnOnce(&mut Command),
    ) -> Session {
        let port = port.to_string();
        let mut args = vec!["-c", "127.0.0.1", "-p", &port];
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args);
        prepare(&mut cmd);
        Session::spawn(cmd)
    }
}

/// A running session process: its stdin is a pipe (never a terminal), its stdout lines and
/// its stderr are read on threads, raw, so that tests can look at every byte.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Session {
    fn spawn(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            while matches!(stdout.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                if tx.send(text(&line)).is_err() {
                    return;
                }
                line.clear();
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Types a line, as a script feeding the session would.
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for an output line (as written, with its line ending) that `pred` accepts.
    fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits for a `--json` event that `pred` accepts.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_for_line(what, |line| pred(&json(line)));
        json(&line)
    }

    fn received(&mut self, text: &str) -> Value {
        self.wait_for(&format!("message {text:?}"), |e| {
            e["event"] == "message" && e["direction"] == "in" && e["text"] == text
        })
    }

    fn connected(&mut self) -> Value {
        self.wait_for("connected", |e| e["event"] == "connected")
    }

    /// Waits for the process to exit by itself, then returns its status, every stdout line
    /// and its stderr.
    fn exit(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait_with_timeout(&mut self.child);
        // The reader thread ends at end of file, so every line is in the channel now or soon.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, std::mem::take(&mut self.seen), text(&stderr))
    }

    /// Ends input (as a script would) and asserts a clean exit.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let (status, lines, stderr) = self.exit();
        assert!(status.success(), "exit {status:?}; stderr: {stderr}");
        lines
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A failed test must not leave a session running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
}

fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both sides connected to each other: (listener, caller).
fn connected_pair(
    listener: &Device,
    caller: &Device,
    prepare_listener: impl FnOnce(&mut Command),
    prepare_caller: impl FnOnce(&mut Command),
) -> (Session, Session) {
    let (mut l, port) = listener.listen_with(prepare_listener);
    let mut c = caller.connect_with(port, &["--json"], prepare_caller);
    c.connected();
    l.connected();
    (l, c)
}

/// One message each way, both delivered.
fn exchange(listener: &mut Session, caller: &mut Session, from_caller: &str, from_listener: &str) {
    caller.say(from_caller);
    listener.received(from_caller);
    listener.say(from_listener);
    caller.received(from_listener);
    for side in [caller, listener] {
        side.wait_for("delivered", |e| {
            e["event"] == "delivered" && e["up_to"] == 1
        });
    }
}

// --- The default data folder ----------------------------------------------------------------

/// Runs the binary without `--data-dir` in the environment `env`.
fn run_without_data_dir(args: &[&str], env: &[(&str, Option<&Path>)]) -> Output {
    let mut cmd = socketfalco();
    cmd.args(args).stdin(Stdio::null());
    for (var, value) in env {
        match value {
            Some(value) => cmd.env(var, value),
            None => cmd.env_remove(var),
        };
    }
    cmd.output().expect("the binary runs")
}

/// `-eN Alice` then `-ls` without `--data-dir` use `<base>/SocketFalco/socketfalco.db`.
fn the_default_folder_is(base: &Path, env: &[(&str, Option<&Path>)]) {
    assert_ok(&run_without_data_dir(&["-eN", "Alice"], env));
    let db = base.join("SocketFalco").join("socketfalco.db");
    assert!(db.is_file(), "{} was not created", db.display());
    let out = run_without_data_dir(&["-ls"], env);
    assert_ok(&out);
    assert!(
        text(&out.stdout).starts_with("You are Alice ("),
        "{}",
        text(&out.stdout)
    );
}

/// Linux: `$XDG_DATA_HOME/SocketFalco`, else `~/.local/share/SocketFalco`.
#[cfg(unix)]
#[test]
fn the_default_data_folder_follows_xdg_data_home_then_home() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let xdg = tmp.path().join("xdg data");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&xdg).unwrap();
    the_default_folder_is(
        &xdg,
        &[("XDG_DATA_HOME", Some(&xdg)), ("HOME", Some(&home))],
    );
    assert!(
        !home.join(".local").exists(),
        "nothing is written to HOME when XDG_DATA_HOME is set"
    );
    the_default_folder_is(
        &home.join(".local").join("share"),
        &[("XDG_DATA_HOME", None), ("HOME", Some(&home))],
    );
}

/// Windows: `%LOCALAPPDATA%\SocketFalco`, the local (non-roaming) application data folder.
#[cfg(windows)]
#[test]
fn the_default_data_folder_is_under_localappdata() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("Local App Data");
    std::fs::create_dir_all(&local).unwrap();
    the_default_folder_is(&local, &[("LOCALAPPDATA", Some(&local))]);
}

// --- Data folders with spaces and non-ASCII characters --------------------------------------

#[test]
fn data_folders_with_spaces_and_non_ascii_names_work_for_a_whole_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let alice_dir = tmp.path().join("my chats").join("Ünïcødé 文字 ñ");
    let bob_dir = tmp.path().join("другой диск").join("Bøb's 😀 data");
    let alice = Device::at(alice_dir.clone(), "Alice");
    let bob = Device::at(bob_dir.clone(), "Bob");
    for dir in [&alice_dir, &bob_dir] {
        let db = dir.join("socketfalco.db");
        assert!(db.is_file(), "{} was not created", db.display());
    }
    // The folder reaches the program intact (its diagnostics name it).
    let out = alice.run(&["-vv", "-ls"]);
    assert_ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&alice_dir.display().to_string()),
        "{stderr}"
    );

    let (mut listener, mut caller) = connected_pair(&alice, &bob, |_| {}, |_| {});
    exchange(&mut listener, &mut caller, "hi Alice", "hi Bob, ça va ?");
    caller.finish();
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();

    let chats = alice.list();
    assert_eq!(chats.len(), 1, "{chats:?}");
    assert_eq!(chats[0]["peer_name"], "Bob");
    assert_eq!(chats[0]["messages"], 2);
    let table = text(&bob.run(&["-ls"]).stdout);
    assert!(
        table.contains("Alice") && table.contains(&alice.id()),
        "{table}"
    );
    let both = vec!["hi Alice".to_owned(), "hi Bob, ça va ?".to_owned()];
    assert_eq!(alice.history(&bob), both);
    assert_eq!(bob.history(&alice), both);
}

// --- Console input that is not a terminal ---------------------------------------------------

/// Piped stdin (what a script, a pipe or a CI job gives): each line is a message, CRLF or
/// LF, and the output is plain lines with no escape codes on either stream.
#[test]
fn piped_input_lines_are_messages_and_the_output_has_no_escape_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = Device::at(tmp.path().join("alice"), "Alice");
    let bob = Device::at(tmp.path().join("bob"), "Bob");
    let (mut listener, port) = alice.listen();
    // Bob's session: no --json, stdin and stdout are pipes.
    let mut caller = bob.connect_with(port, &[], |_| {});
    caller.wait_for_line("connected", |l| l.starts_with("connected to Alice ("));
    listener.connected();
    let stdin = caller.stdin.as_mut().unwrap();
    stdin.write_all(b"from a pipe, CRLF\r\n").unwrap();
    stdin.write_all("ünïcødé ✓ 文字, LF\n".as_bytes()).unwrap();
    stdin.flush().unwrap();
    let first = listener.received("from a pipe, CRLF");
    assert_eq!(first["seq"], 1);
    listener.received("ünïcødé ✓ 文字, LF");
    listener.say("answer from Alice");
    caller.wait_for_line("Alice's answer", |l| l.contains("Alice: answer from Alice"));
    caller.wait_for_line("delivery", |l| l.trim_end() == "delivered up to #2");
    // End of input ends the session cleanly.
    drop(caller.stdin.take());
    let (status, lines, stderr) = caller.exit();
    assert!(status.success(), "exit {status:?}; stderr: {stderr}");
    let stdout = lines.concat();
    assert!(
        !stdout.contains('\u{1b}'),
        "escape codes on stdout: {stdout:?}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes on stderr: {stderr:?}"
    );
    for mine in ["Bob: from a pipe, CRLF", "Bob: ünïcødé ✓ 文字, LF"] {
        assert!(
            lines.iter().any(|l| l.trim_end().ends_with(mine)),
            "{mine:?} not in {stdout}"
        );
    }
    listener.wait_for("peer left", |e| e["event"] == "peer_left");
    listener.finish();
    assert_eq!(
        bob.history(&alice),
        [
            "from a pipe, CRLF",
            "ünïcødé ✓ 文字, LF",
            "answer from Alice"
        ]
    );
}

// --- Ctrl-C and SIGTERM ---------------------------------------------------------------------

/// Which side of a connected pair gets the signal.
#[derive(Clone, Copy)]
enum Side {
    Listener,
    Caller,
}

/// A connected session that gets `signal` (sent by `send` with the process) exits with
/// status 0 by itself, its peer sees a normal close (`peer_left`, code 0), and what both
/// typed before is stored on both sides.
fn a_signal_ends_a_connected_session_cleanly(
    target: Side,
    prepare: impl FnOnce(&mut Command),
    send: impl FnOnce(&Child),
) {
    let tmp = tempfile::tempdir().unwrap();
    let alice = Device::at(tmp.path().join("alice"), "Alice");
    let bob = Device::at(tmp.path().join("bob"), "Bob");
    let (mut listener, mut caller) = match target {
        Side::Listener => connected_pair(&alice, &bob, prepare, |_| {}),
        Side::Caller => connected_pair(&alice, &bob, |_| {}, prepare),
    };
    exchange(&mut listener, &mut caller, "typed by Bob", "typed by Alice");
    let (signalled, mut peer) = match target {
        Side::Listener => (listener, caller),
        Side::Caller => (caller, listener),
    };
    send(&signalled.child);
    // Its stdin stays open: only the signal can end it.
    let (status, lines, stderr) = signalled.exit();
    assert!(
        status.success(),
        "exit {status:?}\nstdout: {}\nstderr: {stderr}",
        lines.concat()
    );
    let left = peer.wait_for("peer left", |e| e["event"] == "peer_left");
    assert_eq!(left["code"], 0, "a normal close: {left}");
    assert_eq!(left["by"], "peer", "{left}");
    peer.finish();
    let both = vec!["typed by Bob".to_owned(), "typed by Alice".to_owned()];
    assert_eq!(alice.history(&bob), both);
    assert_eq!(bob.history(&alice), both);
}

/// Sends a signal with kill(1): the standard way, and no FFI in the tests.
#[cfg(unix)]
fn kill(signal: &str, child: &Child) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill {signal} failed: {status:?}");
}

#[cfg(unix)]
#[test]
fn sigint_ends_a_connected_caller_cleanly() {
    a_signal_ends_a_connected_session_cleanly(Side::Caller, |_| {}, |c| kill("-INT", c));
}

#[cfg(unix)]
#[test]
fn sigterm_ends_a_connected_listener_cleanly() {
    a_signal_ends_a_connected_session_cleanly(Side::Listener, |_| {}, |c| kill("-TERM", c));
}

/// Windows: a real Ctrl-C (CTRL_C_EVENT) reaches the session's console control handler.
///
/// The session runs in a console of its own (CREATE_NEW_CONSOLE); a helper process (this
/// test binary again, see [`windows_console::send`]) attaches to that console and generates
/// the event there, so neither this test process nor any other test ever gets it. This works
/// under wine too: wine fails GenerateConsoleCtrlEvent in a process without a console
/// (ERROR_INVALID_ACCESS, 12), as every process is when wine runs without a terminal, but
/// the helper has the session's console.
#[cfg(windows)]
#[test]
fn ctrl_c_ends_a_connected_caller_cleanly() {
    const TEST: &str = "ctrl_c_ends_a_connected_caller_cleanly";
    if windows_console::run_as_helper() {
        return;
    }
    a_signal_ends_a_connected_session_cleanly(
        Side::Caller,
        windows_console::own_console,
        |child| windows_console::send(windows_console::CTRL_C_EVENT, child, TEST),
    );
}

/// Windows: Ctrl-Break (CTRL_BREAK_EVENT), as a console or a service manager sends it, ends a
/// connected session cleanly too: the Windows counterpart of SIGTERM.
#[cfg(windows)]
#[test]
fn ctrl_break_ends_a_connected_listener_cleanly() {
    const TEST: &str = "ctrl_break_ends_a_connected_listener_cleanly";
    if windows_console::run_as_helper() {
        return;
    }
    if windows_console::under_wine() {
        // Wine gap, not ours: wine 8.0's wineserver implements console control events for
        // CTRL_C_EVENT only (propagate_console_signal: "FIXME: should support the other
        // events (like CTRL_BREAK)", STATUS_NOT_IMPLEMENTED, which kernelbase reports as
        // ERROR_INVALID_HANDLE, 6), so GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, ...) fails
        // even from a process attached to the session's console, where CTRL_C_EVENT works.
        // Runs on Windows (the hosted CI's windows job). See the README, Platforms.
        // Straight to stderr, not eprintln!: the test harness would capture that, and the
        // skip must show in the CI log.
        let _ = writeln!(
            std::io::stderr(),
            "{TEST}: SKIPPED under wine: wine 8 cannot generate CTRL_BREAK_EVENT \
             (GenerateConsoleCtrlEvent fails with error 6); it runs on Windows"
        );
        return;
    }
    a_signal_ends_a_connected_session_cleanly(
        Side::Listener,
        windows_console::own_console,
        |child| windows_console::send(windows_console::CTRL_BREAK_EVENT, child, TEST),
    );
}

/// Sending console control events to one session, from the test setup only.
#[cfg(windows)]
mod windows_console {
    use std::process::{Child, Command};
    use windows_sys::Win32::System::Console::{
        AttachConsole, FreeConsole, GenerateConsoleCtrlEvent, SetConsoleCtrlHandler,
    };
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    use windows_sys::Win32::System::Threading::CREATE_NEW_CONSOLE;

    pub use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};

    /// Set in the helper's environment: "EVENT PID", the event and the process whose console
    /// gets it.
    const HELPER: &str = "SOCKETFALCO_TEST_CONSOLE_EVENT";

    /// True under wine: its ntdll exports `wine_get_version`, Windows' does not (WineHQ's
    /// recommended check). Used only to skip what wine cannot do.
    pub fn under_wine() -> bool {
        // SAFETY: both calls take NUL-terminated strings and return null when not found.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    /// Starts the session in a console of its own, so that an event sent there reaches it
    /// alone. Its stdin and stdout stay pipes: it still runs as a script would.
    pub fn own_console(cmd: &mut Command) {
        use std::os::windows::process::CommandExt;
        cmd.creation_flags(CREATE_NEW_CONSOLE);
    }

    /// Runs this test binary again, only the test `test`, as the helper that sends `event` to
    /// the console of `child`.
    pub fn send(event: u32, child: &Child, test: &str) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(HELPER, format!("{event} {}", child.id()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the helper sending console event {event} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The helper's console control handler: the event is for the session, not for it.
    unsafe extern "system" fn ignore(_event: u32) -> windows_sys::core::BOOL {
        1
    }

    /// In the helper (see [`send`]): leaves its own console, attaches to the session's,
    /// ignores the event itself and generates the event for every process of that console (the
    /// session and itself), then returns true. Elsewhere: makes sure the sessions this
    /// process starts do not inherit "ignore Ctrl-C", and returns false.
    pub fn run_as_helper() -> bool {
        let Some(job) = std::env::var_os(HELPER) else {
            // SAFETY: a null handler with FALSE only restores default Ctrl-C processing.
            unsafe { SetConsoleCtrlHandler(None, 0) };
            return false;
        };
        let job = job.into_string().expect("EVENT PID");
        let (event, pid) = job.split_once(' ').expect("EVENT PID");
        let (event, pid): (u32, u32) = (event.parse().unwrap(), pid.parse().unwrap());
        // SAFETY: plain Win32 calls; `ignore` stays valid for the life of the process.
        unsafe {
            FreeConsole();
            assert!(
                AttachConsole(pid) != 0,
                "AttachConsole({pid}): {}",
                std::io::Error::last_os_error()
            );
            // A handler, not SetConsoleCtrlHandler(None, TRUE): that ignores only Ctrl-C,
            // and Ctrl-Break would end this helper with STATUS_CONTROL_C_EXIT.
            assert!(SetConsoleCtrlHandler(Some(ignore), 1) != 0);
            assert!(
                GenerateConsoleCtrlEvent(event, 0) != 0,
                "GenerateConsoleCtrlEvent({event}, 0): {}",
                std::io::Error::last_os_error()
            );
        }
        true
    }
}
