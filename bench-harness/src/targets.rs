//! The loopback targets the harness relays to, run in-process on one event-loop thread:
//! TCP echo, TCP sink (reads and discards, and with checking on, compares every byte
//! with the [`Stream`]), TCP source (writes the stream without end) and UDP echo.
//!
//! They live in the harness so that a run needs nothing but the server under test, and
//! so that their CPU time counts as the harness's own cost, not the server's.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Token, Waker};
use slab::Slab;

use crate::reactor::{self, Reactor};
use crate::stream::{Position, Stream};
use crate::zero_copy::{Drain, Feeder, Template};

const ECHO: Token = Token(0);
const SINK: Token = Token(1);
const SOURCE: Token = Token(2);
const UDP_ECHO: Token = Token(3);
const WAKE: Token = Token(4);
const FIRST_CONN: usize = 16;

/// Per-read and per-write chunk; large enough that bulk transfers take few syscalls.
const CHUNK: usize = 64 * 1024;

/// Byte counters the modes sample at the window edges.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the sink has read.
    pub sink_bytes: Arc<AtomicU64>,
    /// Bytes the source has written.
    pub source_bytes: Arc<AtomicU64>,
    /// Connections accepted, over all TCP targets.
    pub accepted: Arc<AtomicU64>,
    /// Sink connections whose bytes differed from the stream (checking on); the sink
    /// closes each at its first bad byte.
    pub corrupt: AtomicU64,
    /// What the first of them received wrong.
    pub first_corruption: Mutex<Option<String>>,
}

