//! `-l` / `-listen` and `-c` / `-connect`: a live chat session.
//!
//! The network runs on its own thread (a transport endpoint owning the database); this
//! thread owns the terminal or stdin/stdout. Both feed one channel of [`Update`]s, so the
//! user interface is a function of events and never blocks on the network.
//!
//! Every connection, temporary ones included, is encrypted: the endpoint gets this device's
//! static key pair and runs a Noise XX handshake before anything else; the peer's device id
//! is accepted only with the key pinned for it (or pinned now, on first contact). A peer
//! refused for presenting another key is shown as a loud warning by the [`Presenter`].
//!
//! A terminal that goes away (window closed, SSH dropped: SIGHUP, then end of input or EIO)
//! ends the session like `quit`: the endpoint is told to leave (what was typed is already
//! stored, the peer gets a normal close) and this thread, showing nothing any more, waits for
//! it to finish; the process exits with status 0. SIGTERM, Ctrl-C and, on Windows, closing the
//! console window do the same in every state (see [`super::leave`]). A script session whose
//! output can no longer be written ends the same way.

use super::{ensure_identity, leave, AppError, Context, Me};
use crate::ui::editor::{EditorEvent, LineEditor};
use crate::ui::{Presenter, Style};
use socketfalco_core::{CloseCode, SessionConfig};
use socketfalco_transport::endpoint::EndpointError;
use socketfalco_transport::{Command, Control, Endpoint, EndpointConfig, Output, Role};
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

/// Everything the user interface reacts to.
enum Update {
    Net(Output),
    Finished(Result<(), String>),
    Line(String),
    EndOfInput,
}

/// Listens on `bind` (all IPv4 interfaces by default) and `port`.
pub fn listen(
    ctx: &Context,
    temporary: bool,
    port: u16,
    bind: Option<IpAddr>,
) -> Result<(), AppError> {
    let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    run(
        ctx,
        Role::Listen {
            bind: SocketAddr::new(ip, port),
        },
        temporary,
    )
}

/// Connects to `host:port`.
pub fn connect(ctx: &Context, host: &str, port: u16, temporary: bool) -> Result<(), AppError> {
    let label = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| AppError::new(format!("cannot resolve {label}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(AppError::new(format!("{label} has no address")));
    }
    run(ctx, Role::Connect { addrs, label }, temporary)
}

fn run(ctx: &Context, role: Role, temporary: bool) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    let mut session = SessionConfig::new(me.device, me.name.clone());
    session.temporary = temporary;
    let config = EndpointConfig::new(session, Some(me.keypair.clone()));
    let (endpoint, control) = Endpoint::new(role, config, db)?;
    let invocation = ctx.invocation();
    let refused = failure_advice(&me, &invocation);
    let (tx, updates) = mpsc::channel();
    let net_tx = tx.clone();
    thread::Builder::new()
        .name("network".into())
        .spawn(move || {
            let mut endpoint = endpoint;
            let result = endpoint.run(|db, output| {
                if let Output::Connected { peer, addr, .. } = &output {
                    if !peer.temporary {
                        if let Err(e) = db.set_last_address(peer.device, &addr.to_string()) {
                            log::warn!("could not record the peer's address: {e}");
                        }
                    }
                }
                let _ = net_tx.send(Update::Net(output));
            });
            let _ = net_tx.send(Update::Finished(result.map_err(|e| refused(&e))));
        })?;
    let on_signal = std::sync::Mutex::new(control.clone());
    // Ctrl-C outside raw mode, SIGTERM, SIGHUP, Ctrl-Break and closing the console window on
    // Windows: leave cleanly.
    leave::on_leave(move || {
        if let Ok(control) = on_signal.lock() {
            control.send(Command::Quit);
        }
    });
    let mut presenter = Presenter::new(ctx.style, &me.name);
    presenter.set_invocation(&invocation);
    let result = if ctx.style == Style::Terminal {
        terminal_loop(&mut presenter, &control, &updates)
    } else {
        spawn_stdin_reader(tx)?;
        script_loop(&mut presenter, &control, &updates)
    };
    leave::closed();
    result
}

