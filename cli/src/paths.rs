//! Where SocketFalco keeps its files on this machine: the per-user data folder that holds the
//! database (see `store.rs`). This module owns only the choice of folder, never its contents.
//!
//! - Linux (and other XDG systems): `$XDG_DATA_HOME/SocketFalco`, where `XDG_DATA_HOME` counts
//!   only when it is an absolute path (the XDG Base Directory spec says relative values must
//!   be ignored); otherwise `~/.local/share/SocketFalco`.
//! - Windows: the local (non-roaming) application data folder, `%LOCALAPPDATA%\SocketFalco`:
//!   a chat database must not roam between machines with a roaming profile.
//! - macOS: `~/Library/Application Support/SocketFalco`.

use std::path::PathBuf;

/// The name of SocketFalco's folder inside the platform's data folder.
pub const APP_DIR_NAME: &str = "SocketFalco";

/// The folder SocketFalco keeps its data in when the user names none, or why there is none.
///
/// The folder is not created here; [`crate::store::Database::open`] creates it.
pub fn default_data_dir() -> Result<PathBuf, String> {
    data_dir_from(dirs::data_local_dir())
}

/// [`default_data_dir`] given the platform folder `dirs` found (or did not find).
fn data_dir_from(base: Option<PathBuf>) -> Result<PathBuf, String> {
    match base {
        // `dirs` already drops a relative XDG_DATA_HOME; this also guards a relative HOME
        // (or a future change in `dirs`): a data folder relative to wherever the program
        // happens to be started would scatter chats across folders.
        Some(base) if base.is_absolute() => Ok(base.join(APP_DIR_NAME)),
        Some(base) => Err(format!(
            "the data folder {} is not an absolute path; pass --data-dir DIR",
            base.display()
        )),
        None => Err(NO_HOME.to_owned()),
    }
}

#[cfg(windows)]
const NO_HOME: &str =
    "cannot find the local application data folder (%LOCALAPPDATA%); pass --data-dir DIR";

#[cfg(not(windows))]
const NO_HOME: &str =
    "cannot find the home directory (HOME is unset and the user has no home in the password \
     database), nor an absolute XDG_DATA_HOME; pass --data-dir DIR";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_folder_goes_inside_the_platform_folder() {
        let base = std::env::temp_dir().join("data");
        assert_eq!(
            data_dir_from(Some(base.clone())),
            Ok(base.join("SocketFalco"))
        );
    }

    #[test]
    fn no_platform_folder_is_a_clear_error() {
        let err = data_dir_from(None).unwrap_err();
        assert!(err.contains("pass --data-dir DIR"), "{err}");
    }

    #[test]
    fn a_relative_platform_folder_is_refused() {
        let err = data_dir_from(Some(PathBuf::from("relative/share"))).unwrap_err();
        assert!(err.contains("relative/share"), "{err}");
        assert!(err.contains("not an absolute path"), "{err}");
    }

    /// The real lookup on this machine: absolute, and ends in our folder name.
    #[test]
    fn the_default_folder_is_absolute_and_ours() {
        // A machine without any home (some CI sandboxes) gives the error instead.
        if let Ok(dir) = default_data_dir() {
            assert!(dir.is_absolute(), "{}", dir.display());
            assert_eq!(dir.file_name().and_then(|n| n.to_str()), Some(APP_DIR_NAME));
        }
    }

    /// On Linux, `dirs` honours an absolute XDG_DATA_HOME and ignores a relative one, as the
    /// XDG spec says. Checked in a child process so this test never changes the environment
    /// of the other tests running in parallel threads.
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_honours_only_an_absolute_xdg_data_home() {
        const CHILD: &str = "SOCKETFALCO_PATHS_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            // The child: print what the lookup gives in the environment the parent set.
            println!(
                "DATA_DIR={}",
                default_data_dir().unwrap_or_default().display()
            );
            return;
        }
        // This test's name as the test harness knows it (the module path without the crate).
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{module}::linux_honours_only_an_absolute_xdg_data_home");
        let run = |xdg: Option<&str>, home: &str| -> String {
            let exe = std::env::current_exe().unwrap();
            let mut cmd = std::process::Command::new(exe);
            cmd.args(["--exact", name.as_str(), "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .env("HOME", home);
            match xdg {
                Some(x) => cmd.env("XDG_DATA_HOME", x),
                None => cmd.env_remove("XDG_DATA_HOME"),
            };
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let stdout = String::from_utf8(out.stdout).unwrap();
            stdout
                .lines()
                .find_map(|l| l.split_once("DATA_DIR=").map(|(_, dir)| dir))
                .unwrap_or_else(|| panic!("no DATA_DIR line in {stdout}"))
                .to_owned()
        };
        assert_eq!(run(Some("/xdg/data"), "/home/u"), "/xdg/data/SocketFalco");
        assert_eq!(
            run(Some("relative/data"), "/home/u"),
            "/home/u/.local/share/SocketFalco"
        );
        assert_eq!(run(Some(""), "/home/u"), "/home/u/.local/share/SocketFalco");
        assert_eq!(run(None, "/home/u"), "/home/u/.local/share/SocketFalco");
    }
}
