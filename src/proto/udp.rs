//! The SOCKS5 UDP request header (RFC 1928 §7): RSV(2), FRAG, ATYP, DST.ADDR, DST.PORT,
//! then the payload. With an IPv6 address the header is 22 bytes, with IPv4 10.

use super::{Address, Error, Parse};

/// The largest header: a 255-byte domain.
pub const MAX_HEADER_LEN: usize = 3 + 1 + 1 + 255 + 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Fragment number; 0 is a whole datagram. Anything else is dropped (no reassembly).
    pub frag: u8,
    pub address: Address,
}

impl Header {
    /// Parses the header of a whole datagram and returns it with the payload's offset.
    /// A datagram is never partial, so `Incomplete` becomes `None`: a truncated header is
    /// dropped like any other malformed datagram.
    pub fn parse(datagram: &[u8]) -> Result<Option<(Header, usize)>, Error> {
        if datagram.len() < 4 {
            return Ok(None);
        }
        let frag = datagram[2];
        match Address::parse(&datagram[3..])? {
            Parse::Incomplete => Ok(None),
            Parse::Complete { msg, consumed } => {
                Ok(Some((Header { frag, address: msg }, 3 + consumed)))
            }
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, self.frag]);
        self.address.emit(out);
    }

    pub fn wire_len(&self) -> usize {
        3 + self.address.wire_len()
    }
}
