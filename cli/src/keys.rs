//! This device's long-term static key pair (X25519): what it proves in every connection's
//! Noise handshake, and what its peers pin to its device id on first contact (trust on first
//! use, like SSH). The device uuid stays the chat key users see; the key binds it.
//!
//! # The key file
//!
//! The secret lives in [`KEY_FILE_NAME`] (`identity.key`) in the data directory, beside the
//! database and never inside it, so that a copied or backed-up database does not carry it by
//! accident. Its format, version 1, is exactly
//!
//! ```text
//! 64 hexadecimal digits (the 32 secret bytes, lowercase when written)  + "\n"
//! ```
//!
//! On load, upper-case digits and trailing whitespace (a `\r\n` after editing on Windows) are
//! accepted; anything else — a wrong length, a non-hex character, an empty file — is refused
//! with an error naming the file ([`KeyError::Malformed`]): a damaged key is never replaced
//! silently, since a new key would make every peer refuse this device until it accepts the
//! new key. The public key is derived from the secret; it is not stored.
//!
//! # Creation and migration
//!
//! [`load_or_create`] makes the key at first start-up: 32 bytes from the operating system's
//! secure random source (`getrandom`), written atomically — a temporary file in the same
//! directory, written and fsynced, then linked to its final name only if that name does not
//! exist yet (a hard link never replaces a file), the directory fsynced after. Two processes
//! starting together on a new data directory thus end up with the same key: the one that
//! lost the race loads the winner's. (On a file system without hard links the temporary file
//! is renamed instead, after checking that no key appeared meanwhile.)
//!
//! A data directory of an older SocketFalco, without the file, gets one the same way on its
//! next start: that is the whole migration. Its peers had pinned no key for it (older
//! versions did not have keys), so they pin the new one at the next connection.
//!
//! # Permissions
//!
//! - Unix: the file is created with mode `0600` (owner read/write only) from the start, not
//!   chmod-ed afterwards, and the data directory itself is `0700` (see `store`). On load, a
//!   key file that group or others may read or write (any bit of `0o077`) is **refused**, as
//!   OpenSSH refuses an unprotected private key: a secret others could have read can no
//!   longer prove anything. The error gives the `chmod 600` command to run after checking.
//! - Windows: the data directory is under the user's profile (`%LOCALAPPDATA%`), whose
//!   access control lists already restrict it to the user (and administrators); the file
//!   inherits them. No further check is made.

use crate::private_file::{open_to_others, sync_dir, write_private};
use socketfalco_core::StaticKeypair;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The key file's name inside the data directory.
pub const KEY_FILE_NAME: &str = "identity.key";

/// Hexadecimal digits of the secret in the file.
const HEX_DIGITS: usize = 64;

/// Why the key could not be loaded or created. Nothing was overwritten.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading, writing or syncing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "create", …).
        action: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The key file exists but does not hold a key in the documented format.
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// (Unix) the key file may be read or written by other users.
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system gave no random bytes.
    Random(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} this device's key file {}: {source}",
                path.display()
            ),
            KeyError::Malformed { path, detail } => write!(
                f,
                "this device's key file {} is damaged ({detail}); it must hold 64 hexadecimal \
                 digits. Restore it from a backup. Only if it is lost for good, move it away: \
                 a new key is then created, and every peer refuses this device until it accepts \
                 the new key with `socketfalco --trust-new-key`",
                path.display()
            ),
            KeyError::TooOpen { path, mode } => write!(
                f,
                "this device's key file {} is accessible to other users (mode {mode:03o}); \
                 refusing to use a secret others may have read. If you are sure nobody did, \
                 run `chmod 600 {}` and try again",
                path.display(),
                path.display()
            ),
            KeyError::Random(e) => {
                write!(
                    f,
                    "no random bytes from the operating system for the key: {e}"
                )
            }
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// This device's key pair from `dir`/[`KEY_FILE_NAME`], created first if the file does not
/// exist (first start-up, or an older data directory). See the [module docs](self).
pub fn load_or_create(dir: &Path) -> Result<StaticKeypair, KeyError> {
    let path = dir.join(KEY_FILE_NAME);
    match load(&path)? {
        Some(keypair) => Ok(keypair),
        None => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
            create(dir, &path, &secret)?;
            // Load what is on disk: another process may have won the race to create it.
            match load(&path)? {
                Some(keypair) => {
                    log::info!(
                        "this device's key is in {} (fingerprint {})",
                        path.display(),
                        keypair.public().fingerprint()
                    );
                    Ok(keypair)
                }
                None => Err(KeyError::Io {
                    path,
                    action: "create",
                    source: io::Error::new(io::ErrorKind::NotFound, "vanished after creation"),
                }),
            }
        }
    }
}

/// The key pair in `path`, `None` if there is no such file.
fn load(path: &Path) -> Result<Option<StaticKeypair>, KeyError> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_owned(),
                action: "read",
                source,
            })
        }
    };
    check_permissions(path)?;
    let secret = parse(&text).map_err(|detail| KeyError::Malformed {
        path: path.to_owned(),
        detail,
    })?;
    Ok(Some(StaticKeypair::from_secret(secret)))
}

/// The secret in a key file's contents, or what is wrong with them.
fn parse(bytes: &[u8]) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_owned())?;
    let text = text.trim_end();
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    if text.len() != HEX_DIGITS {
        return Err(format!(
            "{} characters instead of {HEX_DIGITS}",
            text.chars().count()
        ));
    }
    let mut secret = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => secret[i] = u8::try_from(high * 16 + low).unwrap_or(0),
            _ => return Err("a character that is not a hexadecimal digit".to_owned()),
        }
    }
    Ok(secret)
}

