//! `udp`: UDP ASSOCIATE, then datagrams to the UDP echo target through the relay.
//!
//! Ping-pong: each association keeps one datagram in flight and sends the next when its
//! echo returns (or after `--timeout`, counting it lost): latency per round trip.
//! Flood (`--flood`): every association sends as fast as it can (or at `--rate`
//! datagrams/s over all), and the figures are delivered datagrams/s and loss.
//!
//! Each payload carries its sequence number and send time, so late echoes are told
//! apart and flood latency is measured too. One "datagram" in the figures is one round
//! trip: relayed twice, out and back.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Interest, Token};

use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::Report;
use crate::run::{self, Common, Ctl, Failures, Window, Worker};
use crate::stats::{self, Percentiles};
use crate::targets::Targets;
use crate::udp_client::{associate, Association, Codec};

pub use crate::udp_client::MIN_SIZE;
/// Datagrams one association sends per loop turn in flood mode: enough to amortize
/// the poll, few enough that all associations get turns.
const BURST: usize = 32;

#[derive(Debug, Clone)]
pub struct UdpConfig {
    pub common: Common,
    pub associations: usize,
    /// Payload bytes per datagram (the SOCKS header comes on top).
    pub size: usize,
    pub flood: bool,
    /// Flood only: datagrams per second over all associations; `None` = unpaced.
    pub rate: Option<f64>,
}

#[derive(Default)]
struct Part {
    hist: Option<Histogram<u64>>,
    sent: u64,
    received: u64,
    lost: u64,
    failures: Failures,
}

pub fn run(cfg: &UdpConfig) -> Result<Report, Error> {
    if cfg.associations == 0 {
        return Err(Error::Config("udp needs --associations above 0".into()));
    }
    if cfg.size < MIN_SIZE || cfg.size > 60_000 {
        return Err(Error::Config(format!(
            "udp --size must be between {MIN_SIZE} and 60000 bytes"
        )));
    }
    let c = &cfg.common;
    let threads = c.threads.clamp(1, cfg.associations);
    let common = Common {
        threads,
        ..c.clone()
    };
    let targets = Targets::start(crate::LOOPBACK, c.cpu(threads))
        .map_err(|e| Error::io("cannot start the UDP echo target", e))?;
    let target = targets.udp_echo;
    let mut workers: Vec<Worker<Part>> = Vec::new();
    for w in 0..threads {
        let n = common.share(cfg.associations, w);
        let cfg2 = cfg.clone();
        workers.push(Box::new(move |ctl: &mut Ctl| worker(&cfg2, target, n, ctl)));
    }
    let drain = if cfg.flood {
        c.timeout.min(Duration::from_millis(250))
    } else {
        c.timeout
    };
    let out = run::execute(&common, workers, None, drain)?;
    drop(targets);

    let mut total = Part {
        hist: Some(stats::histogram()),
        ..Part::default()
    };
    for p in out.results {
        if let (Some(h), Some(ph)) = (total.hist.as_mut(), p.hist.as_ref()) {
            stats::merge(h, ph);
        }
        total.sent += p.sent;
        total.received += p.received;
        total.lost += p.lost;
        total.failures.merge(p.failures);
    }
    total.failures.check(c.max_errors)?;
    let window_s = out.window.seconds();
    if total.received == 0 {
        return Err(Error::Timeout(
            "no datagram came back through the relay in the window".into(),
        ));
    }
    let (sent, loss) = if cfg.flood {
        let loss = 1.0 - total.received as f64 / total.sent.max(1) as f64;
        (total.sent, loss.max(0.0))
    } else {
        let tried = total.received + total.lost;
        (tried, total.lost as f64 / tried as f64)
    };
    let setup = if cfg.flood {
        let pace = cfg
            .rate
            .map_or("unpaced".to_string(), |r| format!("{r} datagrams/s"));
        format!(
            "{} associations, {} B payloads, flood {pace}",
            cfg.associations, cfg.size
        )
    } else {
        format!(
            "{} associations, {} B payloads, ping-pong",
            cfg.associations, cfg.size
        )
    };
    let hist = total.hist.expect("set above");
    Ok(Report {
        setup,
        route: c.route.describe(),
        sent: Some(sent),
        loss: Some(loss),
        errors: total.failures.count,
        latency: Percentiles::of(&hist),
        server: out.server,
        histogram: Some(hist),
        ..Report::new("udp", "datagram", total.received, window_s, out.harness)
    }
    .finish())
}

