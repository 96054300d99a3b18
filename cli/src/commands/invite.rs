//! `--invite [ADDRESS]`: one line that lets a peer reach this device and proves it.
//!
//! The invite names this device's static key and the ways to reach it: its onion address
//! (once `-l --onion` has published one from this data directory; its port is `-p`, 30000 by
//! default, as for the listener), the `--relay` given, and ADDRESS if given. A caller with `-c INVITE` connects the way it says and refuses, during
//! the handshake, any device that does not prove that key — so the first contact no longer
//! rests on trust alone. The invite alone is on standard output's first line (for scripts:
//! `socketfalco --invite | …`); the explanation goes to standard error.
//!
//! An invite holds no secret: whoever has it can call this device (as anyone who knows its
//! address can) and find it at the relay, but cannot pose as it.

use super::{ensure_identity, AppError, Context};
use crate::ui::Style;
use serde_json::json;
use socketfalco_reach::invite::Invite;

/// Prints the invite.
pub fn run(ctx: &Context, address: Option<(String, u16)>, port: u16) -> Result<(), AppError> {
    let mut db = ctx.open_database()?;
    let me = ensure_identity(ctx, &mut db)?;
    let host_port = |(host, port): &(String, u16)| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let invite = Invite {
        key: me.keypair.public().0,
        onion: stored_onion_address(ctx, port)?,
        relay: ctx.reach.relay.as_ref().map(host_port),
        address: address.as_ref().map(host_port),
    };
    let text = invite.encode().map_err(|e| AppError::new(e.to_string()))?;
    if ctx.style == Style::Json {
        outln!(
            "{}",
            json!({
                "event": "invite",
                "invite": text,
                "device": me.device.to_string(),
                "fingerprint": me.fingerprint(),
                "onion": invite.onion,
                "relay": invite.relay,
                "address": invite.address,
            })
        )?;
        return Ok(());
    }
    outln!("{text}")?;
    let mut ways = Vec::new();
    if let Some(onion) = &invite.onion {
        ways.push(format!(
            "the onion address {onion} (the caller needs --tor)"
        ));
    }
    if let Some(relay) = &invite.relay {
        ways.push(format!("the relay {relay}"));
    }
    if let Some(address) = &invite.address {
        ways.push(format!("the address {address}"));
    }
    let invocation = ctx.invocation();
    eprintln!(
        "Above: an invite to this device ({}, key fingerprint {}).",
        me.name,
        me.fingerprint()
    );
    if ways.is_empty() {
        eprintln!(
            "It names no way to reach this device yet: add --relay HOST:PORT or an ADDRESS \
             (`{invocation} --invite 203.0.113.5:30000`), or publish an onion service first \
             with `{invocation} -l --onion`."
        );
    } else {
        eprintln!("It reaches this device by {}.", ways.join(", then "));
    }
    eprintln!(
        "Give it to your peer (any messenger will do); they connect with: socketfalco -c INVITE\n\
         Their SocketFalco refuses any device that does not prove this key. The invite holds no \
         secret, but whoever has it can call this device."
    );
    if let Some(relay) = &invite.relay {
        eprintln!("Keep a listener at the relay: {invocation} -l --relay {relay}");
    }
    Ok(())
}

/// The onion address `-l --onion` published from this data directory, if any: its service
/// id, and `port` (the onion address's port is the listener's `-p`, 30000 by default).
fn stored_onion_address(ctx: &Context, port: u16) -> Result<Option<String>, AppError> {
    let key = crate::tor::service_key::load(&ctx.data_dir).map_err(AppError::new)?;
    Ok(key.map(|key| format!("{}.onion:{port}", key.service_id)))
}
