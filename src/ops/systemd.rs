//! The systemd notification protocol (sd_notify): `READY=1` once serving, `RELOADING=1`
//! with `MONOTONIC_USEC` while a reload is applied (then `READY=1` again), `STOPPING=1`
//! when draining, `STATUS=` for `systemctl status`.
//!
//! `$NOTIFY_SOCKET` is read once, by [`Notifier::from_env`]; without it (not started by
//! systemd, or not `Type=notify`) every notification is a no-op. A path or an abstract
//! socket (`@name`) are both understood.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Sends notifications to the service manager, or nothing when there is none.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`. Unset or empty: a notifier that does nothing. Set to
    /// something that is neither an absolute path nor `@name`: an error.
    pub fn from_env() -> io::Result<Notifier> {
        Notifier::from_value(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// As [`Notifier::from_env`], from the variable's value.
    pub fn from_value(value: Option<&OsStr>) -> io::Result<Notifier> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier { target: None });
        };
        let bytes = value.as_bytes();
        let addr = match bytes {
            [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
            [b'/', ..] => SocketAddr::from_pathname(value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "NOTIFY_SOCKET={} is neither an absolute path nor an abstract socket",
                        value.to_string_lossy()
                    ),
                ))
            }
        };
        Ok(Notifier {
            target: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Start-up (or a reload) is complete: systemd considers the service started.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// A reload begins; send [`Notifier::ready`] when it is done (applied or refused).
    pub fn reloading(&self) -> io::Result<()> {
        let usec = monotonic_usec()?;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// Shutdown begins (drain).
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// One line for `systemctl status`; line breaks become spaces, so the text cannot add
    /// assignments of its own.
    pub fn status(&self, text: &str) -> io::Result<()> {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"))
    }

    /// Asks for `extra` more time than `TimeoutStartSec=` / `TimeoutStopSec=` allow, from
    /// now: a long drain sends this so systemd does not kill it half way.
    pub fn extend_timeout(&self, extra: Duration) -> io::Result<()> {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", extra.as_micros()))
    }

    /// Sends newline-separated assignments as one datagram.
    pub fn send(&self, assignments: &str) -> io::Result<()> {
        let Some((sock, addr)) = &self.target else {
            return Ok(());
        };
        let sent = sock.send_to_addr(assignments.as_bytes(), addr)?;
        if sent != assignments.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification truncated",
            ));
        }
        Ok(())
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload times with.
fn monotonic_usec() -> io::Result<u64> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
    Ok(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A socket standing in for systemd's, and the value `$NOTIFY_SOCKET` would have.
    fn manager(
        abstract_name: bool,
    ) -> (UnixDatagram, std::ffi::OsString, Option<tempfile::TempDir>) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let sock;
        let value;
        let mut dir = None;
        if abstract_name {
            let name = format!(
                "ringsocks-notify-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            sock =
                UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
            value = format!("@{name}").into();
        } else {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("notify");
            sock = UnixDatagram::bind(&path).unwrap();
            value = path.into_os_string();
            dir = Some(d);
        }
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (sock, value, dir)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn notifications_reach_a_path_socket() {
        let (sock, value, _dir) = manager(false);
        let n = Notifier::from_value(Some(&value)).unwrap();
        assert!(n.is_enabled());
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1");
        n.stopping().unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");
        n.status("draining 3 sessions\nREADY=1").unwrap();
        assert_eq!(recv(&sock), "STATUS=draining 3 sessions READY=1");
        n.extend_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(recv(&sock), "EXTEND_TIMEOUT_USEC=30000000");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (sock, value, _dir) = manager(true);
        let n = Notifier::from_value(Some(&value)).unwrap();
        let before = monotonic_usec().unwrap();
        n.reloading().unwrap();
        let after = monotonic_usec().unwrap();
        let msg = recv(&sock);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC follows")
            .parse()
            .unwrap();
        assert!(
            (before..=after).contains(&usec),
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.next(), None);
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        for value in [None, Some(OsStr::new(""))] {
            let n = Notifier::from_value(value).unwrap();
            assert!(!n.is_enabled());
            n.ready().unwrap();
            n.reloading().unwrap();
        }
    }

    #[test]
    fn a_bad_value_is_an_error_and_a_gone_manager_too() {
        let err = Notifier::from_value(Some(OsStr::new("relative/path"))).unwrap_err();
        assert!(
            err.to_string().contains("NOTIFY_SOCKET=relative/path"),
            "{err}"
        );
        let (sock, value, dir) = manager(false);
        let n = Notifier::from_value(Some(&value)).unwrap();
        drop(sock);
        drop(dir);
        assert!(n.ready().is_err(), "a send to a socket that is gone fails");
    }
}