struct Assoc {
    link: Association,
    /// Ping-pong: the datagram in flight and when it left.
    in_flight: Option<(u64, Instant)>,
}

fn worker(cfg: &UdpConfig, target: SocketAddr, n: usize, ctl: &mut Ctl) -> Result<Part, Error> {
    let mut reactor = Reactor::new(1024).map_err(|e| Error::io("poll", e))?;
    let mut assocs = Vec::with_capacity(n);
    for i in 0..n {
        let mut link = associate(&cfg.common.route, cfg.common.timeout, target)?;
        reactor
            .registry()
            .register(&mut link.sock, Token(i), Interest::READABLE)
            .map_err(|e| Error::io("poll", e))?;
        assocs.push(Assoc {
            link,
            in_flight: None,
        });
    }
    let mut codec = Codec::new(cfg.common.route.proxy.is_some(), cfg.size, target);
    let window = ctl.ready()?;
    let mut part = Part {
        hist: Some(stats::histogram()),
        ..Part::default()
    };
    if cfg.flood {
        flood(
            cfg,
            &mut reactor,
            &mut assocs,
            &mut codec,
            &window,
            &mut part,
        )?;
    } else {
        ping_pong(
            cfg,
            &mut reactor,
            &mut assocs,
            &mut codec,
            &window,
            &mut part,
        )?;
    }
    for a in &mut assocs {
        if let Some(c) = a.link.control.as_mut() {
            if control_closed(c) {
                part.failures
                    .note(|| "the SOCKS server closed a UDP ASSOCIATE control connection".into());
            }
        }
    }
    Ok(part)
}

