//! RFC 1929 credentials and status parsers on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocks::proto::auth::{Credentials, Status};
use ringsocks_fuzz::invariants::check_parser;

fuzz_target!(|data: &[u8]| {
    check_parser(data, Credentials::parse, Credentials::emit);
    check_parser(data, Status::parse, Status::emit);
});
