//! Sockets the engine creates with plain system calls: listeners and outbound sockets.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Connections queued by the kernel per listener before accept.
const BACKLOG: i32 = 4096;

/// A listener for one shard. Every shard binds its own socket to the same address with
/// SO_REUSEPORT, and the kernel spreads new connections across them.
pub fn listener(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]:1080` and `0.0.0.0:1080` can then both be listed.
        sock.set_only_v6(true)?;
    }
    // Accepted sockets inherit it: replies and small relayed writes go out at once.
    sock.set_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock)
}

/// Checks that nobody else holds `addr` (SO_REUSEPORT would otherwise silently share the
/// port with another process of the same user) and resolves port 0 to a real port.
pub fn claim(addr: SocketAddr) -> io::Result<SocketAddr> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier run lingering in TIME_WAIT must not block a restart;
    // a live listener still does (it has no SO_REUSEADDR-compatible twin here).
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into())?;
    probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no IP address"))
}

/// A TCP socket for an outbound connect to `target`. Blocking on purpose: io_uring
/// polls for readiness itself, and when it falls back to a blocking issue, `sendmsg` on
/// an O_NONBLOCK file would end with a final -EAGAIN (the kernel adds MSG_DONTWAIT for
/// such files) instead of waiting for room.
pub fn outbound(target: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

pub fn local_addr(sock: &Socket) -> io::Result<SocketAddr> {
    sock.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}

/// A non-blocking UDP socket bound to `addr`.
pub fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let sock = udp_unbound(addr)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// A non-blocking UDP socket of `addr`'s family, not bound yet.
pub fn udp_unbound(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    Ok(sock)
}

/// A UDP socket bound to `ip` with a port from `range` (tried from a random start), or
/// an ephemeral port when there is no range.
pub fn udp_socket_in_range(ip: std::net::IpAddr, range: Option<(u16, u16)>) -> io::Result<Socket> {
    let Some((lo, hi)) = range else {
        return udp_socket(SocketAddr::new(ip, 0));
    };
    let span = (hi - lo) as u32 + 1;
    let start = fastrand::u32(0..span);
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    // Bounded: a full range fails after this many tries, not after scanning it all.
    for i in 0..span.min(256) {
        let port = lo + ((start + i) % span) as u16;
        match udp_socket(SocketAddr::new(ip, port)) {
            Ok(sock) => return Ok(sock),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The local address the kernel would use to reach `dest` (a routing lookup: connecting
/// a UDP socket sends nothing).
pub fn route_source(dest: std::net::IpAddr) -> io::Result<std::net::IpAddr> {
    let sock = Socket::new(
        Domain::for_address(SocketAddr::new(dest, 0)),
        Type::DGRAM,
        None,
    )?;
    sock.connect(&SocketAddr::new(dest, 9).into())?;
    Ok(local_addr(&sock)?.ip())
}

/// A listener for one BIND request.
pub fn bind_listener(ip: std::net::IpAddr) -> io::Result<Socket> {
    let addr = SocketAddr::new(ip, 0);
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1)?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_sockets_are_blocking() {
        for target in ["127.0.0.1:9", "[::1]:9"] {
            let sock = outbound(target.parse().unwrap()).unwrap();
            assert!(!sock.nonblocking().unwrap(), "{target}");
        }
    }
}
