//! End-to-end: `-l --onion` with the real tor, which each test starts for itself offline
//! (`--DisableNetwork 1`, see `common::servers::Tor`): tor answers the control protocol and
//! publishes onion services without reaching the Tor network, so everything up to the
//! published address is tested here — authentication by password (given with
//! `--tor-password` or in the environment) and by SAFECOOKIE, the key kept in the data
//! directory so that the address survives a restart, the key file's mode, the listener bound
//! to 127.0.0.1, the warning when tor goes away, and every error as one line with exit
//! status 1. Connecting *through* the Tor network needs the internet, which the tests do not
//! have.

#![cfg(target_os = "linux")]

mod common;

use common::servers::{free_port, Tor, TorAuth};
use common::{stderr, stdout, Device, Session};
use serde_json::Value;
use std::process::{Output, Stdio};

/// A password that needs quoting in the control protocol: spaces, quotes, a backslash.
const PASSWORD: &str = "correct horse \"battery\" sta\\ple";

/// The environment variable the listener reads the control password from.
const PASSWORD_ENV: &str = "SOCKETFALCO_TOR_PASSWORD";

/// The `-l --onion --json` arguments for `tor`, on a port the system picks, plus `extra`.
fn onion_args<'a>(tor: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    onion_args_on(tor, "0", extra)
}

/// [`onion_args`] on `port`.
fn onion_args_on<'a>(tor: &'a str, port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-l", "-p", port, "--onion", "--tor-control", tor, "--json"];
    args.extend_from_slice(extra);
    args
}

/// A `--json` onion listener for `device` on `port` (the control password in the
/// environment), once it has published its service: the session, its listening address and
/// its onion address.
fn onion_listener(device: &Device, tor: &Tor, port: u16) -> (Session, String, String) {
    let control = tor.control_addr();
    let port = port.to_string();
    let mut cmd = device.command(&onion_args_on(&control, &port, &[]));
    cmd.env(PASSWORD_ENV, PASSWORD);
    let mut session = Session::spawn(cmd);
    let listening = session.wait_for("listening", |e| e["event"] == "listening");
    let onion = session.wait_for("onion_service", |e| e["event"] == "onion_service");
    (
        session,
        listening["addr"].as_str().unwrap_or_default().to_owned(),
        onion["address"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Whether `address` is `<56 base32 characters>.onion:<port>`.
fn is_v3_onion(address: &str, port: u16) -> bool {
    let Some((host, p)) = address.rsplit_once(':') else {
        return false;
    };
    let Some(id) = host.strip_suffix(".onion") else {
        return false;
    };
    id.len() == 56
        && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
        && p == port.to_string()
}

/// Runs `device` with `args` to completion, stdin empty, with `env` set.
fn run_env(device: &Device, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = device.command(args);
    cmd.env_remove(PASSWORD_ENV);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::null()).output().expect("the binary runs")
}

/// Asserts a run failed with status 1 and exactly one `error: …` line on stderr containing
/// every part of `says`, and that it never listened.
#[track_caller]
fn assert_one_line_error(out: &Output, says: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for part in says {
        assert!(lines[0].contains(part), "{part:?} not in {err:?}");
    }
    assert!(!stdout(out).contains("listening"), "{}", stdout(out));
}

#[test]
fn an_onion_listener_publishes_a_v3_address_and_listens_on_127_0_0_1_only() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let (session, listening, address) = onion_listener(&alice, &tor, 0);
    assert!(listening.starts_with("127.0.0.1:"), "{listening}");
    // -p 0: the onion address keeps the default port.
    assert!(is_v3_onion(&address, 30000), "{address}");
    // An explicit port is the onion address's port too.
    session.kill();
    let port = free_port();
    let (_session, listening, again) = onion_listener(&alice, &tor, port);
    assert_eq!(listening, format!("127.0.0.1:{port}"));
    assert_eq!(again, address.replace(":30000", &format!(":{port}")));
}

#[test]
fn the_address_is_the_same_after_the_listener_restarts() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let (first, _, address) = onion_listener(&alice, &tor, 0);
    // Killed, not quit: tor drops the service when the control connection closes, and the
    // next start publishes the same key again.
    first.kill();
    let control = tor.control_addr();
    let mut cmd = alice.command(&onion_args(&control, &["--tor-password", PASSWORD]));
    cmd.env_remove(PASSWORD_ENV);
    let mut second = Session::spawn(cmd);
    let again = second.wait_for("onion_service", |e| e["event"] == "onion_service");
    assert_eq!(again["address"], Value::from(address.clone()));
    // Another device has another address.
    let bob = Device::new("bob");
    let (_third, _, other) = onion_listener(&bob, &tor, 0);
    assert_ne!(other, address);
}

#[test]
fn the_key_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let (_session, _, address) = onion_listener(&alice, &tor, 0);
    let path = alice.path().join("onion-service.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    let id = address.split('.').next().unwrap();
    assert!(text.contains(&format!("service-id {id}\n")), "{text}");
    assert!(text.contains("private-key ED25519-V3:"), "{text}");
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(alice.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("onion"))
        .collect();
    assert_eq!(names, ["onion-service.key"]);
}

