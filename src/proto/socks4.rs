//! SOCKS4 and SOCKS4a messages.
//!
//! SOCKS4a marks a request whose host name follows the user id with DSTIP 0.0.0.x, x ≠ 0.
//! Both NUL-terminated fields are capped at [`MAX_FIELD_LEN`] bytes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::addr::domain_from_bytes;
use super::{need, Address, Error, Field, Parse, ReplyCode};

pub const VERSION: u8 = 0x04;
/// VN of a reply (not 4).
pub const REPLY_VERSION: u8 = 0x00;

pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_BIND: u8 = 0x02;

/// The longest user id or host name accepted, without its NUL.
pub const MAX_FIELD_LEN: usize = 255;

/// VN, CD, DSTPORT, DSTIP, USERID, NUL [, HOST, NUL].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: u8,
    /// An IPv4 address (SOCKS4) or a host name (SOCKS4a).
    pub address: Address,
    pub user_id: Vec<u8>,
}

/// DSTIP 0.0.0.x, x ≠ 0: a SOCKS4a host name follows the user id.
fn is_socks4a_marker(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[..3] == [0, 0, 0] && o[3] != 0
}

/// Finds a NUL in `buf`, which starts at a capped field.
fn nul_field(buf: &[u8], field: Field) -> Result<Option<usize>, Error> {
    match buf.iter().take(MAX_FIELD_LEN + 1).position(|&b| b == 0) {
        Some(i) => Ok(Some(i)),
        None if buf.len() > MAX_FIELD_LEN => Err(Error::TooLong(field)),
        None => Ok(None),
    }
}

impl Request {
    pub fn parse(buf: &[u8]) -> Result<Parse<Request>, Error> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(Error::UnknownVersion(buf[0]));
        }
        need!(buf, 8);
        let command = buf[1];
        let port = u16::from_be_bytes([buf[2], buf[3]]);
        let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
        let Some(ulen) = nul_field(&buf[8..], Field::Socks4UserId)? else {
            return Ok(Parse::Incomplete);
        };
        let user_id = buf[8..8 + ulen].to_vec();
        let mut consumed = 8 + ulen + 1;
        let address = if is_socks4a_marker(&ip) {
            let Some(hlen) = nul_field(&buf[consumed..], Field::Socks4Host)? else {
                return Ok(Parse::Incomplete);
            };
            if hlen == 0 {
                return Err(Error::EmptyDomain);
            }
            let host = domain_from_bytes(&buf[consumed..consumed + hlen])?;
            consumed += hlen + 1;
            Address::Domain(host, port)
        } else {
            Address::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        };
        Ok(Parse::Complete {
            msg: Request {
                command,
                address,
                user_id,
            },
            consumed,
        })
    }

    /// Appends the request. An IPv6 address cannot be carried, nor can 0.0.0.x (x ≠ 0),
    /// which marks SOCKS4a: both are sent as SOCKS4a with their text form; a domain is
    /// sent as SOCKS4a.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.command]);
        out.extend_from_slice(&self.address.port().to_be_bytes());
        let host = match &self.address {
            Address::Ip(SocketAddr::V4(sa)) if is_socks4a_marker(sa.ip()) => {
                Some(sa.ip().to_string())
            }
            Address::Ip(SocketAddr::V4(sa)) => {
                out.extend_from_slice(&sa.ip().octets());
                None
            }
            Address::Ip(SocketAddr::V6(sa)) => Some(sa.ip().to_string()),
            Address::Domain(name, _) => Some(name.clone()),
        };
        if host.is_some() {
            out.extend_from_slice(&[0, 0, 0, 1]);
        }
        out.extend_from_slice(&self.user_id);
        out.push(0);
        if let Some(host) = host {
            out.extend_from_slice(host.as_bytes());
            out.push(0);
        }
    }
}

/// VN = 0, CD, DSTPORT, DSTIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// 90 granted, 91 rejected (92, 93 are identd failures, never sent here).
    pub code: u8,
    pub bound: SocketAddrV4,
}

impl Reply {
    pub const LEN: usize = 8;

    /// A reply for `code`. SOCKS4 can only carry an IPv4 bound address: an IPv4-mapped
    /// IPv6 address is sent as the IPv4 address it carries, any other as 0.0.0.0 with
    /// the port kept (0.0.0.0 tells the client to use the server's address).
    pub fn new(code: ReplyCode, bound: Option<SocketAddr>) -> Reply {
        let bound = match bound {
            Some(SocketAddr::V4(sa)) => sa,
            Some(SocketAddr::V6(sa)) => {
                let ip = sa.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
                SocketAddrV4::new(ip, sa.port())
            }
            None => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        };
        Reply {
            code: code.socks4(),
            bound,
        }
    }

    pub fn parse(buf: &[u8]) -> Result<Parse<Reply>, Error> {
        need!(buf, 8);
        let port = u16::from_be_bytes([buf[2], buf[3]]);
        let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
        Ok(Parse::Complete {
            msg: Reply {
                code: buf[1],
                bound: SocketAddrV4::new(ip, port),
            },
            consumed: 8,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[REPLY_VERSION, self.code]);
        out.extend_from_slice(&self.bound.port().to_be_bytes());
        out.extend_from_slice(&self.bound.ip().octets());
    }
}
