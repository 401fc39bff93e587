//! A raw SOCKS client built on the product's own encoders and parsers
//! (`ringsocks::proto`), so the tests can send any byte sequence and read exact replies.
//!
//! Replies are read one byte at a time up to their end, so bytes relayed after a reply
//! stay in the socket for the test to read.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use ringsocks::proto::{self, auth, socks4, socks5, Address, Parse};
use socket2::{Domain, Socket, Type};

use super::target::prepare;
use super::wait::IO_TIMEOUT;

/// Username and password for RFC 1929.
#[derive(Clone, Copy, Debug)]
pub struct Creds<'a> {
    pub user: &'a str,
    pub pass: &'a str,
}

/// A connection to the proxy with timeouts and TCP_NODELAY (so each write of a split
/// handshake leaves as its own segment).
#[track_caller]
pub fn dial(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the proxy {proxy}: {e}"));
    prepare(&stream);
    stream
}

/// Like [`dial`], from the local address `from` (any port): a client at another loopback
/// address, such as 127.0.0.2.
#[track_caller]
pub fn dial_from(from: IpAddr, proxy: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::for_address(proxy), Type::STREAM, None)
        .unwrap_or_else(|e| panic!("a TCP socket: {e}"));
    sock.bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind the client to {from}: {e}"));
    sock.connect_timeout(&proxy.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {from} to the proxy {proxy}: {e}"));
    let stream = TcpStream::from(sock);
    prepare(&stream);
    stream
}

pub fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    socks5::Greeting {
        methods: methods.to_vec(),
    }
    .emit(&mut out);
    out
}

pub fn credentials(creds: Creds) -> Vec<u8> {
    let mut out = Vec::new();
    auth::Credentials {
        username: creds.user.as_bytes().to_vec(),
        password: creds.pass.as_bytes().to_vec(),
    }
    .emit(&mut out);
    out
}

pub fn socks5_request(command: u8, address: &Address) -> Vec<u8> {
    let mut out = Vec::new();
    socks5::Request {
        command,
        address: address.clone(),
    }
    .emit(&mut out);
    out
}

/// A SOCKS4 request for an IPv4 address, or SOCKS4a for a domain.
pub fn socks4_request(command: u8, address: &Address, user_id: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    socks4::Request {
        command,
        address: address.clone(),
        user_id: user_id.to_vec(),
    }
    .emit(&mut out);
    out
}

/// Every byte of a SOCKS5 CONNECT handshake: greeting, credentials (if any), request.
pub fn socks5_connect_bytes(target: &Address, creds: Option<Creds>) -> Vec<u8> {
    let mut out = match creds {
        Some(c) => [greeting(&[socks5::METHOD_USER_PASS]), credentials(c)].concat(),
        None => greeting(&[socks5::METHOD_NO_AUTH]),
    };
    out.extend(socks5_request(socks5::CMD_CONNECT, target));
    out
}

/// Reads one message, byte by byte, until `parse` completes it.
pub fn read_msg<T>(
    stream: &mut impl Read,
    parse: impl Fn(&[u8]) -> Result<Parse<T>, proto::Error>,
) -> io::Result<T> {
    let mut buf = Vec::new();
    // No reply is longer than this.
    while buf.len() < 600 {
        let mut byte = [0u8];
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {} reply bytes {buf:02x?}", buf.len()),
            ));
        }
        buf.push(byte[0]);
        match parse(&buf) {
            Ok(Parse::Incomplete) => {}
            Ok(Parse::Complete { msg, .. }) => return Ok(msg),
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("malformed reply {buf:02x?}: {e}"),
                ))
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"))
}

pub fn read_method(stream: &mut impl Read) -> io::Result<u8> {
    read_msg(stream, socks5::MethodSelection::parse).map(|m| m.method)
}

pub fn read_auth_status(stream: &mut impl Read) -> io::Result<auth::Status> {
    read_msg(stream, auth::Status::parse)
}

pub fn read_socks5_reply(stream: &mut impl Read) -> io::Result<socks5::Reply> {
    read_msg(stream, socks5::Reply::parse)
}

pub fn read_socks4_reply(stream: &mut impl Read) -> io::Result<socks4::Reply> {
    read_msg(stream, socks4::Reply::parse)
}

/// Runs a SOCKS5 handshake for `command` to `target` on an open connection, one message
/// at a time, and returns the server's reply (success or not).
pub fn socks5_handshake(
    stream: &mut TcpStream,
    command: u8,
    target: &Address,
    creds: Option<Creds>,
) -> io::Result<socks5::Reply> {
    let method = match creds {
        Some(_) => socks5::METHOD_USER_PASS,
        None => socks5::METHOD_NO_AUTH,
    };
    stream.write_all(&greeting(&[method]))?;
    let chosen = read_method(stream)?;
    if chosen != method {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("server chose method {chosen:#04x}, not {method:#04x}"),
        ));
    }
    if let Some(c) = creds {
        stream.write_all(&credentials(c))?;
        let status = read_auth_status(stream)?;
        if !status.is_success() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("authentication refused (status {:#04x})", status.status),
            ));
        }
    }
    stream.write_all(&socks5_request(command, target))?;
    read_socks5_reply(stream)
}

