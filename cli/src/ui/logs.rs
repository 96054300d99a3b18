//! Where log records go: standard error, as `env_logger` writes them, except for warnings and
//! errors while a chat shows them to the user itself.
//!
//! The terminal view owns the screen: a log line written to standard error in the middle of
//! it would land wherever the cursor is and break the view (a missing notification service,
//! a failed read of the store). While a chat runs on a terminal, its warnings and errors are
//! therefore diverted into the chat as `warning:` lines, and reach standard error too only if
//! it is not that terminal (`2>file`). With `--json` they become `warning` events on standard
//! output as well, so a program reading the events learns of them, and stay on standard error.
//! Records below warning level (`-v`, `-vv`, `RUST_LOG`) always go to standard error: who asks
//! for them on a terminal view redirects them.
//!
//! One [`Diversion`] at a time, held as a guard: dropping it puts standard error back.

use log::{Level, Log, Metadata, Record};
use std::sync::Mutex;

/// What a diverted record is handed to: its message, one line.
type Sink = Box<dyn Fn(String) + Send + Sync>;

struct Divert {
    to: Sink,
    /// Whether a diverted record also goes to standard error.
    also_stderr: bool,
}

/// The process's logger: `env_logger`'s, with warnings and errors diverted while a chat
/// shows them.
struct DivertingLogger {
    inner: env_logger::Logger,
    divert: Mutex<Option<Divert>>,
}

static LOGGER: std::sync::OnceLock<DivertingLogger> = std::sync::OnceLock::new();

impl Log for DivertingLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.inner.matches(record) {
            return;
        }
        if record.level() <= Level::Warn {
            // A poisoned lock (a sink that panicked) diverts nothing more.
            if let Ok(divert) = self.divert.lock() {
                if let Some(divert) = divert.as_ref() {
                    (divert.to)(one_line(record));
                    if !divert.also_stderr {
                        return;
                    }
                }
            }
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// A record as a diverted line: its message, errors marked as such (the chat shows either
/// as a warning).
fn one_line(record: &Record) -> String {
    let text = super::sanitize_line(&record.args().to_string());
    match record.level() {
        Level::Error => format!("error: {text}"),
        _ => text,
    }
}

/// Sets up logging for the process: `-v` shows info, `-vv` debug, `-vvv` trace on standard
/// error; `RUST_LOG` overrides. Called once, first thing; a second call changes nothing.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // A record may quote what a peer sent (a close's detail, a name): written with control
    // characters and overrides replaced, never raw to the terminal.
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format(|buf, record| {
            use std::io::Write;
            let level = buf.default_level_style(record.level());
            writeln!(
                buf,
                "[{} {level}{}{level:#} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                super::sanitize_line(&record.args().to_string())
            )
        })
        .build();
    let max = inner.filter();
    let logger = LOGGER.get_or_init(|| DivertingLogger {
        inner,
        divert: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

/// While held, warnings and errors go to `to` (and to standard error as well if
/// `also_stderr`); dropped, they go to standard error again.
#[must_use = "dropping the diversion ends it"]
pub struct Diversion(());

/// Diverts warnings and errors to `to` until the returned guard is dropped. Without
/// [`init`] (tests), records are not logged at all and nothing is diverted.
pub fn divert(also_stderr: bool, to: impl Fn(String) + Send + Sync + 'static) -> Diversion {
    if let Some(logger) = LOGGER.get() {
        if let Ok(mut divert) = logger.divert.lock() {
            *divert = Some(Divert {
                to: Box::new(to),
                also_stderr,
            });
        }
    }
    Diversion(())
}

impl Drop for Diversion {
    fn drop(&mut self) {
        if let Some(logger) = LOGGER.get() {
            if let Ok(mut divert) = logger.divert.lock() {
                *divert = None;
            }
        }
    }
}
