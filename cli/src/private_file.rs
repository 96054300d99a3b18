//! Files only this user may read — the device key (`identity.key`) and the onion service key:
//! creating one durably with owner-only permissions from the start, making its name durable,
//! and checking that nobody else was given access since. On Windows the data directory's
//! access control list (the user's local application data) protects them instead.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// Creates a new file readable by its owner alone (0600 on Unix), writes `bytes`, and fsyncs
/// it. Fails if the file exists.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a directory entry change (a new name, a rename) durable. Unix only: Windows has no
/// directory handle to sync, and NTFS journals its metadata.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// The file's permission bits if its group or others may read or write it (Unix); `None`
/// when only the owner may, and always on Windows.
pub(crate) fn open_to_others(path: &Path) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}
