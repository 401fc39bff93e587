//! The client side of a SOCKS5 UDP association (RFC 1928 §7): the control connection
//! that asks for it, the relay address it yields, and the datagram codec — SOCKS header
//! (through a server), then a payload carrying a sequence number and the send time.

use std::net::{SocketAddr, TcpStream, UdpSocket as StdUdp};
use std::time::Duration;

use mio::net::UdpSocket;
use ringsocks::proto::udp::Header;
use ringsocks::proto::Address;

use crate::error::{Error, SocksError};
use crate::run::Route;
use crate::socks::{handshake_blocking, Script, SetupError};

/// Room for the sequence number and the send time.
pub const MIN_SIZE: usize = 16;

/// One association as the client holds it.
pub struct Association {
    /// The client's UDP socket, non-blocking, on 127.0.0.1.
    pub sock: UdpSocket,
    /// Where datagrams go: the server's relay, or the target on the direct path.
    pub relay: SocketAddr,
    /// Through a server, the TCP connection the association lives as long as.
    pub control: Option<TcpStream>,
}

/// Opens one association: the UDP socket and, through a server, its control connection.
pub fn associate(
    route: &Route,
    timeout: Duration,
    target: SocketAddr,
) -> Result<Association, Error> {
    let std_sock = StdUdp::bind(SocketAddr::new(crate::LOOPBACK, 0))
        .map_err(|e| Error::io("cannot bind a UDP socket", e))?;
    let local = std_sock
        .local_addr()
        .map_err(|e| Error::io("UDP socket", e))?;
    std_sock
        .set_nonblocking(true)
        .map_err(|e| Error::io("UDP socket", e))?;
    let sock = UdpSocket::from_std(std_sock);
    let Some(proxy) = route.proxy else {
        return Ok(Association {
            sock,
            relay: target,
            control: None,
        });
    };
    let ctx = |e| Error::io(format!("control connection to the SOCKS server {proxy}"), e);
    let mut control = TcpStream::connect_timeout(&proxy, timeout).map_err(ctx)?;
    control.set_nodelay(true).map_err(ctx)?;
    control.set_read_timeout(Some(timeout)).map_err(ctx)?;
    control.set_write_timeout(Some(timeout)).map_err(ctx)?;
    let script = Script::udp_associate(route.auth.as_ref(), local);
    let bound = match handshake_blocking(&mut control, &script) {
        Ok(done) => done.bound,
        Err(SetupError::Socks(e)) => return Err(Error::Socks(e)),
        Err(SetupError::Io(e)) => return Err(ctx(e)),
    };
    let relay = match bound {
        // A relay bound to the wildcard address is reached at the server's address.
        Address::Ip(sa) if sa.ip().is_unspecified() => SocketAddr::new(proxy.ip(), sa.port()),
        Address::Ip(sa) => sa,
        Address::Domain(name, port) => {
            return Err(Error::Socks(SocksError::Malformed {
                step: "reply",
                detail: format!("UDP relay given as a host name ({name}:{port}), not an address"),
            }))
        }
    };
    Ok(Association {
        sock,
        relay,
        control: Some(control),
    })
}

/// Encodes datagrams into one reusable buffer: SOCKS header (through a server), then
/// sequence number, send time and filler.
pub struct Codec {
    buf: Vec<u8>,
    header_len: usize,
    via_proxy: bool,
    target: SocketAddr,
    pattern: Box<[u8]>,
}

impl Codec {
    /// Payloads of `size` bytes (at least [`MIN_SIZE`]) to `target`.
    pub fn new(via_proxy: bool, size: usize, target: SocketAddr) -> Codec {
        let mut buf = Vec::new();
        if via_proxy {
            Header {
                frag: 0,
                address: Address::Ip(target),
            }
            .emit(&mut buf);
        }
        let header_len = buf.len();
        let pattern = crate::pattern(size.max(MIN_SIZE));
        buf.extend_from_slice(&pattern);
        Codec {
            buf,
            header_len,
            via_proxy,
            target,
            pattern,
        }
    }

    /// The whole datagram to send, with this sequence number and send time.
    pub fn encode(&mut self, seq: u64, sent_ns: u64) -> &[u8] {
        let p = self.header_len;
        self.buf[p..p + 8].copy_from_slice(&seq.to_le_bytes());
        self.buf[p + 8..p + 16].copy_from_slice(&sent_ns.to_le_bytes());
        &self.buf
    }

    /// Returns (sequence number, send time in ns) of a valid echo.
    pub fn decode(&self, datagram: &[u8]) -> Result<(u64, u64), Error> {
        let payload = if self.via_proxy {
            match Header::parse(datagram) {
                Ok(Some((h, off))) if h.frag == 0 && h.address == Address::Ip(self.target) => {
                    &datagram[off..]
                }
                Ok(Some((h, _))) => {
                    return Err(Error::Socks(SocksError::Malformed {
                        step: "UDP datagram",
                        detail: format!(
                            "header FRAG {} from {}, expected FRAG 0 from {}",
                            h.frag, h.address, self.target
                        ),
                    }))
                }
                Ok(None) | Err(_) => {
                    return Err(Error::Socks(SocksError::Malformed {
                        step: "UDP datagram",
                        detail: "truncated or invalid header".into(),
                    }))
                }
            }
        } else {
            datagram
        };
        if payload.len() != self.pattern.len() || payload[16..] != self.pattern[16..] {
            return Err(Error::Corrupt(format!(
                "a {}-byte datagram came back as {} bytes or with other contents",
                self.pattern.len(),
                payload.len()
            )));
        }
        let seq = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
        let ns = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
        Ok((seq, ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SocketAddr {
        "127.0.0.1:9000".parse().unwrap()
    }

    #[test]
    fn round_trips_through_a_socks_header() {
        let mut c = Codec::new(true, 40, target());
        let d = c.encode(7, 12345).to_vec();
        assert_eq!(&d[..10], &[0, 0, 0, 1, 127, 0, 0, 1, 0x23, 0x28]);
        assert_eq!(d.len(), 10 + 40);
        assert_eq!(c.decode(&d).unwrap(), (7, 12345));
    }

    #[test]
    fn refuses_wrong_header_fragment_and_contents() {
        let mut c = Codec::new(true, 40, target());
        let mut d = c.encode(1, 1).to_vec();
        d[2] = 1; // FRAG
        assert!(matches!(c.decode(&d), Err(Error::Socks(_))));
        let mut d = c.encode(1, 1).to_vec();
        d[9] ^= 1; // another source port
        assert!(matches!(c.decode(&d), Err(Error::Socks(_))));
        let mut d = c.encode(1, 1).to_vec();
        let last = d.len() - 1;
        d[last] ^= 0xff;
        assert!(matches!(c.decode(&d), Err(Error::Corrupt(_))));
        assert!(matches!(c.decode(&d[..20]), Err(Error::Corrupt(_))));
        assert!(matches!(c.decode(&[0, 0]), Err(Error::Socks(_))));
    }

    #[test]
    fn direct_datagrams_have_no_header() {
        let mut c = Codec::new(false, 16, target());
        let d = c.encode(3, 4).to_vec();
        assert_eq!(d.len(), 16);
        assert_eq!(c.decode(&d).unwrap(), (3, 4));
    }
}
