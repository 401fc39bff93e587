//! The configuration file, `check-config` and `hash-password` through the real binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::server::{hash_password, run_bounded, run_to_exit, BIN};
use common::socks::{self, Creds};
use common::{Server, Target, UsersFile};

const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn hashed_passwords_from_hash_password_log_in() {
    let hash = hash_password("s3cret pass\n");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let users = UsersFile::with_text(&format!("alice:{hash}\nbob:plain\n"));
    let server = Server::start(&["--users", users.arg()]);
    let target = Target::bind("127.0.0.1:0");
    let alice = Creds {
        user: "alice",
        pass: "s3cret pass",
    };
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), Some(alice));
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "hashed password");
    let wrong = Creds {
        user: "alice",
        pass: "s3cret pass\n",
    };
    let mut client = socks::dial(server.addr());
    let refused = socks::socks5_handshake(
        &mut client,
        ringsocks::proto::socks5::CMD_CONNECT,
        &target.addr().into(),
        Some(wrong),
    );
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("authentication refused")),
        "a wrong password must be refused: {refused:?}"
    );
}

#[test]
fn check_config_prints_or_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = [\"127.0.0.1:0\"]\ndefault-action = \"deny\"\n\n[[rule]]\naction = \"allow\"\ndest = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    let out = run_to_exit(&[
        "--idle-timeout",
        "7",
        "check-config",
        good.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("idle-timeout = 7"), "{text}");
    assert!(text.contains("dest = [\"192.0.2.0/24\"]"), "{text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = [\"127.0.0.1:0\"]\n\n[[rule]]\naction = \"allow\"\nports = [99999]\n",
    )
    .unwrap();
    let out = run_to_exit(&["check-config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml line 5: rule[1].ports"), "{err}");
}

#[test]
fn the_server_reads_its_config_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ringsocks.toml");
    std::fs::write(
        &file,
        "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\nhandshake-timeout = 5.5\nlog-level = \"debug\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", file.to_str().unwrap()]);
    let server = Server::spawn(cmd, 2).expect("serves both listeners of the file");
    assert!(server.addrs()[1].is_ipv6(), "{:?}", server.addrs());
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addrs()[1], target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "listener from the file");

    let mut cmd = Command::new(BIN);
    cmd.args([
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let server = Server::spawn(cmd, 1).expect("serves the flag's listener");
    assert!(server.addr().is_ipv4());
}

#[test]
fn an_open_proxy_is_refused_with_one_line() {
    let out = run_bounded(
        {
            let mut cmd = Command::new(BIN);
            cmd.args(["--listen", "0.0.0.0:0"]);
            cmd
        },
        WITHIN,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("open proxy") && err.contains("--allow-open"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}
