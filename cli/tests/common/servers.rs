//! Real servers from Debian's packages for the end-to-end tests (tor, microsocks, the
//! magic-wormhole transit relay): found on the PATH or installed by the test itself with
//! apt-get ([`ensure_program`]), started on 127.0.0.1 on a free port, stopped when dropped
//! ([`Server`]). No server is mocked.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Installs one package at a time: two tests must not run apt-get at once.
static INSTALLING: Mutex<()> = Mutex::new(());

/// The path of `program`, installing the Debian package `package` first when it is not on
/// the PATH (as root, or with sudo). Fails the test with a clear message if it cannot.
pub fn ensure_program(program: &str, package: &str) -> PathBuf {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = on_path(program) {
        return path;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let installed = apt(&["install", "-y", "-qq", package])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", package]));
    match on_path(program) {
        Some(path) if installed => path,
        _ => panic!(
            "this test needs `{program}` from the Debian package `{package}`, which is not \
             installed and could not be installed (apt-get install {package}, as root or with \
             sudo)"
        ),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + super::WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A server process, killed when dropped (a failed test leaves none running).
pub struct Server {
    name: &'static str,
    child: Child,
}

impl Server {
    /// Starts `cmd` (its standard output is dropped; its errors show).
    pub fn spawn(name: &'static str, mut cmd: Command) -> Server {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Server { name, child }
    }

    /// Stops it now.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        log_stopped(self.name);
    }
}

fn log_stopped(name: &str) {
    eprintln!("[test] stopped {name}");
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