#[test]
fn a_wrong_control_password_is_one_clear_line_and_exit_status_1() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let control = tor.control_addr();
    let args = onion_args(&control, &[]);
    let out = run_env(&alice, &args, &[(PASSWORD_ENV, "not the password")]);
    assert_one_line_error(
        &out,
        &[
            &format!("tor's control port at {control} refused the password"),
            "--tor-password",
            PASSWORD_ENV,
        ],
    );
    let out = run_env(
        &alice,
        &onion_args(&control, &["--tor-password", "wrong"]),
        &[],
    );
    assert_one_line_error(&out, &["refused the password"]);
    // Nothing was kept from a refused start.
    assert!(!alice.path().join("onion-service.key").exists());
}

#[test]
fn no_password_for_a_tor_that_wants_one_says_how_to_give_it() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let control = tor.control_addr();
    let out = run_env(&alice, &onion_args(&control, &[]), &[]);
    assert_one_line_error(
        &out,
        &[
            &format!("tor's control port at {control} wants a password"),
            "--tor-password",
            PASSWORD_ENV,
        ],
    );
}

#[test]
fn safe_cookie_authentication_works() {
    let tor = Tor::start(TorAuth::Cookie);
    let alice = Device::new("alice");
    let control = tor.control_addr();
    let mut cmd = alice.command(&onion_args(&control, &[]));
    cmd.env_remove(PASSWORD_ENV)
        .env("RUST_LOG", "socketfalco::tor=debug");
    let mut session = Session::spawn(cmd);
    let event = session.wait_for("onion_service", |e| e["event"] == "onion_service");
    assert!(
        is_v3_onion(event["address"].as_str().unwrap_or_default(), 30000),
        "{event}"
    );
    drop(session.stdin.take());
    let (status, _, log) = session.exit();
    assert!(status.success(), "{status:?}: {log}");
    // tor offers COOKIE and SAFECOOKIE; SAFECOOKIE was used.
    assert!(log.contains("(SAFECOOKIE)"), "{log}");
}

#[test]
fn an_unreadable_cookie_file_is_a_clear_error() {
    let tor = Tor::start(TorAuth::Cookie);
    std::fs::remove_file(tor.cookie_file()).unwrap();
    let alice = Device::new("alice");
    let control = tor.control_addr();
    let out = run_env(&alice, &onion_args(&control, &[]), &[]);
    let cookie = tor.cookie_file().display().to_string();
    assert_one_line_error(
        &out,
        &[
            &format!("cannot read tor's authentication cookie {cookie}"),
            &control,
        ],
    );
}

#[test]
fn tor_not_running_is_a_clear_error() {
    let alice = Device::new("alice");
    let port = free_port();
    let control = format!("127.0.0.1:{port}");
    let out = run_env(&alice, &onion_args(&control, &[]), &[]);
    assert_one_line_error(
        &out,
        &[&format!(
            "could not reach tor's control port at {control}: connection refused — is tor \
             running with ControlPort {port}?"
        )],
    );
}

#[test]
fn a_headless_listener_prints_the_address_line() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let control = tor.control_addr();
    let mut cmd = alice.command(&[
        "-l",
        "-p",
        "0",
        "--serve",
        "--onion",
        "--tor-control",
        &control,
    ]);
    cmd.env(PASSWORD_ENV, PASSWORD);
    let mut session = Session::spawn(cmd);
    let line = session.wait_for_line("the onion line", |l| l.starts_with("Onion service: "));
    let address = line
        .trim_end()
        .strip_prefix("Onion service: ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    assert!(is_v3_onion(&address, 30000), "{line}");
    assert!(
        line.contains(&format!(
            "give this address to your peer; they connect with: socketfalco --tor -c {address}"
        )),
        "{line}"
    );
}

#[test]
fn the_listener_warns_when_tor_goes_away() {
    let mut tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let (mut session, _, address) = onion_listener(&alice, &tor, 0);
    tor.stop();
    let warning = session.wait_for("the warning", |e| e["kind"] == "warning");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("the onion service {address} is gone")),
        "{warning}"
    );
    // The listener itself goes on until it is told to leave.
    let events = session.finish();
    assert!(events.iter().all(|e| e["kind"] != "fatal"), "{events:?}");
}

#[test]
fn onion_with_another_bind_address_is_a_usage_error() {
    let alice = Device::new("alice");
    let out = alice.run(&["-l", "--onion", "--bind", "0.0.0.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--onion listens on 127.0.0.1 only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invite_names_the_published_onion_address_and_a_caller_needs_tor_for_it() {
    let tor = Tor::start(TorAuth::Password(PASSWORD));
    let alice = Device::new("alice");
    let (listener, _, address) = onion_listener(&alice, &tor, 0);
    listener.kill();
    let out = alice.run(&["--invite", "--json"]);
    common::assert_ok(&out);
    let invite: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(invite["onion"], Value::from(address.clone()), "{invite}");
    let text = invite["invite"].as_str().unwrap().to_owned();
    let decoded = socketfalco_reach::invite::Invite::decode(&text).unwrap();
    assert_eq!(decoded.onion.as_deref(), Some(address.as_str()));
    // The onion address alone, and no proxy: refused at once, saying what to add.
    let bob = Device::new("bob");
    let out = bob.run(&["-c", &text]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tor"), "{}", stderr(&out));
}
