//! The two subcommands besides serving: `check-config` and `hash-password`.

use std::path::Path;

use argon2::Params;

use super::{load, source, ConfigError, Settings};
use crate::policy::hash_password;

/// RFC 1929 carries at most 255 bytes of password.
const MAX_PASSWORD: usize = 255;

/// Validates `file` with `flags` over it and returns the effective configuration as TOML,
/// or the first error. This host's limits are not checked: the file may be meant for
/// another host.
pub fn check_config(flags: &Settings, file: &Path) -> Result<String, ConfigError> {
    let config = load(flags, Some(file), None)?;
    Ok(format!(
        "# Effective configuration: defaults, then {}, then flags. Valid.\n\
         # (RLIMIT_NOFILE and RLIMIT_MEMLOCK are checked at start-up on the serving host.)\n{}",
        file.display(),
        source::to_toml(&config.settings)
    ))
}

/// The argon2id PHC string for the password in `input` (one trailing newline dropped).
pub fn hash_password_line(input: &[u8], params: Params) -> Result<String, String> {
    let password = input
        .strip_suffix(b"\n")
        .map(|p| p.strip_suffix(b"\r").unwrap_or(p))
        .unwrap_or(input);
    if password.is_empty() {
        return Err("no password on standard input: pipe or type one, then end with Ctrl-D".into());
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is {} bytes; SOCKS5 (RFC 1929) carries at most {MAX_PASSWORD}",
            password.len()
        ));
    }
    Ok(hash_password(password, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Users;

    #[test]
    fn hash_password_output_verifies_in_a_users_file() {
        let cheap = Params::new(8, 1, 1, None).unwrap();
        let hash = hash_password_line(b"correct horse\n", cheap.clone()).unwrap();
        let users = Users::parse(&format!("alice:{hash}\n")).unwrap();
        assert!(users.verify(b"alice", b"correct horse"));
        assert!(
            !users.verify(b"alice", b"correct horse\n"),
            "the newline is not part of it"
        );
        let crlf = hash_password_line(b"pw\r\n", cheap.clone()).unwrap();
        assert!(Users::parse(&format!("a:{crlf}"))
            .unwrap()
            .verify(b"a", b"pw"));
        assert!(hash_password_line(b"\n", cheap.clone()).is_err());
        assert!(hash_password_line(&[b'x'; 256], cheap).is_err());
    }
}