/// The message for the endpoint's failure: a refusal for our key gets advice on top.
fn failure_advice(me: &Me, invocation: &str) -> impl Fn(&EndpointError) -> String + Send + 'static {
    let device = me.device;
    let fingerprint = me.fingerprint();
    let invocation = invocation.to_owned();
    move |e| match e {
        // A refused key gets a bare `Refused` close (older peers sent `IdentityMismatch`): the
        // peer does not say why, so the advice says what it may be.
        EndpointError::Refused(close)
            if matches!(close.code, CloseCode::Refused | CloseCode::IdentityMismatch) =>
        {
            format!(
                "{e}.\nIf you reinstalled SocketFalco or lost your key file, the peer may still \
                 have your old key pinned for this device id ({device}). Give the peer your \
                 fingerprint ({fingerprint}; `{invocation} --fingerprint` shows it) over another \
                 channel (in person, by phone); if it matches the one their warning shows, they \
                 accept your new key with: socketfalco --trust-new-key {device} '{fingerprint}'"
            )
        }
        _ => e.to_string(),
    }
}

/// Forwards a line or the wish to leave to the endpoint; true when the user leaves.
fn submit(control: &Control, line: &str) -> bool {
    let text = line.trim_end_matches(['\r', '\n']);
    if text.trim() == "quit" {
        control.send(Command::Quit);
        return true;
    }
    if !text.trim().is_empty() {
        control.send(Command::Write(text.to_owned()));
    }
    false
}

fn terminal_loop(
    presenter: &mut Presenter,
    control: &Control,
    updates: &Receiver<Update>,
) -> Result<(), AppError> {
    let mut editor = LineEditor::start(&presenter.prompt())?;
    let mut leaving = false;
    loop {
        loop {
            match updates.try_recv() {
                Ok(Update::Net(output)) => {
                    for line in presenter.output(&output) {
                        editor.print_above(&line);
                    }
                }
                Ok(Update::Finished(result)) => {
                    drop(editor);
                    return result.map_err(AppError::new);
                }
                Ok(Update::Line(_) | Update::EndOfInput) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    drop(editor);
                    return Err(AppError::new("the network thread stopped"));
                }
            }
        }
        for line in presenter.tick(Instant::now()) {
            editor.print_above(&line);
        }
        editor.set_prompt(&presenter.prompt());
        match editor.poll(Duration::from_millis(50)) {
            Some(EditorEvent::Line(line)) if !leaving && submit(control, &line) => {
                leaving = true;
                editor.print_above("leaving…");
            }
            Some(EditorEvent::Interrupt | EditorEvent::Eof) if !leaving => {
                leaving = true;
                control.send(Command::Quit);
                editor.print_above("leaving…");
            }
            Some(EditorEvent::TerminalGone) => {
                if !leaving {
                    control.send(Command::Quit);
                }
                drop(editor);
                return wait_for_the_end(updates);
            }
            _ => {}
        }
    }
}

/// Once nothing can be shown any more (the terminal is gone, the output is closed) and the
/// endpoint was told to leave: waits for it to finish, showing nothing.
fn wait_for_the_end(updates: &Receiver<Update>) -> Result<(), AppError> {
    for update in updates {
        if let Update::Finished(result) = update {
            return result.map_err(AppError::new);
        }
    }
    Err(AppError::new("the network thread stopped"))
}

fn script_loop(
    presenter: &mut Presenter,
    control: &Control,
    updates: &Receiver<Update>,
) -> Result<(), AppError> {
    let mut stdout = io::stdout().lock();
    let mut leaving = false;
    loop {
        let update = match updates.recv_timeout(Duration::from_millis(200)) {
            Ok(update) => update,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        match update {
            Update::Net(output) => {
                let written = presenter
                    .output(&output)
                    .iter()
                    .try_for_each(|line| writeln!(stdout, "{line}"))
                    .and_then(|()| stdout.flush());
                if let Err(e) = written {
                    log::debug!("the output is gone: {e}");
                    if !leaving {
                        control.send(Command::Quit);
                    }
                    return wait_for_the_end(updates);
                }
            }
            Update::Finished(result) => return result.map_err(AppError::new),
            Update::Line(line) if !leaving => leaving = submit(control, &line),
            Update::EndOfInput if !leaving => {
                leaving = true;
                control.send(Command::Quit);
            }
            Update::Line(_) | Update::EndOfInput => {}
        }
    }
}

fn spawn_stdin_reader(tx: Sender<Update>) -> io::Result<()> {
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) => {
                        if tx.send(Update::Line(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        log::warn!("reading stdin: {e}");
                        break;
                    }
                }
            }
            let _ = tx.send(Update::EndOfInput);
        })
        .map(|_| ())
}
