//! SIGHUP: configuration, users and rules are read again and apply to new sessions; open
//! sessions go on as they were; a bad new configuration keeps the running one and the log
//! says why.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::metrics::{self, Metrics};
use common::socks::{self, Creds};
use common::{Server, Target, Workdir};
use nix::sys::signal::Signal;
use ringsocks::proto::{socks5, ReplyCode};

const WITHIN: Duration = Duration::from_secs(10);

/// Sends SIGHUP and waits until the reload with `result` has been counted `n` times.
#[track_caller]
fn reload(server: &Server, maddr: SocketAddr, result: &str, n: f64) -> Metrics {
    server.signal(Signal::SIGHUP);
    let labels = [("result", result)];
    let m = metrics::scrape_until(maddr, WITHIN, |m| {
        m.get("ringsocks_config_reloads_total", &labels) >= n
    });
    assert_eq!(
        m.get("ringsocks_config_reloads_total", &labels),
        n,
        "reloads with result {result}:\n{}\nstderr:\n{}",
        m.text,
        server.stderr()
    );
    m
}

/// The reply to a SOCKS5 CONNECT to `target`, without credentials.
fn connect_reply(proxy: SocketAddr, target: SocketAddr) -> ReplyCode {
    socks::socks5_connect(proxy, target, None).1.code
}

#[test]
fn new_users_apply_to_new_logins_while_an_open_session_relays_on() {
    let work = Workdir::new();
    let users = work.write("users", "alice:alice-pw\n");
    let server = Server::start(&[
        "--users",
        users.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let maddr = metrics::metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let alice = Creds {
        user: "alice",
        pass: "alice-pw",
    };
    let bob = Creds {
        user: "bob",
        pass: "bob-pw",
    };
    let mut live = socks::socks5_tunnel(server.addr(), target.addr(), Some(alice));
    let (mut live_far, _) = target.accept();
    socks::exchange(&mut live, &mut live_far, "before the reload");

    work.write("users", "bob:bob-pw\n");
    reload(&server, maddr, "success", 1.0);
    assert!(
        server.wait_stderr("configuration reloaded", WITHIN),
        "{}",
        server.stderr()
    );

    let mut client = socks::dial(server.addr());
    let refused = socks::socks5_handshake(
        &mut client,
        socks5::CMD_CONNECT,
        &target.addr().into(),
        Some(alice),
    );
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("authentication refused")),
        "alice is gone from the users file: {refused:?}"
    );
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), Some(bob));
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "bob after the reload");

    // Alice's session, opened under the old users, is untouched.
    for i in 0..3 {
        socks::exchange(&mut live, &mut live_far, &format!("after the reload {i}"));
    }
    socks::transfer_and_close(live, live_far, 300_000, 200_000);
}

#[test]
fn new_rules_apply_to_new_sessions_while_an_open_session_relays_on() {
    let work = Workdir::new();
    let config = work.write("ringsocks.toml", "default-action = \"allow\"\n");
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let maddr = metrics::metrics_addr(&server);
    let blocked = Target::bind("127.0.0.1:0");
    let other = Target::bind("127.0.0.1:0");
    let mut live = socks::socks5_tunnel(server.addr(), blocked.addr(), None);
    let (mut live_far, _) = blocked.accept();
    socks::exchange(&mut live, &mut live_far, "before the reload");

    work.write(
        "ringsocks.toml",
        &format!(
            "default-action = \"allow\"\n\n[[rule]]\nname = \"block\"\naction = \"deny\"\n\
             ports = [{}]\n",
            blocked.addr().port()
        ),
    );
    reload(&server, maddr, "success", 1.0);
    assert_eq!(
        connect_reply(server.addr(), blocked.addr()),
        ReplyCode::NotAllowed,
        "the new rule applies"
    );
    assert!(
        blocked.try_accept(Duration::from_millis(200)).is_none(),
        "a denied CONNECT reached its target"
    );
    let m = metrics::scrape(maddr);
    assert_eq!(m.get("ringsocks_rejects_total", &[("rule", "block")]), 1.0);
    let mut client = socks::socks5_tunnel(server.addr(), other.addr(), None);
    let (mut far, _) = other.accept();
    socks::exchange(&mut client, &mut far, "another port");

    for i in 0..3 {
        socks::exchange(&mut live, &mut live_far, &format!("after the reload {i}"));
    }
    socks::transfer_and_close(live, live_far, 100_000, 300_000);
}

#[test]
fn an_invalid_new_config_keeps_the_running_one_and_says_why() {
    let work = Workdir::new();
    let first = Target::bind("127.0.0.1:0");
    let second = Target::bind("127.0.0.1:0");
    let rule =
        |port: u16| format!("[[rule]]\nname = \"block\"\naction = \"deny\"\nports = [{port}]\n");
    let config = work.write("ringsocks.toml", &rule(first.addr().port()));
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let maddr = metrics::metrics_addr(&server);
    assert_eq!(
        connect_reply(server.addr(), first.addr()),
        ReplyCode::NotAllowed
    );
    let mut live = socks::socks5_tunnel(server.addr(), second.addr(), None);
    let (mut live_far, _) = second.accept();

    // A value out of range.
    work.write(
        "ringsocks.toml",
        "[[rule]]\nname = \"block\"\naction = \"deny\"\nports = [99999]\n",
    );
    reload(&server, maddr, "failure", 1.0);
    let why = failure_line(&server, 1);
    assert!(
        why.contains("ringsocks.toml") && why.contains("rule[1].ports"),
        "the log names the file and the key: {why}"
    );
    assert_eq!(
        connect_reply(server.addr(), first.addr()),
        ReplyCode::NotAllowed,
        "the running rule still applies"
    );
    socks::exchange(&mut live, &mut live_far, "after a failed reload");

    // Not TOML at all.
    work.write("ringsocks.toml", "[[rule]\naction = deny\n");
    reload(&server, maddr, "failure", 2.0);
    let why = failure_line(&server, 2);
    assert!(
        why.contains("ringsocks.toml"),
        "the log names the file: {why}"
    );
    assert_eq!(
        connect_reply(server.addr(), first.addr()),
        ReplyCode::NotAllowed
    );

    // A valid one takes over: the rule now blocks the second port instead.
    work.write("ringsocks.toml", &rule(second.addr().port()));
    let m = reload(&server, maddr, "success", 1.0);
    assert_eq!(
        m.get("ringsocks_config_reloads_total", &[("result", "failure")]),
        2.0
    );
    let mut client = socks::socks5_tunnel(server.addr(), first.addr(), None);
    let (mut far, _) = first.accept();
    socks::exchange(&mut client, &mut far, "unblocked");
    assert_eq!(
        connect_reply(server.addr(), second.addr()),
        ReplyCode::NotAllowed
    );
    // The session opened to the second port before it was blocked relays on.
    socks::transfer_and_close(live, live_far, 50_000, 50_000);
}

/// The `n`th "reload failed" line of the server's log; panics if it is not there.
#[track_caller]
fn failure_line(server: &Server, n: usize) -> String {
    const MARK: &str = "reload failed, keeping the running configuration: ";
    let mut lines = Vec::new();
    common::wait_until(WITHIN, || {
        lines = server
            .stderr()
            .lines()
            .filter(|l| l.contains(MARK))
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    assert!(
        lines.len() >= n,
        "{n} reload failures expected in the log:\n{}",
        server.stderr()
    );
    lines[n - 1].clone()
}
