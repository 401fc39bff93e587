//! The users file: one `username:password` or `username:$argon2id$...` (a PHC string, from
//! `ringsocks hash-password`) per line; `#` starts a comment line.
//!
//! Checking an argon2 hash takes tens of milliseconds on purpose, far too long for a shard,
//! so verification is split: [`Users::verify_fast`] answers at once for plain passwords and
//! for credentials verified recently (see [`VerifyCache`]), and otherwise hands back a
//! [`SlowVerify`] for the engine to run on a worker thread.
//!
//! When the file holds hashes, an unknown user is checked against a decoy hash with the
//! same parameters, so that how long a rejection takes does not tell which users exist.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use argon2::{Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier};
use subtle::ConstantTimeEq;

use super::verify_cache::VerifyCache;

/// RFC 1929 carries at most 255 bytes of username and of password.
const MAX_FIELD: usize = 255;
/// A PHC string is longer than a password may be; this bounds it all the same.
const MAX_HASH: usize = 1024;
/// Memory (KiB) a stored hash may ask for per verification: a typo in a hash must not make
/// every login allocate gigabytes.
const MAX_M_COST: u32 = 1024 * 1024;
/// Entries whose password part starts with this are hashes.
const HASH_PREFIX: &str = "$argon2";

/// What a user's password is checked against.
#[derive(Clone)]
pub enum Secret {
    Plain(Arc<[u8]>),
    /// A validated argon2 PHC string.
    Argon2(Arc<str>),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::Argon2(_) => "Secret::Argon2(..)",
        })
    }
}

impl Secret {
    /// Parses the password part of a users-file line.
    pub fn parse(text: &str) -> Result<Secret, String> {
        if !text.starts_with(HASH_PREFIX) {
            if text.len() > MAX_FIELD {
                return Err(format!(
                    "passwords are limited to {MAX_FIELD} bytes (RFC 1929)"
                ));
            }
            return Ok(Secret::Plain(text.as_bytes().into()));
        }
        let bad = |why: String| {
            format!("`{HASH_PREFIX}...` is an argon2 hash, and this one {why}: make a new one with `ringsocks hash-password`")
        };
        if text.len() > MAX_HASH {
            return Err(bad(format!("is longer than {MAX_HASH} bytes")));
        }
        let hash = PasswordHash::new(text).map_err(|e| bad(format!("is malformed ({e})")))?;
        if !matches!(hash.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") {
            return Err(bad(format!(
                "names an unknown algorithm `{}`",
                hash.algorithm
            )));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(bad("lacks its salt or its output".into()));
        }
        let params =
            Params::try_from(&hash).map_err(|e| bad(format!("has bad parameters ({e})")))?;
        if params.m_cost() > MAX_M_COST {
            return Err(bad(format!(
                "asks for {} KiB of memory per check (at most {MAX_M_COST})",
                params.m_cost()
            )));
        }
        Ok(Secret::Argon2(text.into()))
    }

    /// Whether [`Secret::verify`] is slow (argon2): run it off the shard.
    pub fn is_slow(&self) -> bool {
        matches!(self, Secret::Argon2(_))
    }

    /// Checks a password. Plain: constant time wherever the bytes differ. Argon2: slow.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Secret::Plain(expected) => bool::from(expected.ct_eq(password)),
            Secret::Argon2(phc) => PasswordHash::new(phc)
                .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok()),
        }
    }

    fn stored(&self) -> &[u8] {
        match self {
            Secret::Plain(p) => p,
            Secret::Argon2(h) => h.as_bytes(),
        }
    }
}

/// Hashes a password with argon2id, a fresh random salt and `params` (`Params::default()`
/// is OWASP's recommendation: 19 MiB, 2 passes, 1 lane). Returns the PHC string.
pub fn hash_password(password: &[u8], params: Params) -> String {
    Argon2::from(params)
        .hash_password(password)
        .expect("argon2 accepts any password up to 4 GiB with valid parameters")
        .to_string()
}

