//! Platform behaviour of the real `socketfalco` binary, with real processes and sockets on
//! 127.0.0.1: the default data folder (XDG on Linux, `%LOCALAPPDATA%` on Windows), data
//! folders whose names have spaces and non-ASCII characters, console input that is not a
//! terminal, Ctrl-C / SIGTERM in a connected session, and on Windows closing its console
//! window (a terminal that hangs up on Unix is `hangup.rs`).
//!
//! These run on Linux, on Windows, and cross-built for Windows under wine (`.ci/run`). The
//! two tests wine cannot run say so where they are skipped; see the README's Platforms section.

mod common;

use common::{assert_ok, socketfalco, text, Device, Session, Start};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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
    cmd.run_to_end().expect("the binary runs")
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

/// Windows: closing the session's console window (CTRL_CLOSE_EVENT, as clicking the window's
/// close button does) ends a connected session like `quit`: its handler holds the process
/// until the session has closed, so the peer sees a normal close and nothing is lost. Windows
/// then ends the process itself, so its exit status is 0 or STATUS_CONTROL_C_EXIT.
#[cfg(windows)]
#[test]
fn closing_the_console_window_ends_a_connected_caller_cleanly() {
    const TEST: &str = "closing_the_console_window_ends_a_connected_caller_cleanly";
    if windows_console::run_as_helper() {
        return;
    }
    if windows_console::under_wine() {
        // Wine gap, not ours: the session's console has no window under wine started without
        // a display (GetConsoleWindow returns null: tried), and wine 8.0's wineserver
        // propagates console control events for CTRL_C_EVENT only (see
        // ctrl_break_ends_a_connected_listener_cleanly). Runs on Windows. See the README,
        // Platforms.
        let _ = writeln!(
            std::io::stderr(),
            "{TEST}: SKIPPED under wine: the console has no window to close (GetConsoleWindow \
             returns null) and wine 8 delivers no CTRL_CLOSE_EVENT; it runs on Windows"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let alice = Device::at(tmp.path().join("alice"), "Alice");
    let bob = Device::at(tmp.path().join("bob"), "Bob");
    let (mut listener, mut caller) =
        connected_pair(&alice, &bob, |_| {}, windows_console::own_console);
    exchange(&mut listener, &mut caller, "typed by Bob", "typed by Alice");
    windows_console::send(windows_console::CLOSE_WINDOW, &caller.child, TEST);
    let (status, lines, stderr) = caller.exit();
    // STATUS_CONTROL_C_EXIT: Windows ended the process when the handler returned.
    let ended_by_windows = status.code().map(|c| c as u32) == Some(0xC000_013A);
    assert!(
        status.success() || ended_by_windows,
        "exit {status:?}\nstdout: {}\nstderr: {stderr}",
        lines.concat()
    );
    let left = listener.wait_for("peer left", |e| e["event"] == "peer_left");
    assert_eq!(left["code"], 0, "a normal close: {left}");
    assert_eq!(left["by"], "peer", "{left}");
    listener.finish();
    let both = vec!["typed by Bob".to_owned(), "typed by Alice".to_owned()];
    assert_eq!(alice.history(&bob), both);
    assert_eq!(bob.history(&alice), both);
}

/// Sending console control events to one session, from the test setup only.
#[cfg(windows)]
mod windows_console {
    use crate::common::Start;
    use std::process::{Child, Command};
    use windows_sys::Win32::System::Console::{
        AttachConsole, FreeConsole, GenerateConsoleCtrlEvent, SetConsoleCtrlHandler,
    };
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    use windows_sys::Win32::System::Threading::CREATE_NEW_CONSOLE;

    pub use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};

    /// Not a control event: the helper closes the session's console window instead, which
    /// sends CTRL_CLOSE_EVENT (GenerateConsoleCtrlEvent cannot).
    pub const CLOSE_WINDOW: u32 = u32::MAX;

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
            .run_to_end()
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
            if event == CLOSE_WINDOW {
                let window = windows_sys::Win32::System::Console::GetConsoleWindow();
                assert!(!window.is_null(), "the session's console has no window");
                // Leave the console first: the close is for the session, not for us.
                FreeConsole();
                assert!(
                    windows_sys::Win32::UI::WindowsAndMessaging::PostMessageW(
                        window,
                        windows_sys::Win32::UI::WindowsAndMessaging::WM_CLOSE,
                        0,
                        0
                    ) != 0,
                    "PostMessageW(WM_CLOSE): {}",
                    std::io::Error::last_os_error()
                );
                return true;
            }
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
