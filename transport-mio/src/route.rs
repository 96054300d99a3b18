//! How a connection reaches the other device — straight to its address, through a SOCKS5
//! proxy (a system tor, for onion addresses), or through a transit relay that splices two
//! streams — and the short negotiation an indirect route runs on the fresh stream before
//! the Noise handshake (a `Tunnel`).
//!
//! The negotiations themselves are sans-IO state machines of `socketfalco-reach`; this
//! module only moves their bytes over a non-blocking socket. Whatever carries the bytes,
//! the Noise handshake and the key pinning run end to end inside it: a proxy or a relay
//! sees sizes and timing, never text, names or ids.

use mio::net::TcpStream;
use socketfalco_reach::socks5::{Credentials, Socks5Client, Target};
use socketfalco_reach::transit::TransitClient;
use socketfalco_reach::Handshake;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// One way to reach the listener. A caller tries its routes in order.
#[derive(Clone, Debug)]
pub enum Route {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through a SOCKS5 proxy.
    Proxy(ProxyRoute),
    /// Through a transit relay, as the caller.
    Relay(RelayRoute),
}

/// A SOCKS5 proxy and what to ask it for.
#[derive(Clone, Debug)]
pub struct ProxyRoute {
    /// The proxy's address.
    pub proxy: SocketAddr,
    /// The proxy as the user wrote it, without its password (for messages).
    pub proxy_label: String,
    /// Where the proxy connects to.
    pub target: Target,
    /// Username and password (RFC 1929), if any.
    pub credentials: Option<Credentials>,
}

/// A transit relay and the rendezvous on it.
#[derive(Clone, Debug)]
pub struct RelayRoute {
    /// The relay's address.
    pub relay: SocketAddr,
    /// The relay as the user wrote it (for messages).
    pub label: String,
    /// The rendezvous token (derived from the listener's key).
    pub token: [u8; 32],
    /// This end's side: the relay pairs only connections of different sides.
    pub side: [u8; 8],
    /// A SOCKS5 proxy the relay is reached through (its target is the relay), so that
    /// nothing goes around a proxy the user gave.
    pub via: Option<ProxyRoute>,
}

impl ProxyRoute {
    /// The SOCKS5 negotiation for this proxy and target.
    fn socks5(&self) -> Result<Tunnel, String> {
        Socks5Client::new(self.target.clone(), self.credentials.clone())
            .map(Tunnel::Socks5)
            .map_err(|e| e.to_string())
    }
}

impl Route {
    /// The address the TCP connection goes to.
    pub fn first_hop(&self) -> SocketAddr {
        match self {
            Route::Direct(addr) => *addr,
            Route::Proxy(proxy) => proxy.proxy,
            Route::Relay(relay) => relay.via.as_ref().map_or(relay.relay, |via| via.proxy),
        }
    }

