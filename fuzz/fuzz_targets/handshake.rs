//! The server handshake on any client bytes, split any way, with any driver verdicts.
//!
//! Input layout, so seeds are easy to write by hand:
//! byte 0: flags (bit 0 auth required, bit 1 accept credentials, bit 2 reject the request,
//! bit 3 reject the BIND peer, bit 4 IPv6 bound addresses); byte 1: the reject code;
//! bytes 2..5: write sizes (each + 1), cycled; the rest: what the client sends.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ringsocks::proto::{HandshakeConfig, ReplyCode};
use ringsocks_fuzz::invariants::{check_handshake, Script};

fuzz_target!(|data: &[u8]| {
    let Some((head, input)) = data.split_first_chunk::<5>() else {
        return;
    };
    let [flags, code, sizes @ ..] = *head;
    let bit = |n: u8| flags & (1 << n) != 0;
    let (bound, peer): (SocketAddr, SocketAddr) = if bit(4) {
        (
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::9]:51000".parse().unwrap(),
        )
    } else {
        (
            "198.51.100.7:40000".parse().unwrap(),
            "203.0.113.9:51000".parse().unwrap(),
        )
    };
    let code = ReplyCode::from_u8(code);
    let script = Script {
        accept_credentials: bit(1),
        verdict: if bit(2) { Err(code) } else { Ok(bound) },
        bind_peer: if bit(3) { Err(code) } else { Ok(peer) },
    };
    let config = HandshakeConfig {
        auth_required: bit(0),
    };
    let chunks = sizes.map(|s| usize::from(s) + 1);
    check_handshake(config, input, &chunks, &script);
});
