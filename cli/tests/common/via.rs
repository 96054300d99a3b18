//! The ways a caller can reach a listener in the end-to-end tests — straight, through a
//! SOCKS5 proxy (Debian's `microsocks`), through a magic-wormhole transit relay (Debian's
//! `magic-wormhole-transit-relay`) — so that one story runs over each of them ([`Via`]).
//! The servers are the real programs, started on 127.0.0.1 by the test itself (installed
//! first if missing, see [`super::servers::ensure_program`]) and stopped when dropped; a
//! [`Recorder`] sits between the peers and a relay and keeps every byte that crosses it.

use super::servers::{ensure_program, free_port, wait_until_listening, Server};
use super::{stdout, Device, Session};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// How the caller reaches the listener.
#[derive(Clone, Debug)]
pub enum Via {
    /// 127.0.0.1:PORT.
    Direct,
    /// `--proxy URL -c localhost:PORT`: the proxy resolves the name.
    Proxy(String),
    /// `-c INVITE` of an invite naming only this relay (`HOST:PORT`); the listener waits
    /// there with `--relay`.
    Relay(String),
    /// The same relay (`.0`), which the caller reaches through a proxy (`--proxy .1`).
    RelayThroughProxy(String, String),
}

impl Via {
    /// A `--json` listener of `device` reachable this way; its port.
    pub fn listen(&self, device: &Device) -> (Session, u16) {
        match self {
            Via::Relay(relay) | Via::RelayThroughProxy(relay, _) => {
                let relay = relay.clone();
                let (mut session, port) = device.listen_with(|cmd| {
                    cmd.args(["--relay", &relay]);
                });
                session.wait_for("at the relay", |e| e["event"] == "relay_waiting");
                (session, port)
            }
            _ => device.listen(),
        }
    }

    /// A `--json` caller of `device` to `listener`, which listens on `port`.
    pub fn connect(&self, device: &Device, listener: &Device, port: u16) -> Session {
        match self {
            Via::Direct => device.connect(port),
            Via::Proxy(url) => {
                let target = format!("localhost:{port}");
                Session::spawn(device.command(&["--proxy", url, "-c", &target, "--json"]))
            }
            Via::Relay(relay) => {
                let invite = invite(listener, &["--relay", relay]);
                Session::spawn(device.command(&["-c", &invite, "--json"]))
            }
            Via::RelayThroughProxy(relay, url) => {
                let invite = invite(listener, &["--relay", relay]);
                Session::spawn(device.command(&["--proxy", url, "-c", &invite, "--json"]))
            }
        }
    }
}

/// `device`'s invite, made with `extra` (`--relay HOST:PORT`, an address).
pub fn invite(device: &Device, extra: &[&str]) -> String {
    let mut args = vec!["--invite"];
    args.extend_from_slice(extra);
    let out = device.run(&args);
    super::assert_ok(&out);
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default().trim().to_owned();
    assert!(
        first.starts_with("sf1") && !first.contains(' '),
        "the invite is alone on the first line: {text:?}"
    );
    first
}

/// Debian's `microsocks` on 127.0.0.1, with a username and password or without.
pub struct Microsocks {
    server: Server,
    port: u16,
}

impl Microsocks {
    pub fn start(credentials: Option<(&str, &str)>) -> Microsocks {
        Microsocks::start_on(free_port(), credentials)
    }

    /// On `port` (again, after [`Microsocks::stop`]).
    pub fn start_on(port: u16, credentials: Option<(&str, &str)>) -> Microsocks {
        let program = ensure_program("microsocks", "microsocks");
        let mut cmd = Command::new(program);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, pass)) = credentials {
            cmd.args(["-u", user, "-P", pass]);
        }
        let server = Server::spawn("microsocks", cmd);
        wait_until_listening(port);
        Microsocks { server, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `socks5h://[USER:PASS@]127.0.0.1:PORT`.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, pass)) => format!("socks5h://{user}:{pass}@127.0.0.1:{}", self.port),
            None => format!("socks5h://127.0.0.1:{}", self.port),
        }
    }

    pub fn stop(self) {
        self.server.stop();
    }
}

/// Debian's `magic-wormhole-transit-relay` (`twistd3 -n transitrelay`) on 127.0.0.1.
pub struct TransitRelay {
    server: Server,
    port: u16,
    dir: tempfile::TempDir,
}

impl TransitRelay {
    pub fn start() -> TransitRelay {
        Self::start_on(free_port())
    }

    /// On `port` (a restart on the same port).
    pub fn start_on(port: u16) -> TransitRelay {
        let program = ensure_program("twistd3", "magic-wormhole-transit-relay");
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(program);
        cmd.current_dir(dir.path())
            .args([
                "--nodaemon",
                "--pidfile=",
                "--logfile=-",
                "transitrelay",
                &format!("--port=tcp:{port}:interface=127.0.0.1"),
            ])
            .stdin(Stdio::null());
        let server = Server::spawn("transit relay", cmd);
        wait_until_listening(port);
        TransitRelay { server, port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(self) {
        self.server.stop();
        drop(self.dir);
    }
}

/// A TCP forwarder on 127.0.0.1 that keeps every byte going either way.
pub struct Recorder {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Forwards every connection to 127.0.0.1:`to`.
    pub fn start(to: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bytes);
        thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (from, into) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    let seen = Arc::clone(&seen);
                    thread::spawn(move || copy_recording(from, into, &seen));
                }
            }
        });
        Recorder { port, bytes }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything that crossed so far, both ways.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

fn copy_recording(mut from: TcpStream, mut into: TcpStream, seen: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if into.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = into.shutdown(Shutdown::Write);
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