/// Running targets; stopped and joined on drop.
pub struct Targets {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    pub source: SocketAddr,
    pub udp_echo: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Targets {
    /// Binds all four targets on `ip` (ephemeral ports) and starts their thread.
    pub fn start(ip: std::net::IpAddr, cpu: Option<usize>) -> io::Result<Targets> {
        Targets::launch(ip, cpu, false)
    }

    /// Like [`Targets::start`], and the sink checks every byte it reads against the
    /// stream (see [`Counters::corrupt`]).
    pub fn start_checking(ip: std::net::IpAddr, cpu: Option<usize>) -> io::Result<Targets> {
        Targets::launch(ip, cpu, true)
    }

    fn launch(ip: std::net::IpAddr, cpu: Option<usize>, check: bool) -> io::Result<Targets> {
        let any = SocketAddr::new(ip, 0);
        let mut echo = TcpListener::bind(any)?;
        let mut sink = TcpListener::bind(any)?;
        let mut source = TcpListener::bind(any)?;
        let mut udp = UdpSocket::bind(any)?;
        let reactor = Reactor::new(1024)?;
        let reg = reactor.registry();
        reg.register(&mut echo, ECHO, Interest::READABLE)?;
        reg.register(&mut sink, SINK, Interest::READABLE)?;
        reg.register(&mut source, SOURCE, Interest::READABLE)?;
        reg.register(&mut udp, UDP_ECHO, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(reg, WAKE)?);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let addrs = (
            echo.local_addr()?,
            sink.local_addr()?,
            source.local_addr()?,
            udp.local_addr()?,
        );
        let stream = Stream::new(CHUNK);
        let mut lp = Loop {
            reactor,
            listeners: [echo, sink, source],
            udp,
            conns: Slab::new(),
            scratch: vec![0; CHUNK].into_boxed_slice(),
            template: Template::new(&stream).ok(),
            stream,
            check,
            counters: counters.clone(),
            stop: stop.clone(),
        };
        let thread = reactor::spawn("bh-targets".into(), cpu, move || lp.run())?;
        Ok(Targets {
            echo: addrs.0,
            sink: addrs.1,
            source: addrs.2,
            udp_echo: addrs.3,
            counters,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => eprintln!("warning: target thread failed: {e}"),
                Err(_) => eprintln!("warning: target thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Sink,
    Source,
}

struct Conn {
    sock: TcpStream,
    kind: Kind,
    /// Echo bytes the peer has not taken yet; the echo reads no more until it drains.
    pending: Vec<u8>,
    pending_from: usize,
    /// Source: stream bytes written so far. Sink: how far the bytes read were checked.
    stream: Position,
    /// Source: writes by splice, when it could be set up.
    feeder: Option<Feeder>,
    /// Sink: reads by splice, when not checking and when it could be set up.
    drain: Option<Drain>,
}

struct Loop {
    reactor: Reactor,
    listeners: [TcpListener; 3],
    udp: UdpSocket,
    conns: Slab<Conn>,
    scratch: Box<[u8]>,
    stream: Stream,
    /// What sources feed from; `None` if no pipe could be set up (sources then write).
    template: Option<Arc<Template>>,
    /// The sink compares what it reads with the stream.
    check: bool,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut ready = Vec::with_capacity(1024);
        while !self.stop.load(Ordering::Relaxed) {
            // The waker ends the wait; the deadline only bounds it.
            self.reactor.wait(Instant::now() + Duration::from_secs(1))?;
            ready.clear();
            ready.extend(self.reactor.tokens());
            for &token in &ready {
                match token {
                    ECHO => self.accept(0, Kind::Echo)?,
                    SINK => self.accept(1, Kind::Sink)?,
                    SOURCE => self.accept(2, Kind::Source)?,
                    UDP_ECHO => self.udp_echo()?,
                    WAKE => {}
                    Token(t) => self.serve(t - FIRST_CONN),
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, which: usize, kind: Kind) -> io::Result<()> {
        loop {
            match self.listeners[which].accept() {
                Ok((mut sock, _)) => {
                    sock.set_nodelay(true)?;
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    self.reactor.registry().register(
                        &mut sock,
                        Token(FIRST_CONN + key),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let stream = Position::default();
                    let feeder = match (kind, &self.template) {
                        (Kind::Source, Some(t)) => Feeder::new(t, &stream).ok(),
                        _ => None,
                    };
                    let drain = (kind == Kind::Sink && !self.check)
                        .then(|| Drain::new().ok())
                        .flatten();
                    entry.insert(Conn {
                        sock,
                        kind,
                        pending: Vec::new(),
                        pending_from: 0,
                        stream,
                        feeder,
                        drain,
                    });
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    // A source starts writing at once.
                    if kind == Kind::Source {
                        self.serve(key);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors or a connection reset before accept: the client
                // sees its own failure; the target goes on.
                Err(e) if is_transient(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn serve(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let open = match conn.kind {
            Kind::Echo => echo(conn, &mut self.scratch),
            Kind::Sink => sink(
                conn,
                &mut self.scratch,
                self.check.then_some(&self.stream),
                &self.counters,
            ),
            Kind::Source => source(conn, &mut self.scratch, &self.stream, &self.counters),
        };
        if !open {
            let mut conn = self.conns.remove(key);
            let _ = self.reactor.registry().deregister(&mut conn.sock);
        }
    }

    fn udp_echo(&mut self) -> io::Result<()> {
        loop {
            match self.udp.recv_from(&mut self.scratch) {
                Ok((n, from)) => match self.udp.send_to(&self.scratch[..n], from) {
                    Ok(_) => {}
                    // A full socket buffer drops the datagram, as a network would.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {}
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // ICMP errors from earlier sends surface here; they concern one peer.
                Err(_) => {}
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

/// Returns false when the connection is finished.
fn echo(conn: &mut Conn, scratch: &mut [u8]) -> bool {
    // Bounded: each pass moves bytes or returns on WouldBlock / EOF / error.
    loop {
        if conn.pending_from < conn.pending.len() {
            match conn.sock.write(&conn.pending[conn.pending_from..]) {
                Ok(n) => conn.pending_from += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
            if conn.pending_from < conn.pending.len() {
                continue;
            }
            conn.pending.clear();
            conn.pending_from = 0;
        }
        let n = match conn.sock.read(scratch) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        let drained = n < scratch.len();
        match conn.sock.write(&scratch[..n]) {
            // A short read emptied the socket; new data raises a new edge.
            Ok(w) if w == n && drained => return true,
            Ok(w) if w == n => {}
            Ok(w) => conn.pending.extend_from_slice(&scratch[w..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                conn.pending.extend_from_slice(&scratch[..n])
            }
            Err(_) => return false,
        }
    }
}

fn sink(conn: &mut Conn, scratch: &mut [u8], check: Option<&Stream>, counters: &Counters) -> bool {
    if let Some(drain) = conn.drain.as_mut() {
        return drain
            .read(&conn.sock, |n| {
                counters.sink_bytes.fetch_add(n, Ordering::Relaxed);
            })
            .unwrap_or(false);
    }
    loop {
        match conn.sock.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                counters.sink_bytes.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(stream) = check {
                    if let Err(what) = conn.stream.check(stream, &scratch[..n]) {
                        // The description first: whoever sees the count finds it.
                        counters
                            .first_corruption
                            .lock()
                            .expect("not poisoned")
                            .get_or_insert(what);
                        counters.corrupt.fetch_add(1, Ordering::Release);
                        return false;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn source(conn: &mut Conn, scratch: &mut [u8], stream: &Stream, counters: &Counters) -> bool {
    // Anything the client sends is discarded; its EOF ends the connection.
    loop {
        match conn.sock.read(scratch) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    if let Some(feeder) = conn.feeder.as_mut() {
        let before = conn.stream.offset;
        let open = feeder.write(&conn.sock, &mut conn.stream).is_ok();
        let n = conn.stream.offset - before;
        counters.source_bytes.fetch_add(n, Ordering::Relaxed);
        return open;
    }
    loop {
        match conn.sock.write(stream.at(conn.stream.offset, stream.max())) {
            Ok(n) => {
                conn.stream.offset += n as u64;
                counters.source_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream, UdpSocket};

    #[test]
    fn echo_sink_source_and_udp_echo_work() {
        let t = Targets::start(Ipv4Addr::LOCALHOST.into(), None).unwrap();
        let timeout = Some(Duration::from_secs(5));

        let mut e = TcpStream::connect(t.echo).unwrap();
        e.set_read_timeout(timeout).unwrap();
        let msg = crate::pattern(200_000);
        e.write_all(&msg).unwrap();
        let mut back = vec![0; msg.len()];
        e.read_exact(&mut back).unwrap();
        assert_eq!(back, &msg[..]);

        let mut s = TcpStream::connect(t.sink).unwrap();
        s.write_all(&msg).unwrap();
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.counters.sink_bytes.load(Ordering::Relaxed) < msg.len() as u64 {
            assert!(Instant::now() < deadline, "sink did not count the bytes");
            std::thread::yield_now();
        }

        let mut src = TcpStream::connect(t.source).unwrap();
        src.set_read_timeout(timeout).unwrap();
        let mut buf = vec![0; 300_000];
        src.read_exact(&mut buf).unwrap();
        // One unbroken stream, however the source's writes were cut short.
        Position::default()
            .check(&Stream::new(CHUNK), &buf)
            .unwrap();

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(timeout).unwrap();
        u.send_to(b"ping", t.udp_echo).unwrap();
        let mut d = [0u8; 16];
        let (n, from) = u.recv_from(&mut d).unwrap();
        assert_eq!((&d[..n], from), (&b"ping"[..], t.udp_echo));
    }

    /// Waits until `sink_bytes` reaches `n`, bounded.
    fn sink_reaches(t: &Targets, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.counters.sink_bytes.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the sink did not read {n} bytes");
            std::thread::yield_now();
        }
    }

    #[test]
    fn checking_sink_counts_streams_with_wrong_bytes() {
        let t = Targets::start_checking(Ipv4Addr::LOCALHOST.into(), None).unwrap();
        let stream = Stream::new(1000);
        let mut good = Vec::new();
        while good.len() < 200_000 {
            good.extend_from_slice(stream.at(good.len() as u64, 1000));
        }
        let mut s = TcpStream::connect(t.sink).unwrap();
        s.write_all(&good).unwrap();
        drop(s);
        sink_reaches(&t, good.len() as u64);
        assert_eq!(t.counters.corrupt.load(Ordering::Relaxed), 0);

        let mut bad = good.clone();
        bad[150_000] ^= 1;
        let mut s = TcpStream::connect(t.sink).unwrap();
        // The sink closes at the bad byte, so the tail of this write may fail.
        let _ = s.write_all(&bad);
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.counters.corrupt.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the bad byte went unnoticed");
            std::thread::yield_now();
        }
        let first = t.counters.first_corruption.lock().unwrap().clone();
        assert!(first.unwrap().contains("byte 150000"));
    }
}
