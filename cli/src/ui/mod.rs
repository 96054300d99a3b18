//! What the user sees: session events turned into lines for a terminal, plain lines for
//! scripts, or JSON objects for programs.
//!
//! [`Presenter`] is a function of state fed by events: it never touches the network or the
//! store. The terminal style holds an own line back for a moment so it can be shown with its
//! delivered mark (✓) when the peer acks at once, as it usually does; the plain style prints
//! one line per event with no escape codes; the JSON style prints one object per event.
//!
//! A peer refused for presenting a known device id with another key
//! ([`Output::KeyMismatch`]) is shown as a loud multi-line warning: who it claimed to be,
//! from where, both key fingerprints, that nothing was sent or stored, and the exact command
//! that accepts the presented key by its fingerprint — to run only if the peer's own
//! `--fingerprint` shows the same.
//!
//! The line editor ([`editor`]) owns the interactive terminal; [`console`] tells, without
//! reading, whether the terminal is still there; [`scrollback`] pages a chat's history for
//! reading back; [`alert`] rings the bell and shows desktop notifications; [`logs`] shows the
//! chat's warnings in it instead of over it.
//!
//! The prompt carries the quiet status: a caller's reconnection, re-sync progress, the chat
//! typed lines go to when several are live, and the unread lines of the other live chats
//! (`[3 unread] Alice→Bob> `).

pub mod alert;
pub mod console;
pub mod editor;
pub mod logs;
pub mod scrollback;

use chrono::{Local, TimeZone};
use serde_json::json;
use socketfalco_core::{CloseCode, DeviceId, Message, Side};
use socketfalco_transport::clock::wall_clock_ms;
use socketfalco_transport::Output;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long the terminal waits for a delivery before showing an own line as not yet
/// delivered.
const HOLD_FOR_DELIVERY: Duration = Duration::from_millis(400);

/// How events are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// An interactive terminal: short times, marks, a prompt.
    Terminal,
    /// Plain lines for scripts and logs; no escape codes.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A stored message, as the chat history shows it.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Who wrote it.
    pub author_name: String,
    /// Whether this device wrote it.
    pub mine: bool,
    /// Whether the peer holds it (always true for the peer's own messages).
    pub delivered: bool,
    /// The message.
    pub message: Message,
    /// The chat.
    pub peer: DeviceId,
}

/// What the presenter knows of one chat.
#[derive(Clone, Debug, Default)]
struct ChatView {
    name: String,
    /// Re-sync progress: messages arrived, messages announced.
    resync: Option<(u64, u64)>,
    delivered_up_to: u64,
    /// Its last connection was a temporary session: nothing typed for it is stored.
    temporary: bool,
}

/// Whether a close is the replacement of a connection by a newer one of the same device.
fn is_replaced(reason: &socketfalco_core::Close) -> bool {
    reason.code == CloseCode::Replaced
}

/// Turns events into lines, and keeps which chats are live and which one is current (the
/// one typed lines go to). See the [module docs](self).
pub struct Presenter {
    style: Style,
    me: String,
    chats: BTreeMap<DeviceId, ChatView>,
    /// Live chats, in the order they connected.
    live: Vec<DeviceId>,
    /// The chat typed lines go to: the first that connected, or the one chosen with `/to`;
    /// a peer coming or going never changes it.
    current: Option<DeviceId>,
    held: VecDeque<(DeviceId, Message, Instant)>,
    undelivered_shown: u64,
    invocation: String,
    /// A key mismatch was just shown: the local close that follows is its refusal, for
    /// this reason.
    key_refused: Option<&'static str>,
    /// A caller's reconnection in progress (the quiet status): shown in the prompt, not as
    /// a line per attempt.
    reconnect: Option<Reconnect>,
    /// The callers' addresses told the listener is busy since the chats last changed.
    busy_told: HashSet<std::net::IpAddr>,
    /// Why the last attempts of that reconnection reached no peer, as last shown: a line when
    /// it first appears or changes, not per attempt.
    reconnect_failure: Option<String>,
    /// A connection attempt was shown already (later attempts are not).
    connecting_shown: bool,
    /// The refusal of a connection that never became a chat, as last shown: the same one
    /// again (a busy listener, attempt after attempt) is not shown again.
    refusal_shown: Option<String>,
    /// Lines waiting for a first peer were said to wait: said once until a peer connects.
    pending_told: bool,
    /// Whether the last chat connected in this run was temporary; `None` before the first.
    last_temporary: Option<bool>,
    /// Whether this side asked for temporary sessions (`-t`).
    asked_temporary: bool,
    /// A headless listener (`--serve`): it reads no input, so no `quit`.
    headless: bool,
    /// Unread lines in the live chats other than the current one (shown in the prompt).
    unread_elsewhere: u64,
}

/// A peer met for the first time: its key was just pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstContact {
    /// Its device id.
    pub peer: DeviceId,
    /// The name it gave.
    pub name: String,
    /// Its key's fingerprint.
    pub fingerprint: String,
    /// The key is the one the invite named: proved, nothing to compare.
    pub invited: bool,
    /// Other chats it could be taken for.
    pub lookalikes: Vec<Lookalike>,
}

/// Another chat that a peer met for the first time could be taken for: one whose pinned key
/// is the same, or whose peer has the same name (ignoring case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookalike {
    /// That chat.
    pub peer: DeviceId,
    /// Its peer's name.
    pub name: String,
    /// The same key (else: the same name).
    pub same_key: bool,
}

/// Where a caller's reconnection stands.
#[derive(Clone, Copy, Debug)]
struct Reconnect {
    /// Attempts so far since the connection was lost.
    attempt: u32,
    /// When the next attempt is due.
    next_at: Instant,
    /// When the connection was lost (wall clock, ms since the epoch), for "offline since".
    since_ms: i64,
}

impl Presenter {
    /// A presenter for the user called `me`.
    pub fn new(style: Style, me: &str) -> Presenter {
        Presenter {
            style,
            me: me.to_owned(),
            chats: BTreeMap::new(),
            live: Vec::new(),
            current: None,
            held: VecDeque::new(),
            undelivered_shown: 0,
            invocation: "socketfalco".to_owned(),
            key_refused: None,
            reconnect: None,
            reconnect_failure: None,
            busy_told: HashSet::new(),
            connecting_shown: false,
            refusal_shown: None,
            pending_told: false,
            last_temporary: None,
            asked_temporary: false,
            headless: false,
            unread_elsewhere: 0,
        }
    }

    /// Sets the unread lines of the live chats other than the current one, for the prompt.
    pub fn set_unread_elsewhere(&mut self, unread: u64) {
        self.unread_elsewhere = unread;
    }

    /// The lines for the first connection with `peer`, whose key was just pinned: its
    /// fingerprint, and how to check it (as SSH does for a new host). Nothing waits for it.
    pub fn first_contact(&self, contact: &FirstContact) -> Vec<String> {
        let FirstContact {
            peer,
            name,
            fingerprint,
            invited,
            lookalikes,
        } = contact;
        if self.style == Style::Json {
            let lookalikes: Vec<serde_json::Value> = lookalikes
                .iter()
                .map(
                    |l| json!({"peer": l.peer.to_string(), "name": l.name, "same_key": l.same_key}),
                )
                .collect();
            return vec![json!({
                "event": "first_contact",
                "peer": peer.to_string(),
                "name": name,
                "fingerprint": fingerprint,
                "invited": invited,
                "lookalikes": lookalikes,
            })
            .to_string()];
        }
        let name = sanitize(name);
        let mut lines = vec![if *invited {
            format!(
                "first contact with {name}: key fingerprint {fingerprint} pinned — the key the \
                 invite named, proved in the handshake"
            )
        } else {
            format!(
                "first contact with {name}: key fingerprint {fingerprint} pinned; compare it with \
                 \"socketfalco --fingerprint\" on {name}'s device"
            )
        }];
        for other in lookalikes {
            let other_name = sanitize(&other.name);
            lines.push(if other.same_key {
                format!(
                    "note: this key is already pinned for {other_name} ({}): the same key under \
                     another device id — {other_name}'s device set up again with its key file \
                     kept, or whoever else holds that key file",
                    other.peer
                )
            } else {
                format!(
                    "note: you already chat with another device named {other_name} ({}); this \
                     one is not it — compare fingerprints before you take it for them",
                    other.peer
                )
            });
        }
        lines
    }

    /// The line for a listener's onion service, published at `address` (`….onion:PORT`):
    /// what to give the peer, and the command the peer runs.
    pub fn onion_service(&self, address: &str) -> String {
        match self.style {
            Style::Json => json!({"event": "onion_service", "address": address}).to_string(),
            _ => format!(
                "Onion service: {address} — give this address to your peer; they connect \
                 with: socketfalco --tor -c {address}"
            ),
        }
    }

