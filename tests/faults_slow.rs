//! Slow and stalled readers on either side of a large transfer: the fast side offers
//! 1 GiB, the slow side takes what it can. Backpressure must hold the proxy's memory to
//! its buffer pool, and the shard must keep serving everyone else at full speed.
//!
//! The memory ceiling: relay data lives only in the shard's provided-buffer pool
//! (`--buffers` × `--buffer-size`, 512 × 32 KiB = 16 MiB per shard by default), which the
//! kernel fills and the proxy sends from; a blocked direction stops receiving at its
//! high-water mark, so nothing is copied elsewhere. Over a long transfer the kernel cycles
//! through the whole pool, so all of it may become resident. The ceiling is therefore
//! the idle RSS plus the pool plus [`RSS_SLACK_KIB`] for everything else a session allocates;
//! a proxy that buffered what the slow side does not read would pass it within a
//! fraction of a second (the fast side offers well over 100 MiB/s).

mod common;

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::socks;
use common::wait::read_exact_vec;
use common::{EchoServer, Pattern, Server, Target};

/// What the fast side offers.
const OFFERED: u64 = 1 << 30;

/// The slow reader's pace, and how much it reads at that pace (1.5 s worth).
const SLOW_RATE: u64 = 8 << 20;
const SLOW_LEN: u64 = 12 << 20;

/// How long a stalled reader reads nothing, and how much it then reads at full speed.
const STALL: Duration = Duration::from_secs(1);
const AFTER_STALL: u64 = 64 << 20;

/// The relay pool with the default flags, one shard.
const POOL_KIB: u64 = 512 * 32;
/// Heap, stacks and allocator slack beyond the idle RSS and the pool.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Bytes the bystander session echoes, and how long that may take beside the slow one
/// (it takes tens of milliseconds in a debug build).
const BYSTANDER_LEN: usize = 4 << 20;
const BYSTANDER_MAX: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Side {
    Client,
    Target,
}

#[derive(Clone, Copy, Debug)]
enum Reader {
    /// Reads [`SLOW_LEN`] at [`SLOW_RATE`].
    Paced,
    /// Reads nothing for [`STALL`], then [`AFTER_STALL`] as fast as it can.
    Stalled,
}

impl Reader {
    fn read(self, pattern: &Pattern, stream: &mut TcpStream) -> io::Result<u64> {
        match self {
            Reader::Paced => pattern
                .expect_prefix(stream, SLOW_LEN, Some(SLOW_RATE))
                .map(|()| SLOW_LEN),
            Reader::Stalled => {
                // The stall is the behaviour under test.
                thread::sleep(STALL);
                pattern
                    .expect_prefix(stream, AFTER_STALL, None)
                    .map(|()| AFTER_STALL)
            }
        }
    }
}

/// Echoes [`BYSTANDER_LEN`] bytes through its own session and returns how long it took.
fn bystander(proxy: SocketAddr, echo: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut c = socks::socks5_tunnel(proxy, echo, None);
    let bytes = Pattern::new(0xb7).bytes(BYSTANDER_LEN);
    thread::scope(|s| {
        let mut w = c.try_clone().unwrap();
        let bytes = &bytes;
        s.spawn(move || w.write_all(bytes).expect("bystander writes"));
        let back = read_exact_vec(&mut c, BYSTANDER_LEN).expect("bystander reads its echo");
        assert!(back == *bytes, "bystander's echo changed");
    });
    start.elapsed()
}

fn slow_reader(slow_side: Side, reader: Reader) {
    let server = Server::start(&["--shards", "1"]);
    let target = Target::bind("127.0.0.1:0");
    let echo = EchoServer::start("127.0.0.1:0");
    let (idle_rss, idle_fds) = (server.rss_kib(), server.open_fds());
    let client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (far, _) = target.accept();
    let (mut fast, mut slow) = match slow_side {
        Side::Client => (far, client),
        Side::Target => (client, far),
    };
    let pattern = Pattern::new(0x510e);
    let peak_rss = AtomicU64::new(idle_rss);
    let reading = AtomicBool::new(true);
    let start = Instant::now();
    let mut bystanders = Vec::new();
    thread::scope(|s| {
        let stop_fast = fast.try_clone().unwrap();
        let pattern = &pattern;
        let writer = s.spawn(move || pattern.write_to(&mut fast, OFFERED));
        s.spawn(|| {
            while reading.load(Ordering::Relaxed) {
                peak_rss.fetch_max(server.rss_kib(), Ordering::Relaxed);
                // Sampling pace.
                thread::sleep(Duration::from_millis(20));
            }
        });
        let read = s.spawn(move || {
            let r = reader.read(pattern, &mut slow);
            (r, slow)
        });
        // Bystanders run back to back for as long as the slow reader is slow.
        while !read.is_finished() && bystanders.len() < 20 {
            bystanders.push(bystander(server.addr(), echo.addr()));
        }
        let (got, slow) = read.join().unwrap();
        let got = got.unwrap_or_else(|e| panic!("the slow reader ({slow_side:?}): {e}"));
        reading.store(false, Ordering::Relaxed);
        // Unblock the fast writer; its error is expected.
        let _ = stop_fast.shutdown(Shutdown::Both);
        let _ = writer.join().unwrap();
        eprintln!(
            "{slow_side:?} reading {reader:?}: {} MiB in {:.2} s",
            got >> 20,
            start.elapsed().as_secs_f64()
        );
        drop(slow);
    });
    let peak = peak_rss.load(Ordering::Relaxed);
    let ceiling = idle_rss + POOL_KIB + RSS_SLACK_KIB;
    let slowest = bystanders.iter().max().copied().unwrap_or_default();
    eprintln!(
        "RSS idle {idle_rss} KiB, peak {peak} KiB (ceiling {ceiling} KiB); {} bystanders, \
         slowest {slowest:?}",
        bystanders.len()
    );
    assert!(
        peak <= ceiling,
        "RSS reached {peak} KiB beside a slow reader (idle {idle_rss} KiB, ceiling {ceiling} KiB)"
    );
    assert!(
        !bystanders.is_empty(),
        "no bystander ran while the reader was slow"
    );
    assert!(
        slowest < BYSTANDER_MAX,
        "a bystander took {slowest:?} to echo {BYSTANDER_LEN} bytes beside a slow reader"
    );
    assert_eq!(
        server.wait_open_fds(idle_fds, Duration::from_secs(5)),
        idle_fds,
        "descriptors after both sides closed"
    );
}

#[test]
fn client_reading_slowly_keeps_memory_bounded_and_others_unaffected() {
    slow_reader(Side::Client, Reader::Paced);
}

#[test]
fn target_reading_slowly_keeps_memory_bounded_and_others_unaffected() {
    slow_reader(Side::Target, Reader::Paced);
}

#[test]
fn client_stalling_keeps_memory_bounded_and_others_unaffected() {
    slow_reader(Side::Client, Reader::Stalled);
}

#[test]
fn target_stalling_keeps_memory_bounded_and_others_unaffected() {
    slow_reader(Side::Target, Reader::Stalled);
}