#[derive(Debug, Default)]
pub struct Users {
    secrets: HashMap<Vec<u8>, Secret>,
    /// Checked for unknown users when any entry is hashed; never accepts.
    decoy: Option<Secret>,
    cache: Arc<VerifyCache>,
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

/// The outcome of [`Users::verify_fast`].
#[derive(Debug)]
pub enum Verdict {
    Accepted,
    Rejected,
    /// Not known yet: run [`SlowVerify::run`] off the shard.
    Slow(SlowVerify),
}

/// An argon2 verification to run on a worker thread; a success is cached.
#[derive(Debug)]
pub struct SlowVerify {
    user: Vec<u8>,
    password: Vec<u8>,
    secret: Secret,
    /// The user does not exist: the work is done for its duration only.
    decoy: bool,
    cache: Arc<VerifyCache>,
}

impl SlowVerify {
    /// Verifies (slow), remembering a success from `now` on.
    pub fn run(self, now: Instant) -> bool {
        let ok = self.secret.verify(&self.password) && !self.decoy;
        if ok {
            self.cache
                .insert(&self.user, self.secret.stored(), &self.password, now);
        }
        ok
    }
}

impl Users {
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut secrets = HashMap::new();
        let mut first_line = HashMap::new();
        let mut first_hashed = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| UsersError { line, message };
            let entry = raw.trim_end_matches('\r');
            if entry.trim().is_empty() || entry.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, pass)) = entry.split_once(':') else {
                return Err(err(
                    "expected `username:password` or `username:$argon2id$...`".into(),
                ));
            };
            if user.is_empty() {
                return Err(err("empty username".into()));
            }
            if user.len() > MAX_FIELD {
                return Err(err(format!(
                    "usernames are limited to {MAX_FIELD} bytes (RFC 1929)"
                )));
            }
            let secret = Secret::parse(pass).map_err(err)?;
            if let Some(first) = first_line.insert(user.to_string(), line) {
                return Err(err(format!(
                    "user `{user}` already defined on line {first}"
                )));
            }
            if secret.is_slow() && first_hashed.is_none() {
                first_hashed = Some(secret.clone());
            }
            secrets.insert(user.as_bytes().to_vec(), secret);
        }
        let decoy = first_hashed.map(|secret| decoy_like(&secret));
        Ok(Users {
            secrets,
            decoy,
            cache: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// User names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.secrets.keys().map(Vec::as_slice)
    }

    pub fn lookup(&self, user: &[u8]) -> Option<Secret> {
        self.secrets.get(user).cloned()
    }

    /// Checks credentials without ever running argon2: plain passwords and recently
    /// verified hashed ones are answered, other hashed ones come back as
    /// [`Verdict::Slow`].
    pub fn verify_fast(&self, user: &[u8], password: &[u8], now: Instant) -> Verdict {
        let Some(secret) = self.secrets.get(user) else {
            return match &self.decoy {
                Some(decoy) => Verdict::Slow(SlowVerify {
                    user: user.to_vec(),
                    password: password.to_vec(),
                    secret: decoy.clone(),
                    decoy: true,
                    cache: self.cache.clone(),
                }),
                None => Verdict::Rejected,
            };
        };
        if !secret.is_slow() {
            return if secret.verify(password) {
                Verdict::Accepted
            } else {
                Verdict::Rejected
            };
        }
        if self.cache.contains(user, secret.stored(), password, now) {
            return Verdict::Accepted;
        }
        Verdict::Slow(SlowVerify {
            user: user.to_vec(),
            password: password.to_vec(),
            secret: secret.clone(),
            decoy: false,
            cache: self.cache.clone(),
        })
    }

    /// Checks credentials, running argon2 in the caller's thread for hashed entries (slow:
    /// not for a shard; see [`Users::verify_fast`]).
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        self.secrets
            .get(user)
            .is_some_and(|secret| secret.verify(password))
    }
}

/// A hash of a random password with the parameters of `like` (argon2id's defaults if they
/// cannot be read), so that checking it costs what checking `like` does.
fn decoy_like(like: &Secret) -> Secret {
    let params = PasswordHash::new(std::str::from_utf8(like.stored()).unwrap_or_default())
        .ok()
        .and_then(|hash| Params::try_from(&hash).ok())
        .unwrap_or_default();
    let password: [u8; 16] = rand::random();
    Secret::Argon2(hash_password(&password, params).into())
}

/// Splits a SOCKS username into the user and a session id carried after `separator`
/// (`alice-session-abc123` → `alice`, `abc123`). An empty separator, or a name without it,
/// carries no session; so does an empty id.
pub fn split_username<'a>(name: &'a str, separator: &str) -> (&'a str, Option<&'a str>) {
    if separator.is_empty() {
        return (name, None);
    }
    match name.split_once(separator) {
        Some((user, session)) if !session.is_empty() => (user, Some(session)),
        Some((user, _)) => (user, None),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests;
