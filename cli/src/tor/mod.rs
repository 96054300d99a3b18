//! `-l --onion`: publishing the listener as a Tor onion service through a running tor, over
//! its control port. This module owns the blocking conversation with tor ([`TorControl`]:
//! connecting, authenticating, `ADD_ONION`, each step within [`STEP_TIMEOUT`]) and the
//! listener's side of it ([`OnionService`]): the key kept in the data directory
//! ([`service_key`]) so that the address is the same at every start, and the control
//! connection held open for the listener's whole life — the service is not detached, so tor
//! removes it when the connection closes, and the listener is told if tor closes it first.
//! What is said on the wire is built and parsed, without I/O, in [`control`].
//!
//! Every error is one line that names the control port's address and, where there is one,
//! what to do about it.

pub mod control;
pub mod service_key;

use control::{AuthPlan, ControlError, OnionKey, Reply, ReplyReader};
use service_key::ServiceKey;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// tor's usual control port (`ControlPort 9051`).
pub const DEFAULT_CONTROL_PORT: u16 = 9051;

/// The control port used without `--tor-control`.
pub const DEFAULT_CONTROL_ADDR: &str = "127.0.0.1:9051";

/// The environment variable that gives the control port's password (out of the process
/// list, where `--tor-password` shows).
pub const PASSWORD_ENV: &str = "SOCKETFALCO_TOR_PASSWORD";

/// How long each step (connecting, one command and its reply) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stored key's `ADD_ONION` is retried while tor still holds the service of a
/// control connection that just closed (a restarted listener).
const COLLISION_GRACE: Duration = Duration::from_secs(3);

/// A control connection to tor, authenticated once [`TorControl::authenticate`] succeeded.
pub struct TorControl {
    stream: TcpStream,
    reader: ReplyReader,
    /// The address as the user gave it, for messages.
    label: String,
}

