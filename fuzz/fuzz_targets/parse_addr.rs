//! `Address::parse` (ATYP, address, port) on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks::proto::Address;
use ringsocks_fuzz::invariants::check_parser;

fuzz_target!(|data: &[u8]| {
    check_parser(data, Address::parse, Address::emit);
});
