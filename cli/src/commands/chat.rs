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
//! A listener serves many peers at once, each in its own chat. Typed lines go to the current
//! chat — the peer who connected first, or the one chosen with `/to NAME` — shown in the
//! prompt (`Alice→Bob> `) when more than one is live; `/to NAME TEXT` sends one line to
//! another chat, `/chats` lists the live chats, `//…` sends a line starting with `/`.
//! Scripts may also write `{"to": "PREFIX", "text": "…"}` lines. `-l --serve` runs headless:
//! standard input is not read, and only a signal ends it.
//!
//! On a terminal the current chat is the chat view: PgUp/PgDn (or Shift+Up/Down) read it back
//! page by page and End returns (see [`super::view`]); lines arriving meanwhile are counted
//! under the page, not drawn. A line for the current chat shown in the live view is read at
//! once (its unread count is reset); lines for the other live chats stay unread and their
//! total is in the prompt (`[3 unread] Alice→Bob> `) until the user switches to them.
//! `--bell` and `--notify` tell of the lines that come in where the user is not looking
//! (see [`crate::ui::alert`]).
//!
//! `-l --onion` publishes the listener as a Tor onion service (see [`crate::tor`]): tor is
//! reached and authenticated before anything is bound; once the listener is bound (on
//! 127.0.0.1), the network thread asks tor to publish the service forwarding to it, before
//! the listening line is shown. If tor refuses, the listener leaves at once and the session
//! fails with tor's reason: it never listens without the onion service it was asked for.
//! The address is shown after the listening line; a warning follows if tor closes the
//! control connection later (the service is gone with it).
//!
//! On the first connection with a peer — its key was pinned in this session — one line shows
//! the pinned fingerprint and how to compare it, as SSH does for a new host; nothing waits.
//!
//! A terminal that goes away (window closed, SSH dropped: SIGHUP, then end of input or EIO)
//! ends the session like `quit`: the endpoint is told to leave (what was typed is already
//! stored, the peer gets a normal close) and this thread, showing nothing any more, waits for
//! it to finish; the process exits with status 0. SIGTERM, Ctrl-C and, on Windows, closing the
//! console window do the same in every state (see [`super::leave`]). A script session whose
//! output can no longer be written ends the same way.

use super::updates::{self, Update, UpdateSender, Updates};
use super::view::{opening_rows, AsOpened, ChatPages, Scroll};
use super::{ensure_identity, leave, AppError, Context, Me};
use crate::args::{parse_address, OnionOptions, DEFAULT_PORT};
use crate::store::Database;
use crate::tor::OnionService;
use crate::ui::alert::{wants_alert, Alerts};
use crate::ui::editor::{EditorEvent, LineEditor};
use crate::ui::logs;
use crate::ui::scrollback::Marker;
use crate::ui::{FirstContact, Lookalike, Presenter, Style};
use socketfalco_core::{ChatResume, CloseCode, DeviceId, PublicKey, SessionConfig, Side};
use socketfalco_reach::invite::Invite;
use socketfalco_reach::proxy::ProxySpec;
use socketfalco_reach::socks5::Target;
use socketfalco_reach::transit::{relay_side, relay_token, RelaySide};
use socketfalco_transport::endpoint::EndpointError;
use socketfalco_transport::{
    Command, Control, Endpoint, EndpointConfig, Output, OutputBacklog, ProxyRoute, RelayRoute,
    Role, Route,
};
use std::collections::HashSet;
use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How a listener runs.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// Headless: standard input is not read; only a signal ends it.
    pub serve: bool,
    /// Most devices chatting at once.
    pub max_peers: usize,
}

/// A listener's onion service, ready to publish once the listener is bound.
struct OnionPlan {
    service: OnionService,
    /// The onion address's port.
    virtual_port: u16,
}

/// Listens on `bind` (all IPv4 interfaces by default) and `port`; with `onion`, on 127.0.0.1
/// only, published as a Tor onion service; with `--relay`, at the relay too.
pub fn listen(
    ctx: &Context,
    temporary: bool,
    port: u16,
    bind: Option<IpAddr>,
    options: ListenOptions,
    onion: Option<&OnionOptions>,
) -> Result<(), AppError> {
    let relay = match &ctx.reach.relay {
        Some((host, port)) => Some(resolve_one(host, *port, "the relay")?),
        None => None,
    };
    let (ip, onion) = match onion {
        Some(onion) => {
            // The command line's password, else the environment's (out of the process list).
            let password = onion
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .or_else(|| std::env::var(crate::tor::PASSWORD_ENV).ok())
                .filter(|p| !p.is_empty());
            let service = OnionService::prepare(
                &ctx.data_dir,
                &onion.control_host,
                onion.control_port,
                password.as_deref(),
            )
            .map_err(AppError::new)?;
            // With -p 0 the local port is known only once bound; the onion address keeps
            // the default port, so that it does not change from one start to the next.
            let virtual_port = if port == 0 {
                crate::args::DEFAULT_PORT
            } else {
                port
            };
            let plan = OnionPlan {
                service,
                virtual_port,
            };
            (IpAddr::V4(Ipv4Addr::LOCALHOST), Some(plan))
        }
        None => (bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), None),
    };
    let reaching = Reaching {
        expected_key: None,
        listen_relay: relay,
        onion,
    };
    run(
        ctx,
        Role::Listen {
            bind: SocketAddr::new(ip, port),
        },
        temporary,
        Some(options),
        reaching,
    )
}

/// Connects to `host:port`: straight, or through `--proxy`/`--tor`.
pub fn connect(ctx: &Context, host: &str, port: u16, temporary: bool) -> Result<(), AppError> {
    let label = host_label(host, port);
    let routes = match &ctx.reach.proxy {
        Some(proxy) => proxied_routes(proxy, host, port)?,
        None => direct_routes(host, port)?,
    };
    let role = Role::Connect { routes, label };
    run(ctx, role, temporary, None, Reaching::default())
}

