//! The `reach` fuzz target's check: whatever a proxy or a relay answers, and whatever text a
//! user pastes as an invite, a proxy URL or an onion name, the parsers of `socketfalco-reach`
//! never panic, keep their buffers bounded, keep their errors sticky and one line long, and
//! hand over exactly the bytes that follow a finished handshake.
//!
//! The first byte of the input picks the parser (its low three bits) and how the rest is cut
//! into pieces (the next three bits: 0 = in one piece, N = pieces of N bytes); the top bit
//! gives the SOCKS5 client credentials, so that the authentication step is reached too.

use socketfalco_reach::invite::Invite;
use socketfalco_reach::onion::{check_onion_v3, is_onion_host};
use socketfalco_reach::proxy::ProxySpec;
use socketfalco_reach::socks5::{Credentials, Socks5Client, Target};
use socketfalco_reach::transit::TransitClient;
use socketfalco_reach::Handshake;

/// The most a handshake may have queued for the other side at once: a SOCKS5 request with a
/// 255-byte name, or the RFC 1929 sub-negotiation with 255-byte fields, or the relay's line.
pub const MAX_QUEUED_OUTPUT: usize = 600;

/// Runs one fuzz input; panics when a property is broken (see the module docs).
pub fn check_reach(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from((selector >> 3) & 0x07);
    match selector & 0x07 {
        0 | 1 => check_socks5(rest, piece, selector & 0x80 != 0),
        2 | 3 => check_transit(rest, piece),
        4 => check_invite(rest),
        5 => check_proxy_url(rest),
        _ => check_onion(rest),
    }
}

/// The bytes of `stream` in pieces of `piece` bytes (all at once for 0).
fn pieces(stream: &[u8], piece: usize) -> impl Iterator<Item = &[u8]> {
    stream.chunks(if piece == 0 {
        stream.len().max(1)
    } else {
        piece
    })
}

/// Drives `client` with `stream` as the other side's answer, writing everything it queues
/// before each piece. Checks the properties every handshake shares.
fn drive<H: Handshake>(mut client: H, stream: &[u8], piece: usize) {
    let mut fed = 0;
    let mut failed = None;
    for bytes in pieces(stream, piece) {
        assert!(
            client.pending_output().len() <= MAX_QUEUED_OUTPUT,
            "{} bytes queued",
            client.pending_output().len()
        );
        let queued = client.pending_output().len();
        client.advance_output(queued);
        assert!(client.pending_output().is_empty(), "written output is gone");
        fed += bytes.len();
        match client.handle_input(bytes) {
            Ok(()) => assert!(failed.is_none(), "an error was not sticky"),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "a multi-line error: {text:?}");
                assert!(text.len() <= 300, "an error of {} bytes", text.len());
                if let Some(first) = &failed {
                    assert_eq!(first, &e, "an error was not sticky");
                }
                failed = Some(e);
            }
        }
        if failed.is_some() {
            assert!(!client.is_done(), "failed and done at once");
        }
    }
    if client.is_done() {
        // What follows the handshake is handed over as it came, and only once.
        let leftover = client.take_leftover();
        assert!(leftover.len() <= fed);
        assert_eq!(
            &stream[fed - leftover.len()..fed],
            &leftover[..],
            "the bytes after the handshake are not the stream's last ones"
        );
        assert!(
            client.take_leftover().is_empty(),
            "leftover handed over twice"
        );
    }
}

fn check_socks5(stream: &[u8], piece: usize, with_credentials: bool) {
    let credentials = with_credentials.then(|| Credentials {
        username: "falco".to_owned(),
        password: "secret".to_owned(),
    });
    let target = Target::Domain("example.org".to_owned(), 30_000);
    match Socks5Client::new(target, credentials) {
        Ok(client) => drive(client, stream, piece),
        Err(e) => panic!("a valid request was refused: {e}"),
    }
}

fn check_transit(stream: &[u8], piece: usize) {
    drive(TransitClient::new([0xab; 32], [0x01; 8]), stream, piece);
}

fn check_invite(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = Invite::looks_like_invite(&text);
    match Invite::decode(&text) {
        Ok(invite) => {
            // Whatever decodes encodes again, to text that decodes to the same invite.
            let again = invite.encode().expect("a decoded invite encodes");
            assert_eq!(Invite::decode(&again).as_ref(), Ok(&invite));
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a multi-line error: {e}"),
    }
}

fn check_proxy_url(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    match text.parse::<ProxySpec>() {
        Ok(spec) => {
            let shown = spec.to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
            if spec.credentials.is_some() {
                // A URL carries a password as `USER:PASSWORD@`; shown, the user part is the
                // (percent-encoded) name alone, without a password field.
                let user = shown
                    .split_once("://")
                    .and_then(|(_, rest)| rest.rsplit_once('@'))
                    .map(|(user, _)| user);
                assert!(
                    user.is_some_and(|user| !user.contains(':')),
                    "the password shows in {shown:?}"
                );
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a multi-line error: {e}"),
    }
}

fn check_onion(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let onion = is_onion_host(&text);
    if check_onion_v3(&text).is_ok() {
        assert!(
            onion,
            "a valid onion name that is not an onion host: {text:?}"
        );
    }
}