    /// The negotiation this route runs before the Noise handshake, if any.
    pub(crate) fn tunnel(&self) -> Result<Option<Tunnel>, String> {
        match self {
            Route::Direct(_) => Ok(None),
            Route::Proxy(proxy) => proxy.socks5().map(Some),
            Route::Relay(relay) => {
                let transit = Tunnel::Transit(TransitClient::new(relay.token, relay.side));
                match &relay.via {
                    None => Ok(Some(transit)),
                    Some(via) => Ok(Some(Tunnel::Chain(vec![via.socks5()?, transit]))),
                }
            }
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(addr) => write!(f, "{addr}"),
            Route::Proxy(proxy) => {
                write!(
                    f,
                    "{} through the proxy {}",
                    proxy.target, proxy.proxy_label
                )
            }
            Route::Relay(relay) => {
                write!(f, "the relay {}", relay.label)?;
                match &relay.via {
                    Some(via) => write!(f, " through the proxy {}", via.proxy_label),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A negotiation in progress on a connected stream.
#[derive(Debug)]
pub(crate) enum Tunnel {
    /// RFC 1928 CONNECT (and RFC 1929 authentication).
    Socks5(Socks5Client),
    /// The transit relay's `please relay … for side …` / `ok`.
    Transit(TransitClient),
    /// One negotiation after the other on the same stream (a relay through a proxy): each
    /// starts once the one before is through.
    Chain(Vec<Tunnel>),
}

/// Where a [`Tunnel`] stands after [`Tunnel::drive`].
#[derive(Debug)]
pub(crate) enum TunnelStep {
    /// Waiting for the other end (or for the socket).
    Pending,
    /// The tunnel is through: these bytes arrived after the negotiation and belong to the
    /// peer's stream.
    Through(Vec<u8>),
    /// The negotiation failed: why, in one line.
    Failed(String),
}

impl Tunnel {
    /// Writes what the negotiation has to say and reads what has come, until the socket
    /// would block or the negotiation is over.
    pub(crate) fn drive(&mut self, stream: &mut TcpStream) -> TunnelStep {
        if let Tunnel::Chain(stages) = self {
            return drive_chain(stages, stream);
        }
        let mut buf = [0u8; 4096];
        loop {
            let pending = self.pending_output();
            if !pending.is_empty() {
                match stream.write(pending) {
                    Ok(0) => return TunnelStep::Failed("the connection closed".into()),
                    Ok(n) => {
                        self.advance_output(n);
                        continue;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return TunnelStep::Failed(e.to_string()),
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    return TunnelStep::Failed(format!(
                        "the {} closed the connection before it was through",
                        self.what()
                    ))
                }
                Ok(n) => {
                    if let Err(e) = self.handle_input(&buf[..n]) {
                        return TunnelStep::Failed(e);
                    }
                    if self.is_done() {
                        return TunnelStep::Through(self.take_leftover());
                    }
                }
                Err(e) if would_block(&e) => return TunnelStep::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return TunnelStep::Failed(e.to_string()),
            }
        }
    }

    /// Whether the tunnel's request is written whole (a relay's waiting end is in place).
    pub(crate) fn request_written(&self) -> bool {
        self.pending_output().is_empty()
    }

    /// Whether the negotiation has reached the relay and waits there for the other side.
    pub(crate) fn waiting_at_relay(&self) -> bool {
        match self {
            Tunnel::Transit(c) => c.pending_output().is_empty(),
            Tunnel::Socks5(_) => false,
            Tunnel::Chain(stages) => stages.first().is_some_and(Tunnel::waiting_at_relay),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Tunnel::Socks5(_) => "proxy",
            Tunnel::Transit(_) => "relay",
            Tunnel::Chain(stages) => stages.first().map_or("relay", Tunnel::what),
        }
    }

    fn pending_output(&self) -> &[u8] {
        match self {
            Tunnel::Socks5(c) => c.pending_output(),
            Tunnel::Transit(c) => c.pending_output(),
            Tunnel::Chain(stages) => stages.first().map_or(&[], Tunnel::pending_output),
        }
    }

    fn advance_output(&mut self, n: usize) {
        match self {
            Tunnel::Socks5(c) => c.advance_output(n),
            Tunnel::Transit(c) => c.advance_output(n),
            Tunnel::Chain(stages) => {
                if let Some(first) = stages.first_mut() {
                    first.advance_output(n);
                }
            }
        }
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Tunnel::Socks5(c) => c.handle_input(bytes).map_err(|e| e.to_string()),
            Tunnel::Transit(c) => c.handle_input(bytes).map_err(|e| e.to_string()),
            Tunnel::Chain(stages) => match stages.first_mut() {
                Some(first) => first.handle_input(bytes),
                None => Ok(()),
            },
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Tunnel::Socks5(c) => c.is_done(),
            Tunnel::Transit(c) => c.is_done(),
            Tunnel::Chain(stages) => stages.iter().all(Tunnel::is_done),
        }
    }

    fn take_leftover(&mut self) -> Vec<u8> {
        match self {
            Tunnel::Socks5(c) => c.take_leftover(),
            Tunnel::Transit(c) => c.take_leftover(),
            Tunnel::Chain(stages) => stages
                .last_mut()
                .map_or_else(Vec::new, Tunnel::take_leftover),
        }
    }
}

/// Drives the first stage of a chain; once it is through, what came after it is the next
/// stage's input, and the next stage starts (writes its request) at once.
fn drive_chain(stages: &mut Vec<Tunnel>, stream: &mut TcpStream) -> TunnelStep {
    loop {
        let Some(first) = stages.first_mut() else {
            return TunnelStep::Through(Vec::new());
        };
        let leftover = match first.drive(stream) {
            TunnelStep::Through(leftover) => leftover,
            other => return other,
        };
        stages.remove(0);
        let Some(next) = stages.first_mut() else {
            return TunnelStep::Through(leftover);
        };
        if !leftover.is_empty() {
            if let Err(e) = next.handle_input(&leftover) {
                return TunnelStep::Failed(e);
            }
            if next.is_done() {
                let rest = next.take_leftover();
                stages.remove(0);
                if stages.is_empty() {
                    return TunnelStep::Through(rest);
                }
            }
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    // A connect still in progress reports NotConnected on some platforms: wait for
    // readiness as for WouldBlock.
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
    )
}
