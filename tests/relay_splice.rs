//! Bulk relays move from relay buffers to pipes (splice): a direction that has carried
//! 1 MiB leaves the buffer ring, and from then on every byte must still arrive, in order,
//! with half-closes relayed and errors ending the session, exactly as on buffers. Without
//! descriptors to spare, or with splicing off, bulk stays on buffers.
//! `ringsocks_spliced_directions_total` tells which path the bytes took.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use common::metrics::{metrics_addr, scrape, scrape_until};
use common::socks;
use common::wait::IO_TIMEOUT;
use common::{Pattern, Server, Target};

const SPLICED: &str = "ringsocks_spliced_directions_total";
const REFUSED: &str = "ringsocks_splice_refused_total";

fn start(extra: &[&str]) -> (Server, std::net::SocketAddr) {
    let mut args = vec!["--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let metrics = metrics_addr(&server);
    (server, metrics)
}

/// `len` bytes each way at once, checked byte for byte, and each side's EOF after them.
fn both_ways(client: &mut TcpStream, far: &mut TcpStream, len: u64) {
    common::data::both_ways(client, far, 0x51ce, len).unwrap_or_else(|e| panic!("{e}"));
    // Each side's EOF came through after the data.
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("EOF toward the client");
    assert!(rest.is_empty());
    far.read_to_end(&mut rest).expect("EOF toward the target");
    assert!(rest.is_empty());
}

#[test]
fn bulk_both_ways_is_spliced_and_arrives_intact() {
    let (server, metrics) = start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    both_ways(&mut client, &mut far, 24 << 20);
    let m = scrape_until(metrics, IO_TIMEOUT, |m| m.get(SPLICED, &[]) >= 2.0);
    assert_eq!(m.get(SPLICED, &[]), 2.0, "both directions moved to pipes");
}

#[test]
fn small_exchanges_stay_on_buffers_and_zero_turns_splicing_off() {
    // Below the threshold: a request and its answer never move.
    let (server, metrics) = start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    both_ways(&mut client, &mut far, 64 << 10);
    assert_eq!(scrape(metrics).get(SPLICED, &[]), 0.0);

    // Switched off: bulk stays on buffers too, and arrives all the same.
    let (server, metrics) = start(&["--splice-pipe", "0"]);
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    both_ways(&mut client, &mut far, 8 << 20);
    let m = scrape(metrics);
    assert_eq!(m.get(SPLICED, &[]), 0.0);
    assert_eq!(m.get(REFUSED, &[]), 0.0, "switched off is not a refusal");
}

#[test]
fn a_spliced_direction_carries_the_half_close_and_the_answer_after_it() {
    let (server, metrics) = start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    // An upload big enough to be spliced, then EOF; the target answers only after it.
    let upload = Pattern::new(7);
    let len = 6 << 20;
    thread::scope(|s| {
        let mut w = client.try_clone().unwrap();
        let writer = s.spawn(move || {
            upload.write_to(&mut w, len)?;
            w.shutdown(Shutdown::Write)
        });
        Pattern::new(7)
            .expect_from(&mut far, len)
            .expect("the upload arrives");
        let mut eof = [0u8; 1];
        assert_eq!(far.read(&mut eof).unwrap(), 0, "EOF after the upload");
        writer.join().unwrap().expect("client sends");
    });
    far.write_all(b"received").unwrap();
    far.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"received");
    assert_eq!(
        scrape(metrics).get(SPLICED, &[]),
        1.0,
        "the upload was spliced"
    );
}

#[test]
fn a_reset_during_a_spliced_transfer_ends_the_session_and_others_go_on() {
    let (server, metrics) = start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (far, _) = target.accept();
    // Past the threshold, then the target resets while the client keeps sending.
    let mut w = client.try_clone().unwrap();
    let writer = thread::spawn(move || Pattern::new(3).write_to(&mut w, 64 << 20));
    Pattern::new(3)
        .expect_prefix(&mut &far, 2 << 20, None)
        .expect("the first bytes arrive");
    let m = scrape_until(metrics, IO_TIMEOUT, |m| m.get(SPLICED, &[]) >= 1.0);
    assert_eq!(m.get(SPLICED, &[]), 1.0, "the upload moved to a pipe");
    common::target::reset(far);
    assert!(
        writer.join().unwrap().is_err(),
        "the client's writes fail once the session is gone"
    );
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);

    // The shard serves the next session as before.
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    both_ways(&mut client, &mut far, 2 << 20);
}

#[test]
fn without_descriptors_to_spare_bulk_stays_on_buffers() {
    // Room for two session descriptors: the outbound socket and the client's regular
    // descriptor fit, a pipe's two do not.
    let nofile = 64 + 2;
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg(common::server::BIN)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(["--metrics-listen", "127.0.0.1:0"]);
    let server = Server::spawn(cmd, 1).unwrap_or_else(|e| panic!("start under prlimit: {e}"));
    let metrics = metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    both_ways(&mut client, &mut far, 8 << 20);
    let m = scrape(metrics);
    assert_eq!(m.get(SPLICED, &[]), 0.0);
    // A direction asks once it has carried 1 MiB; one whose multishot receive delivers
    // the rest before it can be stopped finishes on buffers without asking.
    let refused = m.get(REFUSED, &[]);
    assert!(
        (1.0..=2.0).contains(&refused),
        "{refused} refusals: a direction asks for a pipe at most once, and bulk asked"
    );
}
