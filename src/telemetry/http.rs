//! The metrics endpoint: a minimal HTTP/1.x server on one thread of its own.
//!
//! Blocking std sockets, one request per connection, each connection on a short-lived
//! thread of its own (up to [`MAX_CONNECTIONS`] at once; beyond that a connection gets 503
//! at once): a client that sends nothing, or reads slowly, holds only its own thread and
//! never delays another scrape. These threads only read counters, so they can never hold
//! up a shard. Requests are capped at [`MAX_REQUEST`] bytes and every read and write has a
//! timeout, so a connection's thread lives at most a few seconds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::exposition::{render, Sources, CONTENT_TYPE};

/// The request line and headers of a scrape fit easily; anything bigger is not one.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Per request: time to send the request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections served at once; a scraper needs one, a few humans with curl a few more.
pub const MAX_CONNECTIONS: usize = 8;

/// A running metrics endpoint; dropping it stops the thread.
pub struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Binds `addr` and serves `GET /metrics` from `sources` on a new thread.
    pub fn start(addr: SocketAddr, sources: Sources) -> io::Result<Exporter> {
        Exporter::start_with(addr, sources, IO_TIMEOUT)
    }

    fn start_with(addr: SocketAddr, sources: Sources, timeout: Duration) -> io::Result<Exporter> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for metrics on {addr}: {e}"),
            )
        })?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            listener: listener.try_clone()?,
            sources,
            stop: stop.clone(),
            timeout,
            active: Arc::new(AtomicUsize::new(0)),
        };
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || server.run())?;
        Ok(Exporter {
            addr,
            stop,
            listener,
            thread: Some(thread),
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // On Linux, shutting a listening socket down wakes a thread blocked in accept().
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Server {
    listener: TcpListener,
    sources: Sources,
    stop: Arc<AtomicBool>,
    timeout: Duration,
    /// Connections being served.
    active: Arc<AtomicUsize>,
}

/// One connection's thread: the request, the response, then the slot back.
struct Connection {
    sources: Sources,
    timeout: Duration,
    active: Arc<AtomicUsize>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Relaxed);
    }
}

impl Server {
    fn run(self) {
        while !self.stop.load(Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.stop.load(Relaxed) {
                        break;
                    }
                    self.dispatch(stream);
                }
                Err(e) if self.stop.load(Relaxed) => {
                    log::debug!("metrics listener stopped: {e}");
                    break;
                }
                Err(e) => {
                    log::warn!("metrics listener: {e}");
                    // Out of descriptors or memory: back off instead of spinning.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Serves `stream` on a thread of its own, or refuses it when enough are busy.
    fn dispatch(&self, mut stream: TcpStream) {
        if self.active.fetch_add(1, Relaxed) >= MAX_CONNECTIONS {
            self.active.fetch_sub(1, Relaxed);
            // Non-blocking, so the refusal never holds up the accept loop: the short reply
            // fits a fresh socket's send buffer, and only input already there is drained.
            let _ = stream.set_nonblocking(true);
            let _ = respond(&mut stream, "503 Service Unavailable", "Retry-After: 1\r\n");
            return;
        }
        let conn = Connection {
            sources: self.sources.clone(),
            timeout: self.timeout,
            active: self.active.clone(),
        };
        let spawned = thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                if let Err(e) = conn.serve(stream) {
                    log::debug!("metrics request: {e}");
                }
            });
        if let Err(e) = spawned {
            // The closure, and with it the connection and its slot, was dropped.
            log::warn!("metrics: cannot start a thread: {e}");
        }
    }
}

impl Connection {
    fn serve(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let request = match read_request(&mut stream, self.timeout)? {
            Some(request) => request,
            None => return respond(&mut stream, "431 Request Header Fields Too Large", ""),
        };
        let mut words = request.split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => {
                let mut body = String::new();
                render(&self.sources, &mut body);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes())?;
                if method == "GET" {
                    stream.write_all(body.as_bytes())?;
                }
                stream.flush()
            }
            (_, "/metrics") => respond(
                &mut stream,
                "405 Method Not Allowed",
                "Allow: GET, HEAD\r\n",
            ),
            _ => respond(&mut stream, "404 Not Found", ""),
        }
    }
}

/// Reads until the end of the headers; returns the request line, or `None` when the
/// request does not fit in [`MAX_REQUEST`] bytes.
fn read_request(stream: &mut TcpStream, timeout: Duration) -> io::Result<Option<String>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        if let Some(end) = header_end(&buf[..len]) {
            let head = String::from_utf8_lossy(&buf[..end]);
            return Ok(Some(head.lines().next().unwrap_or("").to_string()));
        }
        if len == buf.len() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not complete in time",
            ));
        }
        match stream.read(&mut buf[len..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => len += n,
        }
    }
}

/// Where the blank line that ends the headers ends (CRLF CRLF, or bare LF LF).
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn respond(stream: &mut TcpStream, status: &str, extra: &str) -> io::Result<()> {
    let body = status.split_once(' ').map_or(status, |(_, text)| text);
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    stream.write_all(text.as_bytes())?;
    stream.flush()?;
    // Closing with unread input would reset the connection, and the client might never
    // read the reply: signal the end, then discard what the client still sends (bounded in
    // bytes here, in time by the read timeout; at once on a non-blocking stream).
    let _ = stream.shutdown(Shutdown::Write);
    let _ = io::copy(&mut stream.take(64 * 1024), &mut io::sink());
    Ok(())
}

#[cfg(test)]
mod tests;
