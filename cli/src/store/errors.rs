//! Why a storage call failed: [`StoreError`], made from SQLite's errors, and how each one
//! reads to the user (naming the database file when it is known).

use super::schema::BUSY_TIMEOUT;
use rusqlite::ErrorCode;
use socketfalco_core::{DeviceId, NameError, TextError};
use std::fmt;
use std::path::{Path, PathBuf};

/// A chat a prefix could mean, listed in [`StoreError::AmbiguousChat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatCandidate {
    /// The peer device.
    pub peer: DeviceId,
    /// Its last known name.
    pub peer_name: String,
}

/// Why a storage call failed. Nothing of a failed call took effect.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The data folder could not be created.
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed (I/O error, full disk, corrupt file, …).
    Sqlite {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another process kept the database locked for longer than [`BUSY_TIMEOUT`].
    Locked {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer SocketFalco with a schema this build does not
    /// know. It is left untouched.
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file is some other program's SQLite database.
    NotSocketFalco {
        /// The database file.
        path: PathBuf,
        /// Its `PRAGMA application_id`.
        application_id: i32,
    },
    /// The call needs this device's identity, and none has been created yet.
    NoIdentity {
        /// The database file, when known.
        path: Option<PathBuf>,
    },
    /// [`Database::create_identity`] when this device already has one.
    ///
    /// [`Database::create_identity`]: super::Database::create_identity
    IdentityExists {
        /// The existing identity's device id.
        device: DeviceId,
    },
    /// A display name breaks the name rules.
    InvalidName(NameError),
    /// A message text breaks the text rules.
    InvalidText(TextError),
    /// A sequence number, Lamport counter or delivery mark above `i64::MAX`, which SQLite
    /// cannot store as an integer (refused rather than wrapped).
    OutOfRange {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The database holds a value no SocketFalco writes.
    Corrupt {
        /// The database file, when known.
        path: Option<PathBuf>,
        /// What is wrong.
        detail: String,
    },
    /// A chat prefix with something other than hexadecimal digits and hyphens, or empty.
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
    },
    /// No chat's peer id starts with the prefix (or no chat with that peer, for calls that
    /// take a device id).
    NoSuchChat {
        /// The prefix or device id as given.
        prefix: String,
    },
    /// More than one chat's peer id starts with the prefix.
    AmbiguousChat {
        /// The prefix as given.
        prefix: String,
        /// Every chat it matches, in id order.
        candidates: Vec<ChatCandidate>,
    },
}

impl StoreError {
    /// Fills in the database path of errors that were made without it.
    pub(super) fn at(mut self, db: &Path) -> StoreError {
        match &mut self {
            StoreError::Sqlite { path, .. }
            | StoreError::Locked { path, .. }
            | StoreError::NoIdentity { path }
            | StoreError::Corrupt { path, .. }
                if path.is_none() =>
            {
                *path = Some(db.to_owned());
            }
            _ => {}
        }
        self
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path: None, source }
            }
            _ => StoreError::Sqlite { path: None, source },
        }
    }
}

/// ` in PATH` or nothing.
struct In<'a>(&'a Option<PathBuf>);

impl fmt::Display for In<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, " in {}", path.display()),
            None => Ok(()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::CreateDir { path, source } => {
                write!(
                    f,
                    "cannot create the data folder {}: {source}",
                    path.display()
                )
            }
            StoreError::Sqlite { path, source } => {
                write!(f, "database error{}: {source}", In(path))?;
                // What the user can do about it, where SQLite's words do not say.
                match source.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly) => {
                        write!(
                            f,
                            " (SocketFalco writes in its data folder, even to list chats: the \
                             folder and its files must be writable by this user, on a disk \
                             mounted read-write)"
                        )
                    }
                    Some(rusqlite::ErrorCode::DiskFull) => {
                        write!(f, " (free some space on that disk)")
                    }
                    _ => Ok(()),
                }
            }
            StoreError::Locked { path, .. } => write!(
                f,
                "the database{} stayed locked by another process for more than {} s; \
                 try again, or stop the other SocketFalco process",
                In(path),
                BUSY_TIMEOUT.as_secs()
            ),
            StoreError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "the database {} has schema version {found}, but this SocketFalco only knows \
                 versions up to {supported}: it was written by a newer SocketFalco. Use that \
                 version; this one does not downgrade a database",
                path.display()
            ),
            StoreError::NotSocketFalco {
                path,
                application_id,
            } => write!(
                f,
                "{} is not a SocketFalco database (its application id is {application_id:#x})",
                path.display()
            ),
            StoreError::NoIdentity { path } => {
                write!(f, "this device has no identity yet{}", In(path))
            }
            StoreError::IdentityExists { device } => {
                write!(f, "this device already has an identity ({device})")
            }
            StoreError::InvalidName(e) => write!(f, "invalid name: {e}"),
            StoreError::InvalidText(e) => write!(f, "invalid message: {e}"),
            StoreError::OutOfRange { what, value } => write!(
                f,
                "{what} {value} is too large to store (the limit is {})",
                i64::MAX
            ),
            StoreError::Corrupt { path, detail } => {
                write!(
                    f,
                    "the database{} holds an invalid value: {detail}",
                    In(path)
                )
            }
            StoreError::InvalidPrefix { prefix } => write!(
                f,
                "no chat with a peer named {prefix:?}, nor is it the start of a device id \
                 (hexadecimal digits, hyphens allowed); -ls lists the chats"
            ),
            StoreError::NoSuchChat { prefix } => {
                write!(
                    f,
                    "no chat with a device whose id (or name) starts with {prefix}; -ls lists \
                     the chats"
                )
            }
            StoreError::AmbiguousChat { prefix, candidates } => {
                write!(
                    f,
                    "{prefix} matches {} chats; give more of the device id:",
                    candidates.len()
                )?;
                for c in candidates {
                    if c.peer_name.is_empty() {
                        write!(f, " {}", c.peer)?;
                    } else {
                        write!(f, " {} ({})", c.peer, c.peer_name)?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::CreateDir { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } | StoreError::Locked { source, .. } => Some(source),
            StoreError::InvalidName(e) => Some(e),
            StoreError::InvalidText(e) => Some(e),
            _ => None,
        }
    }
}
