//! UDP for the ASSOCIATE tests: a datagram target (echo or sink) and a SOCKS5 UDP client
//! that speaks the RFC 1928 §7 header through the product's own encoder and parser.

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringsocks::proto::udp::Header;
use ringsocks::proto::{socks5, Address, ReplyCode};

use super::socks;
use super::wait::{wait_until, IO_TIMEOUT};

/// Datagrams the target keeps (source and payload) for the test to inspect; past this it
/// only counts, so a burst does not fill memory.
const LOG_LIMIT: usize = 1000;

/// How long the target's receive blocks before it looks at its stop flag.
const TARGET_POLL: Duration = Duration::from_millis(50);

/// Datagrams as received: source and payload.
type Log = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// What a [`UdpTarget`] does with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sends it back from the socket it arrived on.
    Echo,
    /// Sends it back from a second socket on another port: the reply's source is then
    /// not the address the client sent to, so a relay that reports the destination
    /// instead of the real source shows.
    EchoFromOtherPort,
    /// Keeps it.
    Sink,
}

/// A UDP peer behind the relay, on loopback, served by one thread.
pub struct UdpTarget {
    addr: SocketAddr,
    reply_from: SocketAddr,
    received: Arc<AtomicU64>,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpTarget {
    /// Binds `bind` ("127.0.0.1:0", "[::1]:0").
    pub fn start(bind: &str, mode: Mode) -> UdpTarget {
        let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind UDP {bind}: {e}"));
        let addr = sock.local_addr().expect("local address");
        let replier = match mode {
            Mode::EchoFromOtherPort => {
                let other = SocketAddr::new(addr.ip(), 0);
                UdpSocket::bind(other).unwrap_or_else(|e| panic!("bind UDP {other}: {e}"))
            }
            _ => sock.try_clone().expect("clone the target socket"),
        };
        let reply_from = replier.local_addr().expect("local address");
        sock.set_read_timeout(Some(TARGET_POLL)).unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, log, stop) = (received.clone(), log.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::SeqCst);
                    {
                        let mut log = log.lock().unwrap();
                        if log.len() < LOG_LIMIT {
                            log.push((src, buf[..n].to_vec()));
                        }
                    }
                    if mode != Mode::Sink {
                        let _ = replier.send_to(&buf[..n], src);
                    }
                }
            })
        };
        UdpTarget {
            addr,
            reply_from,
            received,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Where datagrams for this target go.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where its answers come from.
    pub fn reply_from(&self) -> SocketAddr {
        self.reply_from
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// The first datagrams received: source and payload.
    pub fn log(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.log.lock().unwrap().clone()
    }

    /// The payloads logged so far.
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.log().into_iter().map(|(_, p)| p).collect()
    }

    /// The sources datagrams came from (the relay's outbound sockets), each once.
    pub fn sources(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self.log().into_iter().map(|(s, _)| s).collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Drop for UdpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A datagram the relay sent to the client, its SOCKS header parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub frag: u8,
    /// The remote the payload came from, as the header reports it.
    pub from: Address,
    pub header_len: usize,
    pub payload: Vec<u8>,
}

/// What ASSOCIATE's DST.ADDR/PORT declares.
#[derive(Debug, Clone)]
pub enum Declare {
    /// 0.0.0.0:0: "I don't know where I will send from".
    Zeros,
    /// The client UDP socket's own address (what RFC 1928 asks for).
    Own,
    /// Anything else, e.g. the destination (a common client mistake).
    This(Address),
}

/// The header and payload of one client datagram.
pub fn datagram(frag: u8, dest: &Address, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 32);
    Header {
        frag,
        address: dest.clone(),
    }
    .emit(&mut out);
    out.extend_from_slice(payload);
    out
}

/// A UDP association: its control connection, the advertised relay address and the
/// client's UDP socket.
pub struct UdpClient {
    pub control: TcpStream,
    /// BND.ADDR/PORT of the ASSOCIATE reply.
    pub bound: SocketAddr,
    /// Where datagrams go: `bound`, unless the test redirects it.
    pub relay: SocketAddr,
    pub socket: UdpSocket,
}

impl UdpClient {
    /// Opens an association on `proxy` for a UDP socket bound to `bind`, declaring
    /// zeros; panics unless the proxy grants it.
    #[track_caller]
    pub fn open(proxy: SocketAddr, bind: &str) -> UdpClient {
        UdpClient::open_declaring(proxy, bind, Declare::Zeros)
    }

    #[track_caller]
    pub fn open_declaring(proxy: SocketAddr, bind: &str, declare: Declare) -> UdpClient {
        match UdpClient::try_open(proxy, bind, declare) {
            Ok(client) => client,
            Err(reply) => panic!("UDP ASSOCIATE via {proxy} refused: {reply:?}"),
        }
    }

    /// Like [`UdpClient::open_declaring`]; a refusal comes back as the reply and the
    /// control connection.
    #[track_caller]
    pub fn try_open(
        proxy: SocketAddr,
        bind: &str,
        declare: Declare,
    ) -> Result<UdpClient, (socks5::Reply, TcpStream)> {
        UdpClient::try_open_as(proxy, bind, declare, None)
    }