    /// The chat typed lines go to, if any peer was known.
    pub fn current(&self) -> Option<DeviceId> {
        self.current
    }

    /// The chat a line typed without `/to` goes to (`None` before any chat: the endpoint
    /// holds it for the first peer); an error when that chat was a temporary session that
    /// has ended, whose lines have nowhere to go — never another chat in its place.
    pub fn typed_line_target(&self) -> Result<Option<DeviceId>, String> {
        match self.current {
            Some(d)
                if !self.live.contains(&d) && self.chats.get(&d).is_some_and(|c| c.temporary) =>
            {
                Err(format!(
                    "the temporary session with {} has ended, and nothing of it is stored; /to \
                     NAME chooses another chat",
                    sanitize(&self.name_of(d))
                ))
            }
            current => Ok(current),
        }
    }

    /// Makes `peer` the chat typed lines go to.
    pub fn set_current(&mut self, peer: DeviceId) {
        self.current = Some(peer);
    }

    /// Whether the last connection of the chat with `peer` is a temporary session.
    pub fn is_temporary(&self, peer: DeviceId) -> bool {
        self.chats.get(&peer).is_some_and(|c| c.temporary)
    }

    /// The name shown for `peer`.
    pub fn name_of(&self, peer: DeviceId) -> String {
        self.chats
            .get(&peer)
            .map(|c| c.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "peer".to_owned())
    }

    /// The live chats, in the order they connected: `(peer, name)`.
    pub fn live_chats(&self) -> Vec<(DeviceId, String)> {
        self.live.iter().map(|&d| (d, self.name_of(d))).collect()
    }

