//! SOCKS5 greeting, method selection, request and reply parsers on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks::proto::socks5::{Greeting, MethodSelection, Reply, Request};
use ringsocks_fuzz::invariants::check_parser;

fuzz_target!(|data: &[u8]| {
    check_parser(data, Greeting::parse, Greeting::emit);
    check_parser(data, MethodSelection::parse, MethodSelection::emit);
    check_parser(data, Request::parse, Request::emit);
    check_parser(data, Reply::parse, Reply::emit);
});
