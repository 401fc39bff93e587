//! The SOCKS5 UDP header parser, and the relay's reading of a client datagram, on any
//! datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks_fuzz::invariants::{check_client_datagram, check_udp_header};

fuzz_target!(|data: &[u8]| {
    check_udp_header(data);
    check_client_datagram(data);
});
