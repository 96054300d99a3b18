//! The onion service's key file in the data directory ([`FILE_NAME`]): the ed25519 private
//! key tor made for the listener's onion service at its first `-l --onion`, and the service
//! id (the address) it gives. Handing the key back to tor at every later start publishes the
//! same address. This module owns the file: its format, where it is, how it is written and
//! who may read it.
//!
//! # Format
//!
//! ```text
//! # comment lines (the first says what the file is)
//! service-id <56 base32 characters>
//! private-key ED25519-V3:<88 base64 characters>
//! ```
//!
//! Trailing whitespace (a `\r\n` after editing on Windows) is accepted. A file that is not in
//! this format is refused with an error naming it, never replaced: a new key is a new
//! address, which every peer would have to be given again.
//!
//! # Permissions and writing
//!
//! Whoever holds the key can publish the address (not impersonate the device: the peers
//! check its Noise key). On Unix the file is created with mode `0600` from the start (never
//! chmod-ed afterwards) and a file that group or others may read is refused on load, as
//! `identity.key` is. On Windows the data directory's access control lists (the user's
//! local application-data folder) protect it; no further check is made. It is written
//! atomically: a temporary file in the same directory, written and fsynced, then renamed.

use super::control::{is_key_blob, is_service_id};
use crate::private_file::{open_to_others, sync_dir, write_private};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The key file's name inside the data directory.
pub const FILE_NAME: &str = "onion-service.key";

/// The first line of the file.
const HEADER: &str = "# SocketFalco onion service key: whoever holds this file can publish the \
                      address below. Keep it private; losing it changes the address.";

/// The onion service's key and address.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceKey {
    /// The service id: the address without `.onion`.
    pub service_id: String,
    /// The private key's base64 blob, after `ED25519-V3:`.
    pub private_key: String,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey")
            .field("service_id", &self.service_id)
            .field("private_key", &"…")
            .finish()
    }
}

/// The key file's path in `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The key stored in `data_dir`, `None` if there is none yet.
pub fn load(data_dir: &Path) -> Result<Option<ServiceKey>, String> {
    let path = path_in(data_dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the onion service key file {}: {e}",
                path.display()
            ))
        }
    };
    check_permissions(&path)?;
    parse(&bytes).map(Some).map_err(|detail| {
        format!(
            "the onion service key file {} is damaged ({detail}); restore it from a backup, or \
             move it away to get a new key and a new address",
            path.display()
        )
    })
}

/// Stores `key` in `data_dir`, replacing the file atomically.
pub fn save(data_dir: &Path, key: &ServiceKey) -> Result<(), String> {
    let path = path_in(data_dir);
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)
        .map_err(|e| format!("no random bytes from the operating system: {e}"))?;
    let temp = data_dir.join(format!(
        "{FILE_NAME}.{}-{}.tmp",
        std::process::id(),
        u64::from_le_bytes(suffix)
    ));
    let result = write_private(&temp, format(key).as_bytes())
        .and_then(|()| fs::rename(&temp, &path))
        .and_then(|()| sync_dir(data_dir));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| {
        format!(
            "cannot save the onion service key to {}: {e}; without it the address would \
             change at the next start",
            path.display()
        )
    })
}

/// The file's contents for `key`.
pub fn format(key: &ServiceKey) -> String {
    format!(
        "{HEADER}\nservice-id {}\nprivate-key ED25519-V3:{}\n",
        key.service_id, key.private_key
    )
}

/// The key in a file's contents, or what is wrong with them.
pub fn parse(bytes: &[u8]) -> Result<ServiceKey, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_owned())?;
    let mut service_id = None;
    let mut private_key = None;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(id) = line.strip_prefix("service-id ") {
            if !is_service_id(id) {
                return Err("the service-id line is not a v3 onion service id".to_owned());
            }
            service_id = Some(id.to_owned());
        } else if let Some(key) = line.strip_prefix("private-key ") {
            match key
                .strip_prefix("ED25519-V3:")
                .filter(|blob| is_key_blob(blob))
            {
                Some(blob) => private_key = Some(blob.to_owned()),
                None => return Err("the private-key line is not an ED25519-V3 key".to_owned()),
            }
        } else {
            return Err("a line that is neither service-id nor private-key".to_owned());
        }
    }
    match (service_id, private_key) {
        (Some(service_id), Some(private_key)) => Ok(ServiceKey {
            service_id,
            private_key,
        }),
        (None, _) => Err("no service-id line".to_owned()),
        (_, None) => Err("no private-key line".to_owned()),
    }
}

/// Refuses a key file that group or others may read or write (Unix; on Windows the data
/// directory's ACLs protect it).
fn check_permissions(path: &Path) -> Result<(), String> {
    match open_to_others(path) {
        Ok(None) => Ok(()),
        Ok(Some(mode)) => Err(format!(
            "the onion service key file {} is accessible to other users (mode {mode:03o}); \
             refusing to use a key others may have read. If you are sure nobody did, run \
             `chmod 600 {}` and try again",
            path.display(),
            path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ndpq7tncthqml2wrrcjj2rl3i4mtbtbbgvdgxdcvnwskblll33aqrkid";
    const KEY: &str =
        "eLAKh4l1luZ6AVrhnvnYqbezrDVzaK4wh26vdRHgv3quMukqYC7KXoSZdrrwq4+Vl+DYBLOT6P4BlPn/keon4w==";

    fn key() -> ServiceKey {
        ServiceKey {
            service_id: ID.to_owned(),
            private_key: KEY.to_owned(),
        }
    }

    #[test]
    fn the_format_reads_back() {
        let text = format(&key());
        assert!(text.starts_with("# SocketFalco onion service key"));
        assert_eq!(parse(text.as_bytes()), Ok(key()));
        let windows = text.replace('\n', "\r\n");
        assert_eq!(parse(windows.as_bytes()), Ok(key()));
        // The key never shows in debug output.
        assert!(!format!("{:?}", key()).contains(KEY));
    }

    #[test]
    fn damaged_files_are_refused() {
        for bad in [
            "".to_owned(),
            format!("service-id {ID}\n"),
            format!("private-key ED25519-V3:{KEY}\n"),
            format!("service-id {ID}x\nprivate-key ED25519-V3:{KEY}\n"),
            format!("service-id {ID}\nprivate-key RSA1024:{KEY}\n"),
            format!("service-id {ID}\nprivate-key ED25519-V3:{KEY} Flags=Detach\n"),
            format!("service-id {ID}\nprivate-key ED25519-V3:{KEY}\nmore\n"),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn saved_keys_load_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Ok(None));
        save(dir.path(), &key()).unwrap();
        assert_eq!(load(dir.path()), Ok(Some(key())));
        // Saving again replaces it, leaving no temporary file behind.
        save(dir.path(), &key()).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = path_in(dir.path());
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let e = load(dir.path()).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
        }
        fs::write(path_in(dir.path()), "garbage\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path_in(dir.path()), fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = load(dir.path()).unwrap_err();
        assert!(e.contains("damaged"), "{e}");
    }
}
