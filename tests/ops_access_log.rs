//! `--access-log`: one JSON line per session with what happened in it, written to a file
//! that log rotation can rename, or to stderr.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::access_log::{self, str_field, u64_field};
use common::socks::{self, Creds};
use common::target::closed_port;
use common::{Server, Target, Workdir};
use nix::sys::signal::Signal;
use ringsocks::proto::{socks5, Address, ReplyCode};

const WITHIN: Duration = Duration::from_secs(10);

/// How long the relayed session of the field test is held open.
const HOLD: Duration = Duration::from_millis(200);

const ALICE: Creds = Creds {
    user: "alice",
    pass: "alice-pw",
};

#[test]
fn each_session_is_one_line_with_what_happened() {
    let work = Workdir::new();
    let users = work.write("users", "alice:alice-pw\n");
    let log = work.path("access.log");
    let server = Server::start(&[
        "--users",
        users.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--shards",
        "2",
    ]);
    let target = Target::bind("127.0.0.1:0");

    // By name, relaying known bytes.
    let asked = Address::Domain("localhost".into(), target.addr().port());
    let started = Instant::now();
    let client = socks::socks5_tunnel(server.addr(), asked, Some(ALICE));
    let relayed_from = client.local_addr().unwrap();
    let (far, outbound) = target.accept();
    // The session's length is what `duration_ms` measures: hold it open that long.
    std::thread::sleep(HOLD);
    socks::transfer_and_close(client, far, 4_321, 12_345);

    // Refused by the target's host.
    let refused_to = closed_port("127.0.0.1");
    let (client, reply) = socks::socks5_connect(server.addr(), refused_to, Some(ALICE));
    assert_eq!(reply.code, ReplyCode::ConnectionRefused);
    let refused_from = client.local_addr().unwrap();
    drop(client);

    // A wrong password: no user, no request.
    let mut client = socks::dial(server.addr());
    let bad_from = client.local_addr().unwrap();
    let wrong = Creds {
        user: "alice",
        pass: "nope",
    };
    assert!(socks::socks5_handshake(
        &mut client,
        socks5::CMD_CONNECT,
        &target.addr().into(),
        Some(wrong)
    )
    .is_err());
    drop(client);

    let entries = access_log::wait_entries(&log, 3, WITHIN);
    // Every session began after `started` and was logged before this.
    let at_most = started.elapsed();
    assert_eq!(entries.len(), 3, "one line per session: {entries:#?}");

    let e = access_log::for_client(&entries, relayed_from);
    assert_eq!(str_field(e, "via"), None);
    assert_eq!(str_field(e, "user"), Some("alice"));
    assert_eq!(str_field(e, "command"), Some("connect"));
    let want_target = format!("localhost:{}", target.addr().port());
    assert_eq!(str_field(e, "target"), Some(want_target.as_str()));
    let connected = target.addr().to_string();
    assert_eq!(str_field(e, "connected"), Some(connected.as_str()));
    let outbound = outbound.to_string();
    assert_eq!(
        str_field(e, "outbound"),
        Some(outbound.as_str()),
        "the source the target saw"
    );
    assert_eq!(str_field(e, "reply"), Some("succeeded"));
    assert_eq!(u64_field(e, "bytes_up"), 4_321);
    assert_eq!(u64_field(e, "bytes_down"), 12_345);
    assert_eq!(str_field(e, "close"), Some("completed"));
    let ms = e["duration_ms"].as_f64().expect("duration_ms is a number");
    assert!(
        ms >= HOLD.as_secs_f64() * 1000.0 && ms <= at_most.as_secs_f64() * 1000.0,
        "duration {ms} ms: the session was held {HOLD:?} and logged within {at_most:?}"
    );

    let e = access_log::for_client(&entries, refused_from);
    assert_eq!(str_field(e, "user"), Some("alice"));
    assert_eq!(str_field(e, "command"), Some("connect"));
    let refused_to = refused_to.to_string();
    assert_eq!(str_field(e, "target"), Some(refused_to.as_str()));
    assert_eq!(str_field(e, "connected"), None, "nothing was connected");
    assert_eq!(str_field(e, "reply"), Some("connection_refused"));
    assert_eq!(str_field(e, "close"), Some("rejected"));
    assert_eq!(u64_field(e, "bytes_up") + u64_field(e, "bytes_down"), 0);

    let e = access_log::for_client(&entries, bad_from);
    assert_eq!(str_field(e, "user"), None, "a refused login is no user");
    assert_eq!(str_field(e, "command"), None);
    assert_eq!(str_field(e, "target"), None);
    assert_eq!(str_field(e, "reply"), None);
    assert_eq!(str_field(e, "close"), Some("handshake_error"));

    for e in &entries {
        let time = str_field(e, "time").expect("a time");
        let parsed: Result<jiff::Timestamp, _> = time.parse();
        assert!(
            parsed.is_ok() && time.ends_with('Z') && time.len() == 24,
            "time {time:?} is RFC 3339 UTC with milliseconds"
        );
        assert!(u64_field(e, "shard") < 2, "shard of {e}");
    }
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the access log is not world-readable: {mode:o}"
    );
}