/// Connects through the proxy with SOCKS5 CONNECT; returns the stream and the reply.
#[track_caller]
pub fn socks5_connect(
    proxy: SocketAddr,
    target: impl Into<Address>,
    creds: Option<Creds>,
) -> (TcpStream, socks5::Reply) {
    let target = target.into();
    let mut stream = dial(proxy);
    let reply = socks5_handshake(&mut stream, socks5::CMD_CONNECT, &target, creds)
        .unwrap_or_else(|e| panic!("SOCKS5 CONNECT {target} via {proxy}: {e}"));
    (stream, reply)
}

/// A SOCKS5 tunnel to `target` that must succeed.
#[track_caller]
pub fn socks5_tunnel(
    proxy: SocketAddr,
    target: impl Into<Address>,
    creds: Option<Creds>,
) -> TcpStream {
    let target = target.into();
    let (stream, reply) = socks5_connect(proxy, target.clone(), creds);
    assert_eq!(
        reply.code,
        proto::ReplyCode::Succeeded,
        "SOCKS5 CONNECT {target} refused: {reply:?}"
    );
    stream
}

/// Connects through the proxy with SOCKS4 (IPv4) or SOCKS4a (domain).
#[track_caller]
pub fn socks4_connect(
    proxy: SocketAddr,
    target: impl Into<Address>,
    user_id: &[u8],
) -> (TcpStream, socks4::Reply) {
    let target = target.into();
    let mut stream = dial(proxy);
    let reply = stream
        .write_all(&socks4_request(socks4::CMD_CONNECT, &target, user_id))
        .and_then(|()| read_socks4_reply(&mut stream))
        .unwrap_or_else(|e| panic!("SOCKS4 CONNECT {target} via {proxy}: {e}"));
    (stream, reply)
}

/// Sends a line each way through an open tunnel whose far end is `far`, and checks both
/// arrive intact.
#[track_caller]
pub fn exchange(near: &mut TcpStream, far: &mut TcpStream, tag: &str) {
    let up = format!("client to target: {tag}\n");
    let down = format!("target to client: {tag}\n");
    near.write_all(up.as_bytes())
        .expect("write through the tunnel");
    let got = super::wait::read_exact_vec(far, up.len()).expect("the target reads");
    assert_eq!(got, up.as_bytes(), "bytes arrived changed at the target");
    far.write_all(down.as_bytes()).expect("the target writes");
    let got = super::wait::read_exact_vec(near, down.len()).expect("read through the tunnel");
    assert_eq!(got, down.as_bytes(), "bytes arrived changed at the client");
}

/// Sends a SOCKS5 BIND for a peer expected from `expected` and returns the connection
/// with the first reply (the listening address, or a failure).
#[track_caller]
pub fn socks5_bind(proxy: SocketAddr, expected: impl Into<Address>) -> (TcpStream, socks5::Reply) {
    let expected = expected.into();
    let mut stream = dial(proxy);
    let reply = socks5_handshake(&mut stream, socks5::CMD_BIND, &expected, None)
        .unwrap_or_else(|e| panic!("SOCKS5 BIND {expected} via {proxy}: {e}"));
    (stream, reply)
}

/// Sends a SOCKS4 BIND (SOCKS4a for a domain) and returns the connection with the first
/// reply.
#[track_caller]
pub fn socks4_bind(
    proxy: SocketAddr,
    expected: impl Into<Address>,
    user_id: &[u8],
) -> (TcpStream, socks4::Reply) {
    let expected = expected.into();
    let mut stream = dial(proxy);
    let reply = stream
        .write_all(&socks4_request(socks4::CMD_BIND, &expected, user_id))
        .and_then(|()| read_socks4_reply(&mut stream))
        .unwrap_or_else(|e| panic!("SOCKS4 BIND {expected} via {proxy}: {e}"));
    (stream, reply)
}

/// Moves `up` bytes client to target and `down` bytes target to client through an open
/// tunnel, checking them, then ends the session cleanly: the client half-closes, the
/// target closes when it sees that, and the client reads the end. A session that
/// completes, with exactly these byte counts.
#[track_caller]
pub fn transfer_and_close(mut near: TcpStream, mut far: TcpStream, up: usize, down: usize) {
    let up_bytes: Vec<u8> = (0..up).map(|i| (i * 7 + 1) as u8).collect();
    let down_bytes: Vec<u8> = (0..down).map(|i| (i * 13 + 5) as u8).collect();
    near.write_all(&up_bytes).expect("write through the tunnel");
    let got = super::wait::read_exact_vec(&mut far, up).expect("the target reads");
    assert!(got == up_bytes, "bytes arrived changed at the target");
    far.write_all(&down_bytes).expect("the target writes");
    let got = super::wait::read_exact_vec(&mut near, down).expect("read through the tunnel");
    assert!(got == down_bytes, "bytes arrived changed at the client");
    near.shutdown(std::net::Shutdown::Write)
        .expect("half-close the client");
    let rest = super::wait::read_until_closed(&mut far, IO_TIMEOUT)
        .expect("the target sees the client's end");
    assert!(rest.is_empty(), "{} stray bytes at the target", rest.len());
    drop(far);
    let rest = super::wait::read_until_closed(&mut near, IO_TIMEOUT)
        .expect("the client sees the target's end");
    assert!(rest.is_empty(), "{} stray bytes at the client", rest.len());
}
