//! Running safely: `--user` / `--group` drop root after the listeners are bound, and an
//! open proxy is refused at start-up unless `--allow-open` says it is meant.
//!
//! The privilege tests need root (as the whole suite does): they bind a port below 1024,
//! which only root can, and then check the server no longer is root.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use common::access_log;
use common::metrics;
use common::server::{run_bounded, BIN};
use common::socks;
use common::{Server, Target, Workdir};

const WITHIN: Duration = Duration::from_secs(10);

#[track_caller]
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: it binds a port below 1024 and drops privileges"
    );
}

/// Starts ringsocks on a free loopback port in `ports` (below 1024) with `args`. A port
/// found free can be taken before the server binds it, so a few are tried. Tests running
/// at the same time use disjoint ranges.
fn start_on_low_port(ports: std::ops::Range<u16>, args: &[&str]) -> Server {
    let mut last = String::new();
    let free = ports
        .rev()
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .take(3);
    for port in free {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        match Server::try_start(&all) {
            Ok(server) => return server,
            Err(e) => last = e,
        }
    }
    panic!("ringsocks did not start on a port below 1024: {last}");
}

/// The Uid, Gid and Groups lines of a /proc status file, whitespace normalised.
fn identity(status_file: &str) -> BTreeMap<String, String> {
    let status =
        std::fs::read_to_string(status_file).unwrap_or_else(|e| panic!("read {status_file}: {e}"));
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            ["Uid", "Gid", "Groups"].contains(&k).then(|| {
                (
                    k.to_string(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
        })
        .collect()
}

/// Asserts every thread of `pid` runs as `uid` / `gid` (real, effective, saved, fs) with
/// `gid` as its only supplementary group.
#[track_caller]
fn assert_identity(pid: i32, uid: u32, gid: u32) {
    let want = BTreeMap::from([
        ("Uid".to_string(), format!("{uid} {uid} {uid} {uid}")),
        ("Gid".to_string(), format!("{gid} {gid} {gid} {gid}")),
        ("Groups".to_string(), gid.to_string()),
    ]);
    assert_eq!(
        identity(&format!("/proc/{pid}/status")),
        want,
        "the process"
    );
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the task list")
        .flatten()
        .collect();
    assert!(tasks.len() > 1, "shard threads exist");
    for task in tasks {
        let file = task.path().join("status");
        let file = file.to_str().unwrap();
        assert_eq!(identity(file), want, "thread {file}");
    }
}

#[test]
fn user_nobody_after_binding_a_low_port_and_still_serving() {
    require_root();
    let work = Workdir::new();
    let log = work.path("access.log");
    let server = start_on_low_port(
        960..1024,
        &[
            "--user",
            "nobody",
            "--metrics-listen",
            "127.0.0.1:0",
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    assert!(server.addr().port() < 1024, "{}", server.addr());
    assert_identity(server.pid().as_raw(), 65534, 65534);

    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let from = client.local_addr().unwrap();
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "as nobody");
    drop((client, far));
    // The log and the metrics port were opened as root, and still work.
    let entries = access_log::wait_entries(&log, 1, WITHIN);
    access_log::for_client(&entries, from);
    let m = metrics::scrape(metrics::metrics_addr(&server));
    assert_eq!(m.get("ringsocks_connections_accepted_total", &[]), 1.0);
}

#[test]
fn group_names_the_group_to_run_as() {
    require_root();
    let daemon_gid = nix::unistd::Group::from_name("daemon")
        .ok()
        .flatten()
        .expect("group daemon exists")
        .gid
        .as_raw();
    let server = start_on_low_port(900..960, &["--user", "nobody", "--group", "daemon"]);
    assert_identity(server.pid().as_raw(), 65534, daemon_gid);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "as nobody:daemon");
}

#[test]
fn an_unknown_user_fails_before_binding() {
    let out = run_bounded(
        {
            let mut cmd = Command::new(BIN);
            cmd.args(["--listen", "127.0.0.1:0", "--user", "no-such-user-here"]);
            cmd
        },
        WITHIN,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("no-such-user-here"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

/// Runs ringsocks expecting it to refuse to start; returns its stderr.
#[track_caller]
fn refused_start(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    let out = run_bounded(cmd, WITHIN);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "{args:?} listened"
    );
    err
}

#[test]
fn an_open_proxy_is_refused_with_one_line_and_exit_1() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let err = refused_start(&["--listen", listen]);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("open proxy") && err.contains("--allow-open") && err.contains("--users"),
            "the reason and the ways out: {err}"
        );
    }
    // A PROXY protocol listener beyond loopback is just as open.
    let err = refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--proxy-protocol-listen",
        "0.0.0.0:0",
        "--proxy-trusted",
        "127.0.0.1/32",
    ]);
    assert!(err.contains("open proxy"), "{err}");
}

/// Starts a server on 0.0.0.0 with `extra` and checks it relays via 127.0.0.1.
fn serves_on_all_addresses(extra: &[&str], creds: Option<socks::Creds>) {
    let mut args = vec!["--listen", "0.0.0.0:0"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    assert!(server.addr().ip().is_unspecified(), "{}", server.addr());
    let via = SocketAddr::from(([127, 0, 0, 1], server.addr().port()));
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(via, target.addr(), creds);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "on 0.0.0.0");
}

#[test]
fn allow_open_or_passwords_or_a_client_rule_make_it_start() {
    serves_on_all_addresses(&["--allow-open"], None);
    let work = Workdir::new();
    let users = work.write("users", "alice:pw\n");
    serves_on_all_addresses(
        &["--users", users.to_str().unwrap()],
        Some(socks::Creds {
            user: "alice",
            pass: "pw",
        }),
    );
    let config = work.write(
        "ringsocks.toml",
        "default-action = \"deny\"\n\n[[rule]]\naction = \"allow\"\nclients = [\"127.0.0.0/8\"]\n",
    );
    serves_on_all_addresses(&["--config", config.to_str().unwrap()], None);
}
