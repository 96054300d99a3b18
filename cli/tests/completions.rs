//! `--completions SHELL` and `--man` from the real binary: the bash script loads without an
//! error and completes the legacy single-dash spellings; the manual page renders with
//! `man -l` (or groff where `man` is missing) and names the legacy spellings and the keys of
//! the chat view. zsh and fish check their scripts' syntax where they are installed.
//!
//! Unix only: the shells and `man` are Unix tools (the scripts for PowerShell are generated
//! the same way, from the same definition).
#![cfg(unix)]

mod common;

use common::{assert_ok, socketfalco, stderr, stdout};
use std::process::Command;

fn present(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn generated(args: &[&str], dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let out = socketfalco().args(args).output().unwrap();
    assert_ok(&out);
    let path = dir.path().join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn the_bash_script_loads_and_completes_the_legacy_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let script = generated(&["--completions", "bash"], &dir, "socketfalco.bash");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p socketfalco && \
             COMP_WORDS=(socketfalco -e) COMP_CWORD=1 && \
             _socketfalco socketfalco -e socketfalco && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stderr(&out), "", "loading printed errors");
    let shown = stdout(&out);
    for word in ["-eN", "-eC", "-editName", "-editChat"] {
        assert!(
            shown.split_whitespace().any(|w| w == word),
            "{word}: {shown}"
        );
    }
    // Also the way the README says to try it.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source <('{}' --completions bash)", common::BIN))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stderr(&out), "");
}

/// Runs `code` with `shell` (the program and its flags), which must succeed and print
/// nothing on standard error; returns its standard output, trimmed.
fn run_quietly(shell: &[&str], code: &str) -> String {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg(code)
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stderr(&out), "");
    stdout(&out).trim().to_owned()
}

/// After `-eC` (or `-editChat`, `--edit-chat`) bash offers the ids of the chats stored in the
/// data folder the line names, completing a prefix; `--chat-ids`, which it runs, prints
/// nothing on a folder with no database and creates nothing there.
#[test]
fn bash_completes_the_chat_ids_of_the_data_folder_on_the_line() {
    let (alice, bob) = common::alice_and_bob_met_and_parted();
    let dir = tempfile::tempdir().unwrap();
    let script = generated(&["--completions", "bash"], &dir, "socketfalco.bash");
    let complete = |words: &str, index: usize| {
        run_quietly(
            &["bash", "-c"],
            &format!(
                "source '{}' && COMP_WORDS=({words}) COMP_CWORD={index} && \
                 _socketfalco_with_chats && echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ),
        )
    };
    let data = bob.path().display().to_string();
    let alice_id = alice.id();
    for flag in ["-eC", "-editChat", "--edit-chat"] {
        let words = format!("'{}' --data-dir '{data}' {flag} ''", common::BIN);
        assert_eq!(complete(&words, 4), alice_id, "{flag}");
    }
    let words = format!(
        "'{}' --data-dir '{data}' -eC {}",
        common::BIN,
        &alice_id[..4]
    );
    assert_eq!(complete(&words, 4), alice_id, "a prefix");
    let words = format!("'{}' --data-dir '{data}' -eC zz", common::BIN);
    assert_eq!(complete(&words, 4), "", "no chat starts so");

    let empty = dir.path().join("no data here");
    let out = common::socketfalco()
        .args(["--data-dir", &empty.display().to_string(), "--chat-ids"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    assert!(!empty.exists(), "a Tab press created a data folder");
}

#[test]
fn zsh_offers_the_chat_ids_of_the_data_folder_on_the_line() {
    if !present("zsh") {
        if cfg!(target_os = "linux") {
            panic!("zsh is not installed (apt-get install zsh; .ci/run does)");
        }
        eprintln!("skipped: zsh is not installed");
        return;
    }
    let (alice, bob) = common::alice_and_bob_met_and_parted();
    let dir = tempfile::tempdir().unwrap();
    let script = generated(&["--completions", "zsh"], &dir, "_socketfalco");
    // The script's own function, as `_arguments` calls it for the argument of an option:
    // `words` is the command line, `CURRENT` the word being completed, and what it offers
    // goes to `compadd` (here printed, one candidate per line).
    let offered = |words: &str, current: usize| {
        run_quietly(
            &["zsh", "-f", "-c"],
            &format!(
                "compdef() {{ : }}; compadd() {{ [[ $1 == -- ]] && shift; print -rl -- \"$@\" }}; \
                 source '{}' && words=({words}) && CURRENT={current} && _socketfalco_chat_ids",
                script.display()
            ),
        )
    };
    let data = bob.path().display().to_string();
    let alice_id = alice.id();
    for flag in ["-eC", "-editChat", "--edit-chat", "--trust-new-key"] {
        let words = format!("'{}' --data-dir '{data}' {flag} ''", common::BIN);
        assert_eq!(offered(&words, 5), alice_id, "{flag}");
    }
    let words = format!("'{}' '--data-dir={data}' -eC ''", common::BIN);
    assert_eq!(offered(&words, 4), alice_id, "--data-dir=DIR");
    // Another data folder, with no chats: nothing to offer, and nothing created.
    let empty = dir.path().join("no data here");
    let words = format!("'{}' --data-dir '{}' -eC ''", common::BIN, empty.display());
    assert_eq!(offered(&words, 5), "");
    assert!(!empty.exists(), "a Tab press created a data folder");
}

#[test]
fn the_zsh_and_fish_scripts_parse_where_those_shells_are_installed() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        if !present(shell) {
            eprintln!("skipped: {shell} is not installed");
            continue;
        }
        let script = generated(&["--completions", shell], &dir, shell);
        let out = Command::new(shell)
            .args(check)
            .arg(&script)
            .output()
            .unwrap();
        assert_ok(&out);
    }
}

#[test]
fn the_manual_page_renders_with_the_legacy_spellings_and_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let page = generated(&["--man"], &dir, "socketfalco.1");
    let out = if present("man") {
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap()
    } else if present("groff") {
        Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(&page)
            .output()
            .unwrap()
    } else {
        if cfg!(target_os = "linux") {
            panic!("neither man nor groff is installed (apt-get install man-db; .ci/run does)");
        }
        eprintln!("skipped: neither man nor groff is installed");
        return;
    };
    assert_ok(&out);
    // Bold and underline come as overstrikes without a terminal: drop them.
    let text: String = stdout(&out)
        .split('\u{8}')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                part.chars().skip(1).collect()
            }
        })
        .collect::<String>()
        .replace(['\u{2010}', '\u{2212}'], "-");
    for word in [
        "-listen",
        "-ls",
        "-list",
        "-connect",
        "-eN",
        "-editName",
        "-eC",
        "-editChat",
        "-help",
        "PgUp",
        "--completions",
        "--man",
        "--bell",
        "--notify",
    ] {
        assert!(text.contains(word), "{word} is not in the page:\n{text}");
    }
}
