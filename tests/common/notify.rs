//! A stand-in for systemd's notification socket: a Unix datagram socket the test owns,
//! whose path goes into the server's `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Receives what the server tells its service manager.
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("notify");
        let sock =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    /// The value for `$NOTIFY_SOCKET`.
    pub fn env_value(&self) -> &std::path::Path {
        &self.path
    }

    /// The next datagram within `within`, as text; `None` if none came.
    pub fn recv_within(&self, within: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).expect("notifications are UTF-8"))
    }

    /// The next datagram that is not a `STATUS=` line; panics if none comes in `within`.
    #[track_caller]
    pub fn next_state(&self, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let msg = self
                .recv_within(left.max(Duration::from_millis(1)))
                .unwrap_or_else(|| panic!("no notification within {within:?}"));
            if !msg.starts_with("STATUS=") {
                return msg;
            }
        }
    }

    /// Everything already queued, without waiting.
    pub fn pending(&self) -> Vec<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded: the socket's receive queue holds at most a few hundred datagrams.
        for _ in 0..1000 {
            match self.sock.recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        self.sock.set_nonblocking(false).unwrap();
        out
    }
}
