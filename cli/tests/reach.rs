//! Reaching a peer across networks, end to end with the real binary and the real servers
//! from Debian's packages on 127.0.0.1: a SOCKS5 proxy (`microsocks`) and a magic-wormhole
//! transit relay (`twistd3 transitrelay`), each started by the test (see
//! `common/servers.rs`). The stories of `e2e.rs` run once more through each; then what is
//! particular to each path: credentials, a proxy that is not there, what the relay sees, an
//! invite naming another key, a relay that restarts. (The Tor network itself cannot be
//! reached from a machine without internet; `onion.rs` tests the onion service with a tor
//! started offline.)

#![cfg(target_os = "linux")]

mod common;

use common::via::{contains, invite, Microsocks, Recorder, TransitRelay, Via};
use common::{stderr, stories, Device, Session};

// ----- the stories, through a proxy and through a relay -----

#[test]
fn through_a_proxy_a_chat_both_ways() {
    let socks = Microsocks::start(None);
    stories::a_chat_both_ways_then_listed_by_both(&Via::Proxy(socks.url(None)));
}

#[test]
fn through_a_proxy_offline_lines_are_delivered_with_roles_swapped() {
    let socks = Microsocks::start(None);
    stories::offline_messages_from_edit_chat_are_delivered_with_roles_swapped(&Via::Proxy(
        socks.url(None),
    ));
}

#[test]
fn through_a_proxy_a_killed_peer_loses_nothing() {
    let socks = Microsocks::start(None);
    stories::a_killed_peer_loses_nothing_and_nothing_is_doubled(&Via::Proxy(socks.url(None)));
}

#[test]
fn through_a_relay_a_chat_both_ways() {
    let relay = TransitRelay::start();
    stories::a_chat_both_ways_then_listed_by_both(&Via::Relay(relay.addr()));
}

#[test]
fn through_a_relay_offline_lines_are_delivered_with_roles_swapped() {
    let relay = TransitRelay::start();
    stories::offline_messages_from_edit_chat_are_delivered_with_roles_swapped(&Via::Relay(
        relay.addr(),
    ));
}

#[test]
fn through_a_relay_a_killed_peer_loses_nothing() {
    let relay = TransitRelay::start();
    stories::a_killed_peer_loses_nothing_and_nothing_is_doubled(&Via::Relay(relay.addr()));
}

#[test]
fn through_a_proxy_to_a_relay_a_chat_both_ways_and_the_relay_sees_only_the_proxy() {
    let relay = TransitRelay::start();
    let recorder = Recorder::start(relay.port());
    let socks = Microsocks::start(None);
    // The listener waits at the relay directly; the caller reaches the relay through the
    // proxy, by name (socks5h).
    let relay_name = format!("localhost:{}", recorder.addr().rsplit(':').next().unwrap());
    stories::a_chat_both_ways_then_listed_by_both(&Via::RelayThroughProxy(
        relay_name,
        socks.url(None),
    ));
    assert!(contains(&recorder.bytes(), b"please relay"));
}

// ----- the proxy -----

#[test]
fn a_proxy_with_a_username_and_password_carries_the_chat_and_a_wrong_password_is_a_clear_error() {
    let socks = Microsocks::start(Some(("falco", "s3cret")));
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, port) = alice.listen();
    let mut caller = Via::Proxy(socks.url(Some(("falco", "s3cret")))).connect(&bob, &alice, port);
    caller.connected();
    listener.connected();
    caller.say("through the proxy");
    listener.received("through the proxy");
    caller.finish();

    let url = socks.url(Some(("falco", "wrong")));
    let target = format!("localhost:{port}");
    let out = bob.run(&["--proxy", &url, "-c", &target]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(line.contains("password"), "{err}");
    assert!(line.contains(&target), "names the target: {err}");
    assert!(line.contains("127.0.0.1"), "names the proxy: {err}");
    assert!(!err.contains("wrong"), "the password is never shown: {err}");
    listener.finish();
}

#[test]
fn a_proxy_that_is_not_there_is_a_clear_error_naming_it() {
    let bob = Device::new("bob");
    let port = common::servers::free_port();
    let url = format!("socks5h://127.0.0.1:{port}");
    let out = bob.run(&["--proxy", &url, "-c", "localhost:30000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the proxy {url} is not reachable")),
        "{err}"
    );
    assert!(err.contains("localhost:30000"), "{err}");
}

