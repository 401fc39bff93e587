//! PROXY protocol v1 and v2 headers on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks_fuzz::proxy_invariants::check_proxy_header;

fuzz_target!(|data: &[u8]| {
    check_proxy_header(data);
});