    /// The live chat `query` names: a peer's name (any case) or a unique prefix of it, or a
    /// unique prefix of its device id (with or without hyphens).
    pub fn resolve(&self, query: &str) -> Result<DeviceId, String> {
        let query = query.trim();
        if query.is_empty() {
            return Err("say which chat: /to NAME".into());
        }
        let q = query.to_lowercase();
        let by_name: Vec<DeviceId> = self
            .live
            .iter()
            .copied()
            .filter(|&d| self.name_of(d).to_lowercase() == q)
            .collect();
        if let [one] = by_name[..] {
            return Ok(one);
        }
        let hex = q.replace('-', "");
        let matching: Vec<DeviceId> = self
            .live
            .iter()
            .copied()
            .filter(|&d| {
                self.name_of(d).to_lowercase().starts_with(&q)
                    || (!hex.is_empty()
                        && hex.chars().all(|c| c.is_ascii_hexdigit())
                        && d.to_string().replace('-', "").starts_with(&hex))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        match matching[..] {
            [one] => Ok(one),
            [] => Err(format!(
                "no live chat is called {query:?} (/chats lists them)"
            )),
            _ => Err(format!(
                "{query:?} names more than one chat: {} (give more of the name or the id)",
                matching
                    .iter()
                    .map(|&d| format!("{} ({d})", self.name_of(d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The lines of `/chats`: one per live chat, the current one marked.
    pub fn chat_list(&self) -> Vec<String> {
        if self.style == Style::Json {
            let chats: Vec<serde_json::Value> = self
                .live
                .iter()
                .map(|&d| {
                    json!({
                        "peer": d.to_string(),
                        "name": self.name_of(d),
                        "current": Some(d) == self.current,
                    })
                })
                .collect();
            return vec![json!({"event": "chats", "chats": chats}).to_string()];
        }
        let mut lines: Vec<String> = self
            .live
            .iter()
            .map(|&d| {
                let mark = if Some(d) == self.current { "*" } else { " " };
                format!("{mark} {} ({d})", sanitize(&self.name_of(d)))
            })
            .collect();
        // The chat typed lines go to, while its peer is away: they wait for it, stored.
        if let Some(away) = self.current.filter(|d| !self.live.contains(d)) {
            lines.push(format!(
                "* {} ({away}) — away: what you type waits for them, stored",
                sanitize(&self.name_of(away))
            ));
        }
        if lines.is_empty() {
            return vec!["no live chat".into()];
        }
        lines
    }

    /// How the user runs this program (`socketfalco`, with `--data-dir DIR` if given), for
    /// the commands the output suggests.
    pub fn set_invocation(&mut self, invocation: &str) {
        invocation.clone_into(&mut self.invocation);
    }

    /// The command that accepts exactly the key with `fingerprint` for `peer`.
    fn accept_command(&self, peer: DeviceId, fingerprint: &str) -> String {
        format!("{} --trust-new-key {peer} '{fingerprint}'", self.invocation)
    }

    /// The prompt for the terminal, with re-sync progress while one runs, and the chat typed
    /// lines go to when more than one is live (`Alice→Bob> `).
    pub fn prompt(&self) -> String {
        let resync = self
            .current
            .and_then(|d| self.chats.get(&d))
            .and_then(|c| c.resync)
            .map(|(done, total)| format!("[re-sync {done}/{total}] "))
            .unwrap_or_default();
        let target = match self.current {
            Some(d) if !self.live.contains(&d) && !self.live.is_empty() => {
                format!("→{} (away)", sanitize(&self.name_of(d)))
            }
            Some(d) if self.live.len() > 1 => format!("→{}", sanitize(&self.name_of(d))),
            _ => String::new(),
        };
        let status = self.reconnect.map_or_else(String::new, |r| {
            let left = r.next_at.saturating_duration_since(Instant::now());
            // Offline once a chat was open; before the first, only trying.
            let since = format!(
                "{} since {}",
                if self.last_temporary.is_some() {
                    "offline"
                } else {
                    "trying"
                },
                format_time(r.since_ms, Style::Terminal)
            );
            if left.is_zero() {
                format!("[connecting, attempt {}, {since}] ", r.attempt)
            } else {
                format!(
                    "[reconnecting in {:.0} s, attempt {}, {since}] ",
                    left.as_secs_f64().ceil(),
                    r.attempt + 1
                )
            }
        });
        let unread = match self.unread_elsewhere {
            0 => String::new(),
            n => format!("[{n} unread] "),
        };
        format!("{unread}{status}{resync}{}{target}> ", self.me)
    }

    /// Lines for one session event.
    pub fn output(&mut self, output: &Output) -> Vec<String> {
        let several_before = self.live.len() > 1;
        // A chat whose last session was temporary, connected now for good: said so.
        let stored_again = matches!(output, Output::Connected { peer, .. }
            if !peer.temporary && self.is_temporary(peer.device));
        if matches!(output, Output::NeverOpened { .. }) {
            // Housekeeping for the store, nothing to show.
            return Vec::new();
        }
        self.track(output);
        if self.style == Style::Json {
            return vec![self.json_line(output)];
        }
        let mut lines = Vec::new();
        match output {
            Output::Listening(addr) => lines.push(format!(
                "listening on {addr} — waiting for a peer ({})",
                if self.headless {
                    "a signal ends it: Ctrl-C, SIGTERM"
                } else {
                    "Ctrl-C or \"quit\" to leave"
                }
            )),
            // The quiet status: the first attempt is a line; later ones live in the prompt.
            Output::Connecting(addr) => {
                if !std::mem::replace(&mut self.connecting_shown, true) {
                    lines.push(format!("connecting to {addr}…"));
                }
            }
            Output::Connected {
                peer,
                addr,
                incoming,
                outgoing,
                ..
            } => {
                let back = self.reconnect.take();
                self.reconnect_failure = None;
                let mut line = format!(
                    "connected to {} ({}) at {addr}",
                    sanitize(&peer.name),
                    peer.device
                );
                if let Some(r) = back {
                    line.push_str(&format!(
                        " — back after {} attempt(s), offline since {}",
                        r.attempt + 1,
                        format_time(r.since_ms, self.style)
                    ));
                }
                if peer.temporary {
                    let who = match (self.asked_temporary, peer.peer_temporary) {
                        (true, true) => "both of you",
                        (false, true) => "the peer",
                        _ => "you",
                    };
                    line.push_str(&format!(
                        " — temporary session ({who} asked): nothing is stored on either side"
                    ));
                } else {
                    line.push_str(&format!(
                        " — {incoming} message(s) arriving, {outgoing} of yours going out"
                    ));
                    if stored_again {
                        line.push_str(" — stored again: this session is not temporary");
                    }
                }
                lines.push(line);
                // Another chat is the current one: a new peer does not take it over.
                let other = self.current.filter(|&c| c != peer.device && !self.headless);
                if let Some(current) = other {
                    lines.push(format!(
                        "what you type still goes to {}; /to {} writes to {}",
                        sanitize(&self.name_of(current)),
                        sanitize(&peer.name),
                        sanitize(&peer.name)
                    ));
                }
            }
            Output::Received {
                peer,
                message,
                stored,
            } => {
                let name = self.name_of(*peer);
                let mut line = self.message_line(&name, message);
                if !stored && self.style == Style::Terminal {
                    line.push_str("  (temporary)");
                }
                lines.push(line);
            }
            Output::Sent {
                peer,
                message,
                live,
            } => {
                if *live && self.style == Style::Terminal {
                    self.held
                        .push_back((*peer, message.clone(), Instant::now()));
                } else {
                    let me = self.own_label(*peer);
                    let mut line = self.message_line(&me, message);
                    if !live {
                        line.push_str(match self.style {
                            Style::Terminal => "  ⧗ waiting",
                            _ => "  (waiting for delivery)",
                        });
                        self.undelivered_shown += 1;
                    }
                    lines.push(line);
                }
            }
            Output::Delivered { peer, up_to } => match self.style {
                Style::Terminal => lines.extend(self.release_held(Instant::now(), true)),
                // With several chats live, whose delivery it is.
                _ if self.live.len() > 1 => lines.push(format!(
                    "delivered to {} up to #{up_to}",
                    sanitize(&self.name_of(*peer))
                )),
                _ => lines.push(format!("delivered up to #{up_to}")),
            },
            Output::Disconnected { peer, reason, by } => {
                let code = reason.code;
                lines.extend(self.release_held(Instant::now(), true));
                let from = match peer {
                    Some(peer) if several_before => {
                        format!(" from {}", sanitize(&self.name_of(*peer)))
                    }
                    _ => String::new(),
                };
                let key_refused = self.key_refused.take();
                if let (Side::Local, Some(why)) = (by, key_refused) {
                    // The close the peer got says only "refused": say why, our way.
                    lines.push(format!(
                        "disconnected{from} (closed): refused that device, {why} (see the \
                         warning above)"
                    ));
                } else {
                    // A close's detail is the peer's text.
                    let reason = sanitize_line(&reason.to_string());
                    let line = match by {
                        // No chat had begun (a busy listener, a refusal): nothing was
                        // connected to be disconnected.
                        _ if peer.is_none() => format!("not connected: {reason}"),
                        // Lost, not closed: the reason says so, and by whom is not known
                        // (the peer's machine, or a proxy or relay between).
                        _ if code == CloseCode::ConnectionLost => {
                            format!("disconnected{from}: {reason}")
                        }
                        Side::Local => format!("disconnected{from} (closed): {reason}"),
                        Side::Peer => format!("disconnected{from} (the peer closed): {reason}"),
                    };
                    // One line per transition: a refusal repeated at every attempt is not.
                    if peer.is_some() {
                        lines.push(line);
                    } else if self.refusal_shown.as_ref() != Some(&line) {
                        self.refusal_shown = Some(line.clone());
                        lines.push(line);
                    }
                }
                // The chat written to is gone while others are live: say where lines go now
                // (a view that takes typed lines only; not for a connection replaced).
                let gone = peer
                    .filter(|&p| Some(p) == self.current && !self.headless && !is_replaced(reason));
                if let Some(peer) = gone {
                    let name = sanitize(&self.name_of(peer));
                    if self.chats.get(&peer).is_some_and(|c| c.temporary) {
                        if !self.live.is_empty() {
                            lines.push(format!(
                                "the temporary session with {name} has ended: /to NAME chooses \
                                 the chat to write to"
                            ));
                        }
                    } else if !self.live.is_empty() {
                        lines.push(format!(
                            "what you type still goes to {name}, stored until {name} is back; \
                             /to NAME writes to another chat"
                        ));
                    }
                }
            }
            Output::KeyMismatch {
                peer,
                presented,
                pinned,
                addr,
            } => {
                let name = sanitize(&peer.name);
                self.key_refused = Some(if presented == pinned {
                    "its key was set aside for another with --trust-new-key"
                } else {
                    "its key does not match the one pinned for its device id"
                });
                if presented == pinned {
                    // The key pinned so far, set aside by `--trust-new-key` for another.
                    lines.extend([
                        "!!! KEY REFUSED: SET ASIDE FOR ANOTHER !!!".to_owned(),
                        format!(
                            "!!! {name} ({}) at {addr} presented the key pinned for it so far \
                             ({}), but --trust-new-key asked to accept only another key from \
                             now on. Nothing was sent to it and nothing from it was stored.",
                            peer.device,
                            presented.fingerprint()
                        ),
                        format!(
                            "!!! If {name} did not change its key after all, accept this one \
                             again with:"
                        ),
                        format!(
                            "!!!   {}",
                            self.accept_command(peer.device, &presented.fingerprint())
                        ),
                    ]);
                    return lines;
                }
                lines.extend([
                    "!!! WARNING: KEY MISMATCH — CONNECTION REFUSED !!!".to_owned(),
                    format!(
                        "!!! A device at {addr} claims to be {name} ({}), but its key is not \
                         the one pinned for that device id.",
                        peer.device
                    ),
                    format!(
                        "!!!   presented key fingerprint: {}",
                        presented.fingerprint()
                    ),
                    format!("!!!   pinned key fingerprint:    {}", pinned.fingerprint()),
                    "!!! Nothing was sent to it and nothing from it was stored.".to_owned(),
                    format!(
                        "!!! It may be an impostor. Or {name} reinstalled SocketFalco and has a \
                         new key: ask {name} to run `socketfalco --fingerprint` on their own \
                         device and read you the fingerprint over another channel (in person, \
                         by phone)."
                    ),
                    "!!! Only if it is the same as the presented fingerprint above, accept \
                     exactly that key with:"
                        .to_owned(),
                    format!(
                        "!!!   {}",
                        self.accept_command(peer.device, &presented.fingerprint())
                    ),
                ]);
            }
            Output::Reconnecting { in_ms, failed } => {
                // One line per transition (the connection is lost, an attempt fails for
                // another reason than the one before), not per attempt.
                let first = self.reconnect.is_none();
                let attempt = self.reconnect.map_or(0, |r| r.attempt + 1);
                let since_ms = self.reconnect.map_or_else(wall_clock_ms, |r| r.since_ms);
                self.reconnect = Some(Reconnect {
                    attempt,
                    next_at: Instant::now() + Duration::from_millis(*in_ms),
                    since_ms,
                });
                if first {
                    let meanwhile = match self.last_temporary {
                        None => {
                            "what you write meanwhile waits here, not stored, and goes to the \
                             first peer that connects"
                        }
                        Some(true) => "the temporary session has ended: nothing you write is sent",
                        Some(false) => "what you write meanwhile is stored and sent then",
                    };
                    lines.push(format!(
                        "not connected — trying again by itself (first in {:.1} s); {meanwhile}",
                        *in_ms as f64 / 1000.0
                    ));
                }
                if let Some(failed) = failed {
                    if self.reconnect_failure.as_ref() != Some(failed) {
                        lines.push(format!("still not connected: {}", sanitize(failed)));
                        self.reconnect_failure = Some(failed.clone());
                    }
                }
            }
            // Once per caller's address while the chats stay as they are: a caller refused
            // tries again by itself, and each attempt is not news.
            Output::RefusedBusy(addr) => {
                if self.busy_told.insert(addr.ip()) {
                    lines.push(format!(
                        "told {addr} that you chat with as many peers as allowed (--max-peers); \
                         it tries again by itself"
                    ));
                }
            }
            Output::MadeRoom {
                contact,
                stranger,
                stranger_name,
            } => {
                let stranger = match stranger_name {
                    Some(name) => sanitize(name),
                    None => format!("a stranger ({stranger})"),
                };
                lines.push(format!(
                    "every place was taken (--max-peers): {stranger}, whom you never wrote to, \
                     made room for {}, whom you did",
                    sanitize(&contact.name)
                ));
            }
            // The quiet status: one line when the place at the relay is taken, one when it
            // is lost; the retries in between are not shown.
            Output::RelayWaiting(relay) => {
                lines.push(format!("waiting for callers at the relay {relay} too"));
            }
            Output::RelayUnavailable {
                relay,
                error,
                retry_in_ms,
            } => lines.push(format!(
                "the relay {relay} is unavailable ({error}); joining it again by itself (first \
                 in {:.1} s)",
                *retry_in_ms as f64 / 1000.0
            )),
            Output::Rejected { reason, .. } => lines.push(match self.style {
                // The editor keeps every line entered in its history.
                Style::Terminal => format!("not sent: {reason} (Up brings the line back)"),
                _ => format!("not sent: {reason}"),
            }),
            // Said once (a script's thousands of lines before the first peer would repeat
            // it for each), until a peer connects.
            Output::Pending(_) if self.pending_told => {}
            Output::Pending(_) => {
                self.pending_told = true;
                lines.push(
                    "no peer yet: lines wait and are sent to the first peer that connects"
                        .to_owned(),
                );
            }
            Output::NotSent { texts, reason } => {
                lines.push(format!(
                    "not sent and not stored ({reason}), {} line(s):",
                    texts.len()
                ));
                lines.extend(texts.iter().map(|text| format!("  {}", sanitize(text))));
            }
            Output::Warning(text) => lines.push(format!("warning: {text}")),
            Output::NeverOpened { .. } => {}
            Output::Restored { peer, count, up_to } => {
                let name = sanitize(&self.name_of(*peer));
                lines.push(format!(
                    "{count} of your own line(s), up to #{up_to}, came back from {name}: this \
                     device had lost them (its data restored from an older copy?). They are \
                     stored again as {name}'s device returned them; -eC shows them"
                ));
            }
        }
        lines
    }

    /// Keeps the chats' state (which are live, the current one, re-sync progress, delivery
    /// marks) whatever the output style.
    fn track(&mut self, output: &Output) {
        match output {
            Output::Connected { peer, incoming, .. } => {
                self.last_temporary = Some(peer.temporary);
                self.refusal_shown = None;
                self.pending_told = false;
                let chat = self.chats.entry(peer.device).or_default();
                chat.name.clone_from(&peer.name);
                chat.delivered_up_to = 0;
                chat.temporary = peer.temporary;
                chat.resync = (*incoming > 0).then_some((0, *incoming));
                self.busy_told.clear();
                self.live.retain(|&d| d != peer.device);
                self.live.push(peer.device);
                // The first chat becomes the current one; after that only the user changes
                // it (`/to`): a peer coming or going never redirects what is being typed.
                if self.current.is_none() {
                    self.current = Some(peer.device);
                }
            }
            Output::Received { peer, .. } => {
                let chat = self.chats.entry(*peer).or_default();
                if let Some((done, total)) = chat.resync.as_mut() {
                    *done += 1;
                    if *done >= *total {
                        chat.resync = None;
                    }
                }
            }
            Output::Delivered { peer, up_to } => {
                let chat = self.chats.entry(*peer).or_default();
                chat.delivered_up_to = chat.delivered_up_to.max(*up_to);
            }
            // A connection replaced by a newer one of the same device (a network change): the
            // chat goes on over the newer one, which connected already.
            Output::Disconnected { reason, .. } if is_replaced(reason) => {}
            Output::Disconnected {
                peer: Some(peer), ..
            } => {
                if let Some(chat) = self.chats.get_mut(peer) {
                    chat.resync = None;
                }
                // Lines keep going to this chat, stored to wait for it, even while others are
                // live: what the user types is meant for the chat they see in the prompt.
                self.live.retain(|d| d != peer);
                self.busy_told.clear();
            }
            _ => {}
        }
    }

    /// Own lines held for their delivered mark that have waited long enough.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        self.release_held(now, false)
    }

    /// How an own line is labelled: the user's name, and the chat when several are live.
    fn own_label(&self, peer: DeviceId) -> String {
        // Several chats, or a line for one that is away while another is live.
        if self.live.len() > 1 || (!self.live.is_empty() && !self.live.contains(&peer)) {
            format!("{}→{}", self.me, sanitize(&self.name_of(peer)))
        } else {
            self.me.clone()
        }
    }

    fn release_held(&mut self, now: Instant, all: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut last_delivered = 0;
        while let Some((peer, message, at)) = self.held.front() {
            let up_to = self.chats.get(peer).map_or(0, |c| c.delivered_up_to);
            let delivered = message.seq <= up_to;
            if !(delivered || all || now.duration_since(*at) >= HOLD_FOR_DELIVERY) {
                break;
            }
            last_delivered = up_to;
            let me = self.own_label(*peer);
            let mut line = self.message_line(&me, message);
            line.push_str(if delivered { "  ✓" } else { "  ⧗" });
            if !delivered {
                self.undelivered_shown += 1;
            }
            lines.push(line);
            self.held.pop_front();
        }
        if self.undelivered_shown > 0 && self.held.is_empty() && all {
            // A later delivery covers lines already shown as waiting.
            let up_to = self
                .current
                .and_then(|d| self.chats.get(&d))
                .map_or(last_delivered, |c| c.delivered_up_to);
            if up_to > 0 && self.style == Style::Terminal {
                lines.push(format!("✓ delivered up to #{up_to}"));
                self.undelivered_shown = 0;
            }
        }
        lines
    }

    /// One history line (the `-eC` view and the summary on connect).
    pub fn history_line(&self, entry: &HistoryEntry) -> String {
        if self.style == Style::Json {
            return json!({
                "event": "history",
                "peer": entry.peer.to_string(),
                "from": entry.author_name,
                "mine": entry.mine,
                "delivered": entry.delivered,
                // null until numbered: written offline, numbered at the next sync.
                "seq": (entry.message.seq != 0).then_some(entry.message.seq),
                "lamport": entry.message.lamport,
                "sent_at_ms": entry.message.sent_at_ms,
                "text": entry.message.text,
            })
            .to_string();
        }
        let mut line = self.message_line(&entry.author_name, &entry.message);
        if entry.mine {
            line.push_str(match (entry.delivered, self.style) {
                (true, Style::Terminal) => "  ✓",
                (false, Style::Terminal) => "  ⧗ waiting",
                (false, _) => "  (waiting for delivery)",
                (true, _) => "",
            });
        }
        line
    }

    fn message_line(&self, name: &str, message: &Message) -> String {
        let time = format_time(message.sent_at_ms, self.style);
        let text = sanitize(&message.text);
        let text = text.replace('\n', "\n    ");
        // A peer's name as it gave it (an older device may not have refused overrides).
        let name = sanitize(name);
        format!("[{time}] {name}: {text}")
    }

    /// One event as a line of JSON. The events a stream repeats (a message each way, a
    /// delivery mark) are written straight from typed structs, without building a map of
    /// owned keys and values first; the rest go through [`Presenter::json`].
    fn json_line(&self, output: &Output) -> String {
        let line = match output {
            Output::Received {
                peer,
                message,
                stored,
            } => serde_json::to_string(&MessageEvent {
                event: "message",
                direction: "in",
                peer: *peer,
                from: None,
                seq: Some(message.seq),
                lamport: message.lamport,
                sent_at_ms: message.sent_at_ms,
                text: &message.text,
                stored: Some(*stored),
                live: None,
            }),
            Output::Sent {
                peer,
                message,
                live,
            } => serde_json::to_string(&MessageEvent {
                event: "message",
                direction: "out",
                peer: *peer,
                from: Some(&self.me),
                // null until numbered: written offline, numbered at the next sync.
                seq: (message.seq != 0).then_some(message.seq),
                lamport: message.lamport,
                sent_at_ms: message.sent_at_ms,
                text: &message.text,
                stored: None,
                live: Some(*live),
            }),
            Output::Delivered { peer, up_to } => serde_json::to_string(&DeliveredEvent {
                event: "delivered",
                peer: *peer,
                up_to: *up_to,
            }),
            _ => return self.json(output).to_string(),
        };
        // Serializing plain structs of strings and numbers cannot fail.
        line.unwrap_or_else(|_| self.json(output).to_string())
    }

    fn json(&self, output: &Output) -> serde_json::Value {
        match output {
            Output::Listening(addr) => json!({"event": "listening", "addr": addr.to_string()}),
            Output::Connecting(addr) => json!({"event": "connecting", "addr": addr}),
            Output::RelayWaiting(relay) => json!({"event": "relay_waiting", "relay": relay}),
            Output::RelayUnavailable {
                relay,
                error,
                retry_in_ms,
            } => json!({
                "event": "relay_unavailable",
                "relay": relay,
                "error": error,
                "retry_in_ms": retry_in_ms,
            }),
            Output::Connected {
                peer,
                addr,
                incoming,
                outgoing,
                ..
            } => json!({
                "event": "connected",
                "peer": peer.device.to_string(),
                "name": peer.name,
                "addr": addr,
                "temporary": peer.temporary,
                "peer_temporary": peer.peer_temporary,
                "incoming": incoming,
                "outgoing": outgoing,
            }),
            Output::Received {
                peer,
                message,
                stored,
            } => json!({
                "event": "message",
                "direction": "in",
                "peer": peer.to_string(),
                "seq": message.seq,
                "lamport": message.lamport,
                "sent_at_ms": message.sent_at_ms,
                "text": message.text,
                "stored": stored,
            }),
            Output::Sent {
                peer,
                message,
                live,
            } => json!({
                "event": "message",
                "direction": "out",
                "peer": peer.to_string(),
                "from": self.me,
                "seq": (message.seq != 0).then_some(message.seq),
                "lamport": message.lamport,
                "sent_at_ms": message.sent_at_ms,
                "text": message.text,
                "live": live,
            }),
            Output::Delivered { peer, up_to } => {
                json!({"event": "delivered", "peer": peer.to_string(), "up_to": up_to})
            }
            Output::Disconnected { peer, reason, by } => json!({
                "event": "peer_left",
                "peer": peer.map(|p| p.to_string()),
                "reason": reason.to_string(),
                "code": reason.code.to_wire(),
                "by": match by { Side::Local => "local", Side::Peer => "peer" },
            }),
            Output::KeyMismatch {
                peer,
                presented,
                pinned,
                addr,
            } => json!({
                "event": "key_mismatch",
                "peer": peer.device.to_string(),
                "name": peer.name,
                "addr": addr.to_string(),
                "presented": presented.fingerprint(),
                "pinned": pinned.fingerprint(),
                // The pinned key itself, refused because another is expected.
                "set_aside": presented == pinned,
                "accept_command": self.accept_command(peer.device, &presented.fingerprint()),
            }),
            Output::Reconnecting {
                in_ms,
                failed: None,
            } => json!({"event": "reconnecting", "in_ms": in_ms}),
            Output::Reconnecting {
                in_ms,
                failed: Some(failed),
            } => json!({"event": "reconnecting", "in_ms": in_ms, "error": failed}),
            Output::RefusedBusy(addr) => json!({"event": "busy_refused", "addr": addr.to_string()}),
            Output::MadeRoom {
                contact,
                stranger,
                stranger_name,
            } => json!({
                "event": "made_room",
                "peer": contact.device.to_string(),
                "name": contact.name,
                "put_out": stranger.to_string(),
                "put_out_name": stranger_name,
            }),
            Output::Rejected { text, reason } => {
                json!({"event": "error", "kind": "rejected", "text": text, "message": reason})
            }
            Output::Pending(text) => json!({"event": "pending", "text": text}),
            Output::NotSent { texts, reason } => {
                json!({"event": "not_sent", "texts": texts, "message": reason})
            }
            Output::Warning(text) => json!({"event": "error", "kind": "warning", "message": text}),
            Output::Restored { peer, count, up_to } => json!({
                "event": "restored",
                "peer": peer.to_string(),
                "count": count,
                "up_to": up_to,
            }),
            Output::NeverOpened { peer, .. } => {
                json!({"event": "never_opened", "peer": peer.to_string()})
            }
        }
    }

    /// Shows events in `style` from now on (a headless listener never uses the terminal).
    pub fn set_style(&mut self, style: Style) {
        self.style = style;
    }

    /// A line that answers the user (a chat chosen, …).
    pub fn note(&self, message: &str) -> String {
        match self.style {
            Style::Json => json!({"event": "note", "message": message}).to_string(),
            _ => message.to_owned(),
        }
    }

    /// The line for input that could not be carried out (an unknown command, a chat that
    /// is not live): the session goes on.
    pub fn input_error(&self, message: &str) -> String {
        match self.style {
            Style::Json => {
                json!({"event": "error", "kind": "input", "message": message}).to_string()
            }
            _ => format!("error: {message}"),
        }
    }

    /// The line for a fatal error.
    pub fn error(&self, message: &str) -> String {
        match self.style {
            Style::Json => fatal_event(message),
            _ => format!("error: {message}"),
        }
    }

    /// A headless listener (`--serve`): only a signal ends it, which its first line says.
    pub fn set_headless(&mut self) {
        self.headless = true;
    }

    /// This side asked for temporary sessions (`-t`): the connection line says who asked.
    pub fn set_asked_temporary(&mut self, asked: bool) {
        self.asked_temporary = asked;
    }

    /// `n` own lines were shown waiting outside this presenter's events (the chat's last
    /// screenful when a session opens): the delivery that covers them is shown.
    pub fn waiting_shown(&mut self, n: u64) {
        self.undelivered_shown += n;
    }

    /// The name of `peer`, for the `-eC` view (which has no connection).
    pub fn set_peer_name(&mut self, peer: DeviceId, name: &str) {
        name.clone_into(&mut self.chats.entry(peer).or_default().name);
    }
}

/// Local time of a message: `HH:MM` on a terminal, the full date in plain output.
fn format_time(ms: i64, style: Style) -> String {
    let format = match style {
        Style::Terminal => "%H:%M",
        _ => "%Y-%m-%d %H:%M:%S",
    };
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format(format).to_string(),
        None => "??:??".to_owned(),
    }
}

/// Replaces control characters (escape sequences a peer could use to garble or spoof the
/// terminal) with U+FFFD; keeps newlines and tabs. So are the bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a name or a line
/// read as another on a terminal that reorders text ("Trojan Source"); right-to-left
/// scripts need none of them, and the marks U+200E/U+200F are kept.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || is_bidi_override(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// [`sanitize`]d, and on one line: newlines and tabs become spaces (a status line, a log
/// record, a close's reason).
pub fn sanitize_line(text: &str) -> String {
    sanitize(text).replace(['\n', '\t'], " ")
}

/// The `--json` event of an error that ends the program (`error`, kind `fatal`).
pub fn fatal_event(message: &str) -> String {
    json!({"event": "error", "kind": "fatal", "message": message}).to_string()
}

/// A bidirectional embedding, override or isolate (or its end).
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A `message` event of `--json` (see [`Presenter::json_line`]).
#[derive(serde::Serialize)]
struct MessageEvent<'a> {
    event: &'static str,
    direction: &'static str,
    #[serde(serialize_with = "as_text")]
    peer: DeviceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    seq: Option<u64>,
    lamport: u64,
    sent_at_ms: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<bool>,
}

/// A `delivered` event of `--json`.
#[derive(serde::Serialize)]
struct DeliveredEvent {
    event: &'static str,
    #[serde(serialize_with = "as_text")]
    peer: DeviceId,
    up_to: u64,
}

/// A device id as its text (the uuid), written straight into the JSON line: no `String` per
/// event.
fn as_text<S: serde::Serializer>(device: &DeviceId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketfalco_core::CloseCode;

    fn message(seq: u64, text: &str) -> Message {
        Message {
            seq,
            lamport: seq,
            sent_at_ms: 0,
            text: text.into(),
        }
    }

    #[test]
    fn escape_sequences_from_a_peer_are_neutralized() {
        assert_eq!(sanitize("hi\x1b[2J\x07"), "hi\u{fffd}[2J\u{fffd}");
        assert_eq!(sanitize("a\nb\tc"), "a\nb\tc");
        assert_eq!(sanitize("ab\u{202e}dc\u{2066}x"), "ab\u{fffd}dc\u{fffd}x");
        assert_eq!(
            sanitize("\u{5e9}\u{5dc}\u{5d5}\u{5dd}\u{200f}"),
            "\u{5e9}\u{5dc}\u{5d5}\u{5dd}\u{200f}"
        );
    }

    #[test]
    fn a_peers_name_with_an_override_is_shown_with_it_replaced_in_its_lines() {
        let p = Presenter::new(Style::Terminal, "alice");
        let line = p.history_line(&HistoryEntry {
            author_name: "Bob\u{202e}live".into(),
            mine: false,
            delivered: true,
            message: message(1, "hello"),
            peer: DeviceId([7; 16]),
        });
        assert!(line.contains("Bob\u{fffd}live: hello"), "{line:?}");
        assert!(!line.contains('\u{202e}'), "{line:?}");
    }

    #[test]
    fn plain_lines_carry_the_name_and_the_text() {
        let mut p = Presenter::new(Style::Plain, "alice");
        p.set_peer_name(DeviceId([1; 16]), "bob");
        let lines = p.output(&Output::Received {
            peer: DeviceId([1; 16]),
            message: message(1, "hello"),
            stored: true,
        });
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("] bob: hello"), "{}", lines[0]);
        assert!(!lines[0].contains('\x1b'));
    }

    #[test]
    fn a_stranger_put_out_for_a_contact_is_one_line_naming_both() {
        let mut p = Presenter::new(Style::Plain, "alice");
        let contact = socketfalco_core::PeerHello {
            device: DeviceId([2; 16]),
            name: "Bob".into(),
            peer_temporary: false,
            temporary: false,
        };
        let lines = p.output(&Output::MadeRoom {
            contact: contact.clone(),
            stranger: DeviceId([3; 16]),
            stranger_name: Some("Mallory\x1b[2J".into()),
        });
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("Mallory\u{fffd}[2J, whom you never wrote to, made room for Bob"),
            "{}",
            lines[0]
        );
        let lines = p.output(&Output::MadeRoom {
            contact,
            stranger: DeviceId([3; 16]),
            stranger_name: None,
        });
        assert!(
            lines[0].contains(&format!("a stranger ({})", DeviceId([3; 16]))),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn the_terminal_marks_an_own_line_delivered_when_the_ack_comes_quickly() {
        let mut p = Presenter::new(Style::Terminal, "alice");
        let peer = DeviceId([1; 16]);
        let sent = p.output(&Output::Sent {
            peer,
            message: message(1, "hi"),
            live: true,
        });
        assert!(sent.is_empty(), "held for its mark");
        let lines = p.output(&Output::Delivered { peer, up_to: 1 });
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("alice: hi  ✓"), "{}", lines[0]);
    }

    #[test]
    fn the_terminal_shows_an_unacked_line_as_waiting_after_a_moment() {
        let mut p = Presenter::new(Style::Terminal, "alice");
        let peer = DeviceId([1; 16]);
        let _ = p.output(&Output::Sent {
            peer,
            message: message(1, "hi"),
            live: true,
        });
        assert!(p.tick(Instant::now()).is_empty());
        let later = Instant::now() + HOLD_FOR_DELIVERY;
        let lines = p.tick(later);
        assert!(lines[0].ends_with("alice: hi  ⧗"), "{lines:?}");
    }

    #[test]
    fn json_events_are_one_object_each() {
        let mut p = Presenter::new(Style::Json, "alice");
        let lines = p.output(&Output::Delivered {
            peer: DeviceId([1; 16]),
            up_to: 3,
        });
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["event"], "delivered");
        assert_eq!(v["up_to"], 3);
    }

    fn mismatch() -> Output {
        Output::KeyMismatch {
            peer: socketfalco_core::PeerHello {
                device: DeviceId([1; 16]),
                name: "bob\x1b[2J".into(),
                peer_temporary: false,
                temporary: false,
            },
            presented: socketfalco_core::StaticKeypair::from_secret([2; 32]).public(),
            pinned: socketfalco_core::StaticKeypair::from_secret([3; 32]).public(),
            addr: "127.0.0.1:4000".parse().unwrap(),
        }
    }

    #[test]
    fn the_pinned_key_set_aside_for_another_is_told_as_such_not_as_an_impostor() {
        let Output::KeyMismatch {
            peer, pinned, addr, ..
        } = mismatch()
        else {
            unreachable!()
        };
        let set_aside = Output::KeyMismatch {
            peer: peer.clone(),
            presented: pinned,
            pinned,
            addr,
        };
        let mut p = Presenter::new(Style::Plain, "alice");
        let text = p.output(&set_aside).join("\n");
        assert!(text.contains("SET ASIDE"), "{text}");
        assert!(!text.contains("  ("), "one space between words: {text}");
        let closed = p
            .output(&Output::Disconnected {
                peer: None,
                reason: socketfalco_core::Close::new(CloseCode::Refused, "refused"),
                by: Side::Local,
            })
            .join("\n");
        assert!(closed.contains("set aside for another"), "{closed}");
        assert!(!text.contains("impostor"), "{text}");
        assert!(
            text.contains(&format!(
                "--trust-new-key {} '{}'",
                peer.device,
                pinned.fingerprint()
            )),
            "{text}"
        );
        let mut p = Presenter::new(Style::Json, "alice");
        let event: serde_json::Value = serde_json::from_str(&p.output(&set_aside)[0]).unwrap();
        assert_eq!(event["set_aside"], true);
    }

    #[test]
    fn a_key_mismatch_is_a_loud_warning_with_both_fingerprints_and_the_way_out() {
        let Output::KeyMismatch {
            peer,
            presented,
            pinned,
            ..
        } = mismatch()
        else {
            unreachable!()
        };
        for style in [Style::Plain, Style::Terminal] {
            let mut p = Presenter::new(style, "alice");
            p.set_invocation("socketfalco --data-dir '/my dir'");
            let text = p.output(&mismatch()).join("\n");
            assert!(text.contains("WARNING"), "{text}");
            assert!(text.contains(&peer.device.to_string()), "{text}");
            assert!(
                text.contains("bob\u{fffd}[2J"),
                "sanitized claimed name: {text}"
            );
            assert!(!text.contains('\x1b'), "{text}");
            assert!(text.contains("127.0.0.1:4000"), "{text}");
            assert!(text.contains(&presented.fingerprint()), "{text}");
            assert!(text.contains(&pinned.fingerprint()), "{text}");
            assert!(text.contains("Nothing was sent"), "{text}");
            assert!(
                text.contains(&format!(
                    "socketfalco --data-dir '/my dir' --trust-new-key {} '{}'",
                    peer.device,
                    presented.fingerprint()
                )),
                "{text}"
            );
        }
        let mut p = Presenter::new(Style::Json, "alice");
        let lines = p.output(&mismatch());
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["event"], "key_mismatch");
        assert_eq!(v["peer"], peer.device.to_string());
        assert_eq!(v["name"], "bob\x1b[2J");
        assert_eq!(v["addr"], "127.0.0.1:4000");
        assert_eq!(v["presented"], presented.fingerprint());
        assert_eq!(v["pinned"], pinned.fingerprint());
        assert_eq!(
            v["accept_command"],
            format!(
                "socketfalco --trust-new-key {} '{}'",
                peer.device,
                presented.fingerprint()
            )
        );
    }

    #[test]
    fn closes_for_keys_and_integrity_say_why() {
        let mut p = Presenter::new(Style::Plain, "alice");
        // The close of a refused key says only "refused"; the warning before it says why.
        let close = Output::Disconnected {
            peer: None,
            reason: socketfalco_core::Close::new(CloseCode::Refused, "refused"),
            by: Side::Local,
        };
        p.output(&mismatch());
        let refused = p.output(&close);
        assert!(refused[0].contains("refused that device"), "{refused:?}");
        let other = p.output(&close);
        assert!(!other[0].contains("refused that device"), "{other:?}");
        let broken = p.output(&Output::Disconnected {
            peer: None,
            reason: socketfalco_core::Close::new(CloseCode::IntegrityFailure, "tampered"),
            by: Side::Local,
        });
        assert!(broken[0].contains("encrypted stream failed"), "{broken:?}");
    }

    #[test]
    fn a_close_detail_from_the_peer_is_shown_without_its_control_characters() {
        for style in [Style::Terminal, Style::Plain] {
            for peer in [None, Some(DeviceId([3; 16]))] {
                let mut p = Presenter::new(style, "alice");
                let lines = p.output(&Output::Disconnected {
                    peer,
                    reason: socketfalco_core::Close::new(
                        CloseCode::Refused,
                        "\x1b[2J\x1b[31mFAKE\nWARNING\u{202e}\u{9b}2J",
                    ),
                    by: Side::Peer,
                });
                let text = lines.join("\n");
                assert_eq!(lines.len(), 1, "{lines:?}");
                for raw in ['\x1b', '\n', '\u{202e}', '\u{9b}'] {
                    assert!(!lines[0].contains(raw), "{raw:?} in {text:?}");
                }
                assert!(text.contains("FAKE WARNING"), "{text:?}");
            }
        }
    }

    #[test]
    fn resync_progress_shows_in_the_prompt() {
        let mut p = Presenter::new(Style::Terminal, "alice");
        let peer = socketfalco_core::PeerHello {
            device: DeviceId([1; 16]),
            name: "bob".into(),
            peer_temporary: false,
            temporary: false,
        };
        let _ = p.output(&Output::Connected {
            peer,
            addr: "127.0.0.1:1".into(),
            incoming: 2,
            outgoing: 0,
            held: Default::default(),
        });
        assert!(p.prompt().starts_with("[re-sync 0/2]"));
        let _ = p.output(&Output::Received {
            peer: DeviceId([1; 16]),
            message: message(1, "a"),
            stored: true,
        });
        assert!(p.prompt().starts_with("[re-sync 1/2]"));
        let _ = p.output(&Output::Received {
            peer: DeviceId([1; 16]),
            message: message(2, "b"),
            stored: true,
        });
        assert_eq!(p.prompt(), "alice> ");
    }

    fn hello(byte: u8, name: &str) -> socketfalco_core::PeerHello {
        socketfalco_core::PeerHello {
            device: DeviceId([byte; 16]),
            name: name.into(),
            peer_temporary: false,
            temporary: false,
        }
    }

    /// The peer `byte` leaves (a normal close); the lines shown.
    fn left(p: &mut Presenter, byte: u8) -> Vec<String> {
        p.output(&Output::Disconnected {
            peer: Some(DeviceId([byte; 16])),
            reason: socketfalco_core::Close::new(CloseCode::Normal, "bye"),
            by: Side::Peer,
        })
    }

    fn connected(p: &mut Presenter, byte: u8, name: &str) {
        let _ = connected_as(p, hello(byte, name));
    }

    /// `peer` connects, nothing to exchange; the lines shown.
    fn connected_as(p: &mut Presenter, peer: socketfalco_core::PeerHello) -> Vec<String> {
        p.output(&Output::Connected {
            peer,
            addr: "127.0.0.1:1".into(),
            incoming: 0,
            outgoing: 0,
            held: Default::default(),
        })
    }

    #[test]
    fn with_several_chats_the_prompt_and_own_lines_name_the_chat() {
        let mut p = Presenter::new(Style::Plain, "alice");
        connected(&mut p, 1, "bob");
        assert_eq!(p.prompt(), "alice> ", "one chat: as before");
        connected(&mut p, 2, "carol");
        assert_eq!(p.prompt(), "alice→bob> ", "a new peer takes nothing over");
        p.set_current(DeviceId([2; 16]));
        assert_eq!(p.prompt(), "alice→carol> ");
        p.set_current(DeviceId([1; 16]));
        assert_eq!(p.prompt(), "alice→bob> ");
        let lines = p.output(&Output::Sent {
            peer: DeviceId([2; 16]),
            message: message(1, "hi carol"),
            live: false,
        });
        assert!(lines[0].contains("alice→carol: hi carol"), "{lines:?}");
        let lines = p.output(&Output::Received {
            peer: DeviceId([1; 16]),
            message: message(1, "hi alice"),
            stored: true,
        });
        assert!(lines[0].contains("bob: hi alice"), "{lines:?}");
        let listed = p.chat_list().join("\n");
        assert!(listed.contains("* bob"), "{listed}");
        assert!(listed.contains("  carol"), "{listed}");
        // Bob leaves: lines still go to him, stored to wait, never to carol in his place.
        let lines = left(&mut p, 1);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("still goes to bob, stored")),
            "{lines:?}"
        );
        assert_eq!(p.current(), Some(DeviceId([1; 16])));
        assert_eq!(p.typed_line_target(), Ok(Some(DeviceId([1; 16]))));
        assert_eq!(p.prompt(), "alice→bob (away)> ");
        // Dave connects: bob is still the chat written to, and the line says how to change it.
        let lines = connected_as(&mut p, hello(3, "dave"));
        assert!(
            lines
                .iter()
                .any(|l| l == "what you type still goes to bob; /to dave writes to dave"),
            "{lines:?}"
        );
        assert_eq!(p.current(), Some(DeviceId([1; 16])));
    }

    #[test]
    fn a_connection_replaced_by_a_newer_one_of_the_same_device_leaves_its_chat_live() {
        let mut p = Presenter::new(Style::Plain, "alice");
        connected(&mut p, 1, "bob");
        connected(&mut p, 2, "carol");
        // Bob's device connects again (a network change): the newer connection comes first,
        // then the older one is closed as replaced.
        connected(&mut p, 1, "bob");
        let lines = p.output(&Output::Disconnected {
            peer: Some(DeviceId([1; 16])),
            reason: socketfalco_core::Close::new(CloseCode::Replaced, "a newer connection"),
            by: Side::Local,
        });
        assert!(lines.iter().all(|l| !l.contains("still goes")), "{lines:?}");
        assert_eq!(p.prompt(), "alice→bob> ");
        assert_eq!(p.resolve("bob"), Ok(DeviceId([1; 16])));
        assert!(p.chat_list().join("\n").contains("* bob"));
    }

    #[test]
    fn the_chat_list_shows_where_lines_go_while_its_peer_is_away() {
        let mut p = Presenter::new(Style::Plain, "alice");
        connected(&mut p, 1, "bob");
        connected(&mut p, 2, "carol");
        let _ = left(&mut p, 1);
        let listed = p.chat_list().join("\n");
        assert!(listed.contains("  carol"), "{listed}");
        assert!(
            listed.contains("* bob") && listed.contains("away"),
            "{listed}"
        );
    }

    #[test]
    fn a_refusal_before_any_chat_is_not_connected_and_a_headless_listener_gives_no_hints() {
        let mut p = Presenter::new(Style::Plain, "carol");
        let lines = p.output(&Output::Disconnected {
            peer: None,
            reason: socketfalco_core::Close::new(CloseCode::Busy, "as many peers as it allows"),
            by: Side::Peer,
        });
        assert_eq!(
            lines,
            ["not connected: the listener is busy: as many peers as it allows"]
        );
        let mut serve = Presenter::new(Style::Plain, "alice");
        serve.set_headless();
        connected(&mut serve, 1, "bob");
        let mut lines = connected_as(&mut serve, hello(2, "carol"));
        lines.extend(left(&mut serve, 1));
        assert!(
            lines.iter().all(|l| !l.contains("what you type")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_temporary_chat_that_ended_takes_no_lines_and_passes_none_to_another() {
        let mut p = Presenter::new(Style::Plain, "alice");
        let mut temporary = hello(1, "bob");
        temporary.temporary = true;
        let _ = connected_as(&mut p, temporary);
        connected(&mut p, 2, "carol");
        let lines = left(&mut p, 1);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("temporary session with bob has ended")),
            "{lines:?}"
        );
        let refused = p.typed_line_target().unwrap_err();
        assert!(refused.contains("/to NAME"), "{refused}");
        p.set_current(DeviceId([2; 16]));
        assert_eq!(p.typed_line_target(), Ok(Some(DeviceId([2; 16]))));
    }

    #[test]
    fn the_prompt_counts_the_unread_lines_of_the_other_chats() {
        let mut p = Presenter::new(Style::Terminal, "Alice");
        connected(&mut p, 1, "Bob");
        connected(&mut p, 2, "Carol");
        p.set_current(DeviceId([1; 16]));
        p.set_unread_elsewhere(3);
        assert_eq!(p.prompt(), "[3 unread] Alice→Bob> ");
        p.set_unread_elsewhere(0);
        assert_eq!(p.prompt(), "Alice→Bob> ");
    }

    #[test]
    fn the_typed_json_lines_say_what_the_general_json_says() {
        let p = Presenter::new(Style::Json, "alice");
        let peer = DeviceId([7; 16]);
        let message = |seq: u64| Message {
            seq,
            lamport: 9,
            sent_at_ms: 1_234,
            text: "hé \"quoted\"\n\u{1}".into(),
        };
        for output in [
            Output::Received {
                peer,
                message: message(3),
                stored: true,
            },
            Output::Sent {
                peer,
                message: message(0),
                live: false,
            },
            Output::Sent {
                peer,
                message: message(5),
                live: true,
            },
            Output::Delivered { peer, up_to: 42 },
        ] {
            let typed: serde_json::Value = serde_json::from_str(&p.json_line(&output)).unwrap();
            assert_eq!(typed, p.json(&output), "{output:?}");
        }
    }

    #[test]
    fn a_first_contact_shows_the_pinned_fingerprint_and_how_to_check_it() {
        let contact = |fingerprint: &str, invited| FirstContact {
            peer: DeviceId([1; 16]),
            name: "Bob".into(),
            fingerprint: fingerprint.into(),
            invited,
            lookalikes: Vec::new(),
        };
        let p = Presenter::new(Style::Plain, "Alice");
        let lines = p.first_contact(&contact("1a2b 3c4d", false));
        assert_eq!(
            lines,
            [
                "first contact with Bob: key fingerprint 1a2b 3c4d pinned; compare it with \
              \"socketfalco --fingerprint\" on Bob's device"
            ]
        );
        let p = Presenter::new(Style::Json, "Alice");
        let v: serde_json::Value =
            serde_json::from_str(&p.first_contact(&contact("1a2b", true))[0]).unwrap();
        assert_eq!(v["event"], "first_contact");
        assert_eq!(v["fingerprint"], "1a2b");
        assert_eq!(v["invited"], true);
        // Over an invite the key was proved: nothing to compare.
        let p = Presenter::new(Style::Plain, "Alice");
        let lines = p.first_contact(&contact("1a2b", true));
        assert!(lines[0].contains("the key the invite named"), "{lines:?}");
        assert!(!lines[0].contains("compare"), "{lines:?}");
    }

    #[test]
    fn the_onion_service_line_says_what_to_give_the_peer() {
        let address = format!("{}.onion:30000", "a".repeat(56));
        let line = Presenter::new(Style::Plain, "Alice").onion_service(&address);
        assert_eq!(
            line,
            format!(
                "Onion service: {address} — give this address to your peer; they connect \
                 with: socketfalco --tor -c {address}"
            )
        );
        let v: serde_json::Value =
            serde_json::from_str(&Presenter::new(Style::Json, "Alice").onion_service(&address))
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "onion_service", "address": address})
        );
    }

    #[test]
    fn a_chat_is_named_by_its_name_or_a_unique_prefix_of_name_or_id() {
        let mut p = Presenter::new(Style::Plain, "alice");
        connected(&mut p, 0x1b, "Bob");
        connected(&mut p, 0x2c, "Bea");
        connected(&mut p, 0x3d, "carol");
        assert_eq!(p.resolve("bob"), Ok(DeviceId([0x1b; 16])));
        assert_eq!(p.resolve("CAR"), Ok(DeviceId([0x3d; 16])));
        assert_eq!(p.resolve("2c2c"), Ok(DeviceId([0x2c; 16])));
        assert!(p.resolve("b").unwrap_err().contains("more than one"));
        assert!(p.resolve("dave").unwrap_err().contains("no live chat"));
    }

    #[test]
    fn why_attempts_fail_is_a_line_when_it_first_shows_or_changes() {
        let refused = "Connection refused (os error 111)";
        let proxy = "the proxy 127.0.0.1:1080 is not reachable: Connection refused (os error 111)";
        let mut p = Presenter::new(Style::Plain, "bob");
        connected(&mut p, 1, "alice");
        let mut lines = Vec::new();
        for failed in [
            None,
            Some(refused),
            Some(refused),
            Some(proxy),
            Some(proxy),
            Some(refused),
        ] {
            lines.extend(p.output(&Output::Reconnecting {
                in_ms: 1_000,
                failed: failed.map(str::to_owned),
            }));
        }
        assert_eq!(
            lines,
            [
                "not connected — trying again by itself (first in 1.0 s); what you write meanwhile \
                 is stored and sent then"
                    .to_owned(),
                format!("still not connected: {refused}"),
                format!("still not connected: {proxy}"),
                format!("still not connected: {refused}"),
            ]
        );
        // Back, then lost again: the same reason is news again.
        connected(&mut p, 1, "alice");
        let again = p.output(&Output::Reconnecting {
            in_ms: 500,
            failed: Some(refused.to_owned()),
        });
        assert!(again.iter().any(|l| l.contains(refused)), "{again:?}");
        let json = Presenter::new(Style::Json, "bob").output(&Output::Reconnecting {
            in_ms: 500,
            failed: Some(proxy.to_owned()),
        });
        let event: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(event["event"], "reconnecting");
        assert_eq!(event["error"], proxy);
    }

    #[test]
    fn reconnecting_is_a_status_not_a_line_per_attempt() {
        for style in [Style::Terminal, Style::Plain] {
            let mut p = Presenter::new(style, "bob");
            let addr = "127.0.0.1:4000".to_string();
            let mut lines = p.output(&Output::Connecting(addr.clone()));
            connected(&mut p, 1, "alice");
            lines.extend(p.output(&Output::Disconnected {
                peer: Some(DeviceId([1; 16])),
                reason: socketfalco_core::Close::new(CloseCode::Normal, "the user left"),
                by: Side::Peer,
            }));
            let before = lines.len();
            // Twenty seconds of attempts: twelve of them.
            for delay in [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
            ] {
                lines.extend(p.output(&Output::Reconnecting {
                    in_ms: delay,
                    failed: None,
                }));
                lines.extend(p.output(&Output::Connecting(addr.clone())));
            }
            assert_eq!(lines.len() - before, 1, "{style:?}: {lines:?}");
            if style == Style::Terminal {
                let prompt = p.prompt();
                assert!(prompt.contains("attempt 9"), "{prompt}");
                assert!(prompt.contains("offline since"), "{prompt}");
            }
            let back = p.output(&Output::Connected {
                peer: hello(1, "alice"),
                addr,
                incoming: 0,
                outgoing: 0,
                held: Default::default(),
            });
            assert!(back[0].contains("back after 9 attempt(s)"), "{back:?}");
            assert_eq!(p.prompt(), "bob> ");
        }
    }

    #[test]
    fn a_refusal_repeated_at_every_attempt_is_one_line_and_unsent_lines_are_listed() {
        let mut p = Presenter::new(Style::Plain, "carol");
        let addr = "127.0.0.1:4000".to_string();
        let busy = || Output::Disconnected {
            peer: None,
            reason: socketfalco_core::Close::new(
                CloseCode::Busy,
                "the listener chats with as many peers as it allows (1)",
            ),
            by: Side::Peer,
        };
        let mut lines = p.output(&Output::Connecting(addr.clone()));
        lines.extend(p.output(&Output::Pending("hello".into())));
        // Said once, however many lines wait.
        assert!(p.output(&Output::Pending("again".into())).is_empty());
        for delay in [500, 1_000, 2_000] {
            lines.extend(p.output(&busy()));
            lines.extend(p.output(&Output::Reconnecting {
                in_ms: delay,
                failed: None,
            }));
            lines.extend(p.output(&Output::Connecting(addr.clone())));
        }
        let refusals = lines.iter().filter(|l| l.contains("busy")).count();
        assert_eq!(refusals, 1, "{lines:#?}");
        // Before any chat, a waiting line is not stored: the status does not say it is.
        let status = lines
            .iter()
            .find(|l| l.starts_with("not connected —"))
            .unwrap();
        assert!(status.contains("not stored"), "{status}");
        let unsent = p.output(&Output::NotSent {
            texts: vec!["hello".into(), "again\x1b[2J".into()],
            reason: "no peer connected to take them".into(),
        });
        assert_eq!(
            unsent,
            [
                "not sent and not stored (no peer connected to take them), 2 line(s):",
                "  hello",
                "  again\u{fffd}[2J",
            ]
        );
        let mut json = Presenter::new(Style::Json, "carol");
        let line = json.output(&Output::NotSent {
            texts: vec!["hello".into()],
            reason: "no peer connected to take them".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&line[0]).unwrap();
        assert_eq!(v["event"], "not_sent");
        assert_eq!(v["texts"][0], "hello");
        // After a chat, a temporary one, the status says nothing written is sent.
        let mut t = Presenter::new(Style::Plain, "carol");
        let mut peer = hello(1, "alice");
        peer.temporary = true;
        let _ = t.output(&Output::Connected {
            peer,
            addr,
            incoming: 0,
            outgoing: 0,
            held: Default::default(),
        });
        let status = t.output(&Output::Reconnecting {
            in_ms: 500,
            failed: None,
        });
        assert!(
            status[0].contains("nothing you write is sent"),
            "{status:?}"
        );
    }

    #[test]
    fn a_temporary_session_says_who_asked_for_it() {
        let connected = |asked: bool, peer_asked: bool| {
            let mut p = Presenter::new(Style::Plain, "carol");
            p.set_asked_temporary(asked);
            let mut peer = hello(1, "alice");
            peer.temporary = true;
            peer.peer_temporary = peer_asked;
            p.output(&Output::Connected {
                peer,
                addr: "127.0.0.1:4000".into(),
                incoming: 0,
                outgoing: 0,
                held: Default::default(),
            })
            .join("\n")
        };
        assert!(connected(true, true).contains("(both of you asked)"));
        assert!(connected(true, false).contains("(you asked)"));
        assert!(connected(false, true).contains("(the peer asked)"));
    }

    #[test]
    fn a_chat_connected_for_good_after_a_temporary_session_says_it_is_stored_again() {
        let mut p = Presenter::new(Style::Plain, "carol");
        let session = |temporary: bool| {
            let mut peer = hello(1, "alice");
            peer.temporary = temporary;
            peer.peer_temporary = temporary;
            Output::Connected {
                peer,
                addr: "127.0.0.1:4000".into(),
                incoming: 0,
                outgoing: 0,
                held: Default::default(),
            }
        };
        let first = p.output(&session(true)).join("\n");
        assert!(!first.contains("stored again"), "{first}");
        let _ = p.output(&Output::Disconnected {
            peer: Some(DeviceId([1; 16])),
            reason: socketfalco_core::Close::new(CloseCode::Normal, "the user left"),
            by: Side::Peer,
        });
        let next = p.output(&session(false)).join("\n");
        assert!(next.contains("stored again"), "{next}");
        let after = p.output(&session(false)).join("\n");
        assert!(!after.contains("stored again"), "{after}");
    }

    #[test]
    fn a_first_contact_names_the_chats_it_could_be_taken_for() {
        let bob = DeviceId([2; 16]);
        let contact = |same_key| FirstContact {
            peer: DeviceId([3; 16]),
            name: "Bob".into(),
            fingerprint: "aaaa bbbb".into(),
            invited: false,
            lookalikes: vec![Lookalike {
                peer: bob,
                name: "bob".into(),
                same_key,
            }],
        };
        let p = Presenter::new(Style::Plain, "alice");
        let lines = p.first_contact(&contact(false));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("first contact with Bob: key fingerprint aaaa bbbb"));
        assert!(
            lines[1].contains(&format!("another device named bob ({bob})")),
            "{lines:?}"
        );
        let lines = p.first_contact(&contact(true));
        assert!(
            lines[1].contains(&format!("already pinned for bob ({bob})")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_headless_listener_does_not_offer_quit() {
        let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut p = Presenter::new(Style::Plain, "alice");
        assert!(p.output(&Output::Listening(addr))[0].contains("\"quit\" to leave"));
        p.set_headless();
        let line = p.output(&Output::Listening(addr)).join("");
        assert!(!line.contains("quit") && line.contains("SIGTERM"), "{line}");
    }
}
