//! The command line: `ringsocks [flags]` runs the server, `ringsocks check-config FILE`
//! validates a configuration, `ringsocks hash-password` hashes a password for the users
//! file. The flags themselves are the [`Settings`] schema, shared with the configuration
//! file; how values combine is decided in [`crate::config`].

use std::path::PathBuf;

use clap::Parser;

pub use crate::config::values::LogLevel;
use crate::config::Settings;

/// A SOCKS4 / SOCKS4a / SOCKS5 proxy server on per-core io_uring shards.
#[derive(Debug, Parser)]
#[command(name = "ringsocks", version, about)]
pub struct Cli {
    /// Configuration file (TOML): every flag is a key of the same name; flags given here
    /// override the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file (with any flags given before this word) and print
    /// the effective configuration.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Read a password on standard input and print its argon2id hash, for a users-file
    /// line `username:HASH`.
    HashPassword,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Secs;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringsocks").chain(args.iter().copied()))
    }

    #[test]
    fn no_flags_set_nothing() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none() && cli.config.is_none());
        assert_eq!(
            cli.settings,
            Settings::default(),
            "defaults come later, under the file"
        );
    }

    #[test]
    fn flags_parse_into_settings() {
        let cli = parse(&[
            "--listen",
            "0.0.0.0:1080",
            "--listen",
            "[::1]:1081",
            "--handshake-timeout",
            "0.5",
            "--prefer",
            "ipv4",
            "--allow-open",
            "--proxy-protocol-listen",
            "10.0.0.1:1082",
            "--proxy-trusted",
            "10.0.0.0/8",
            "--max-sessions-per-ip",
            "5",
            "--bandwidth-per-user-down",
            "10M",
            "--egress-source",
            "192.0.2.1",
            "--egress-ipv6-prefix",
            "2001:db8::/64",
            "--egress-ipv6-mode",
            "per-session",
            "--access-log",
            "-",
            "--user",
            "nobody",
        ])
        .unwrap();
        let s = cli.settings;
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.handshake_timeout, Some(Secs(Duration::from_millis(500))));
        assert!(s.allow_open);
        assert_eq!(s.max_sessions_per_ip, Some(5));
        assert_eq!(s.bandwidth_per_user_down.map(|r| r.0), Some(10_000_000));
        assert_eq!(s.user.as_deref(), Some("nobody"));
        assert_eq!(s.proxy_trusted.len(), 1);
    }

    #[test]
    fn subcommands() {
        let cli = parse(&["check-config", "/etc/ringsocks.toml"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::CheckConfig { ref file }) if file.ends_with("ringsocks.toml"))
        );
        let cli = parse(&["--shards", "2", "check-config", "x.toml"]).unwrap();
        assert_eq!(cli.settings.shards, Some(2));
        assert!(matches!(
            parse(&["hash-password"]).unwrap().command,
            Some(Command::HashPassword)
        ));
        assert!(parse(&["check-config"]).is_err(), "the file is required");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--cpus", "0-x"][..], "--cpus"),
            (&["--idle-timeout", "1s"], "--idle-timeout"),
            (&["--prefer", "ipv5"], "--prefer"),
            (
                &["--bandwidth-per-user-up", "fast"],
                "--bandwidth-per-user-up",
            ),
            (&["--proxy-trusted", "10.0.0.0/99"], "--proxy-trusted"),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }
}