    /// Like [`UdpClient::try_open`], authenticating with `creds` when given.
    #[track_caller]
    pub fn try_open_as(
        proxy: SocketAddr,
        bind: &str,
        declare: Declare,
        creds: Option<socks::Creds>,
    ) -> Result<UdpClient, (socks5::Reply, TcpStream)> {
        let socket = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind UDP {bind}: {e}"));
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let declared = match declare {
            Declare::Zeros => Address::Ip(socks5::UNSPECIFIED),
            Declare::Own => Address::Ip(socket.local_addr().unwrap()),
            Declare::This(a) => a,
        };
        let mut control = socks::dial(proxy);
        let reply =
            socks::socks5_handshake(&mut control, socks5::CMD_UDP_ASSOCIATE, &declared, creds)
                .unwrap_or_else(|e| panic!("UDP ASSOCIATE via {proxy}: {e}"));
        if reply.code != ReplyCode::Succeeded {
            return Err((reply, control));
        }
        let Address::Ip(bound) = reply.bound else {
            panic!("ASSOCIATE reply names a domain: {reply:?}");
        };
        Ok(UdpClient {
            control,
            bound,
            relay: bound,
            socket,
        })
    }

    /// The client socket's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends `payload` for `dest` (FRAG 0).
    pub fn send(&self, dest: &Address, payload: &[u8]) {
        self.send_raw(&datagram(0, dest, payload));
    }

    /// Sends bytes to the relay as they are.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.relay)
            .unwrap_or_else(|e| panic!("send to the relay {}: {e}", self.relay));
    }

    /// The next datagram from the relay, within `within`. Datagrams from any other source
    /// are an error: the client socket only ever talks to the relay.
    pub fn recv_within(&self, within: Duration) -> io::Result<Relayed> {
        self.socket.set_read_timeout(Some(within))?;
        let mut buf = vec![0u8; 65536];
        let (n, src) = self.socket.recv_from(&mut buf)?;
        if src != self.relay {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("datagram from {src}, not the relay {}", self.relay),
            ));
        }
        parse_relayed(&buf[..n])
    }

    #[track_caller]
    pub fn recv(&self) -> Relayed {
        self.recv_within(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("no datagram from the relay {}: {e}", self.relay))
    }

    /// Sends `payload` to `dest` and returns the answer carrying the same payload.
    /// Loopback does not lose datagrams at this pace, but UDP may: the datagram is sent
    /// up to three times. Any other datagram that arrives first fails the test.
    #[track_caller]
    pub fn round_trip(&self, dest: &Address, payload: &[u8]) -> Relayed {
        for _ in 0..3 {
            self.send(dest, payload);
            match self.recv_within(Duration::from_secs(3)) {
                Ok(got) => {
                    assert_eq!(
                        got.payload,
                        payload,
                        "expected the answer to {:?}, got {:?}",
                        String::from_utf8_lossy(payload),
                        String::from_utf8_lossy(&got.payload)
                    );
                    return got;
                }
                Err(e) if is_timeout(&e) => continue,
                Err(e) => panic!("round trip to {dest} via {}: {e}", self.relay),
            }
        }
        panic!("no answer from {dest} via {} after three tries", self.relay);
    }
}

/// Parses a datagram from the relay: header, then payload.
pub fn parse_relayed(bytes: &[u8]) -> io::Result<Relayed> {
    match Header::parse(bytes) {
        Ok(Some((header, offset))) => Ok(Relayed {
            frag: header.frag,
            from: header.address,
            header_len: offset,
            payload: bytes[offset..].to_vec(),
        }),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "bad SOCKS UDP header {:02x?}: {other:?}",
                &bytes[..bytes.len().min(32)]
            ),
        )),
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether a UDP socket is bound to `addr` on this machine (anyone's; one bound to the
/// wildcard counts for every address of its family). Asked by binding the address: the
/// bind fails exactly while a socket holds it, since the server shares no UDP port, where
/// /proc/net/udp, read a page at a time, can skip entries while other tests open and close
/// sockets.
pub fn udp_bound(addr: SocketAddr) -> bool {
    match UdpSocket::bind(addr) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => true,
        Err(e) => panic!("probe {addr} with a bind: {e}"),
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as /proc/net prints them:
/// the address as 32-bit words in host byte order.
pub(super) fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Waits until no UDP socket is bound to `addr`; returns whether that happened.
pub fn wait_unbound(addr: SocketAddr, within: Duration) -> bool {
    wait_until(within, || !udp_bound(addr))
}

/// Whether a datagram to `addr` draws ICMP port unreachable (seen as ECONNREFUSED on a
/// connected socket): proof that nothing listens there. Sends a few probes, each a
/// malformed SOCKS header so that a live relay would drop it, within `within`.
pub fn port_refuses(addr: SocketAddr, within: Duration) -> bool {
    let any = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let probe = UdpSocket::bind(any).expect("bind a probe socket");
    probe.connect(addr).expect("connect the probe");
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        // RSV must be zero and ATYP 9 does not exist: nothing a relay would forward.
        if let Err(e) = probe.send(&[0xff, 0xff, 0, 9]) {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match probe.recv(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            _ => {}
        }
    }
    false
}
