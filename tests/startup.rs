//! The command line: what it serves, how it fails at start-up (one line on stderr, exit
//! status 1, never a panic), and how it stops on SIGTERM and SIGINT.

mod common;

use std::net::TcpListener;

use common::server::{run_to_exit, EXIT_TIMEOUT};
use common::socks::{self, Creds};
use common::{Server, Target, UsersFile};
use nix::sys::signal::Signal;

/// Asserts a start-up failure: exit status 1, exactly one line on stderr that mentions
/// each of `mentions` (case-insensitive), no panic, nothing announced. Returns the line.
#[track_caller]
fn fails_at_startup(args: &[&str], mentions: &[&str]) -> String {
    let out = run_to_exit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "ringsocks {args:?} panicked:\n{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "ringsocks {args:?}: exit status; stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "ringsocks {args:?}: want one line on stderr, got:\n{err}"
    );
    let line = lines[0].to_lowercase();
    for m in mentions {
        assert!(
            line.contains(&m.to_lowercase()),
            "ringsocks {args:?}: the error should mention {m:?}: {}",
            lines[0]
        );
    }
    assert!(
        !stdout.contains("listening on"),
        "ringsocks {args:?} announced a listener and still failed:\n{stdout}"
    );
    lines[0].to_string()
}

#[test]
fn address_in_use_fails_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = taken.local_addr().unwrap().port().to_string();
    fails_at_startup(&["--listen", &addr], &[&port]);
    // Also when it is not the first address.
    fails_at_startup(&["--listen", "127.0.0.1:0", "--listen", &addr], &[&port]);
}

#[test]
fn malformed_users_file_names_the_line() {
    let file = UsersFile::with_text("# staff\n\nalice:secret\nno colon on this line\nbob:pw\n");
    let line = fails_at_startup(&["--users", file.arg()], &[]);
    let names_line_4 = ["line 4", ":4:", ":4 "]
        .iter()
        .any(|p| line.to_lowercase().contains(p));
    assert!(names_line_4, "the error should name line 4: {line}");
}

#[test]
fn missing_users_file_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-users-file");
    let path = path.to_str().unwrap();
    fails_at_startup(&["--users", path], &["no-such-users-file"]);
}

#[test]
fn bad_flag_values_fail_with_one_line() {
    let cases: [(&[&str], &str); 8] = [
        (&["--handshake-timeout", "soon"], "handshake-timeout"),
        (&["--connect-timeout=-1"], "connect-timeout"),
        (&["--idle-timeout", "1s"], "idle-timeout"),
        (&["--listen", "127.0.0.1"], "listen"),
        (&["--listen", "127.0.0.1:99999"], "listen"),
        (&["--log-level", "loud"], "log-level"),
        (&["--shards", "many"], "shards"),
        (&["--cpus", "0-x"], "cpus"),
    ];
    for (args, flag) in cases {
        fails_at_startup(args, &[flag]);
    }
}

#[test]
fn fractional_timeouts_are_accepted() {
    let server = Server::start(&[
        "--handshake-timeout",
        "0.5",
        "--connect-timeout",
        "2.25",
        "--idle-timeout",
        "30.0",
    ]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "fractional timeouts");
}

#[test]
fn listens_on_every_address_given() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let addrs = server.addrs().to_vec();
    assert!(
        addrs[0].is_ipv4() && addrs[1].is_ipv6(),
        "announced {addrs:?}"
    );
    assert!(addrs.iter().all(|a| a.port() != 0), "announced {addrs:?}");
    let target = Target::bind("127.0.0.1:0");
    for proxy in addrs {
        let mut client = socks::socks5_tunnel(proxy, target.addr(), None);
        let (mut far, _) = target.accept();
        socks::exchange(&mut client, &mut far, &format!("via {proxy}"));
    }
}

#[test]
fn explicit_shards_and_cpus_serve() {
    let server = Server::start(&["--shards", "1", "--cpus", "0", "--log-level", "debug"]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "one shard on cpu 0");
}

#[test]
fn users_file_skips_comments_and_blank_lines() {
    let file = UsersFile::with_text(
        "# who may use this proxy\n\nalice:first:second\n\n# bob:disabled\ndave:pw\n",
    );
    let server = Server::start(&["--users", file.arg()]);
    let target = Target::bind("127.0.0.1:0");
    // The password is everything after the first colon.
    for creds in [
        Creds {
            user: "alice",
            pass: "first:second",
        },
        Creds {
            user: "dave",
            pass: "pw",
        },
    ] {
        let mut client = socks::socks5_tunnel(server.addr(), target.addr(), Some(creds));
        let (mut far, _) = target.accept();
        socks::exchange(&mut client, &mut far, creds.user);
    }
    for creds in [
        Creds {
            user: "# bob",
            pass: "disabled",
        },
        Creds {
            user: "bob",
            pass: "disabled",
        },
    ] {
        let mut client = socks::dial(server.addr());
        let refused = socks::socks5_handshake(
            &mut client,
            ringsocks::proto::socks5::CMD_CONNECT,
            &target.addr().into(),
            Some(creds),
        );
        assert!(
            refused.is_err(),
            "{creds:?} from a comment line was accepted"
        );
    }
}

/// The server exits with status 0 on `sig` (sent `times` times), even with a session
/// open: SIGTERM drains for up to --drain-timeout, a second SIGINT stops at once.
fn stops_cleanly_on(sig: Signal, times: usize) {
    let mut server = Server::start(&["--drain-timeout", "1"]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "before the signal");
    for _ in 0..times {
        server.signal(sig);
    }
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("still running {EXIT_TIMEOUT:?} after {sig}"));
    let err = server.stderr();
    assert_eq!(status.code(), Some(0), "exit after {sig}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "panicked on {sig}:\n{err}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    stops_cleanly_on(Signal::SIGTERM, 1);
}

#[test]
fn sigint_twice_stops_the_server_cleanly() {
    stops_cleanly_on(Signal::SIGINT, 2);
}