/// Connects the way an invite says (its address, its onion address through the proxy, its
/// relay), accepting only the device whose key it names.
pub fn connect_invite(ctx: &Context, invite: &Invite, temporary: bool) -> Result<(), AppError> {
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    let proxy = ctx.reach.proxy.as_ref();
    // With a proxy, nothing goes around it: the address, the onion name and the relay
    // through it.
    if let Some(address) = &invite.address {
        let found = parse_address(address, DEFAULT_PORT)
            .map_err(|e| AppError::new(format!("the invite's address {address}: {e}")))
            .and_then(|(host, port)| match proxy {
                Some(proxy) => proxied_routes(proxy, &host, port),
                None => direct_routes(&host, port),
            });
        match found {
            Ok(found) => routes.extend(found),
            Err(e) => errors.push(e.message),
        }
    }
    if let (Some(onion), Some(proxy)) = (&invite.onion, proxy) {
        match parse_address(onion, DEFAULT_PORT) {
            Ok((host, port)) => routes.extend(proxied_routes(proxy, &host, port)?),
            Err(e) => errors.push(format!("the invite's onion address {onion}: {e}")),
        }
    }
    if let Some(relay) = &invite.relay {
        let found = parse_address(relay, 0)
            .map_err(|e| AppError::new(format!("the invite's relay {relay}: {e}")))
            .and_then(|(host, port)| caller_relay_route(proxy, &host, port, &invite.key));
        match found {
            Ok(route) => routes.push(route),
            Err(e) => errors.push(e.message),
        }
    }
    if routes.is_empty() {
        return Err(AppError::new(format!(
            "no way in the invite could be used: {}",
            errors.join("; ")
        )));
    }
    let label = format!(
        "the invited device ({})",
        PublicKey(invite.key).fingerprint()
    );
    let role = Role::Connect { routes, label };
    let reaching = Reaching {
        expected_key: Some(PublicKey(invite.key)),
        ..Reaching::default()
    };
    run(ctx, role, temporary, None, reaching)
}

/// `--relay HOST:PORT -c CHAT`: meets a known peer at the relay, by the key pinned for it.
pub fn connect_chat(ctx: &Context, chat: &str, temporary: bool) -> Result<(), AppError> {
    let Some((host, port)) = ctx.reach.relay.clone() else {
        return Err(AppError::new("-c CHAT_UUID needs --relay HOST:PORT"));
    };
    let (peer, key) = {
        let mut db = ctx.open_database()?;
        ensure_identity(ctx, &mut db)?;
        let peer = db.find_chat(chat)?;
        match db.key_state(peer)? {
            Some((Some(key), _)) => (peer, key),
            _ => {
                return Err(AppError::new(format!(
                    "no key is pinned for {peer} yet, so the relay cannot be met by it: connect \
                     the first time with an invite (the peer's socketfalco --invite --relay \
                     {host}:{port})"
                )))
            }
        }
    };
    let routes = vec![caller_relay_route(
        ctx.reach.proxy.as_ref(),
        &host,
        port,
        &key,
    )?];
    let role = Role::Connect {
        routes,
        label: peer.to_string(),
    };
    let reaching = Reaching {
        expected_key: Some(PublicKey(key)),
        ..Reaching::default()
    };
    run(ctx, role, temporary, None, reaching)
}

/// What a session needs beyond its role to reach the peer.
#[derive(Default)]
struct Reaching {
    /// Accept only a listener that proves this key.
    expected_key: Option<PublicKey>,
    /// A listener's relay, resolved, and as the user wrote it.
    listen_relay: Option<(SocketAddr, String)>,
    /// A listener's onion service, published once it is bound.
    onion: Option<OnionPlan>,
}