impl TorControl {
    /// Connects to tor's control port at `host:port`.
    pub fn connect(host: &str, port: u16) -> Result<TorControl, String> {
        let label = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let unreachable = |why: String| {
            format!(
                "could not reach tor's control port at {label}: {why} — is tor running with \
                 ControlPort {port}?"
            )
        };
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, STEP_TIMEOUT) {
                Ok(stream) => {
                    log::debug!("connected to tor's control port at {addr}");
                    return Ok(TorControl {
                        stream,
                        reader: ReplyReader::new(),
                        label,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(unreachable(match last {
            Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            Some(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                format!("no answer within {} s", STEP_TIMEOUT.as_secs())
            }
            Some(e) => e.to_string(),
            None => format!("{host} has no address"),
        }))
    }

    /// The control port's address as the user gave it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Authenticates as `PROTOCOLINFO` says tor accepts: no secret, SAFECOOKIE (preferred)
    /// or COOKIE with tor's cookie file, or `password`.
    pub fn authenticate(&mut self, password: Option<&str>) -> Result<(), String> {
        let reply = self.command(control::PROTOCOLINFO, "PROTOCOLINFO")?;
        let info =
            control::parse_protocolinfo(&reply).map_err(|e| self.error("PROTOCOLINFO", e))?;
        if let Some(version) = &info.tor_version {
            log::info!("tor {version} at {}", self.label);
        }
        let plan = control::choose_auth(&info, password.is_some()).map_err(|e| match e {
            ControlError::NeedPassword => format!(
                "tor's control port at {} wants a password: give it with --tor-password PASS \
                 or in the environment variable {PASSWORD_ENV}",
                self.label
            ),
            e => self.error("PROTOCOLINFO", e),
        })?;
        match plan {
            AuthPlan::Null => {
                let reply = self.command(control::AUTHENTICATE_NULL, "AUTHENTICATE")?;
                self.authenticated(reply, "without a secret")
            }
            AuthPlan::Password => {
                let password = password.unwrap_or_default();
                let command = control::authenticate_password(password).map_err(|_| {
                    format!(
                        "the password for tor's control port at {} contains a line break or \
                         a NUL character, which the control protocol cannot carry",
                        self.label
                    )
                })?;
                let reply = self.command(&command, "AUTHENTICATE")?;
                if reply.is_ok() {
                    return Ok(());
                }
                Err(format!(
                    "tor's control port at {} refused the password ({}): check --tor-password \
                     or {PASSWORD_ENV} against tor's HashedControlPassword",
                    self.label,
                    said(&reply)
                ))
            }
            AuthPlan::Cookie(path) => {
                let path = cookie_path(&path);
                let cookie = self.read_cookie(&path)?;
                let reply = self.command(&control::authenticate_bytes(&cookie), "AUTHENTICATE")?;
                self.authenticated(reply, &format!("with the cookie {}", path.display()))
            }
            AuthPlan::SafeCookie(path) => {
                let path = cookie_path(&path);
                let cookie = self.read_cookie(&path)?;
                let mut nonce = [0u8; control::NONCE_LEN];
                getrandom::fill(&mut nonce)
                    .map_err(|e| format!("no random bytes from the operating system: {e}"))?;
                let reply = self.command(&control::authchallenge(&nonce), "AUTHCHALLENGE")?;
                let challenge = control::parse_authchallenge(&reply)
                    .map_err(|e| self.error("AUTHCHALLENGE", e))?;
                let command = control::safecookie_response(&cookie, &nonce, &challenge)
                    .map_err(|e| self.error("AUTHCHALLENGE", e))?;
                let reply = self.command(&command, "AUTHENTICATE")?;
                self.authenticated(
                    reply,
                    &format!("with the cookie {} (SAFECOOKIE)", path.display()),
                )
            }
        }
    }

    /// The outcome of an `AUTHENTICATE` made `how`.
    fn authenticated(&self, reply: Reply, how: &str) -> Result<(), String> {
        if reply.is_ok() {
            log::debug!("authenticated to tor at {} {how}", self.label);
            return Ok(());
        }
        Err(format!(
            "tor's control port at {} refused to authenticate this program {how} ({})",
            self.label,
            said(&reply)
        ))
    }

    /// Reads tor's 32-byte authentication cookie.
    fn read_cookie(&self, path: &Path) -> Result<[u8; control::COOKIE_LEN], String> {
        let unreadable = |why: String| {
            format!(
                "cannot read tor's authentication cookie {} (for the control port at {}): {why}",
                path.display(),
                self.label
            )
        };
        let file = std::fs::File::open(path).map_err(|e| {
            unreadable(if e.kind() == io::ErrorKind::PermissionDenied {
                "permission denied — run as a user of tor's group (Debian: debian-tor), or set \
                 HashedControlPassword in torrc and give --tor-password"
                    .to_owned()
            } else {
                e.to_string()
            })
        })?;
        let mut bytes = Vec::new();
        // One byte more than a cookie tells a longer file apart, without reading it all.
        file.take(control::COOKIE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(e.to_string()))?;
        <[u8; control::COOKIE_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| unreadable(format!("it is not a {}-byte cookie", control::COOKIE_LEN)))
    }

    /// Publishes an onion service whose `virtual_port` forwards to `target`, with `key`.
    pub fn add_onion(
        &mut self,
        key: OnionKey<'_>,
        virtual_port: u16,
        target: SocketAddr,
    ) -> Result<control::AddedOnion, String> {
        let command = control::add_onion(key, virtual_port, target)
            .map_err(|e| self.error("ADD_ONION", e))?;
        let reply = self.command(&command, "ADD_ONION")?;
        if !reply.is_ok() {
            let mut message = format!(
                "tor (control port at {}) refused to publish the onion service: {}",
                self.label,
                said(&reply)
            );
            if reply.text().contains("collision") {
                message
                    .push_str(" — another listener with this data directory publishes it already");
            }
            return Err(message);
        }
        control::parse_add_onion(&reply).map_err(|e| self.error("ADD_ONION", e))
    }

    /// Sends `command` (a whole line) and reads its reply; `step` names it in errors.
    fn command(&mut self, command: &str, step: &str) -> Result<Reply, String> {
        log::debug!("tor control: {step}");
        self.stream
            .set_write_timeout(Some(STEP_TIMEOUT))
            .and_then(|()| self.stream.write_all(command.as_bytes()))
            .and_then(|()| self.stream.flush())
            .map_err(|e| self.io_error(step, &e))?;
        self.read_reply(step)
    }

    /// Reads the next reply to a command (asynchronous events, which this program does
    /// not ask for, are skipped).
    fn read_reply(&mut self, step: &str) -> Result<Reply, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(reply) = self.reader.next_reply() {
                if !reply.is_event() {
                    return Ok(reply);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout(step));
            }
            if let Err(e) = self.stream.set_read_timeout(Some(left)) {
                return Err(self.io_error(step, &e));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "tor's control port at {} closed the connection (after {step})",
                        self.label
                    ))
                }
                Ok(n) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    if let Err(e) = self.reader.feed(bytes) {
                        return Err(self.error(step, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timeout(step));
                }
                Err(e) => return Err(self.io_error(step, &e)),
            }
        }
    }

    fn timeout(&self, step: &str) -> String {
        format!(
            "tor's control port at {} did not answer {step} within {} s",
            self.label,
            STEP_TIMEOUT.as_secs()
        )
    }

    fn io_error(&self, step: &str, e: &io::Error) -> String {
        format!(
            "lost tor's control port at {} during {step}: {e}",
            self.label
        )
    }

    /// A protocol error of `step`, as one line.
    fn error(&self, step: &str, e: ControlError) -> String {
        match e {
            ControlError::Refused { code, text } => format!(
                "tor's control port at {} refused {step}: {code} {text}",
                self.label
            ),
            e @ (ControlError::LineTooLong
            | ControlError::ReplyTooLong
            | ControlError::Malformed(_)) => format!(
                "tor's control port at {} sent {e} in answer to {step}",
                self.label
            ),
            e => format!("tor's control port at {}: {e}", self.label),
        }
    }

    /// Gives the connection to a thread that holds it open and calls `on_close` if tor
    /// closes it (then the onion service is gone).
    pub fn hold_open(self, on_close: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut stream = self.stream;
        stream.set_read_timeout(None)?;
        std::thread::Builder::new()
            .name("tor-control".into())
            .spawn(move || {
                // Started by a thread that may share one CPU with the event loop: not this one.
                socketfalco_transport::affinity::run_anywhere();
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf) {
                        // Events were not asked for; anything else said is of no use.
                        Ok(n) if n > 0 => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        _ => break,
                    }
                }
                on_close();
            })
            .map(|_| ())
    }
}

