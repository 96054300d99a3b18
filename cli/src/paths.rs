//! Where SocketFalco keeps its files on this machine: the per-user data folder that holds the
//! database (see `store`). This module owns only the choice of folder, never its contents.
//!
//! - Linux (and other XDG systems): `$XDG_DATA_HOME/SocketFalco`, where `XDG_DATA_HOME` counts
//!   only when it is an absolute path (the XDG Base Directory spec says relative values must
//!   be ignored); otherwise `~/.local/share/SocketFalco`.
//! - Windows: the local (non-roaming) application data folder, `%LOCALAPPDATA%\SocketFalco`:
//!   a chat database must not roam between machines with a roaming profile. The
//!   `LOCALAPPDATA` variable counts when it holds an absolute path (so a user, a script or a
//!   test that points it elsewhere is followed, as other Windows programs do); otherwise the
//!   shell's known folder for local app data (what `dirs` asks Windows for) is used.
//! - macOS: `~/Library/Application Support/SocketFalco`.

use std::path::PathBuf;

/// The name of SocketFalco's folder inside the platform's data folder.
pub const APP_DIR_NAME: &str = "SocketFalco";

/// The folder SocketFalco keeps its data in when the user names none, or why there is none.
///
/// The folder is not created here; [`crate::store::Database::open`] creates it.
pub fn default_data_dir() -> Result<PathBuf, String> {
    data_dir_from(platform_data_dir())
}

/// The platform's per-user, non-roaming data folder, if there is one.
#[cfg(windows)]
fn platform_data_dir() -> Option<PathBuf> {
    local_app_data_from(std::env::var_os("LOCALAPPDATA")).or_else(dirs::data_local_dir)
}

/// The platform's per-user, non-roaming data folder, if there is one.
#[cfg(not(windows))]
fn platform_data_dir() -> Option<PathBuf> {
    // XDG_DATA_HOME when absolute, else ~/.local/share (Linux); dirs implements both rules.
    dirs::data_local_dir()
}

/// The `LOCALAPPDATA` value to follow: only an absolute path. An empty or relative value
/// (`AppData\Local`, `\Users\x` without a drive) is ignored, as XDG ignores a relative
/// XDG_DATA_HOME: it would put the data wherever the program happens to be started.
#[cfg(any(windows, test))]
fn local_app_data_from(value: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let path = PathBuf::from(value?);
    path.is_absolute().then_some(path)
}

/// [`default_data_dir`] given the platform folder found (or not found).
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

    #[test]
    fn an_absolute_localappdata_is_followed() {
        let base = std::env::temp_dir().join("local app data ñ");
        assert_eq!(
            local_app_data_from(Some(base.clone().into_os_string())),
            Some(base)
        );
    }

    #[test]
    fn an_unset_empty_or_relative_localappdata_is_ignored() {
        assert_eq!(local_app_data_from(None), None);
        for value in [
            "",
            "AppData\\Local",
            "AppData/Local",
            "\\Users\\me\\AppData\\Local",
        ] {
            assert_eq!(local_app_data_from(Some(value.into())), None, "{value:?}");
        }
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

    /// Runs this test binary again, only the test `test`, with the environment variables `vars`
    /// set (`Some`) or removed (`None`), and returns the data folder the child found ("" for
    /// none). A child process, so that no test changes the environment of the other tests
    /// running in parallel threads. The calling test must start with [`child_prints_data_dir`].
    #[cfg(any(target_os = "linux", windows))]
    fn data_dir_in_child(test: &str, vars: &[(&str, Option<&str>)]) -> String {
        // The test's name as the test harness knows it (the module path without the crate).
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{module}::{test}");
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["--exact", name.as_str(), "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        for (var, value) in vars {
            match value {
                Some(value) => cmd.env(var, value),
                None => cmd.env_remove(var),
            };
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .find_map(|l| l.split_once("DATA_DIR=").map(|(_, dir)| dir))
            .unwrap_or_else(|| panic!("no DATA_DIR line in {stdout}"))
            .to_owned()
    }

    #[cfg(any(target_os = "linux", windows))]
    const CHILD: &str = "SOCKETFALCO_PATHS_TEST_CHILD";

    /// In the child of [`data_dir_in_child`]: prints what the lookup gives in the environment
    /// the parent set, and returns true (the test then returns at once).
    #[cfg(any(target_os = "linux", windows))]
    fn child_prints_data_dir() -> bool {
        if std::env::var_os(CHILD).is_none() {
            return false;
        }
        println!(
            "DATA_DIR={}",
            default_data_dir().unwrap_or_default().display()
        );
        true
    }

    /// On Linux, `dirs` honours an absolute XDG_DATA_HOME and ignores a relative one, as the
    /// XDG spec says.
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_honours_only_an_absolute_xdg_data_home() {
        if child_prints_data_dir() {
            return;
        }
        let run = |xdg: Option<&str>| {
            data_dir_in_child(
                "linux_honours_only_an_absolute_xdg_data_home",
                &[("XDG_DATA_HOME", xdg), ("HOME", Some("/home/u"))],
            )
        };
        assert_eq!(run(Some("/xdg/data")), "/xdg/data/SocketFalco");
        assert_eq!(
            run(Some("relative/data")),
            "/home/u/.local/share/SocketFalco"
        );
        assert_eq!(run(Some("")), "/home/u/.local/share/SocketFalco");
        assert_eq!(run(None), "/home/u/.local/share/SocketFalco");
    }

    /// On Windows, an absolute %LOCALAPPDATA% is followed; an unset, empty or relative one
    /// falls back to the shell's known folder (what `dirs` finds).
    #[cfg(windows)]
    #[test]
    fn windows_follows_only_an_absolute_localappdata() {
        if child_prints_data_dir() {
            return;
        }
        let run = |value: Option<&str>| {
            data_dir_in_child(
                "windows_follows_only_an_absolute_localappdata",
                &[("LOCALAPPDATA", value)],
            )
        };
        let base = std::env::temp_dir().join("Local App Data ñ");
        let base_s = base.to_str().unwrap();
        assert_eq!(
            run(Some(base_s)),
            base.join("SocketFalco").display().to_string()
        );
        // The known folder: "" only on a machine without a user profile.
        let known = run(None);
        assert!(
            known.is_empty() || known.ends_with("\\SocketFalco"),
            "{known:?}"
        );
        assert_ne!(known, base.join("SocketFalco").display().to_string());
        assert_eq!(run(Some("")), known);
        assert_eq!(run(Some("AppData\\Local")), known);
        assert_eq!(run(Some("\\Users\\me\\AppData\\Local")), known);
    }
}
