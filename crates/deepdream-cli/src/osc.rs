//! OSC control of a live feed: every live setting is an address, `/deepdream/NAME`, set by
//! the message's first argument (TouchDesigner, Resolume, a phone app).

use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use deepdream::modes::live::LiveSettings;
use rosc::{OscPacket, OscType};

/// The addresses' common prefix.
pub const PREFIX: &str = "/deepdream/";

/// Listens for OSC on `address` (`PORT` for every interface, or `HOST:PORT`) and applies
/// each message to `settings` on a thread of its own. A message that does not fit is
/// ignored with a warning (once per address).
pub fn listen(address: &str, settings: Arc<Mutex<LiveSettings>>) -> Result<()> {
    let address = if address.contains(':') {
        address.to_string()
    } else {
        format!("0.0.0.0:{address}")
    };
    let socket =
        UdpSocket::bind(&address).with_context(|| format!("cannot listen for OSC on {address}"))?;
    std::thread::spawn(move || {
        let mut warned = HashSet::new();
        let mut buffer = vec![0u8; rosc::decoder::MTU];
        while let Ok((size, _)) = socket.recv_from(&mut buffer) {
            match rosc::decoder::decode_udp(&buffer[..size]) {
                Ok((_, packet)) => apply(&packet, &settings, &mut warned),
                Err(error) => {
                    if warned.insert("undecodable".to_string()) {
                        note!(
                            "deepdream: warning: an OSC packet could not be read ({error}); ignored"
                        );
                    }
                }
            }
        }
    });
    Ok(())
}

/// Applies a message, or each message of a bundle.
fn apply(packet: &OscPacket, settings: &Mutex<LiveSettings>, warned: &mut HashSet<String>) {
    let message = match packet {
        OscPacket::Bundle(bundle) => {
            for inner in &bundle.content {
                apply(inner, settings, warned);
            }
            return;
        }
        OscPacket::Message(message) => message,
    };
    let value = message.args.first().map(|arg| match arg {
        OscType::Float(v) => v.to_string(),
        OscType::Double(v) => v.to_string(),
        OscType::Int(v) => v.to_string(),
        OscType::Long(v) => v.to_string(),
        OscType::String(v) => v.clone(),
        OscType::Bool(v) => u8::from(*v).to_string(),
        other => format!("{other:?}"),
    });
    let outcome = match (message.addr.strip_prefix(PREFIX), value) {
        (Some(name), Some(value)) => match settings.lock() {
            Ok(mut settings) => settings.set(name, &value).map_err(|e| e.to_string()),
            Err(_) => return,
        },
        (Some(_), None) => Err("it has no value".to_string()),
        (None, _) => Err(format!(
            "unknown OSC address (use {PREFIX}NAME: step, layers, channels, …)"
        )),
    };
    if let Err(reason) = outcome
        && warned.insert(message.addr.clone())
    {
        note!(
            "deepdream: warning: OSC {}: {reason}; ignored",
            message.addr
        );
    }
}
