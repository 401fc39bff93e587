//! Destinations the proxy connects to: a listener that hands each accepted connection to
//! the test, and an echo server.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use super::wait::IO_TIMEOUT;

/// A TCP listener on loopback whose accepted connections the test takes one by one, so
/// it can play any part: sink, source, half-closer, or observer of the proxy's address.
pub struct Target {
    addr: SocketAddr,
    accepted: Receiver<(TcpStream, SocketAddr)>,
    stop: Arc<AtomicBool>,
}

impl Target {
    /// Listens on `bind` ("127.0.0.1:0", "[::1]:0").
    pub fn bind(bind: &str) -> Target {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        Target::from_listener(listener)
    }

    /// Serves a listener the test set up itself (with socket options of its choosing).
    pub fn from_listener(listener: TcpListener) -> Target {
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, accepted) = mpsc::channel();
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                prepare(&stream);
                if tx.send((stream, peer)).is_err() {
                    break;
                }
            }
        });
        Target {
            addr,
            accepted,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection the proxy made, and its source address as seen here.
    #[track_caller]
    pub fn accept(&self) -> (TcpStream, SocketAddr) {
        self.try_accept(IO_TIMEOUT)
            .unwrap_or_else(|| panic!("no connection reached {} in {IO_TIMEOUT:?}", self.addr))
    }

    pub fn try_accept(&self, within: Duration) -> Option<(TcpStream, SocketAddr)> {
        self.accepted.recv_timeout(within).ok()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        stop_accepting(&self.stop, self.addr);
    }
}

/// Wakes an accept loop so that it sees its stop flag.
fn stop_accepting(stop: &AtomicBool, addr: SocketAddr) {
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

/// Timeouts and no Nagle delay on every test socket.
pub fn prepare(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
}

/// Echoes every connection back to its sender, one thread per connection, and records
/// the source address of each connection.
pub struct EchoServer {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub fn start(bind: &str) -> EchoServer {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().expect("local address");
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, seen) = (Arc::clone(&stop), Arc::clone(&peers));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                if let Ok(peer) = stream.peer_addr() {
                    seen.lock().unwrap().push(peer);
                }
                prepare(&stream);
                thread::spawn(move || {
                    let _ = echo(stream);
                });
            }
        });
        EchoServer { addr, peers, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections arrived so far.
    pub fn connections(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        stop_accepting(&self.stop, self.addr);
    }
}

/// Copies everything back until EOF, then half-closes (so the client sees EOF after the
/// last echoed byte). Ends on the first error or on an idle read timeout.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n])?;
    }
}

/// A loopback address where nothing listens: a port the kernel just handed out and took
/// back. (Another process could take it in between; on a test machine that is rare, and
/// it would show as a wrong reply code, not a hang.)
pub fn closed_port(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// Closes `stream` with a reset instead of a FIN: SO_LINGER with a zero timeout, then
/// close. The peer's next read or write fails with ECONNRESET.
pub fn reset(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// How long a probe connect to a [`Blackhole`] waits before calling it dropped.
const BLACKHOLE_PROBE: Duration = Duration::from_millis(300);

/// A loopback address that swallows connects: they neither succeed nor fail. It is a
/// listener with a backlog of 0 whose accept queue is filled and never accepted from;
/// Linux drops every further SYN while that queue is full, so the connecting side keeps
/// retransmitting until its own timeout.
pub struct Blackhole {
    addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    /// Panics unless a probe connect really hangs.
    pub fn open() -> Blackhole {
        Blackhole::open_at("127.0.0.1:0".parse().unwrap())
            .unwrap_or_else(|e| panic!("bind the blackhole: {e}"))
    }

    /// A blackhole on `at` (IPv4 or IPv6, a given port or 0); an error when `at` cannot
    /// be bound. Panics unless a probe connect really hangs.
    pub fn open_at(at: SocketAddr) -> io::Result<Blackhole> {
        let listener = Socket::new(Domain::for_address(at), Type::STREAM, None)?;
        if at.is_ipv6() {
            listener.set_only_v6(true)?;
        }
        listener.bind(&at.into())?;
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local address");
        let mut fillers = Vec::new();
        // Bounded: a backlog of 0 admits one connection, some kernels a few.
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, BLACKHOLE_PROBE) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Ok(Blackhole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    })
                }
                Err(e) => panic!("probe connect to the blackhole {addr}: {e}"),
            }
        }
        panic!("{addr} still accepts connections after 8: not a blackhole");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
