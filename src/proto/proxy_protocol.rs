//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's proxy-protocol.txt
//! defines it: the header a load balancer puts in front of a relayed connection to carry
//! the real client's address.
//!
//! [`Header::parse`] reads one header from the front of the bytes received so far. Like
//! every parser here it never panics, reports `Incomplete` while the bytes seen are a valid
//! prefix, and fails as soon as a byte cannot start a valid header (a client that does not
//! speak the protocol is dropped at its first byte, not after a timeout). A header is at
//! most [`MAX_HEADER_LEN`] bytes; whatever follows it is the client's SOCKS handshake.
//!
//! The listener decides whether a header is required, from its configuration and the
//! peer's address (trusted balancers only); the protocol forbids guessing from the bytes.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Parse;

/// A version 1 line, CRLF included, is at most 107 bytes (the spec's worst case:
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// The 12 bytes that open a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version and command, family and transport, length.
pub const V2_FIXED_LEN: usize = 16;

/// The largest version 2 address block (addresses and TLVs) accepted. The spec's address
/// blocks are at most 216 bytes; balancers add TLVs (SSL details, unique ids, cloud
/// endpoint ids) of a few hundred at most. Anything longer is refused, so a peer cannot
/// make the server buffer 64 KiB before the handshake.
pub const V2_MAX_PAYLOAD: usize = 1024;

/// The most bytes a header can take; a buffer this large always holds a whole header.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;

const V1_PREFIX: &[u8] = b"PROXY ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// A relayed TCP connection: the client is `source`, and it connected to
    /// `destination` (the balancer's address).
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// Version 2 LOCAL: the balancer's own connection (a health check). Use the real
    /// connection's addresses.
    Local,
    /// Version 1 UNKNOWN, or a version 2 family or transport this server does not relay
    /// (unspecified, UDP, Unix). Use the real connection's addresses.
    Unknown,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub endpoints: Endpoints,
}

/// A version 1 field that is missing or not in the form the spec requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    Protocol,
    SourceAddress,
    DestinationAddress,
    SourcePort,
    DestinationPort,
    /// Fewer or more than the five fields of TCP4 / TCP6.
    FieldCount,
}

/// Why the bytes are not a valid header. Every error means: close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes start neither a version 1 nor a version 2 header.
    NotProxyProtocol,
    /// Version 1: no CRLF in the first 107 bytes.
    LineTooLong,
    /// Version 1: a CR or LF that is not the final CRLF.
    BadLineEnd,
    /// Version 1: a field is malformed.
    BadField(V1Field),
    /// Version 2: the version nibble is not 2.
    UnsupportedVersion(u8),
    /// Version 2: the command is neither LOCAL nor PROXY.
    UnknownCommand(u8),
    /// Version 2: an address family or transport the spec does not define.
    UnknownFamily(u8),
    /// Version 2: the address block is shorter than its family needs.
    AddressTooShort,
    /// Version 2: the header is longer than [`MAX_HEADER_LEN`].
    TooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProxyProtocol => f.write_str("no PROXY protocol header"),
            Error::LineTooLong => f.write_str("PROXY v1 line longer than 107 bytes"),
            Error::BadLineEnd => f.write_str("PROXY v1 line with a stray CR or LF"),
            Error::BadField(field) => write!(f, "PROXY v1 line with a bad {field:?} field"),
            Error::UnsupportedVersion(v) => write!(f, "PROXY v2 header with version {v}"),
            Error::UnknownCommand(c) => write!(f, "PROXY v2 header with command {c:#x}"),
            Error::UnknownFamily(b) => write!(f, "PROXY v2 header with family byte {b:#04x}"),
            Error::AddressTooShort => f.write_str("PROXY v2 address block too short"),
            Error::TooLong(n) => write!(f, "PROXY v2 header of {n} bytes is too long"),
        }
    }
}

impl std::error::Error for Error {}

impl Header {
    /// Parses a header of either version from the front of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Parse<Header>, Error> {
        match buf.first() {
            None => Ok(Parse::Incomplete),
            Some(b'P') => parse_v1(buf),
            Some(b'\r') => parse_v2(buf),
            Some(_) => Err(Error::NotProxyProtocol),
        }
    }

    /// The client's address, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.endpoints {
            Endpoints::Tcp { source, .. } => Some(source),
            Endpoints::Local | Endpoints::Unknown => None,
        }
    }

    /// Appends the header in its version's format.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self.version {
            Version::V1 => emit_v1(&self.endpoints, out),
            Version::V2 => emit_v2(&self.endpoints, out),
        }
    }
}

/// `Incomplete` if `buf` is a strict prefix of `sig`, an error at the first byte that
/// differs.
fn check_prefix(buf: &[u8], sig: &[u8]) -> Result<(), Error> {
    let n = buf.len().min(sig.len());
    if buf[..n] == sig[..n] {
        Ok(())
    } else {
        Err(Error::NotProxyProtocol)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parse<Header>, Error> {
    check_prefix(buf, V1_PREFIX)?;
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        // A CR anywhere but last cannot be the start of the final CRLF.
        if window.iter().rev().skip(1).any(|&b| b == b'\r') {
            return Err(Error::BadLineEnd);
        }
        if buf.len() >= V1_MAX_LEN {
            return Err(Error::LineTooLong);
        }
        return Ok(Parse::Incomplete);
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::BadLineEnd);
    }
    let line = &window[V1_PREFIX.len()..lf - 1];
    if line.contains(&b'\r') {
        return Err(Error::BadLineEnd);
    }
    let endpoints = v1_fields(line)?;
    Ok(Parse::Complete {
        msg: Header {
            version: Version::V1,
            endpoints,
        },
        consumed: lf + 1,
    })
}

