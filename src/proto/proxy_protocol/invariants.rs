//! Properties the PROXY protocol parser keeps on any input, whatever its split.
//!
//! Shared by the tests here and the fuzz target `parse_proxy_protocol`, which includes this
//! file by path with `crate::proto` re-exported, so both check exactly the same rules.
//! Every loop is bounded by the input's length.

use crate::proto::proxy_protocol::{Header, MAX_HEADER_LEN};
use crate::proto::Parse;

/// On `buf`: no panic; a header is exactly its bytes (every shorter prefix is
/// incomplete, what follows is left) and re-encodes to a header that parses to the same
/// endpoints; `Incomplete` never outlasts [`MAX_HEADER_LEN`] bytes; an error is the same
/// error on every prefix that is not incomplete and whatever follows.
pub fn check_proxy_header(buf: &[u8]) {
    let whole = Header::parse(buf);
    match &whole {
        Ok(Parse::Complete { msg, consumed }) => {
            let n = *consumed;
            assert!(0 < n && n <= buf.len().min(MAX_HEADER_LEN), "consumed {n}");
            assert_eq!(Header::parse(&buf[..n]), whole, "the header alone");
            for i in 0..n {
                assert_eq!(
                    Header::parse(&buf[..i]),
                    Ok(Parse::Incomplete),
                    "prefix {i}"
                );
            }
            let mut out = Vec::new();
            msg.emit(&mut out);
            match Header::parse(&out) {
                Ok(Parse::Complete {
                    msg: back,
                    consumed,
                }) => {
                    assert_eq!(consumed, out.len());
                    assert_eq!(back, *msg, "re-encoded {out:02x?}");
                }
                other => panic!("re-encoded {msg:?} as {out:02x?}: {other:?}"),
            }
        }
        Ok(Parse::Incomplete) => {
            assert!(
                buf.len() < MAX_HEADER_LEN,
                "incomplete after {} bytes",
                buf.len()
            );
            for i in 0..buf.len() {
                assert_eq!(
                    Header::parse(&buf[..i]),
                    Ok(Parse::Incomplete),
                    "prefix {i}"
                );
            }
        }
        Err(e) => {
            for i in 0..buf.len() {
                let r = Header::parse(&buf[..i]);
                assert!(
                    r == Ok(Parse::Incomplete) || r == whole,
                    "prefix {i}: {r:?}, not {e:?}"
                );
            }
            let mut longer = buf.to_vec();
            longer.extend_from_slice(&[0; 4]);
            assert_eq!(Header::parse(&longer), whole, "more bytes after an error");
        }
    }
}