fn control_closed(c: &mut TcpStream) -> bool {
    if c.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    !matches!(c.read(&mut b), Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

fn since(window: &Window, t: Instant) -> u64 {
    (t - window.start).as_nanos() as u64
}

/// Sends one datagram; `false` when the socket buffer is full.
fn send(
    a: &mut Assoc,
    codec: &mut Codec,
    seq: u64,
    at: Instant,
    window: &Window,
    failures: &mut Failures,
) -> bool {
    let relay = a.link.relay;
    match a
        .link
        .sock
        .send_to(codec.encode(seq, since(window, at)), relay)
    {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => {
            failures.note(|| format!("send to the relay {relay}: {e}"));
            false
        }
    }
}

/// Reads every queued datagram of `a`, calling `on_echo(seq, sent)` for each.
fn receive(
    a: &mut Assoc,
    codec: &Codec,
    scratch: &mut [u8],
    window: &Window,
    mut on_echo: impl FnMut(&mut Assoc, u64, Instant),
) -> Result<(), Error> {
    loop {
        match a.link.sock.recv_from(scratch) {
            Ok((len, from)) => {
                if from != a.link.relay {
                    // Not from our relay: a server must drop these, and so do we.
                    continue;
                }
                let (seq, ns) = codec.decode(&scratch[..len])?;
                on_echo(a, seq, window.start + Duration::from_nanos(ns));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            // An ICMP error from an earlier send: that datagram is lost, and counted so.
            Err(_) => return Ok(()),
        }
    }
}

fn ping_pong(
    cfg: &UdpConfig,
    reactor: &mut Reactor,
    assocs: &mut [Assoc],
    codec: &mut Codec,
    window: &Window,
    part: &mut Part,
) -> Result<(), Error> {
    let timeout = cfg.common.timeout;
    let mut seq = 0u64;
    let mut scratch = vec![0u8; 65536];
    for a in assocs.iter_mut() {
        seq += 1;
        let now = Instant::now();
        a.in_flight = Some((seq, now));
        send(a, codec, seq, now, window, &mut part.failures);
    }
    let check_every = (timeout / 4).min(Duration::from_millis(50));
    let mut next_check = Instant::now() + check_every;
    let mut ready = Vec::with_capacity(1024);
    let hist = part.hist.as_mut().expect("set by the worker");
    loop {
        let now = Instant::now();
        if now >= window.drain_end || part.failures.count > cfg.common.max_errors {
            break;
        }
        if now >= window.measure_end && assocs.iter().all(|a| a.in_flight.is_none()) {
            break;
        }
        if now >= next_check {
            for a in assocs.iter_mut() {
                if let Some((_, sent)) = a.in_flight {
                    if now - sent > timeout {
                        if window.measures(sent) {
                            part.lost += 1;
                        }
                        a.in_flight = None;
                        if now < window.measure_end {
                            seq += 1;
                            a.in_flight = Some((seq, now));
                            send(a, codec, seq, now, window, &mut part.failures);
                        }
                    }
                }
            }
            next_check = now + check_every;
        }
        reactor
            .wait(next_check.min(window.drain_end))
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            let Some(a) = assocs.get_mut(i) else { continue };
            let mut done = None;
            receive(a, codec, &mut scratch, window, |a, s, sent| {
                if a.in_flight.map(|(q, _)| q) == Some(s) {
                    a.in_flight = None;
                    done = Some(sent);
                }
            })?;
            let Some(sent) = done else { continue };
            let now = Instant::now();
            if window.measures(sent) {
                stats::record(hist, now - sent);
                part.received += 1;
            }
            if now < window.measure_end {
                seq += 1;
                a.in_flight = Some((seq, now));
                send(a, codec, seq, now, window, &mut part.failures);
            }
        }
    }
    // Still in flight when the drain ended: lost.
    for a in assocs.iter_mut() {
        if let Some((_, sent)) = a.in_flight.take() {
            if window.measures(sent) {
                part.lost += 1;
            }
        }
    }
    Ok(())
}

fn flood(
    cfg: &UdpConfig,
    reactor: &mut Reactor,
    assocs: &mut [Assoc],
    codec: &mut Codec,
    window: &Window,
    part: &mut Part,
) -> Result<(), Error> {
    let n = assocs.len();
    let per_s = cfg.rate.map(|r| r * n as f64 / cfg.associations as f64);
    let mut scratch = vec![0u8; 65536];
    let mut seq = 0u64;
    let mut sent_total = 0u64;
    let mut turn = 0usize;
    let mut ready = Vec::with_capacity(1024);
    let hist = part.hist.as_mut().expect("set by the worker");
    let (mut sent_in, mut received_in) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= window.drain_end || part.failures.count > cfg.common.max_errors {
            break;
        }
        if now >= window.measure_end && received_in >= sent_in {
            break;
        }
        let mut deadline = window.drain_end;
        if now < window.measure_end {
            // How many to send this turn: all we may (paced) or a burst each (unpaced).
            let budget = match per_s {
                Some(r) => {
                    let due = ((now - window.start).as_secs_f64() * r) as u64;
                    let next = window.start + Duration::from_secs_f64((due + 1) as f64 / r);
                    deadline = next.min(window.measure_end);
                    (due.saturating_sub(sent_total) as usize).min(BURST * n)
                }
                None => {
                    deadline = now;
                    BURST * n
                }
            };
            let mut blocked = 0;
            let mut k = 0;
            // Round-robin over associations, bounded by the budget.
            while k < budget && blocked < n {
                let a = &mut assocs[turn % n];
                turn += 1;
                seq += 1;
                if send(a, codec, seq, now, window, &mut part.failures) {
                    sent_total += 1;
                    if window.measures(now) {
                        sent_in += 1;
                    }
                    k += 1;
                    blocked = 0;
                } else {
                    blocked += 1;
                }
            }
        }
        reactor.wait(deadline).map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            let Some(a) = assocs.get_mut(i) else { continue };
            receive(a, codec, &mut scratch, window, |_, _, sent| {
                if window.measures(sent) {
                    stats::record(hist, Instant::now() - sent);
                    received_in += 1;
                }
            })?;
        }
    }
    part.sent = sent_in;
    part.received = received_in;
    Ok(())
}
