//! Destination addresses as SOCKS5 carries them: ATYP, address, port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{need, Error, Parse};

pub(crate) const ATYP_IPV4: u8 = 0x01;
pub(crate) const ATYP_DOMAIN: u8 = 0x03;
pub(crate) const ATYP_IPV6: u8 = 0x04;

/// The longest domain name a SOCKS5 address can carry (its length is one byte).
pub const MAX_DOMAIN_LEN: usize = 255;

/// A destination: an IP socket address, or a host name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl Address {
    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(sa) => sa.port(),
            Address::Domain(_, port) => *port,
        }
    }

    /// A domain that is really an IP literal ("127.0.0.1", "::1", "[::1]") becomes an IP
    /// address, so it never reaches a resolver.
    pub fn normalized(self) -> Address {
        match self {
            Address::Domain(ref name, port) => {
                let bare = name
                    .strip_prefix('[')
                    .and_then(|n| n.strip_suffix(']'))
                    .unwrap_or(name);
                match bare.parse::<IpAddr>() {
                    Ok(ip) => Address::Ip(SocketAddr::new(ip, port)),
                    Err(_) => self,
                }
            }
            ip => ip,
        }
    }

    /// Bytes this address takes on the wire: ATYP, address, port. Agrees with
    /// [`Address::emit`], which cuts a domain to [`MAX_DOMAIN_LEN`].
    pub fn wire_len(&self) -> usize {
        match self {
            Address::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            Address::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            Address::Domain(name, _) => 1 + 1 + name.len().min(MAX_DOMAIN_LEN) + 2,
        }
    }

    /// Parses ATYP, address and port from the front of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Parse<Address>, Error> {
        need!(buf, 1);
        match buf[0] {
            ATYP_IPV4 => {
                need!(buf, 7);
                let ip = Ipv4Addr::new(buf[1], buf[2], buf[3], buf[4]);
                let port = u16::from_be_bytes([buf[5], buf[6]]);
                Ok(Parse::Complete {
                    msg: Address::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port))),
                    consumed: 7,
                })
            }
            ATYP_IPV6 => {
                need!(buf, 19);
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&buf[1..17]);
                let port = u16::from_be_bytes([buf[17], buf[18]]);
                let sa = SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0);
                Ok(Parse::Complete {
                    msg: Address::Ip(SocketAddr::V6(sa)),
                    consumed: 19,
                })
            }
            ATYP_DOMAIN => {
                need!(buf, 2);
                let len = buf[1] as usize;
                if len == 0 {
                    return Err(Error::EmptyDomain);
                }
                need!(buf, 2 + len + 2);
                let name = domain_from_bytes(&buf[2..2 + len])?;
                let port = u16::from_be_bytes([buf[2 + len], buf[3 + len]]);
                Ok(Parse::Complete {
                    msg: Address::Domain(name, port),
                    consumed: 2 + len + 2,
                })
            }
            other => Err(Error::UnknownAddressType(other)),
        }
    }

    /// Appends ATYP, address and port. A domain longer than [`MAX_DOMAIN_LEN`] cannot be
    /// carried; callers construct domains through [`Address::parse`] or check the length.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Address::Ip(SocketAddr::V4(sa)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&sa.ip().octets());
                out.extend_from_slice(&sa.port().to_be_bytes());
            }
            Address::Ip(SocketAddr::V6(sa)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&sa.ip().octets());
                out.extend_from_slice(&sa.port().to_be_bytes());
            }
            Address::Domain(name, port) => {
                let name = &name.as_bytes()[..name.len().min(MAX_DOMAIN_LEN)];
                out.push(ATYP_DOMAIN);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
                out.extend_from_slice(&port.to_be_bytes());
            }
        }
    }
}

/// A host name as received: printable ASCII only, so it can be logged and handed to a
/// resolver as is. Anything else (NUL, control bytes, non-ASCII) is refused here rather
/// than by a resolver later.
pub(crate) fn domain_from_bytes(bytes: &[u8]) -> Result<String, Error> {
    if bytes.iter().all(|b| b.is_ascii_graphic()) {
        // All bytes are ASCII, so this is valid UTF-8.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Err(Error::InvalidDomain)
    }
}

impl From<SocketAddr> for Address {
    fn from(sa: SocketAddr) -> Self {
        Address::Ip(sa)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(sa) => write!(f, "{sa}"),
            Address::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}
