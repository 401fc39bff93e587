//! Name resolution failures, without a single DNS query leaving the machine.
//!
//! A name that is not in /etc/hosts sends the resolver to the system's DNS server, which
//! is not on this machine. So each test here re-runs itself, as this same test binary
//! filtered to this one test, under `unshare --net`: a fresh network namespace whose only
//! interface is loopback. There the inner run brings `lo` up, checks that it is isolated
//! (only `lo` exists) before doing anything else, and only then starts ringsocks and its
//! client. Every query fails at once for want of a route, and the server must say so with
//! REP 0x04 (SOCKS4: 91), promptly. The outer run checks that the inner run passed and
//! that the test body really ran in there (a filter that matched nothing would also exit
//! 0). Creating a network namespace needs root, which the test machines and CI have.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::run_bounded;
use common::socks;
use common::{expect_closed, Server, Target, IO_TIMEOUT};
use ringsocks::proto::{socks5, Address, ReplyCode};

/// Set in the environment of the run inside the namespace.
const INSIDE: &str = "RINGSOCKS_TEST_INSIDE_NETNS";
/// Printed by the inner run when the test body finished.
const DONE: &str = "netns test body done: ";
/// How long a whole inner run may take.
const INNER_TIMEOUT: Duration = Duration::from_secs(60);
/// A name that exists nowhere (RFC 6761 reserves .invalid).
const NO_SUCH_NAME: &str = "no-such-host.ringsocks-test.invalid";
/// How fast a failed resolution must be answered; it fails at once in the namespace.
const PROMPT: Duration = Duration::from_secs(3);

/// Runs `body` inside a fresh network namespace; `test` is the name of the calling test.
fn in_fresh_netns(test: &str, body: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        assert_isolated();
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run `ip` (iproute2)");
        assert!(up.success(), "ip link set lo up: {up}");
        body();
        println!("{DONE}{test}");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1");
    let out = run_bounded(cmd, INNER_TIMEOUT);
    // The inner harness's summary would read like this binary's own to a log reader.
    let stdout = String::from_utf8_lossy(&out.stdout).replace("test result:", "inner result:");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint = if stderr.starts_with("unshare:") {
        " (creating a network namespace needs root)"
    } else {
        ""
    };
    assert!(
        out.status.success(),
        "the run inside a fresh network namespace failed ({}){hint}.\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("{DONE}{test}")),
        "the test body did not run inside the namespace.\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// Refuses to go on unless this process sees no network interface but loopback: nothing
/// it does can then reach another machine.
fn assert_isolated() {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "not in an isolated network namespace; refusing to resolve names here"
    );
}

#[test]
fn unresolvable_name_gets_host_unreachable_promptly() {
    in_fresh_netns("unresolvable_name_gets_host_unreachable_promptly", || {
        let server = Server::start(&["--connect-timeout", "10"]);
        // Twice: the second answer may come from a negative cache entry.
        for round in 0..2 {
            let start = Instant::now();
            let (mut client, reply) = socks::socks5_connect(
                server.addr(),
                Address::Domain(NO_SUCH_NAME.into(), 80),
                None,
            );
            let elapsed = start.elapsed();
            assert_eq!(
                reply.code,
                ReplyCode::HostUnreachable,
                "round {round}: {reply:?}"
            );
            assert!(
                elapsed < PROMPT,
                "round {round}: answered after {elapsed:?}"
            );
            expect_closed(&mut client, IO_TIMEOUT);
        }
        // A known name still works after the failures.
        let target = Target::bind("127.0.0.1:0");
        let name = Address::Domain("localhost".into(), target.addr().port());
        let mut client = socks::socks5_tunnel(server.addr(), name, None);
        let (mut far, _) = target.accept();
        socks::exchange(&mut client, &mut far, "localhost after a failed name");
    });
}

#[test]
fn unresolvable_name_in_socks4a_gets_rejected_promptly() {
    in_fresh_netns(
        "unresolvable_name_in_socks4a_gets_rejected_promptly",
        || {
            let server = Server::start(&[]);
            let start = Instant::now();
            let (mut client, reply) =
                socks::socks4_connect(server.addr(), Address::Domain(NO_SUCH_NAME.into(), 80), b"");
            let elapsed = start.elapsed();
            assert_eq!(reply.code, 91, "{reply:?}");
            assert!(elapsed < PROMPT, "answered after {elapsed:?}");
            expect_closed(&mut client, IO_TIMEOUT);
        },
    );
}

#[test]
fn unresolvable_name_with_pipelined_data_gets_host_unreachable() {
    in_fresh_netns(
        "unresolvable_name_with_pipelined_data_gets_host_unreachable",
        || {
            let server = Server::start(&[]);
            let mut client = socks::dial(server.addr());
            let request =
                socks::socks5_connect_bytes(&Address::Domain(NO_SUCH_NAME.into(), 443), None);
            // Data the client sends before it knows the outcome; it has nowhere to go.
            client
                .write_all(&[request, b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat())
                .unwrap();
            assert_eq!(
                socks::read_method(&mut client).unwrap(),
                socks5::METHOD_NO_AUTH
            );
            let reply = socks::read_socks5_reply(&mut client).unwrap();
            assert_eq!(reply.code, ReplyCode::HostUnreachable, "{reply:?}");
            expect_closed(&mut client, IO_TIMEOUT);
        },
    );
}
