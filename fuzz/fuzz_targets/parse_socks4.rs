//! SOCKS4/4a request and reply parsers on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks::proto::socks4::{Reply, Request};
use ringsocks_fuzz::invariants::check_parser;

fuzz_target!(|data: &[u8]| {
    check_parser(data, Request::parse, Request::emit);
    check_parser(data, Reply::parse, Reply::emit);
});
