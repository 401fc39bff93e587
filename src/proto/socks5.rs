//! SOCKS5 messages (RFC 1928): greeting, method selection, request, reply.
//!
//! Each message parses from the front of a buffer and emits by appending to a `Vec`, so a
//! server and a client (bench-harness, tests) share one encoding.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{need, Address, Error, Parse, ReplyCode};

pub const VERSION: u8 = 0x05;

pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_GSSAPI: u8 = 0x01;
pub const METHOD_USER_PASS: u8 = 0x02;
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;

pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_BIND: u8 = 0x02;
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// VER, NMETHODS, METHODS. `methods` holds 1 to 255 entries on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<u8>,
}

impl Greeting {
    pub fn parse(buf: &[u8]) -> Result<Parse<Greeting>, Error> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(Error::UnknownVersion(buf[0]));
        }
        need!(buf, 2);
        let n = buf[1] as usize;
        if n == 0 {
            return Err(Error::NoMethodsOffered);
        }
        need!(buf, 2 + n);
        Ok(Parse::Complete {
            msg: Greeting {
                methods: buf[2..2 + n].to_vec(),
            },
            consumed: 2 + n,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.methods.len().min(255);
        out.push(VERSION);
        out.push(n as u8);
        out.extend_from_slice(&self.methods[..n]);
    }
}

/// VER, METHOD: the server's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSelection {
    pub method: u8,
}

impl MethodSelection {
    pub const LEN: usize = 2;

    pub fn parse(buf: &[u8]) -> Result<Parse<MethodSelection>, Error> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(Error::UnknownVersion(buf[0]));
        }
        Ok(Parse::Complete {
            msg: MethodSelection { method: buf[1] },
            consumed: 2,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.method]);
    }
}

/// VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT.
///
/// `command` keeps unknown values so that the handshake can answer them with REP 0x07
/// after the whole request (and so its length) is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: u8,
    pub address: Address,
}

impl Request {
    pub fn parse(buf: &[u8]) -> Result<Parse<Request>, Error> {
        need!(buf, 4);
        if buf[0] != VERSION {
            return Err(Error::BadRequestVersion(buf[0]));
        }
        // RSV (buf[2]) is ignored: RFC 1928 reserves it, and rejecting a non-zero value
        // only breaks clients that leave garbage there.
        let command = buf[1];
        Ok(Address::parse(&buf[3..])?
            .map(|address| Request { command, address })
            .add(3))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.command, 0x00]);
        self.address.emit(out);
    }
}

/// VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub bound: Address,
}

/// The bound address of a failure reply: 0.0.0.0:0.
pub const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

impl Reply {
    /// The largest reply: an IPv6 bound address (a domain never appears in ours).
    pub const MAX_IP_LEN: usize = 4 + 16 + 2;

    pub fn failure(code: ReplyCode) -> Reply {
        Reply {
            code,
            bound: Address::Ip(UNSPECIFIED),
        }
    }

    pub fn parse(buf: &[u8]) -> Result<Parse<Reply>, Error> {
        need!(buf, 4);
        if buf[0] != VERSION {
            return Err(Error::BadRequestVersion(buf[0]));
        }
        let code = ReplyCode::from_u8(buf[1]);
        Ok(Address::parse(&buf[3..])?
            .map(|bound| Reply { code, bound })
            .add(3))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.code.to_u8(), 0x00]);
        self.bound.emit(out);
    }
}