/// What tor said in `reply`, for a message: code and text, without a final period.
fn said(reply: &Reply) -> String {
    format!("{} {}", reply.code, reply.text().trim_end_matches('.'))
}

/// The cookie file's path from `PROTOCOLINFO`'s bytes.
fn cookie_path(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The published service: its address for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The service id (the address without `.onion`).
    pub service_id: String,
    /// `<service id>.onion:<port>`: what the peer connects to.
    pub address: String,
}

/// A listener's onion service, from an authenticated control connection to publication.
pub struct OnionService {
    control: TorControl,
    data_dir: PathBuf,
    /// The key stored by an earlier start, if any.
    key: Option<ServiceKey>,
}

impl OnionService {
    /// Reads the stored key (if any) from `data_dir`, connects to tor's control port at
    /// `host:port` and authenticates: everything that can fail before the listener binds.
    pub fn prepare(
        data_dir: &Path,
        host: &str,
        port: u16,
        password: Option<&str>,
    ) -> Result<OnionService, String> {
        let key = service_key::load(data_dir)?;
        let mut control = TorControl::connect(host, port)?;
        control.authenticate(password)?;
        Ok(OnionService {
            control,
            data_dir: data_dir.to_owned(),
            key,
        })
    }

    /// Publishes the service: port `virtual_port` of the onion address forwards to `target`
    /// (the listener, on 127.0.0.1). A new key is stored before the address is returned;
    /// then the control connection is held open (`on_gone` is called if tor closes it).
    pub fn publish(
        mut self,
        target: SocketAddr,
        virtual_port: u16,
        on_gone: impl FnOnce(String) + Send + 'static,
    ) -> Result<Published, String> {
        let started = Instant::now();
        let added = loop {
            let key = match &self.key {
                Some(stored) => OnionKey::Existing(&stored.private_key),
                None => OnionKey::New,
            };
            match self.control.add_onion(key, virtual_port, target) {
                // A listener restarted at once: tor may not have dropped the service of the
                // closed connection yet.
                Err(e)
                    if self.key.is_some()
                        && e.contains("collision")
                        && started.elapsed() < COLLISION_GRACE =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                result => break result?,
            }
        };
        match (&self.key, added.private_key) {
            (None, Some(private_key)) => {
                let key = ServiceKey {
                    service_id: added.service_id.clone(),
                    private_key,
                };
                service_key::save(&self.data_dir, &key)?;
                log::info!(
                    "new onion service key in {}",
                    service_key::path_in(&self.data_dir).display()
                );
            }
            (None, None) => {
                return Err(format!(
                    "tor (control port at {}) made an onion service key but did not return it",
                    self.control.label()
                ))
            }
            (Some(stored), _) => {
                if stored.service_id != added.service_id {
                    log::warn!(
                        "the onion service key file {} names {}.onion, but its key is {}.onion",
                        service_key::path_in(&self.data_dir).display(),
                        stored.service_id,
                        added.service_id
                    );
                }
            }
        }
        let address = format!("{}.onion:{virtual_port}", added.service_id);
        let label = self.control.label().to_owned();
        let gone = format!(
            "tor closed its control connection at {label}: the onion service {address} is gone; \
             restart this listener once tor runs again"
        );
        self.control
            .hold_open(move || on_gone(gone))
            .map_err(|e| format!("cannot keep tor's control connection at {label} open: {e}"))?;
        Ok(Published {
            service_id: added.service_id,
            address,
        })
    }
}