#[test]
fn an_onion_address_without_a_proxy_is_refused_at_once_and_never_looked_up() {
    let bob = Device::new("bob");
    let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";
    let out = bob.run(&["-c", onion]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tor"), "{}", stderr(&out));
    // A mistyped onion name is caught by its checksum.
    let typo = onion.replacen('d', "e", 1);
    let out = bob.run(&["--tor", "-c", &typo]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("onion"), "{}", stderr(&out));
}

// ----- the relay -----

#[test]
fn through_a_relay_the_relay_sees_no_text_names_or_ids() {
    let relay = TransitRelay::start();
    let recorder = Recorder::start(relay.port());
    let via = Via::Relay(recorder.addr());
    let alice = Device::new("alice-listens");
    let bob = Device::new("bob-calls");
    let (mut listener, port) = via.listen(&alice);
    let mut caller = via.connect(&bob, &alice, port);
    caller.connected();
    listener.connected();
    let secret_a = "the password is swordfish";
    let secret_b = "meet me at the old mill at nine";
    caller.say(secret_a);
    listener.received(secret_a);
    listener.say(secret_b);
    caller.received(secret_b);
    caller.finish();
    listener.finish();
    let seen = recorder.bytes();
    assert!(
        seen.len() > 500,
        "the chat crossed the relay: {} bytes",
        seen.len()
    );
    assert!(contains(&seen, b"please relay"), "the relay's handshake");
    for needle in [
        secret_a.as_bytes(),
        secret_b.as_bytes(),
        b"alice-listens",
        b"bob-calls",
        alice.id().as_bytes(),
        bob.id().as_bytes(),
        alice.id().replace('-', "").as_bytes(),
        bob.id().replace('-', "").as_bytes(),
    ] {
        assert!(
            !contains(&seen, needle),
            "the relay saw {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    for id in [alice.id(), bob.id()] {
        let raw: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&id.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert!(!contains(&seen, &raw), "the relay saw a raw device id");
    }
}

#[test]
fn an_invite_naming_another_key_is_refused_and_no_message_passes() {
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let mallory = Device::new("mallory");
    let (mut listener, port) = alice.listen();
    listener.say("for whoever calls");
    // An invite with mallory's key, pointing at alice's address.
    let wrong = invite(&mallory, &[&format!("127.0.0.1:{port}")]);
    let caller = Session::spawn(bob.command(&["-c", &wrong, "--json"]));
    let (status, events, err) = caller.exit_events();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("not the expected device"), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(
        !err.contains("reinstalled"),
        "no advice meant for a pinned key: {err}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "connected" && e["event"] != "message"),
        "{events:?}"
    );
    // The right invite connects.
    let right = invite(&alice, &[&format!("127.0.0.1:{port}")]);
    let mut caller = Session::spawn(bob.command(&["-c", &right, "--json"]));
    caller.connected();
    // The key was proved against the invite: the first contact says so.
    caller.wait_for("first contact", |e| {
        e["event"] == "first_contact" && e["invited"] == true
    });
    caller.received("for whoever calls");
    caller.finish();
    listener.finish();
    assert!(
        bob.list().iter().all(|c| c["chat"] != mallory.id()),
        "no chat with the device the wrong invite named"
    );
}

/// The proxy goes away in the middle of a chat: the caller says why it cannot get back — the
/// proxy, by name — not only that it tries again; once the proxy is back, what was written
/// meanwhile goes through it.
#[test]
fn when_the_proxy_goes_away_the_caller_names_it_and_comes_back_through_it() {
    let socks = Microsocks::start(None);
    let port = socks.port();
    let via = Via::Proxy(socks.url(None));
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, listen_port) = via.listen(&alice);
    let mut caller = via.connect(&bob, &alice, listen_port);
    caller.connected();
    socks.stop();
    let lost = caller.wait_for("the loss", |e| e["event"] == "peer_left");
    assert_eq!(lost["code"], 9, "connection lost: {lost}");
    let retry = caller.wait_for("why the attempts fail", |e| {
        e["event"] == "reconnecting" && e["error"].as_str().is_some()
    });
    let why = retry["error"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("could not connect to localhost:{listen_port}"))
            && why.contains(&format!(
                "the proxy socks5h://127.0.0.1:{port} is not reachable"
            )),
        "{retry}"
    );
    caller.say("written while the proxy was away");
    let socks = Microsocks::start_on(port, None);
    listener.received("written while the proxy was away");
    caller.finish();
    listener.finish();
    socks.stop();
}

#[test]
fn after_the_relay_restarts_the_listener_is_reachable_through_it_again() {
    let relay = TransitRelay::start();
    let port = relay.port();
    let via = Via::Relay(relay.addr());
    let alice = Device::new("alice");
    let bob = Device::new("bob");
    let (mut listener, listen_port) = via.listen(&alice);
    relay.stop();
    listener.wait_for("relay lost", |e| e["event"] == "relay_unavailable");
    listener.seen.clear();
    let relay = TransitRelay::start_on(port);
    // The listener joins it again by itself (backoff: 1 s, 2 s, …).
    listener.wait_for("back at the relay", |e| e["event"] == "relay_waiting");
    let mut caller = via.connect(&bob, &alice, listen_port);
    caller.connected();
    caller.say("after the restart");
    listener.received("after the restart");
    caller.finish();
    listener.finish();
    relay.stop();
}
