//! How a running session is asked to end from outside the prompt, the same way `quit` ends
//! it: Ctrl-C outside raw mode, SIGTERM, SIGHUP (the terminal went away) and Ctrl-Break go
//! through `ctrlc`; on Windows, closing the console window, logoff and shutdown go through a
//! console control handler of our own ([`on_leave`]).
//!
//! Windows ends the process as soon as a handler returns from `CTRL_CLOSE_EVENT`,
//! `CTRL_LOGOFF_EVENT` or `CTRL_SHUTDOWN_EVENT` (ctrlc's returns at once), and kills it
//! anyway about 5 s after the event. So our handler asks the session to leave and then holds
//! the process until the command says the session has closed ([`closed`]) or 4 s have
//! passed. Ctrl-C and Ctrl-Break are left to ctrlc's handler.

/// Calls `leave` (from another thread) when the user or the system asks this process to end.
pub fn on_leave(leave: impl Fn() + Send + Sync + 'static) {
    let leave = std::sync::Arc::new(leave);
    let on_signal = std::sync::Arc::clone(&leave);
    if let Err(e) = ctrlc::set_handler(move || on_signal()) {
        log::warn!("no signal handler: {e}");
    }
    #[cfg(windows)]
    windows::install(leave);
    #[cfg(not(windows))]
    drop(leave);
}

/// The session has closed (everything stored, the peer told): a waiting Windows close
/// handler may let the process end.
pub fn closed() {
    #[cfg(windows)]
    windows::closed();
}

#[cfg(windows)]
mod windows {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};
    use windows_sys::core::BOOL;
    use windows_sys::Win32::System::Console::{
        SetConsoleCtrlHandler, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    };

    type Leave = Arc<dyn Fn() + Send + Sync>;

    /// How long a console close, logoff or shutdown waits for the session to close: under
    /// the 5 s after which Windows ends the process anyway.
    const WINDOWS_GRACE: Duration = Duration::from_secs(4);

    static LEAVE: Mutex<Option<Leave>> = Mutex::new(None);
    static CLOSED: Mutex<bool> = Mutex::new(false);
    static CLOSED_CHANGED: Condvar = Condvar::new();

    pub(super) fn install(leave: Leave) {
        if let Ok(mut slot) = LEAVE.lock() {
            *slot = Some(leave);
        }
        // Registered after ctrlc's, so called first (Windows calls the newest handler first).
        // SAFETY: a handler with the signature the API asks for, registered once per session.
        if unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 {
            log::warn!(
                "no console close handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    pub(super) fn closed() {
        if let Ok(mut closed) = CLOSED.lock() {
            *closed = true;
            CLOSED_CHANGED.notify_all();
        }
    }

    unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
        if !matches!(
            event,
            CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT
        ) {
            // Ctrl-C and Ctrl-Break: the next handler (ctrlc's).
            return 0;
        }
        let leave = LEAVE.lock().ok().and_then(|slot| slot.clone());
        if let Some(leave) = leave {
            leave();
        }
        let deadline = Instant::now() + WINDOWS_GRACE;
        if let Ok(mut closed) = CLOSED.lock() {
            while !*closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match CLOSED_CHANGED.wait_timeout(closed, left) {
                    Ok((guard, _)) => closed = guard,
                    Err(_) => break,
                }
            }
        }
        1
    }
}
