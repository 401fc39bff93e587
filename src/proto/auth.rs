//! Username/password sub-negotiation (RFC 1929).

use super::{need, Error, Parse};

/// Sub-negotiation version: always 1.
pub const VERSION: u8 = 0x01;
/// STATUS of a successful authentication; anything else is a failure.
pub const STATUS_SUCCESS: u8 = 0x00;
/// STATUS we send on failure.
pub const STATUS_FAILURE: u8 = 0x01;

/// VER, ULEN, UNAME, PLEN, PASSWD. Both fields are at most 255 bytes by construction.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Vec<u8>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The longest message: 1 + 1 + 255 + 1 + 255.
    pub const MAX_LEN: usize = 513;

    pub fn parse(buf: &[u8]) -> Result<Parse<Credentials>, Error> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(Error::BadAuthVersion(buf[0]));
        }
        let ulen = buf[1] as usize;
        need!(buf, 2 + ulen + 1);
        let plen = buf[2 + ulen] as usize;
        let end = 2 + ulen + 1 + plen;
        need!(buf, end);
        Ok(Parse::Complete {
            msg: Credentials {
                username: buf[2..2 + ulen].to_vec(),
                password: buf[3 + ulen..end].to_vec(),
            },
            consumed: end,
        })
    }

    /// Appends the message; fields longer than 255 bytes are cut to 255.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let user = &self.username[..self.username.len().min(255)];
        let pass = &self.password[..self.password.len().min(255)];
        out.push(VERSION);
        out.push(user.len() as u8);
        out.extend_from_slice(user);
        out.push(pass.len() as u8);
        out.extend_from_slice(pass);
    }
}

/// VER, STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub status: u8,
}

impl Status {
    pub const LEN: usize = 2;

    pub fn parse(buf: &[u8]) -> Result<Parse<Status>, Error> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(Error::BadAuthVersion(buf[0]));
        }
        Ok(Parse::Complete {
            msg: Status { status: buf[1] },
            consumed: 2,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.status]);
    }

    pub fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }
}
