//! Telling the user that a line came in where they are not looking: the terminal bell
//! (`--bell`) and desktop notifications (`--notify`, `--notify=text`).
//!
//! This module owns when an incoming line alerts ([`wants_alert`]: the view is reading back,
//! the line is for another chat than the current one, or — for notifications — the terminal
//! lost the focus; without a view, as with `-l --serve`, every line) and the notifications
//! themselves. A notification names the peer only, unless `--notify=text` asks for the
//! message text too. Notifications are shown on a thread of their own through a short
//! queue, so a slow or missing notification service (no D-Bus session, a headless server)
//! never holds the chat: the first failure is logged once as a warning, later ones at debug
//! level, and a full queue drops the notification.
//!
//! Desktop notifications exist on Linux (and other Unix desktops with a D-Bus session) and on
//! Windows; elsewhere `--notify` is accepted and shows nothing.

use crate::ui::sanitize;
use socketfalco_core::DeviceId;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// What `--notify` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Notify {
    /// No notifications (the default).
    #[default]
    Off,
    /// The peer's name only.
    Name,
    /// The peer's name and the message text (`--notify=text`).
    Text,
}

/// Whether an incoming line for `chat` alerts: the user reads back (`reading`), or the
/// line is for another chat than `current`. A session without a view (`--serve`, scripts)
/// passes `reading` true: nobody is looking.
pub fn wants_alert(reading: bool, current: Option<DeviceId>, chat: DeviceId) -> bool {
    reading || current != Some(chat)
}

/// How long a notification's text may be, in characters.
const NOTIFICATION_TEXT: usize = 200;

/// The bell and notifications of one session.
pub struct Alerts {
    bell: bool,
    notify: Notify,
    queue: Option<SyncSender<(String, String)>>,
}

impl Alerts {
    /// Alerts as the command line asked (`--bell`, `--notify[=text]`).
    pub fn new(bell: bool, notify: Notify) -> Alerts {
        Alerts {
            bell,
            notify,
            queue: None,
        }
    }

    /// Whether `--bell` was given.
    pub fn bell(&self) -> bool {
        self.bell
    }

    /// Whether lines from peers are notified at all (`--notify` is not `off`).
    pub fn notifies(&self) -> bool {
        self.notify != Notify::Off
    }

    /// Shows a desktop notification for a line from `peer_name` (with its `text` only with
    /// `--notify=text`), without waiting for it.
    pub fn notify(&mut self, peer_name: &str, text: &str) {
        if self.notify == Notify::Off {
            return;
        }
        let summary = format!("SocketFalco: {}", one_line(peer_name, 64));
        let body = match self.notify {
            Notify::Text => one_line(text, NOTIFICATION_TEXT),
            _ => format!("new message from {}", one_line(peer_name, 64)),
        };
        if self.queue.is_none() {
            self.queue = start_worker();
        }
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send((summary, body)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => log::debug!("notifications are behind: one dropped"),
            Err(TrySendError::Disconnected(_)) => self.queue = None,
        }
    }
}

/// `text` on one line, control characters replaced, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let text = sanitize(text).replace(['\n', '\t'], " ");
    let mut cut: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        cut.push('…');
    }
    cut
}

/// The thread that shows notifications, fed by a short queue.
fn start_worker() -> Option<SyncSender<(String, String)>> {
    let (tx, rx) = sync_channel::<(String, String)>(8);
    let spawned = std::thread::Builder::new()
        .name("notifications".into())
        .spawn(move || {
            // Started by a thread that may share one CPU with the event loop: not this one.
            socketfalco_transport::affinity::run_anywhere();
            let mut failed = false;
            for (summary, body) in rx {
                if let Err(e) = show(&summary, &body) {
                    if failed {
                        log::debug!("desktop notification not shown: {e}");
                    } else {
                        failed = true;
                        log::warn!(
                            "desktop notifications are not available ({e}); the chat goes on \
                             without them"
                        );
                    }
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            log::warn!("desktop notifications are not available: {e}");
            None
        }
    }
}

#[cfg(any(all(unix, not(target_os = "macos")), windows))]
fn show(summary: &str, body: &str) -> Result<(), String> {
    // Notification servers on Linux may read the body as markup.
    let body = if cfg!(unix) {
        body.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    } else {
        body.to_owned()
    };
    notify_rust::Notification::new()
        .appname("SocketFalco")
        .summary(summary)
        .body(&body)
        .show()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(not(any(all(unix, not(target_os = "macos")), windows)))]
fn show(_summary: &str, _body: &str) -> Result<(), String> {
    Err("not supported on this platform".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_alerts_when_the_user_reads_back_or_it_is_for_another_chat() {
        let bob = DeviceId([1; 16]);
        let carol = DeviceId([2; 16]);
        assert!(!wants_alert(false, Some(bob), bob), "seen where it arrives");
        assert!(wants_alert(true, Some(bob), bob), "reading back");
        assert!(wants_alert(false, Some(carol), bob), "another chat");
        assert!(wants_alert(false, None, bob));
    }

    #[test]
    fn notification_texts_are_one_short_clean_line() {
        assert_eq!(one_line("hi\x1b[2J\nthere", 50), "hi\u{fffd}[2J there");
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx…");
    }

    #[test]
    fn no_notification_is_queued_when_off() {
        let mut alerts = Alerts::new(false, Notify::Off);
        alerts.notify("Bob", "hello");
        assert!(alerts.queue.is_none());
    }
}
