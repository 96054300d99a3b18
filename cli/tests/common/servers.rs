//! The servers end-to-end tests start for themselves, offline, on 127.0.0.1: each is a
//! struct that starts its program on a free port with a temporary directory of its own,
//! waits until it accepts connections, and kills it on drop. [`ensure_program`] finds a
//! program, installing its Debian package first when it is missing (so a fresh CI machine
//! needs no manual step). [`Tor`] (a control port, for `-l --onion`) lives here; the SOCKS5
//! proxy (microsocks) and the magic-wormhole transit relay are in `via.rs`, on the generic
//! [`Server`]: `ensure_program`, a free port, [`wait_until_listening`], kill on drop.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// The path of `program`: on `PATH` or in the `sbin` folders (Debian puts daemons such as
/// tor in `/usr/sbin`, which a user's `PATH` may lack). When it is missing, installs
/// `debian_package` with `apt-get install -y` (through `sudo -n` when not root; after an
/// `apt-get update` if the first try fails), and fails the test with what to do if that
/// does not work.
pub fn ensure_program(program: &str, debian_package: &str) -> PathBuf {
    // Tests run on several threads: one apt-get at a time (dpkg has one lock).
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find_program(program) {
        return path;
    }
    eprintln!("{program} is missing: installing the Debian package {debian_package}");
    let install = ["install", "-y", "-qq", debian_package];
    let installed =
        apt_get(&install).or_else(|_| apt_get(&["update", "-qq"]).and_then(|()| apt_get(&install)));
    match (find_program(program), installed) {
        (Some(path), _) => path,
        (None, Err(e)) => panic!(
            "{program} is not installed, and `apt-get install -y {debian_package}` failed: {e}. \
             Install the Debian package {debian_package} (it provides {program}) and run the \
             tests again"
        ),
        (None, Ok(())) => panic!(
            "the Debian package {debian_package} is installed but {program} is neither on PATH \
             nor in /usr/sbin or /sbin"
        ),
    }
}

/// `program` on `PATH` or in the `sbin` folders.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs apt-get with `args`, as root or through `sudo -n` (never waiting for a password).
fn apt_get(args: &[&str]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let mut cmd = if root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    };
    let out = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get {} ended with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

// --- any server ------------------------------------------------------------------------------

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + START;
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {START:?}"
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
    /// Starts `cmd`; its standard output is dropped, its errors show in the test's output.
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
        eprintln!("[test] stopped {}", self.name);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

// --- tor -------------------------------------------------------------------------------------

/// How the control port of a [`Tor`] authenticates.
#[derive(Clone, Copy, Debug)]
pub enum TorAuth<'a> {
    /// `HashedControlPassword` of this password.
    Password(&'a str),
    /// `CookieAuthentication 1` (tor then offers COOKIE and SAFECOOKIE), the cookie at
    /// [`Tor::cookie_file`].
    Cookie,
}

/// A tor started offline (`DisableNetwork 1`, no SOCKS port) with a control port on
/// 127.0.0.1 and a data directory of its own; killed on drop. It answers the control
/// protocol (`ADD_ONION` included) without reaching the Tor network.
pub struct Tor {
    child: Child,
    control_port: u16,
    dir: tempfile::TempDir,
}

impl Tor {
    /// Starts tor (installing the Debian package `tor` if it is missing) and waits until its
    /// control port accepts connections.
    pub fn start(auth: TorAuth<'_>) -> Tor {
        let program = ensure_program("tor", "tor");
        let hashed = match auth {
            TorAuth::Password(password) => Some(hash_password(&program, password)),
            TorAuth::Cookie => None,
        };
        let mut last_log = String::new();
        // The free port may be taken before tor binds it: a few tries.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            // No system torrc: an empty one, and empty defaults.
            let torrc = dir.path().join("torrc");
            File::create(&torrc).expect("an empty torrc");
            let port = free_port();
            let mut cmd = Command::new(&program);
            cmd.arg("-f")
                .arg(&torrc)
                .arg("--defaults-torrc")
                .arg(&torrc)
                .args(["--DisableNetwork", "1", "--SocksPort", "0"])
                .args(["--ControlPort", &format!("127.0.0.1:{port}")])
                .arg("--DataDirectory")
                .arg(dir.path().join("data"))
                .args(["--Log", "notice stdout"]);
            match &hashed {
                Some(hashed) => {
                    cmd.args(["--HashedControlPassword", hashed]);
                }
                None => {
                    cmd.args(["--CookieAuthentication", "1", "--CookieAuthFile"])
                        .arg(dir.path().join("control_auth_cookie"));
                }
            }
            let log = File::create(dir.path().join("tor.log")).expect("tor's log file");
            let errors = log.try_clone().expect("tor's log file");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(errors)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut tor = Tor {
                child,
                control_port: port,
                dir,
            };
            if tor.wait_until_ready(hashed.is_none()) {
                return tor;
            }
            tor.stop();
            last_log = tor.log();
        }
        panic!("tor did not open its control port; its log:\n{last_log}");
    }

    /// Waits until the control port accepts a connection (and the cookie is written), or
    /// tor exits; `false` if tor exited.
    fn wait_until_ready(&mut self, cookie: bool) -> bool {
        let deadline = Instant::now() + START;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let listening = TcpStream::connect((Ipv4Addr::LOCALHOST, self.control_port)).is_ok();
            let cookie_ready =
                !cookie || std::fs::metadata(self.cookie_file()).is_ok_and(|m| m.len() == 32);
            if listening && cookie_ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "tor did not open its control port within {START:?}; its log:\n{}",
            self.log()
        );
    }

    /// The control port's address, `127.0.0.1:PORT`.
    pub fn control_addr(&self) -> String {
        format!("127.0.0.1:{}", self.control_port)
    }

    /// The cookie file (with [`TorAuth::Cookie`]).
    pub fn cookie_file(&self) -> PathBuf {
        self.dir.path().join("control_auth_cookie")
    }

    /// What tor logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tor.log")).unwrap_or_default()
    }

    /// Kills tor now (its control connections close).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tor --hash-password PASSWORD`: the value for `HashedControlPassword`.
fn hash_password(program: &Path, password: &str) -> String {
    let out = Command::new(program)
        .args(["--hash-password", password])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tor --hash-password: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("16:"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "tor --hash-password gave no hash: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
