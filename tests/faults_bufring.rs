//! A shard's relay buffer ring running dry: one shard with eight buffers and 64 sessions
//! moving data both ways at once, 128 directions wanting a buffer. Receives find none
//! (ENOBUFS) and must wait for one instead of failing; every byte still arrives, a new
//! client's handshake still gets through, and once the storm is over the ring is whole
//! again.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::data::both_ways;
use common::socks;
use common::{Server, Target};

const SESSIONS: usize = 64;
/// Bytes each session moves each way during the storm (a few seconds in a debug build,
/// over a second in a release build).
const STORM_LEN: u64 = 3 << 20;
/// How long a newcomer may take, mid-storm, from connect to a line relayed each way:
/// four receives, each waiting its turn for a buffer among 128 hungry ones. Served in
/// turn that is tens to hundreds of milliseconds; a receive that lost every race for a
/// buffer would wait for the storm to end.
const NEWCOMER_MAX: Duration = Duration::from_secs(1);
/// Newcomers tried, one after another, while the storm lasts.
const NEWCOMERS: usize = 8;
/// Bytes one session moves each way to measure the relay's speed.
const PROBE_LEN: u64 = 16 << 20;
/// How much slower the probe may be after the storm than before it: the same work on
/// the same (shared, noisy) machine, so anything near the first figure is a recovery.
/// A ring that lost buffers for good would leave a fraction of its eight, or none.
const SLOWDOWN_ALLOWED: u32 = 4;

/// Opens a session and returns the client's end and the target's end.
fn open(proxy: SocketAddr, target: &Target) -> (TcpStream, TcpStream) {
    let client = socks::socks5_tunnel(proxy, target.addr(), None);
    let (far, _) = target.accept();
    (client, far)
}

/// How long one session takes to move [`PROBE_LEN`] each way.
fn probe(proxy: SocketAddr, target: &Target, seed: u64) -> Duration {
    let (c, far) = open(proxy, target);
    let start = Instant::now();
    both_ways(&c, &far, seed, PROBE_LEN).unwrap_or_else(|e| panic!("probe session: {e}"));
    start.elapsed()
}

#[test]
fn sessions_outnumbering_the_buffers_slow_down_but_all_arrive_and_the_ring_recovers() {
    let mut server = Server::start(&["--shards", "1", "--buffers", "8"]);
    let target = Target::bind("127.0.0.1:0");
    let before = probe(server.addr(), &target, 1);

    let sessions: Vec<(TcpStream, TcpStream)> = (0..SESSIONS)
        .map(|_| open(server.addr(), &target))
        .collect();
    let go = Barrier::new(SESSIONS + 1);
    let start = Instant::now();
    let (failures, late) = thread::scope(|s| {
        let runs: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(i, (c, far))| {
                let go = &go;
                s.spawn(move || {
                    go.wait();
                    both_ways(&c, &far, 100 + i as u64, STORM_LEN)
                })
            })
            .collect();
        go.wait();
        // A newcomer's handshake and relay need buffers too; they must get their turn.
        let mut late = Vec::new();
        while late.len() < NEWCOMERS && !runs.iter().all(|r| r.is_finished()) {
            let t = Instant::now();
            let (mut c, mut far) = open(server.addr(), &target);
            socks::exchange(&mut c, &mut far, "newcomer during the storm");
            late.push(t.elapsed());
        }
        let failures: Vec<String> = runs
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.join().unwrap().err().map(|e| format!("session {i}: {e}")))
            .collect();
        (failures, late)
    });
    let storm = start.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {SESSIONS} sessions failed with 8 buffers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.assert_healthy();
    assert!(
        !late.is_empty(),
        "the storm was over before a newcomer came"
    );
    let slowest = late.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < NEWCOMER_MAX,
        "a newcomer took {slowest:?} while the ring was dry ({late:?}; the storm took {storm:?})"
    );

    let after = probe(server.addr(), &target, 2);
    eprintln!(
        "{SESSIONS} sessions × {} MiB each way through 8 buffers in {:.2} s (newcomers served \
         in {late:?}); probe of {} MiB each way: {before:?} before, {after:?} after",
        STORM_LEN >> 20,
        storm.as_secs_f64(),
        PROBE_LEN >> 20
    );
    assert!(
        after <= before * SLOWDOWN_ALLOWED + Duration::from_millis(200),
        "the relay is slower after the storm: {after:?}, {before:?} before"
    );
}