/// The file's contents for `secret` (format version 1).
fn format(secret: &[u8; 32]) -> String {
    let mut text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    text
}

/// Writes `secret` to `path` atomically, never replacing an existing file.
fn create(dir: &Path, path: &Path, secret: &[u8; 32]) -> Result<(), KeyError> {
    let io_error = |path: &Path, action: &'static str| {
        let path = path.to_owned();
        move |source| KeyError::Io {
            path,
            action,
            source,
        }
    };
    create_private_dir(dir).map_err(io_error(dir, "create the folder of"))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| KeyError::Random(e.to_string()))?;
    let temp = dir.join(format!(
        "{KEY_FILE_NAME}.{}-{}.tmp",
        std::process::id(),
        u64::from_le_bytes(suffix)
    ));
    let written = write_private(&temp, format(secret).as_bytes());
    let result = written
        .map_err(io_error(&temp, "write"))
        .and_then(|()| publish(&temp, path).map_err(io_error(path, "create")));
    // The temporary name goes in every case (after a hard link, the key keeps its own name).
    let _ = fs::remove_file(&temp);
    result?;
    sync_dir(dir).map_err(io_error(dir, "sync the folder of"))
}

/// Gives the written temporary file its final name unless a key exists there already (then
/// the existing key wins and this is not an error).
fn publish(temp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(link_error) => {
            // No hard links here (FAT, some network file systems): rename, which replaces, so
            // check first. A race with another first start-up in this window is the price.
            if path.exists() {
                return Ok(());
            }
            log::debug!("no hard link for the key file ({link_error}); renaming instead");
            fs::rename(temp, path)
        }
    }
}

/// Creates the data directory if needed; on Unix a new one is private to the user (0700).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Refuses a key file that group or others may read or write (Unix; on Windows the profile
/// folder's ACLs protect it, see the module docs).
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    match open_to_others(path) {
        Ok(None) => Ok(()),
        Ok(Some(mode)) => Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        }),
        Err(source) => Err(KeyError::Io {
            path: path.to_owned(),
            action: "read",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_creates_a_key_that_later_starts_load() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(KEY_FILE_NAME)).unwrap();
        assert_eq!(text.len(), 65, "{text:?}");
        assert!(text.ends_with('\n'));
        assert!(text[..64]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(text, format(first.secret()));
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(again.public(), first.public());
        assert_eq!(again.secret(), first.secret());
        // Nothing else is left in the folder (no temporary file).
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE_NAME]);
    }

    #[test]
    fn two_devices_get_different_keys() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = load_or_create(a.path()).unwrap();
        let b = load_or_create(b.path()).unwrap();
        assert_ne!(a.public(), b.public());
        assert_ne!(a.secret(), &[0u8; 32]);
    }

    #[test]
    fn a_missing_folder_is_created_and_an_old_folder_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("new").join("data");
        load_or_create(&nested).unwrap();
        assert!(nested.join(KEY_FILE_NAME).is_file());
        // An older data directory: a database but no key file.
        let old = tempfile::tempdir().unwrap();
        fs::write(old.path().join("socketfalco.db"), b"").unwrap();
        let key = load_or_create(old.path()).unwrap();
        assert_eq!(
            load_or_create(old.path()).unwrap().public(),
            key.public(),
            "created once"
        );
    }

    #[test]
    fn a_known_secret_loads_in_any_case_with_trailing_whitespace() {
        let secret = [0xab; 32];
        let want = StaticKeypair::from_secret(secret).public();
        for text in [
            format(&secret),
            "AB".repeat(32),
            format!("{}\r\n", "aB".repeat(32)),
            format!("{}\n\n", "ab".repeat(32)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            write_private(&dir.path().join(KEY_FILE_NAME), text.as_bytes()).unwrap();
            assert_eq!(
                load_or_create(dir.path()).unwrap().public(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_malformed_file_is_refused_and_left_alone() {
        for (text, why) in [
            ("", "empty"),
            ("\n", "empty"),
            ("abcd\n", "4 characters"),
            (&"a".repeat(66), "66 characters"),
            (
                &format!("{}zz\n", "a".repeat(62)),
                "not a hexadecimal digit",
            ),
            (&format!(" {}\n", "a".repeat(63)), "not a hexadecimal digit"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(KEY_FILE_NAME);
            write_private(&path, text.as_bytes()).unwrap();
            let err = load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, KeyError::Malformed { .. }),
                "{text:?}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(why), "{text:?}: {message}");
            assert!(message.contains(KEY_FILE_NAME), "{message}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text, "not replaced");
        }
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join(KEY_FILE_NAME), &[0xff; 65]).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for loose in [0o644, 0o640, 0o604, 0o620, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            let err = load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, KeyError::TooOpen { mode, .. } if mode == loose),
                "{loose:o}: {err:?}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        // Stricter than 0600 is fine; the key is the same.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap().public(), key.public());
    }

    #[test]
    fn an_existing_key_wins_over_a_concurrent_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let first = [1u8; 32];
        create(dir.path(), &path, &first).unwrap();
        // A second creation (a process that lost the race) does not replace the key.
        create(dir.path(), &path, &[2u8; 32]).unwrap();
        assert_eq!(
            load_or_create(dir.path()).unwrap().secret(),
            &first,
            "the first key stays"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE_NAME], "no temporary file is left");
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load_or_create(dir.path()).unwrap().public()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
    }
}
