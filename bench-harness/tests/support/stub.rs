//! A SOCKS5 server for tests: CONNECT and UDP ASSOCIATE, optional RFC 1929
//! authentication, and faults on request. Thread per connection, blocking sockets:
//! simple enough to trust, and independent of the server it helps to test.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bench_harness::socks::Auth;
use ringsocks::proto::auth::{Credentials, Status};
use ringsocks::proto::socks5::{
    Greeting, MethodSelection, Reply, Request, CMD_CONNECT, CMD_UDP_ASSOCIATE,
    METHOD_NONE_ACCEPTABLE, METHOD_NO_AUTH, METHOD_USER_PASS,
};
use ringsocks::proto::udp::Header;
use ringsocks::proto::{Address, Parse, ReplyCode};

/// What the server does wrong, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer every greeting with METHOD 0xFF.
    RejectMethods,
    /// Answer every CONNECT with this REP code (and close).
    ConnectReply(u8),
    /// Answer every UDP ASSOCIATE with this REP code (and close).
    UdpReply(u8),
    /// Close the connection right after reading the greeting.
    CloseAfterGreeting,
    /// Answer the greeting with bytes that are not SOCKS.
    Garbage,
    /// Relay CONNECT sessions, but flip the lowest bit of the byte at this offset of the
    /// client-to-target direction.
    FlipUp(u64),
    /// The same in the target-to-client direction.
    FlipDown(u64),
}

#[derive(Debug, Clone)]
pub struct StubConfig {
    /// Required credentials; `None` = no authentication.
    pub auth: Option<Auth>,
    pub fault: Fault,
}

impl StubConfig {
    pub fn plain() -> StubConfig {
        StubConfig {
            auth: None,
            fault: Fault::None,
        }
    }
}

/// What clients sent, for assertions (the first few of each, plus counts).
#[derive(Debug, Default)]
pub struct Seen {
    pub greetings: Vec<Vec<u8>>,
    pub credentials: Vec<(Vec<u8>, Vec<u8>)>,
    pub requests: Vec<(u8, Address)>,
    pub udp_headers: Vec<Header>,
}

const KEEP: usize = 32;

#[derive(Debug, Default)]
pub struct Counts {
    pub sessions: AtomicU64,
    pub connects: AtomicU64,
    pub associations: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub auth_failures: AtomicU64,
}

