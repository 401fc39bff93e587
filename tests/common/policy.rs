//! Support for the access-policy tests: servers started from a configuration file, and
//! what a refusal must look like (REP 0x02, or SOCKS4 91, then a close, and a log line
//! naming the rule that decided).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use ringsocks::proto::{socks4, socks5, ReplyCode};
use ringsocks::resolve::fake_dns::{FakeDns, Reply};

use super::server::Server;
use super::wait::{expect_closed, IO_TIMEOUT};

/// How long a log line may trail the reply the client already has.
pub const LOG_WAIT: Duration = Duration::from_secs(5);

/// SOCKS4's "request rejected or failed".
pub const SOCKS4_REJECTED: u8 = 91;
pub const SOCKS4_GRANTED: u8 = 90;

/// A configuration file in a temporary directory, removed on drop.
pub struct ConfigFile {
    file: tempfile::NamedTempFile,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("create a configuration file");
        file.write_all(text.as_bytes())
            .expect("write the configuration file");
        file.flush().expect("flush the configuration file");
        ConfigFile { file }
    }

    pub fn arg(&self) -> &str {
        self.file
            .path()
            .to_str()
            .expect("temporary paths are UTF-8")
    }
}

/// A server reading `toml` (flags in `args` come on top), listening on 127.0.0.1. The
/// file must outlive the server only until it has started, but tests keep both.
#[track_caller]
pub fn start(toml: &str, args: &[&str]) -> (Server, ConfigFile) {
    let file = ConfigFile::new(toml);
    let mut all = vec!["--config", file.arg()];
    all.extend_from_slice(args);
    (Server::start(&all), file)
}

/// A fake DNS server answering each `(name, addresses)`; the server under test uses it
/// with `--dns-server`, so no query leaves the machine.
pub fn fake_dns(names: &[(&str, &[&str])]) -> FakeDns {
    let dns = FakeDns::start().expect("start the fake DNS server");
    for (name, addrs) in names {
        let addrs: Vec<_> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        dns.set(name, Reply::addrs(&addrs, 300));
    }
    dns
}

/// Asserts a SOCKS5 refusal by the rules: REP 0x02, the connection closed, and a log
/// line `denied {what} ...: {rule}` (`rule` as the server prints it: `rule 2 (name)` or
/// `default`).
#[track_caller]
pub fn assert_denied(
    server: &Server,
    stream: &mut TcpStream,
    reply: &socks5::Reply,
    what: &str,
    rule: &str,
) {
    assert_eq!(
        reply.code,
        ReplyCode::NotAllowed,
        "{what}: expected REP 0x02 from {rule}, got {reply:?}"
    );
    expect_closed(stream, IO_TIMEOUT);
    assert_denial_logged(server, what, rule);
}

/// Asserts a SOCKS4 refusal by the rules: CD 91, a close and the log line.
#[track_caller]
pub fn assert_denied4(
    server: &Server,
    stream: &mut TcpStream,
    reply: &socks4::Reply,
    what: &str,
    rule: &str,
) {
    assert_eq!(
        reply.code, SOCKS4_REJECTED,
        "{what}: expected CD 91 from {rule}, got {reply:?}"
    );
    expect_closed(stream, IO_TIMEOUT);
    assert_denial_logged(server, what, rule);
}

#[track_caller]
pub fn assert_denial_logged(server: &Server, what: &str, rule: &str) {
    let denied = format!("denied {} ", what.trim_end());
    let by = format!(": {rule}");
    assert!(
        server.wait_log(&[&denied, &by], LOG_WAIT),
        "no log line `{denied}...{by}`; stderr:\n{}",
        server.stderr()
    );
}
