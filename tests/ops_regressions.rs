//! Behaviour the operations tests tripped over, pinned down on its own: a session that
//! starts right after another ended on the same shard must be served like the first.

mod common;

use std::io::Write;

use common::socks;
use common::{Server, Target, Workdir};
use ringsocks::proto::{socks5, Address, ReplyCode};

const SESSIONS: usize = 30;

/// One session to `target`: handshake step by step, one line each way, then the target
/// closes and the client at once after it, so the proxy sees both directions end
/// together (one shut down, then both sockets closed). Returns what went wrong.
fn session(proxy: std::net::SocketAddr, target: &Target, i: usize) -> Result<(), String> {
    let mut near = socks::dial(proxy);
    let reply = socks::socks5_handshake(
        &mut near,
        socks5::CMD_CONNECT,
        &Address::Ip(target.addr()),
        None,
    )
    .map_err(|e| format!("session {i}: {e}"))?;
    if reply.code != ReplyCode::Succeeded {
        return Err(format!("session {i}: {reply:?}"));
    }
    let (mut far, _) = target.accept();
    socks::exchange(&mut near, &mut far, &format!("session {i}"));
    drop(far);
    drop(near);
    Ok(())
}

#[test]
fn back_to_back_sessions_on_one_shard_all_get_their_reply() {
    let server = Server::start(&["--shards", "1"]);
    let target = Target::bind("127.0.0.1:0");
    let failures: Vec<String> = (0..SESSIONS)
        .filter_map(|i| session(server.addr(), &target, i).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {SESSIONS} sessions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_session_after_a_refused_one_on_one_shard_gets_its_reply() {
    let work = Workdir::new();
    let blocked = Target::bind("127.0.0.1:0");
    let config = work.write(
        "ringsocks.toml",
        &format!(
            "[[rule]]\naction = \"deny\"\nports = [{}]\n",
            blocked.addr().port()
        ),
    );
    let server = Server::start(&["--shards", "1", "--config", config.to_str().unwrap()]);
    let target = Target::bind("127.0.0.1:0");
    let mut failures = Vec::new();
    for i in 0..SESSIONS / 2 {
        // Refused, and the client leaves once it has the reply.
        let mut near = socks::dial(server.addr());
        match socks::socks5_handshake(
            &mut near,
            socks5::CMD_CONNECT,
            &Address::Ip(blocked.addr()),
            None,
        ) {
            Ok(r) if r.code == ReplyCode::NotAllowed => {}
            other => failures.push(format!("refused session {i}: {other:?}")),
        }
        let _ = near.flush();
        drop(near);
        if let Err(e) = session(server.addr(), &target, i) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} sessions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