fn host_label(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Every address of `host:port`, straight.
fn direct_routes(host: &str, port: u16) -> Result<Vec<Route>, AppError> {
    Ok(resolve(host, port, "")?
        .into_iter()
        .map(Route::Direct)
        .collect())
}

/// Every address of `host:port` (`what` names it in errors: "the proxy ", …); never empty.
fn resolve(host: &str, port: u16, what: &str) -> Result<Vec<SocketAddr>, AppError> {
    let label = host_label(host, port);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| AppError::new(format!("cannot resolve {what}{label}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(AppError::new(format!("{what}{label} has no address")));
    }
    Ok(addrs)
}

/// `host:port` through the proxy: by name with `socks5h` (and always for onion names),
/// otherwise each address resolved here.
fn proxied_routes(proxy: &ProxySpec, host: &str, port: u16) -> Result<Vec<Route>, AppError> {
    Ok(proxy_hops(proxy, host, port, "")?
        .into_iter()
        .map(Route::Proxy)
        .collect())
}

/// The proxy asked to connect to `host:port` (`what` names it in errors): one hop by name
/// with `socks5h` (and for onion names), otherwise one per address resolved here.
fn proxy_hops(
    proxy: &ProxySpec,
    host: &str,
    port: u16,
    what: &str,
) -> Result<Vec<ProxyRoute>, AppError> {
    let (proxy_addr, _) = resolve_one(&proxy.host, proxy.port, "the proxy")?;
    let hop = |target: Target| ProxyRoute {
        proxy: proxy_addr,
        proxy_label: proxy.to_string(),
        target,
        credentials: proxy.credentials.clone(),
    };
    if let Some(target) = proxy.target_for(host, port) {
        return Ok(vec![hop(target)]);
    }
    Ok(resolve(host, port, what)?
        .into_iter()
        .map(|a| hop(Target::Ip(a)))
        .collect())
}

/// The first address of a proxy or relay, and its name as written.
fn resolve_one(host: &str, port: u16, what: &str) -> Result<(SocketAddr, String), AppError> {
    let addr = resolve(host, port, &format!("{what} "))?[0];
    Ok((addr, host_label(host, port)))
}

/// The rendezvous at a relay for the listener whose key is `listener_key` (`relay` is the
/// relay's address, or the proxy's when it is reached through one).
fn relay_route(
    relay: SocketAddr,
    label: String,
    listener_key: &[u8; 32],
    side: RelaySide,
    via: Option<ProxyRoute>,
) -> RelayRoute {
    RelayRoute {
        relay,
        label,
        token: relay_token(listener_key),
        side: relay_side(listener_key, side),
        via,
    }
}

/// A caller's way to the listener at the relay `host:port`: straight, or through the proxy
/// (by name with `socks5h`, never resolved here; by address with `socks5`).
fn caller_relay_route(
    proxy: Option<&ProxySpec>,
    host: &str,
    port: u16,
    listener_key: &[u8; 32],
) -> Result<Route, AppError> {
    let label = host_label(host, port);
    let Some(proxy) = proxy else {
        let (addr, label) = resolve_one(host, port, "the relay")?;
        return Ok(Route::Relay(relay_route(
            addr,
            label,
            listener_key,
            RelaySide::Caller,
            None,
        )));
    };
    // `resolve` never returns an empty list, so neither does `proxy_hops`.
    let Some(via) = proxy_hops(proxy, host, port, "the relay ")?
        .into_iter()
        .next()
    else {
        return Err(AppError::new(format!("the relay {label} has no address")));
    };
    Ok(Route::Relay(relay_route(
        via.proxy,
        label,
        listener_key,
        RelaySide::Caller,
        Some(via),
    )))
}

fn run(
    ctx: &Context,
    role: Role,
    temporary: bool,
    listen: Option<ListenOptions>,
    reaching: Reaching,
) -> Result<(), AppError> {
    let mut db = ctx.open_database_for_lines()?;
    let me = ensure_identity(ctx, &mut db)?;
    let mut session = SessionConfig::new(me.device, me.name.clone());
    session.temporary = temporary;
    let mut config = EndpointConfig::new(session, Some(me.keypair.clone()));
    let serve = listen.is_some_and(|o| o.serve);
    // `SOCKETFALCO_SHARE_CPU=0`: the loop and its storage thread wherever the scheduler puts
    // them (README, "Platforms"; docs/PERFORMANCE.md compares the two).
    config.share_one_cpu = std::env::var_os("SOCKETFALCO_SHARE_CPU").is_none_or(|v| v != "0");
    // `SOCKETFALCO_SPIN=0`: the loop sleeps whenever it waits, even for an answer due within
    // microseconds (README, "Platforms"; docs/PERFORMANCE.md compares the two).
    if std::env::var_os("SOCKETFALCO_SPIN").is_some_and(|v| v == "0") {
        config.spin_for = std::time::Duration::ZERO;
    }
    if let Some(options) = listen {
        config.max_peers = options.max_peers;
        // The devices the user wrote to come in before strangers when every place is taken.
        config.contacts.extend(db.contacts()?);
    }
    let contacts = Arc::clone(&config.contacts);
    // When the contacts were last read again from the store (`None`: not yet).
    let mut contacts_read: Option<Instant> = None;
    config.expected_peer_key = reaching.expected_key;
    let invited = reaching.expected_key;
    if let Some((addr, label)) = reaching.listen_relay {
        let own = me.keypair.public().0;
        config.relay = Some(relay_route(addr, label, &own, RelaySide::Listener, None));
    }
    // The peers whose key is pinned already: a connection from any other is a first contact.
    let mut pinned: HashSet<DeviceId> = db
        .list_chats()?
        .into_iter()
        .filter(|c| c.peer_key.is_some())
        .map(|c| c.peer)
        .collect();
    // What waits for this thread to show it: the endpoint stops reading from its peers while
    // too much does (`updates`).
    let backlog = Arc::new(OutputBacklog::new());
    config.output_backlog = Some(Arc::clone(&backlog));
    let (endpoint, control) = Endpoint::new(role, config, db)?;
    // This thread hands the loop the user's lines and shows what it reports: beside the loop
    // and its storage thread, a line's hand-offs wake no idle CPU (docs/PERFORMANCE.md).
    control.share_cpu();
    let invocation = ctx.invocation();
    let refused = failure_advice(&me, &invocation);
    let (tx, updates) = updates::channel(backlog);
    let net_tx = tx.clone();
    let leave_now = control.clone();
    // On a terminal the user interface marks chats read (with a handle of its own on the
    // store); scripts and `--serve` read nothing for the user.
    let on_terminal = ctx.style == Style::Terminal && !serve;
    let reader = if on_terminal {
        Some(ctx.open_database()?)
    } else {
        None
    };
    // While the chat runs, its warnings are shown in it (`ui::logs`): a terminal view is never
    // written over, and a program reading `--json` hears of them as events. Held by the
    // network thread, so that it ends with the chat.
    let sink = |tx: UpdateSender| {
        move |text| {
            let _ = tx.send(Update::Net(Output::Warning(text)));
        }
    };
    let warnings_shown = if on_terminal {
        Some(logs::divert(!io::stderr().is_terminal(), sink(tx.clone())))
    } else if ctx.style == Style::Json {
        Some(logs::divert(true, sink(tx.clone())))
    } else {
        None
    };
    let output_is_a_terminal = io::stdout().is_terminal();
    thread::Builder::new()
        .name("network".into())
        .spawn(move || {
            let mut endpoint = endpoint;
            let mut onion = reaching.onion;
            let mut onion_failed = None;
            // Lines that waited for a first peer which never took them: a failure.
            let mut not_sent = 0;
            // The bookkeeping below runs on the storage thread, in its next commit: the
            // loop never waits for the disk.
            let result = endpoint.run(|storage, output| {
                // Bound: publish the onion service before anyone is told the listener is
                // up (this once, the loop waits for tor and, at the first start, for the key
                // file to be written).
                let plan = match &output {
                    Output::Listening(_) => onion.take(),
                    _ => None,
                };
                if let (Output::Listening(local), Some(plan)) = (&output, plan) {
                    let gone_tx = net_tx.clone();
                    let on_gone = move |warning| {
                        let _ = gone_tx.send(Update::Net(Output::Warning(warning)));
                    };
                    match plan.service.publish(*local, plan.virtual_port, on_gone) {
                        Ok(published) => {
                            let _ = net_tx.send(Update::Net(output));
                            let _ = net_tx.send(Update::Onion(published.address));
                        }
                        Err(e) => {
                            // Never listen without the onion service that was asked for.
                            onion_failed = Some(e);
                            leave_now.send(Command::QuitNow);
                        }
                    }
                    return;
                }
                if let Output::NotSent { texts, .. } = &output {
                    not_sent = texts.len();
                }
                // Every place is taken: read the contacts again (lines written by another
                // process, `-eC` beside `--serve`, make contacts too), at most once a second,
                // so that a contact refused now gets in at its next attempt.
                if matches!(output, Output::RefusedBusy(_))
                    && contacts_read.is_none_or(|t| t.elapsed() >= CONTACTS_REREAD)
                {
                    contacts_read = Some(Instant::now());
                    let contacts = Arc::clone(&contacts);
                    storage.task(move |db: &mut Database| match db.contacts() {
                        Ok(found) => contacts.extend(found),
                        Err(e) => log::warn!("could not read the contacts: {e}"),
                    });
                }
                if let Output::NeverOpened {
                    peer,
                    since_wall_ms,
                } = output
                {
                    // A stranger that never completed its sync leaves no chat and no pin.
                    storage.task(move |db: &mut Database| {
                        if let Err(e) = db.forget_unopened_chat(peer, since_wall_ms) {
                            log::warn!("could not forget a chat that never opened: {e}");
                        }
                    });
                    return;
                }
                if let Output::Connected { peer, addr, .. } = &output {
                    if !peer.temporary {
                        let (device, address) = (peer.device, addr.clone());
                        storage.task(move |db: &mut Database| {
                            if let Err(e) = db.set_last_address(device, &address) {
                                log::warn!("could not record the peer's address: {e}");
                            }
                        });
                    }
                }
                // A peer whose key was not pinned before this session: its key was pinned
                // now, by the opening of its chat. The fingerprint is read on the storage
                // thread, after that opening; its line follows the connection's.
                if let Output::Connected { peer, .. } = &output {
                    if !peer.temporary && pinned.insert(peer.device) {
                        let (device, name, tx) = (peer.device, peer.name.clone(), net_tx.clone());
                        storage.task(move |db: &mut Database| match db.key_state(device) {
                            Ok(Some((Some(key), _))) => {
                                let lookalikes = lookalikes(db, device, &name, key);
                                let _ = tx.send(Update::FirstContact(FirstContact {
                                    peer: device,
                                    name,
                                    fingerprint: PublicKey(key).fingerprint(),
                                    invited: invited == Some(PublicKey(key)),
                                    lookalikes,
                                }));
                            }
                            Ok(_) => {}
                            Err(e) => log::warn!("could not read the peer's pinned key: {e}"),
                        });
                    }
                }
                let _ = net_tx.send(Update::Net(output));
            });
            let result = match onion_failed {
                Some(e) => Err(e),
                None => result.map_err(|e| refused(&e)),
            }
            .and_then(|()| match not_sent {
                0 => Ok(()),
                n => Err(format!(
                    "{n} line(s) were not sent: no peer connected to take them"
                )),
            });
            // The store is closed before anyone hears of the end: the process may exit as
            // soon as it does, and SQLite checkpoints its log into the database file (and
            // deletes it) only on the last close, so that the file alone holds everything.
            drop(endpoint);
            drop(warnings_shown);
            let failed = result.is_err();
            let _ = net_tx.send(Update::Finished(result));
            if !output_is_a_terminal {
                // Everything is stored and the store closed. If nobody reads our output (a
                // stalled pipe, a stuck log reader), the main thread may wait in a write for
                // ever: the process ends all the same, unwritten events and all.
                // (Nothing is logged: standard error may be the same stalled pipe.)
                thread::sleep(END_DESPITE_OUTPUT);
                std::process::exit(i32::from(failed));
            }
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
    presenter.set_asked_temporary(temporary);
    let mut alerts = Alerts::new(ctx.bell, ctx.notify);
    let result = if serve {
        // Headless: the lines a user writes meanwhile come from `-eC` in the same data
        // directory; only a signal ends the process.
        presenter.set_style(if ctx.style == Style::Json {
            Style::Json
        } else {
            Style::Plain
        });
        presenter.set_headless();
        drop(tx);
        script_loop(&mut presenter, &control, &updates, &mut alerts, false)
    } else if let Some(db) = reader {
        let mut live = Live {
            db,
            me: me.name.clone(),
            alerts,
            // The log shows events, not the chat's history: the first PgUp shows its end.
            scroll: Scroll::new(None, 0),
            opened: HashSet::new(),
        };
        terminal_loop(&mut presenter, &control, &updates, &mut live)
    } else {
        spawn_stdin_reader(tx)?;
        script_loop(&mut presenter, &control, &updates, &mut alerts, true)
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
        EndpointError::Refused {
            close,
            by: Side::Peer,
        } if matches!(close.code, CloseCode::Refused | CloseCode::IdentityMismatch) => {
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

/// The other chats a peer met for the first time could be taken for: the same pinned key,
/// or a peer of the same name (ignoring case). Read on the storage thread; a failure only
/// loses the notes.
fn lookalikes(db: &mut Database, peer: DeviceId, name: &str, key: [u8; 32]) -> Vec<Lookalike> {
    let chats = match db.list_chats() {
        Ok(chats) => chats,
        Err(e) => {
            log::warn!("could not look for chats like the new one: {e}");
            return Vec::new();
        }
    };
    chats
        .into_iter()
        .filter(|c| c.peer != peer)
        .filter_map(|c| {
            let same_key = c.peer_key == Some(key);
            let same_name = c.peer_name.to_lowercase() == name.to_lowercase();
            (same_key || same_name).then_some(Lookalike {
                peer: c.peer,
                name: c.peer_name,
                same_key,
            })
        })
        .collect()
}

/// What one line of input asks for.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    /// `quit`.
    Quit,
    /// A line to send: to the current chat, or to the chat a `/to NAME TEXT` or a JSON line
    /// names.
    Say {
        /// The chat, as the user named it.
        to: Option<String>,
        /// The text.
        text: String,
    },
    /// `/to NAME`: make NAME the current chat.
    Switch(String),
    /// `/chats`.
    Chats,
    /// `/help`.
    Help,
    /// A `/command` this program does not know: not sent.
    Unknown(String),
    /// A JSON line that is not a well-formed one (a misspelt key, a `to` that is no name):
    /// not sent, for this reason.
    Invalid(String),
    /// An empty line.
    Nothing,
}

/// How often, at most, a listener that refuses callers as busy reads its contacts again.
const CONTACTS_REREAD: Duration = Duration::from_secs(1);

/// What `/help` shows: the commands and keys of a session.
const IN_CHAT_HELP: &[&str] = &[
    "/to NAME         write to NAME from now on (a name, or a unique prefix of it or of the \
     peer's id; Tab completes)",
    "/to NAME TEXT    send one line to NAME",
    "/chats           list the live chats",
    "//TEXT           send a line that starts with /",
    "quit             leave (so do Ctrl-C, Ctrl-D and closing the terminal)",
    "PgUp, Shift+Up   read back a page; PgDn, Shift+Down a page forward; End returns",
    "Up, Down         the lines you typed before",
];

/// A JSON object line: `{"text": "…"}` or `{"to": "NAME", "text": "…"}` says a line, and
/// any other object with a key `to` or `text` (in any case) is refused — never sent, as its
/// text, to the current chat when it was meant for another. `None`: an object that is no such
/// line (sent as the text it is).
fn json_line(object: &serde_json::Map<String, serde_json::Value>) -> Option<Input> {
    let meant = |key: &str| key.eq_ignore_ascii_case("to") || key.eq_ignore_ascii_case("text");
    if !object.keys().any(|key| meant(key)) {
        return None;
    }
    let shape =
        r#"a JSON line is {"to": "NAME", "text": "…"} (or {"text": "…"} for the current chat)"#;
    if let Some(key) = object.keys().find(|key| *key != "to" && *key != "text") {
        return Some(Input::Invalid(format!("unknown key {key:?}: {shape}")));
    }
    let Some(text) = object.get("text").map(|t| t.as_str()) else {
        return Some(Input::Invalid(format!("no \"text\": {shape}")));
    };
    let Some(text) = text else {
        return Some(Input::Invalid(format!("\"text\" is not a string: {shape}")));
    };
    let to = match object.get("to").map(|t| t.as_str()) {
        None => None,
        Some(Some(name)) => Some(name.to_owned()),
        Some(None) => {
            return Some(Input::Invalid(format!("\"to\" is not a string: {shape}")));
        }
    };
    Some(Input::Say {
        to,
        text: text.to_owned(),
    })
}

/// Reads one line of input: `quit`, `/to NAME [TEXT]`, `/chats`, `//…` (a line starting
/// with `/`), `{"to": "NAME", "text": "…"}` (scripts), or a line for the current chat.
fn parse_input(line: &str) -> Input {
    let text = line.trim_end_matches(['\r', '\n']);
    if text.trim() == "quit" {
        return Input::Quit;
    }
    if text.trim().is_empty() {
        return Input::Nothing;
    }
    if let Some(rest) = text.strip_prefix("//") {
        return Input::Say {
            to: None,
            text: format!("/{rest}"),
        };
    }
    if text.starts_with('{') {
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) {
            if let Some(input) = json_line(&object) {
                return input;
            }
        }
    }
    if text == "/to" || text.starts_with("/to ") {
        let rest = text[3..].trim_start();
        return match rest.split_once(' ') {
            Some((name, body)) if !body.trim().is_empty() => Input::Say {
                to: Some(name.to_owned()),
                text: body.to_owned(),
            },
            _ => Input::Switch(rest.trim().to_owned()),
        };
    }
    if text.trim() == "/chats" {
        return Input::Chats;
    }
    if text.trim() == "/help" {
        return Input::Help;
    }
    if text.starts_with('/') {
        let command = text.split_whitespace().next().unwrap_or(text);
        return Input::Unknown(command.to_owned());
    }
    Input::Say {
        to: None,
        text: text.to_owned(),
    }
}

/// What one line of input came to ([`submit`]).
struct Submitted {
    /// The user leaves.
    leaves: bool,
    /// Lines to show the user.
    shown: Vec<String>,
    /// A line the endpoint no longer took (it had ended): not sent, to be reported as such
    /// ([`not_taken_report`]).
    not_taken: Option<String>,
}

/// Carries out one line of input: forwards a line (to the chat it names, or the current
/// one) or the wish to leave to the endpoint, switches or lists chats.
fn submit(control: &Control, presenter: &mut Presenter, line: &str) -> Submitted {
    let mut shown = Vec::new();
    let mut not_taken = None;
    match parse_input(line) {
        Input::Quit => {
            control.send(Command::Quit);
            return Submitted {
                leaves: true,
                shown,
                not_taken,
            };
        }
        Input::Nothing => {}
        Input::Say {
            to: Some(name),
            text,
        } => match presenter.resolve(&name) {
            Ok(to) => not_taken = hand_over(control, Command::WriteTo { to, text }),
            Err(e) => shown.push(presenter.input_error(&format!("not sent: {e}"))),
        },
        Input::Say { to: None, text } => match presenter.typed_line_target() {
            Ok(Some(to)) => not_taken = hand_over(control, Command::WriteTo { to, text }),
            Ok(None) => not_taken = hand_over(control, Command::Write(text)),
            Err(e) => shown.push(presenter.input_error(&format!("not sent: {e}"))),
        },
        Input::Switch(name) => match presenter.resolve(&name) {
            Ok(peer) => {
                presenter.set_current(peer);
                shown.push(presenter.note(&format!(
                    "now writing to {} ({peer})",
                    crate::ui::sanitize(&presenter.name_of(peer))
                )));
            }
            Err(e) => shown.push(presenter.input_error(&e)),
        },
        Input::Chats => shown.extend(presenter.chat_list()),
        Input::Help => shown.extend(IN_CHAT_HELP.iter().map(|line| presenter.note(line))),
        Input::Invalid(reason) => {
            shown.push(presenter.input_error(&format!("not sent: {reason}")));
        }
        Input::Unknown(command) => shown.push(presenter.input_error(&format!(
            "unknown command {command}: /to NAME [TEXT] chooses the chat (or sends one line \
             to it), /chats lists the live chats, /help shows the rest; //… sends a line \
             starting with /"
        ))),
    }
    Submitted {
        leaves: false,
        shown,
        not_taken,
    }
}

/// What a session on a terminal keeps beside the presenter: a read handle on the store (the
/// chat view's pages, its unread counts), the alerts, and the page being read back.
struct Live {
    db: Database,
    me: String,
    alerts: Alerts,
    scroll: Scroll,
    /// The chats whose last screenful was printed, when they first connected as the current
    /// chat or when `/to` first made them current: it is not printed again (it is on the
    /// screen, and the session's lines under it).
    opened: HashSet<DeviceId>,
}

impl Live {
    /// The current chat is shown at its newest lines: it is read. Not a temporary session's:
    /// what it shows is not stored, and the chat's stored unread lines were not shown.
    fn mark_current_read(&mut self, presenter: &Presenter) {
        if let Some(peer) = presenter.current().filter(|&p| !presenter.is_temporary(p)) {
            if let Err(e) = self.db.mark_read(peer) {
                log::warn!("could not mark the chat read: {e}");
            }
        }
    }

    /// Prints the chat's last screenful as it stood when the session opened ([`AsOpened`]:
    /// the re-sync's lines follow as they arrive), with the unread marker.
    fn open_view(
        &mut self,
        presenter: &mut Presenter,
        editor: &mut LineEditor,
        peer: DeviceId,
        held: ChatResume,
    ) {
        let (width, height) = editor.size();
        // Room for the connected line and the prompt.
        let rows = height.saturating_sub(3).max(1);
        let marker = match (self.db.chat_counts(peer), self.db.first_unread(peer)) {
            (Ok(counts), Ok(Some(key))) => Some(Marker {
                key,
                label: format!("{} unread", counts.map_or(0, |(_, unread)| unread)),
            }),
            _ => None,
        };
        let mut pages = AsOpened {
            pages: ChatPages {
                db: &self.db,
                peer,
                presenter: &*presenter,
                me: &self.me,
            },
            held,
        };
        match opening_rows(&mut pages, rows, width, marker.as_ref()) {
            Ok(shown) => {
                for row in &shown {
                    editor.print_above(row);
                }
                // Own lines shown waiting (the newest of the chat): the delivery that covers
                // them is shown ("✓ delivered up to #N").
                let own = held.last_own_seq + held.unnumbered;
                presenter.waiting_shown(own.saturating_sub(held.delivered_up_to));
                // The log below goes on with the session's lines: a PgUp reads back from
                // the chat's end, the unread marker kept.
                self.scroll = Scroll::new(marker, 0);
            }
            Err(e) => log::warn!("could not read the chat's last lines: {e}"),
        }
    }

    /// Counts the unread lines of the live chats other than the current one, for the prompt.
    fn count_unread_elsewhere(&self, presenter: &mut Presenter) {
        let current = presenter.current();
        let mut total = 0;
        for (peer, _) in presenter.live_chats() {
            if Some(peer) != current {
                match self.db.chat_counts(peer) {
                    Ok(counts) => total += counts.map_or(0, |(_, unread)| unread),
                    Err(e) => log::warn!("could not count the unread lines: {e}"),
                }
            }
        }
        presenter.set_unread_elsewhere(total);
    }

    /// An incoming line: the bell and a notification where the user is not looking.
    fn alert<W: Write>(
        &mut self,
        presenter: &Presenter,
        editor: &mut LineEditor<W>,
        output: &Output,
    ) {
        let Output::Received { peer, message, .. } = output else {
            return;
        };
        let reading = editor.is_reading();
        if self.alerts.bell() && wants_alert(reading, presenter.current(), *peer) {
            editor.bell();
        }
        if wants_alert(reading || !editor.has_focus(), presenter.current(), *peer) {
            self.alerts.notify(&presenter.name_of(*peer), &message.text);
        }
    }
}

fn terminal_loop(
    presenter: &mut Presenter,
    control: &Control,
    updates: &Updates,
    live: &mut Live,
) -> Result<(), AppError> {
    let mut editor = LineEditor::start(&presenter.prompt())?;
    let mut leaving = false;
    loop {
        // Whether the current chat got lines (read at once in the live view), and whether the
        // other chats' unread counts may have changed.
        let mut seen = false;
        let mut recount = false;
        loop {
            match updates.try_recv() {
                Ok(Update::Net(output)) => {
                    match &output {
                        Output::Received { stored: true, .. } | Output::Disconnected { .. } => {
                            seen = true;
                            recount = true;
                        }
                        Output::Connected { peer, held, .. } => {
                            seen = true;
                            recount = true;
                            // The view opens on the chat that is (or becomes) the current
                            // one: its last screenful as it stood when the session opened,
                            // the unread marker above its first unread line. Another peer
                            // connecting shows only its connected line.
                            let current = presenter.current().is_none_or(|c| c == peer.device);
                            if !peer.temporary && current && live.opened.insert(peer.device) {
                                presenter.set_peer_name(peer.device, &peer.name);
                                live.open_view(presenter, &mut editor, peer.device, *held);
                            }
                        }
                        _ => {}
                    }
                    for line in presenter.output(&output) {
                        editor.print_above(&line);
                    }
                    live.alert(presenter, &mut editor, &output);
                }
                Ok(Update::FirstContact(contact)) => {
                    for line in presenter.first_contact(&contact) {
                        editor.print_above(&line);
                    }
                }
                Ok(Update::Onion(address)) => {
                    editor.print_above(&presenter.onion_service(&address));
                }
                Ok(Update::Finished(result)) => {
                    drop(editor);
                    return result.map_err(AppError::new);
                }
                Ok(Update::Line(_) | Update::BadLine { .. } | Update::EndOfInput) => {}
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
        if seen && !editor.is_reading() {
            live.mark_current_read(presenter);
        }
        if recount {
            live.count_unread_elsewhere(presenter);
        }
        if leaving {
            editor.set_prompt(LEAVING_PROMPT);
        } else {
            editor.set_prompt(&presenter.prompt());
        }
        editor.set_completions(
            presenter
                .live_chats()
                .into_iter()
                .map(|(_, name)| name)
                .collect(),
        );
        match editor.poll(Duration::from_millis(50)) {
            Some(EditorEvent::Line(line)) if !leaving => {
                let before = presenter.current();
                let Submitted {
                    leaves,
                    mut shown,
                    not_taken,
                } = submit(control, presenter, &line);
                shown.extend(not_taken_report(presenter, not_taken.into_iter().collect()));
                for line in shown {
                    editor.print_above(&line);
                }
                if presenter.current() != before {
                    // Switched chats: the new current one is the one looked at now — first
                    // its last screenful as it stands, unread marker included, if this session
                    // has not shown it (the log shows its lines among the other chats', and
                    // none from before the session).
                    if let Some(peer) = presenter.current() {
                        if live.opened.insert(peer) {
                            match live.db.resume_point(peer) {
                                Ok(Some(now)) => live.open_view(presenter, &mut editor, peer, now),
                                Ok(None) => {}
                                Err(e) => log::warn!("could not read the chat: {e}"),
                            }
                        }
                    }
                    if !editor.is_reading() {
                        live.mark_current_read(presenter);
                    }
                    live.count_unread_elsewhere(presenter);
                }
                if leaves {
                    leaving = true;
                    editor.print_above("leaving…");
                }
            }
            Some(EditorEvent::Interrupt | EditorEvent::Eof) if !leaving => {
                leaving = true;
                control.send(Command::Quit);
                editor.print_above("leaving…");
            }
            Some(EditorEvent::Interrupt | EditorEvent::Eof) => {
                // Asked again while the first is settling (a handshake with a silent peer,
                // acks on their way): at once. Nothing is lost: every line is stored, and
                // what was not acked goes with the next connection.
                control.send(Command::QuitNow);
            }
            Some(EditorEvent::TerminalGone) => {
                // Nobody is there to wait for: leave now (a handshake still in progress is
                // not given quit's grace period; nothing typed is lost either way).
                control.send(Command::QuitNow);
                drop(editor);
                return wait_for_the_end(updates);
            }
            Some(
                paging @ (EditorEvent::PageUp
                | EditorEvent::PageDown
                | EditorEvent::Bottom
                | EditorEvent::Resized),
            ) => {
                let Some(peer) = live.scroll.chat().or(presenter.current()) else {
                    editor.print_above(&presenter.note("no chat to read back yet"));
                    continue;
                };
                let mut pages = ChatPages {
                    db: &live.db,
                    peer,
                    presenter,
                    me: &live.me,
                };
                if live.scroll.key(&paging, &mut pages, &mut editor) {
                    live.mark_current_read(presenter);
                    live.count_unread_elsewhere(presenter);
                }
            }
            _ => {}
        }
    }
}

/// Hands a line to the endpoint; returns the text of one it no longer takes (it has ended),
/// which is not sent.
fn hand_over(control: &Control, command: Command) -> Option<String> {
    match control.try_send(command) {
        Ok(()) => None,
        Err(Command::Write(text) | Command::WriteTo { text, .. }) => Some(text),
        Err(_) => None,
    }
}

/// Lines the endpoint no longer took, reported as not sent, as the endpoint reports those
/// it took and could not send.
fn not_taken_report(presenter: &mut Presenter, texts: Vec<String>) -> Vec<String> {
    if texts.is_empty() {
        return Vec::new();
    }
    presenter.output(&Output::NotSent {
        texts,
        reason: "the session had ended".to_owned(),
    })
}

/// The lines of a script's input still queued when the session ended (up to its end of
/// input, waited for briefly: the reader may be a moment behind), as texts to report unsent;
/// none after a `quit` among them.
fn lines_left_unsent(updates: &Updates) -> Vec<String> {
    let mut texts = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut quit = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match updates.recv_timeout(left) {
            Ok(Update::Line(line)) if !quit => match parse_input(&line) {
                Input::Say { text, .. } => texts.push(text),
                Input::Quit => quit = true,
                _ => {}
            },
            Ok(Update::EndOfInput) | Err(_) => return texts,
            Ok(_) => {}
        }
    }
}

/// How long a session whose output is not a terminal may still take, once it has ended, to
/// write its last events: a reader that takes longer is not reading at all.
const END_DESPITE_OUTPUT: Duration = Duration::from_secs(5);

/// The prompt while a session leaves: typing is over, and a second Ctrl-C cuts the wait short.
const LEAVING_PROMPT: &str = "leaving… (Ctrl-C again: at once) ";

/// Once nothing can be shown any more (the terminal is gone, the output is closed) and the
/// endpoint was told to leave: waits for it to finish, showing nothing.
fn wait_for_the_end(updates: &Updates) -> Result<(), AppError> {
    while let Ok(update) = updates.recv() {
        if let Update::Finished(result) = update {
            return result.map_err(AppError::new);
        }
    }
    Err(AppError::new("the network thread stopped"))
}

/// Longest an event waits in the output buffer while more keep coming.
const SCRIPT_FLUSH_MS: u64 = 20;

fn script_loop(
    presenter: &mut Presenter,
    control: &Control,
    updates: &Updates,
    alerts: &mut Alerts,
    reads_input: bool,
) -> Result<(), AppError> {
    // Events are written into a buffer and flushed when no more are waiting (or every
    // SCRIPT_FLUSH_MS under a stream): one write for a burst rather than one per event,
    // and nothing held back once the burst is over.
    let mut out = ScriptOutput::new();
    let mut leaving = false;
    // Lines refused (too long, not stored): the exit status says not everything went.
    let mut refused = 0u64;
    // Lines the endpoint no longer took (it had ended), reported at the end.
    let mut not_taken = Vec::new();
    loop {
        let update = match updates.try_recv() {
            Ok(update) => update,
            Err(TryRecvError::Disconnected) => {
                let _ = out.flush();
                return Ok(());
            }
            Err(TryRecvError::Empty) => {
                if out.flush().is_err() {
                    control.send(Command::QuitNow);
                    return wait_for_the_end(updates);
                }
                match updates.recv_timeout(Duration::from_millis(200)) {
                    Ok(update) => update,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
        };
        match update {
            Update::FirstContact(contact) => out.lines(&presenter.first_contact(&contact)),
            Update::Net(output) => {
                if let Output::Received { peer, message, .. } = &output {
                    // No view: nobody is looking, every line alerts.
                    if alerts.bell() && io::stderr().is_terminal() {
                        let _ = write!(io::stderr(), "\u{7}");
                    }
                    if alerts.notifies() {
                        alerts.notify(&presenter.name_of(*peer), &message.text);
                    }
                }
                if matches!(output, Output::Rejected { .. }) {
                    refused += 1;
                }
                out.lines(&presenter.output(&output));
                if out.flush_if_due().is_err() {
                    control.send(Command::QuitNow);
                    return wait_for_the_end(updates);
                }
            }
            Update::Onion(address) => out.lines(&[presenter.onion_service(&address)]),
            Update::Finished(result) => {
                out.lines(&not_taken_report(presenter, std::mem::take(&mut not_taken)));
                // Lines read but not handed over before the end (the first connection failed
                // at once): not sent, and said so like the endpoint's own.
                let texts = if reads_input && !leaving {
                    lines_left_unsent(updates)
                } else {
                    Vec::new()
                };
                if !texts.is_empty() {
                    out.lines(&presenter.output(&Output::NotSent {
                        texts,
                        reason: "the session ended before they could be sent".to_owned(),
                    }));
                }
                let _ = out.flush();
                return result.map_err(AppError::new).and_then(|()| match refused {
                    0 => Ok(()),
                    n => Err(AppError::new(format!(
                        "{n} line(s) were refused and not sent (see the errors above)"
                    ))),
                });
            }
            Update::Line(line) if !leaving => {
                let submitted = submit(control, presenter, &line);
                leaving = submitted.leaves;
                out.lines(&submitted.shown);
                // Reported at the end, after the endpoint's own report of the lines it took
                // and could not send, which were written before: the lines in their order.
                not_taken.extend(submitted.not_taken);
            }
            Update::BadLine { number, why } if !leaving => {
                refused += 1;
                out.lines(&[presenter.input_error(&format!("not sent: line {number}: {why}"))]);
            }
            Update::EndOfInput if !leaving => {
                leaving = true;
                control.send(Command::Quit);
            }
            Update::Line(_) | Update::BadLine { .. } | Update::EndOfInput => {}
        }
    }
}

/// A script session's standard output: buffered, flushed by [`script_loop`].
struct ScriptOutput {
    buffer: io::BufWriter<io::StdoutLock<'static>>,
    since: Instant,
    /// Writing failed (the reader is gone): nothing more is written.
    failed: bool,
}

impl ScriptOutput {
    fn new() -> ScriptOutput {
        ScriptOutput {
            buffer: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
            since: Instant::now(),
            failed: false,
        }
    }

    fn lines(&mut self, lines: &[String]) {
        for line in lines {
            if !self.failed && writeln!(self.buffer, "{line}").is_err() {
                self.failed = true;
            }
        }
    }

    /// Flushes what is buffered; `Err` once the output is gone.
    fn flush(&mut self) -> Result<(), ()> {
        if !self.failed {
            if let Err(e) = self.buffer.flush() {
                log::debug!("the output is gone: {e}");
                self.failed = true;
            }
        }
        self.since = Instant::now();
        if self.failed {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Flushes if the last flush was [`SCRIPT_FLUSH_MS`] ago or more: a lone event goes out
    /// at once, a stream every few milliseconds.
    fn flush_if_due(&mut self) -> Result<(), ()> {
        if self.since.elapsed() >= Duration::from_millis(SCRIPT_FLUSH_MS) {
            self.flush()
        } else if self.failed {
            Err(())
        } else {
            Ok(())
        }
    }
}

fn spawn_stdin_reader(tx: UpdateSender) -> io::Result<()> {
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            // Started by a thread that may share one CPU with the event loop: not this one.
            socketfalco_transport::affinity::run_anywhere();
            let stdin = io::stdin();
            let mut input = stdin.lock();
            let mut buf = Vec::new();
            for number in 1u64.. {
                let update = match super::next_input_line(&mut input, &mut buf) {
                    Ok(Some(Ok(line))) => Update::Line(line),
                    Ok(Some(Err(why))) => Update::BadLine { number, why },
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("reading stdin: {e}");
                        break;
                    }
                };
                if !tx.send(update) {
                    return;
                }
            }
            let _ = tx.send(Update::EndOfInput);
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(to: Option<&str>, text: &str) -> Input {
        Input::Say {
            to: to.map(str::to_owned),
            text: text.to_owned(),
        }
    }

    #[test]
    fn input_lines_are_messages_commands_or_addressed_messages() {
        assert_eq!(parse_input("hello\r\n"), say(None, "hello"));
        assert_eq!(parse_input(" quit "), Input::Quit);
        assert_eq!(parse_input("   "), Input::Nothing);
        assert_eq!(parse_input("/to Bob"), Input::Switch("Bob".into()));
        assert_eq!(
            parse_input("/to 5d0c hi there"),
            say(Some("5d0c"), "hi there")
        );
        assert_eq!(parse_input("/to"), Input::Switch(String::new()));
        assert_eq!(parse_input("/chats"), Input::Chats);
        assert_eq!(parse_input("/help"), Input::Help);
        assert_eq!(parse_input("//etc/hosts"), say(None, "/etc/hosts"));
        assert_eq!(parse_input("/shrug ok"), Input::Unknown("/shrug".into()));
        assert_eq!(
            parse_input(r#"{"to": "bob", "text": "hi {json}"}"#),
            say(Some("bob"), "hi {json}")
        );
        assert_eq!(parse_input(r#"{"text": "no chat"}"#), say(None, "no chat"));
        // Not a JSON message: sent as typed.
        assert_eq!(parse_input("{braces}"), say(None, "{braces}"));
        assert_eq!(parse_input(r#"{"a": 1}"#), say(None, r#"{"a": 1}"#));
        // Meant as one, but not well formed: refused, never sent to the current chat.
        for (line, why) in [
            (r#"{"To": "dave", "text": "hi"}"#, "unknown key \"To\""),
            (r#"{"to": 5, "text": "hi"}"#, "\"to\" is not a string"),
            (r#"{"to": "carol"}"#, "no \"text\""),
            (
                r#"{"to": "carol", "text": ["hi"]}"#,
                "\"text\" is not a string",
            ),
            (r#"{"to": "carol", "txt": "hi"}"#, "unknown key \"txt\""),
        ] {
            match parse_input(line) {
                Input::Invalid(reason) => assert!(reason.starts_with(why), "{line}: {reason}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        // "/today" is not "/to day".
        assert_eq!(parse_input("/today"), Input::Unknown("/today".into()));
    }
}