/// The client address of a session that completes, through `proxy` to `target`.
fn one_session(proxy: SocketAddr, target: &Target) -> SocketAddr {
    let client = socks::socks5_tunnel(proxy, target.addr(), None);
    let from = client.local_addr().unwrap();
    let (far, _) = target.accept();
    socks::transfer_and_close(client, far, 10, 20);
    from
}

fn clients(entries: &[serde_json::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| str_field(e, "client").unwrap_or_default().to_string())
        .collect()
}

#[test]
fn after_a_rename_and_sighup_new_lines_go_to_a_new_file() {
    let work = Workdir::new();
    let log = work.path("access.log");
    let rotated = work.path("access.log.1");
    let server = Server::start(&["--access-log", log.to_str().unwrap()]);
    let target = Target::bind("127.0.0.1:0");

    let before = one_session(server.addr(), &target);
    access_log::wait_entries(&log, 1, WITHIN);
    std::fs::rename(&log, &rotated).expect("rotate the log");
    // Until the signal, the server keeps writing to the file it has open.
    let renamed = one_session(server.addr(), &target);
    access_log::wait_entries(&rotated, 2, WITHIN);
    assert!(!log.exists(), "a line went to a new file before SIGHUP");

    server.signal(Signal::SIGHUP);
    assert!(
        common::wait_until(WITHIN, || log.exists()),
        "no new file at {} after SIGHUP",
        log.display()
    );
    let after = one_session(server.addr(), &target);
    let fresh = access_log::wait_entries(&log, 1, WITHIN);
    assert_eq!(clients(&fresh), [after.to_string()], "the new file");
    let old = access_log::read(&rotated);
    assert_eq!(
        clients(&old),
        [before.to_string(), renamed.to_string()],
        "the rotated file"
    );
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the new log is not world-readable: {mode:o}"
    );
}

#[test]
fn a_dash_sends_the_lines_to_stderr() {
    let server = Server::start(&["--access-log", "-"]);
    let target = Target::bind("127.0.0.1:0");
    let from = one_session(server.addr(), &target);
    let want = format!("\"client\":\"{from}\"");
    assert!(
        server.wait_stderr(&want, WITHIN),
        "no access log line for {from} on stderr:\n{}",
        server.stderr()
    );
    let line = server
        .stderr()
        .lines()
        .find(|l| l.contains(&want))
        .map(str::to_string)
        .unwrap();
    let entries = access_log::parse(&line);
    assert_eq!(str_field(&entries[0], "reply"), Some("succeeded"));
    assert_eq!(u64_field(&entries[0], "bytes_up"), 10);
    assert_eq!(u64_field(&entries[0], "bytes_down"), 20);
}

#[test]
fn a_path_that_cannot_be_reopened_keeps_the_old_file_and_counts_the_error() {
    let work = Workdir::new();
    let log = work.path("access.log");
    let rotated = work.path("access.log.1");
    let server = Server::start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let maddr = common::metrics::metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let before = one_session(server.addr(), &target);
    access_log::wait_entries(&log, 1, WITHIN);
    std::fs::rename(&log, &rotated).expect("rotate the log");
    // A directory where the file was: the reopen fails (even for root).
    std::fs::create_dir(&log).expect("a directory in the log's place");

    server.signal(Signal::SIGHUP);
    assert!(
        server.wait_stderr("cannot reopen access log", WITHIN),
        "the failed reopen is logged:\n{}",
        server.stderr()
    );
    let after = one_session(server.addr(), &target);
    let old = access_log::wait_entries(&rotated, 2, WITHIN);
    assert_eq!(
        clients(&old),
        [before.to_string(), after.to_string()],
        "lines keep going to the file already open"
    );
    let m = common::metrics::scrape(maddr);
    assert!(
        m.get("ringsocks_access_log_errors_total", &[]) >= 1.0,
        "{}",
        m.text
    );
    assert_eq!(m.get("ringsocks_access_log_lines_total", &[]), 2.0);
}
