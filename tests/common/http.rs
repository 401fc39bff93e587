//! A minimal HTTP/1.1 file server on 127.0.0.1 and [::1], for curl to download through
//! the proxy: `GET /file` returns the body, anything else 404. One request per
//! connection (`Connection: close`), one thread per connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::target::prepare;

/// The longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

pub struct HttpServer {
    v4: SocketAddr,
    v6: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serves `body` as `/file`.
    pub fn start(body: Arc<Vec<u8>>) -> HttpServer {
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let v4 = serve("127.0.0.1:0", &body, &requests, &stop);
        let v6 = serve("[::1]:0", &body, &requests, &stop);
        HttpServer {
            v4,
            v6,
            requests,
            stop,
        }
    }

    pub fn addr_v4(&self) -> SocketAddr {
        self.v4
    }

    pub fn addr_v6(&self) -> SocketAddr {
        self.v6
    }

    /// How many requests arrived (any path).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for addr in [self.v4, self.v6] {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }
}

fn serve(
    bind: &str,
    body: &Arc<Vec<u8>>,
    requests: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) -> SocketAddr {
    let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    let addr = listener.local_addr().expect("local address");
    let (body, requests, stop) = (Arc::clone(body), Arc::clone(requests), Arc::clone(stop));
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(stream) = conn else { continue };
            prepare(&stream);
            let (body, requests) = (Arc::clone(&body), Arc::clone(&requests));
            thread::spawn(move || {
                let _ = respond(stream, &body, &requests);
            });
        }
    });
    addr
}

fn respond(mut stream: TcpStream, body: &[u8], requests: &AtomicUsize) -> io::Result<()> {
    let head = read_head(&mut stream)?;
    requests.fetch_add(1, Ordering::SeqCst);
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let found = method == Some("GET") && path == Some("/file");
    if found {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
    } else {
        stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
    }
    stream.flush()
}

/// Reads up to the blank line that ends the request head.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