pub struct Stub {
    pub addr: SocketAddr,
    pub config: StubConfig,
    pub seen: Arc<Mutex<Seen>>,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Stub {
    pub fn start(config: StubConfig) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            config: config.clone(),
            seen: seen.clone(),
            counts: counts.clone(),
        };
        let stop2 = stop.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &shared);
                });
            }
        });
        Stub {
            addr,
            config,
            seen,
            counts,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Shared {
    config: StubConfig,
    seen: Arc<Mutex<Seen>>,
    counts: Arc<Counts>,
}

/// Reads until `parse` yields a message; returns it and leaves the rest in `buf`.
fn read_msg<T>(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Parse<T>, ringsocks::proto::Error>,
) -> io::Result<T> {
    let mut chunk = [0u8; 1024];
    // Bounded: every message parsed here is capped in length by its format.
    loop {
        match parse(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            Parse::Complete { msg, consumed } => {
                buf.drain(..consumed);
                return Ok(msg);
            }
            Parse::Incomplete => {
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn reply(conn: &mut TcpStream, code: ReplyCode, bound: SocketAddr) -> io::Result<()> {
    let mut out = Vec::new();
    Reply {
        code,
        bound: Address::Ip(bound),
    }
    .emit(&mut out);
    conn.write_all(&out)
}

fn serve(mut conn: TcpStream, s: &Shared) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    let greeting = read_msg(&mut conn, &mut buf, Greeting::parse)?;
    s.counts.sessions.fetch_add(1, Ordering::Relaxed);
    {
        let mut seen = s.seen.lock().unwrap();
        if seen.greetings.len() < KEEP {
            seen.greetings.push(greeting.methods.clone());
        }
    }
    match s.config.fault {
        Fault::CloseAfterGreeting => return Ok(()),
        Fault::Garbage => return conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n"),
        Fault::RejectMethods => {
            let mut out = Vec::new();
            MethodSelection {
                method: METHOD_NONE_ACCEPTABLE,
            }
            .emit(&mut out);
            return conn.write_all(&out);
        }
        _ => {}
    }
    let wanted = if s.config.auth.is_some() {
        METHOD_USER_PASS
    } else {
        METHOD_NO_AUTH
    };
    let method = if greeting.methods.contains(&wanted) {
        wanted
    } else {
        METHOD_NONE_ACCEPTABLE
    };
    let mut out = Vec::new();
    MethodSelection { method }.emit(&mut out);
    conn.write_all(&out)?;
    if method == METHOD_NONE_ACCEPTABLE {
        return Ok(());
    }
    if let Some(auth) = &s.config.auth {
        let creds = read_msg(&mut conn, &mut buf, Credentials::parse)?;
        let ok = creds.username == auth.user.as_bytes() && creds.password == auth.pass.as_bytes();
        {
            let mut seen = s.seen.lock().unwrap();
            if seen.credentials.len() < KEEP {
                seen.credentials
                    .push((creds.username.clone(), creds.password.clone()));
            }
        }
        let mut out = Vec::new();
        Status {
            status: if ok { 0 } else { 1 },
        }
        .emit(&mut out);
        conn.write_all(&out)?;
        if !ok {
            s.counts.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }
    let req = read_msg(&mut conn, &mut buf, Request::parse)?;
    {
        let mut seen = s.seen.lock().unwrap();
        if seen.requests.len() < KEEP {
            seen.requests.push((req.command, req.address.clone()));
        }
    }
    let unspecified: SocketAddr = "0.0.0.0:0".parse().unwrap();
    match (req.command, s.config.fault) {
        (CMD_CONNECT, Fault::ConnectReply(code)) | (CMD_UDP_ASSOCIATE, Fault::UdpReply(code)) => {
            reply(&mut conn, ReplyCode::from_u8(code), unspecified)
        }
        (CMD_CONNECT, _) => connect(conn, buf, req.address, s),
        (CMD_UDP_ASSOCIATE, _) => associate(conn, req.address, s),
        _ => reply(&mut conn, ReplyCode::CommandNotSupported, unspecified),
    }
}

fn connect(mut conn: TcpStream, early: Vec<u8>, dst: Address, s: &Shared) -> io::Result<()> {
    let Address::Ip(dst) = dst else {
        return reply(
            &mut conn,
            ReplyCode::AddressTypeNotSupported,
            "0.0.0.0:0".parse().unwrap(),
        );
    };
    let mut out = match TcpStream::connect(dst) {
        Ok(o) => o,
        Err(e) => {
            return reply(
                &mut conn,
                ReplyCode::from_io_error(&e),
                "0.0.0.0:0".parse().unwrap(),
            )
        }
    };
    out.set_nodelay(true)?;
    s.counts.connects.fetch_add(1, Ordering::Relaxed);
    reply(&mut conn, ReplyCode::Succeeded, out.local_addr()?)?;
    out.write_all(&early)?;
    let (flip_up, flip_down) = match s.config.fault {
        // The early data already went up unchanged.
        Fault::FlipUp(at) => (at.checked_sub(early.len() as u64), None),
        Fault::FlipDown(at) => (None, Some(at)),
        _ => (None, None),
    };
    let (mut c2, mut o2) = (conn.try_clone()?, out.try_clone()?);
    let up = thread::spawn(move || {
        let _ = copy(&mut c2, &mut o2, flip_up);
        let _ = o2.shutdown(Shutdown::Write);
    });
    let _ = copy(&mut out, &mut conn, flip_down);
    let _ = conn.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Copies until EOF, flipping the lowest bit of byte `flip` on the way.
fn copy(from: &mut TcpStream, to: &mut TcpStream, flip: Option<u64>) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    // Bounded by the peer's EOF or an error.
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if let Some(at) = flip {
            if (offset..offset + n as u64).contains(&at) {
                buf[(at - offset) as usize] ^= 1;
            }
        }
        offset += n as u64;
        to.write_all(&buf[..n])?;
    }
}

fn associate(mut conn: TcpStream, announced: Address, s: &Shared) -> io::Result<()> {
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.counts.associations.fetch_add(1, Ordering::Relaxed);
    reply(&mut conn, ReplyCode::Succeeded, udp.local_addr()?)?;
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let s2 = s.clone();
    let relay = thread::spawn(move || relay_udp(udp, announced, &done2, &s2));
    // The association lives as long as the control connection.
    let mut b = [0u8; 64];
    while matches!(conn.read(&mut b), Ok(n) if n > 0) {}
    done.store(true, Ordering::Relaxed);
    let _ = relay.join();
    Ok(())
}

fn relay_udp(udp: UdpSocket, announced: Address, done: &AtomicBool, s: &Shared) {
    let mut client = match announced {
        Address::Ip(a) if !a.ip().is_unspecified() && a.port() != 0 => Some(a),
        _ => None,
    };
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65536);
    while !done.load(Ordering::Relaxed) {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        if client.is_none() {
            client = Some(from);
        }
        if Some(from) == client {
            let Ok(Some((h, off))) = Header::parse(&buf[..n]) else {
                continue;
            };
            s.counts.datagrams_in.fetch_add(1, Ordering::Relaxed);
            if let Address::Ip(dst) = h.address {
                let _ = udp.send_to(&buf[off..n], dst);
            }
            let mut seen = s.seen.lock().unwrap();
            if seen.udp_headers.len() < KEEP {
                seen.udp_headers.push(h);
            }
        } else if let Some(c) = client {
            out.clear();
            Header {
                frag: 0,
                address: Address::Ip(from),
            }
            .emit(&mut out);
            out.extend_from_slice(&buf[..n]);
            let _ = udp.send_to(&out, c);
        }
    }
}