/// The fields after `PROXY `, up to the CRLF.
fn v1_fields(line: &[u8]) -> Result<Endpoints, Error> {
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        Some(b"UNKNOWN") => return Ok(Endpoints::Unknown),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return Err(Error::BadField(V1Field::Protocol)),
    };
    let mut next = || fields.next().ok_or(Error::BadField(V1Field::FieldCount));
    let src = v1_ip(next()?, v6, V1Field::SourceAddress)?;
    let dst = v1_ip(next()?, v6, V1Field::DestinationAddress)?;
    let sport = v1_port(next()?, V1Field::SourcePort)?;
    let dport = v1_port(next()?, V1Field::DestinationPort)?;
    if fields.next().is_some() {
        return Err(Error::BadField(V1Field::FieldCount));
    }
    Ok(Endpoints::Tcp {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })
}

/// An address of the family the protocol named. Rust's parsers already refuse what the
/// spec forbids for IPv4 (leading zeros, fewer or more than four numbers).
fn v1_ip(text: &[u8], v6: bool, field: V1Field) -> Result<IpAddr, Error> {
    let text = std::str::from_utf8(text).map_err(|_| Error::BadField(field))?;
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| Error::BadField(field))
}

/// A decimal port, 0 to 65535, without leading zeros.
fn v1_port(text: &[u8], field: V1Field) -> Result<u16, Error> {
    let bad = Error::BadField(field);
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    if text.len() > 1 && text[0] == b'0' {
        return Err(bad);
    }
    let n = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Parse<Header>, Error> {
    check_prefix(buf, &V2_SIGNATURE)?;
    // Refuse a bad version or command as soon as its byte is here.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(Error::UnsupportedVersion(ver_cmd >> 4));
        }
        if ver_cmd & 0x0f > 1 {
            return Err(Error::UnknownCommand(ver_cmd & 0x0f));
        }
    }
    if let Some(&fam) = buf.get(13) {
        if fam >> 4 > 3 || fam & 0x0f > 2 {
            return Err(Error::UnknownFamily(fam));
        }
    }
    if buf.len() < V2_FIXED_LEN {
        return Ok(Parse::Incomplete);
    }
    let (local, fam) = (buf[12] & 0x0f == 0, buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_FIXED_LEN + len;
    if len > V2_MAX_PAYLOAD {
        return Err(Error::TooLong(total));
    }
    if buf.len() < total {
        return Ok(Parse::Incomplete);
    }
    let block = &buf[V2_FIXED_LEN..total];
    let (family, transport) = (fam >> 4, fam & 0x0f);
    let needed = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    // Lengths are checked even where the addresses are then ignored (a block too short
    // for its own family is not a header the spec allows), except for LOCAL, whose
    // family the spec says to ignore.
    if !local && transport != 0 && block.len() < needed {
        return Err(Error::AddressTooShort);
    }
    let endpoints = if local {
        Endpoints::Local
    } else {
        match (family, transport) {
            (1, 1) => {
                let ip =
                    |o: usize| IpAddr::from([block[o], block[o + 1], block[o + 2], block[o + 3]]);
                let port = |o: usize| u16::from_be_bytes([block[o], block[o + 1]]);
                Endpoints::Tcp {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                }
            }
            (2, 1) => {
                let ip = |o: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&block[o..o + 16]);
                    IpAddr::from(octets)
                };
                let port = |o: usize| u16::from_be_bytes([block[o], block[o + 1]]);
                Endpoints::Tcp {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                }
            }
            // The spec lets a receiver fall back to the real endpoints for what it does
            // not support.
            _ => Endpoints::Unknown,
        }
    };
    Ok(Parse::Complete {
        msg: Header {
            version: Version::V2,
            endpoints,
        },
        consumed: total,
    })
}

/// Both addresses of one family: IPv4 when both are, else IPv6 (IPv4 mapped).
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |sa: SocketAddr| match sa.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), sa.port()),
        IpAddr::V6(_) => sa,
    };
    if source.is_ipv4() && destination.is_ipv4() {
        (source, destination)
    } else {
        (v6(source), v6(destination))
    }
}

/// Appends a version 1 line. Local and Unknown are both sent as `PROXY UNKNOWN`.
pub fn emit_v1(endpoints: &Endpoints, out: &mut Vec<u8>) {
    match *endpoints {
        Endpoints::Tcp {
            source,
            destination,
        } => {
            let (s, d) = same_family(source, destination);
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            // Writing to a Vec cannot fail.
            let _ = write!(
                out,
                "PROXY {proto} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            );
        }
        Endpoints::Local | Endpoints::Unknown => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
    }
}

/// Appends a version 2 header without TLVs. Unknown is sent as PROXY with an unspecified
/// family, Local as LOCAL.
pub fn emit_v2(endpoints: &Endpoints, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    match *endpoints {
        Endpoints::Local => out.extend_from_slice(&[0x20, 0x00, 0, 0]),
        Endpoints::Unknown => out.extend_from_slice(&[0x21, 0x00, 0, 0]),
        Endpoints::Tcp {
            source,
            destination,
        } => match same_family(source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                out.extend_from_slice(&[0x21, 0x11, 0, 12]);
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&d.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
            (s, d) => {
                let octets = |sa: SocketAddr| match sa.ip() {
                    IpAddr::V6(ip) => ip.octets(),
                    IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                };
                out.extend_from_slice(&[0x21, 0x21, 0, 36]);
                out.extend_from_slice(&octets(s));
                out.extend_from_slice(&octets(d));
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
        },
    }
}

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod tests;
