//! The users file: one `username:password` per line; `#` starts a comment line.

use std::collections::HashMap;
use std::fmt;

use subtle::ConstantTimeEq;

/// RFC 1929 carries at most 255 bytes of username and of password.
const MAX_FIELD: usize = 255;

#[derive(Debug, Default, Clone)]
pub struct Users {
    passwords: HashMap<Vec<u8>, Vec<u8>>,
}

/// A users-file error, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for UsersError {}

impl Users {
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut passwords = HashMap::new();
        let mut first_line = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| UsersError { line, message };
            let entry = raw.trim_end_matches('\r');
            if entry.trim().is_empty() || entry.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, pass)) = entry.split_once(':') else {
                return Err(err("expected `username:password`".into()));
            };
            if user.is_empty() {
                return Err(err("empty username".into()));
            }
            if user.len() > MAX_FIELD || pass.len() > MAX_FIELD {
                return Err(err(format!(
                    "username and password are limited to {MAX_FIELD} bytes (RFC 1929)"
                )));
            }
            if let Some(first) = first_line.insert(user.to_string(), line) {
                return Err(err(format!(
                    "user `{user}` already defined on line {first}"
                )));
            }
            passwords.insert(user.as_bytes().to_vec(), pass.as_bytes().to_vec());
        }
        Ok(Users { passwords })
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    pub fn len(&self) -> usize {
        self.passwords.len()
    }

    /// Checks a username/password pair. The comparison of the password takes the same
    /// time wherever it differs.
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        match self.passwords.get(user) {
            Some(expected) => bool::from(expected.as_slice().ct_eq(password)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_comments_and_blank_lines() {
        let users = Users::parse("# team\nalice:secret\n\n  \nbob:pa:ss\r\n").unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify(b"alice", b"secret"));
        assert!(users.verify(b"bob", b"pa:ss"), "password keeps its colons");
        assert!(!users.verify(b"alice", b"Secret"));
        assert!(!users.verify(b"carol", b"secret"));
        assert!(!users.verify(b"alice", b""));
    }

    #[test]
    fn errors_name_the_line() {
        let e = Users::parse("alice:x\nnocolon\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        assert_eq!(Users::parse(":pw").unwrap_err().line, 1);
        let long = format!("u:{}", "p".repeat(256));
        assert_eq!(Users::parse(&long).unwrap_err().line, 1);
        let dup = Users::parse("a:1\n#\na:2").unwrap_err();
        assert_eq!(dup.line, 3);
        assert!(dup.message.contains("line 1"));
    }

    #[test]
    fn empty_password_is_allowed_and_checked() {
        let users = Users::parse("guest:").unwrap();
        assert!(users.verify(b"guest", b""));
        assert!(!users.verify(b"guest", b"x"));
    }
}
