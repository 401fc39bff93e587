//! Micro-benchmarks of the pure code on the hot path: handshake parsing, token packing,
//! the timer wheel. Run with `cargo bench`; compare against a saved baseline with
//! `cargo bench -- --save-baseline before` / `--baseline before`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsocks::engine::{Op, TimerWheel, Token};
use ringsocks::proto::{Handshake, HandshakeConfig};

/// Greeting + request for 127.0.0.1:80 + 64 bytes of data, in one write.
fn socks5_pipelined() -> Vec<u8> {
    let mut v = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
    v.extend_from_slice(&[0x61; 64]);
    v
}

/// Greeting, credentials and a domain request.
fn socks5_auth_domain() -> Vec<u8> {
    let mut v = vec![5, 2, 0, 2, 1, 5];
    v.extend_from_slice(b"alice");
    v.push(6);
    v.extend_from_slice(b"secret");
    v.extend_from_slice(&[5, 1, 0, 3, 11]);
    v.extend_from_slice(b"example.com");
    v.extend_from_slice(&[1, 187]);
    v
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let pipelined = socks5_pipelined();
    g.throughput(Throughput::Elements(1));
    g.bench_function("socks5_connect_ipv4_one_write", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            let mut hs = Handshake::new(HandshakeConfig::default());
            let used = hs.handle_input(black_box(&pipelined));
            let ev = hs.poll_event();
            hs.grant("10.0.0.1:40000".parse().unwrap());
            out.clear();
            hs.poll_transmit(&mut out);
            black_box((used, ev, out.len()))
        })
    });
    let auth = socks5_auth_domain();
    g.bench_function("socks5_auth_domain_one_write", |b| {
        b.iter(|| {
            let mut hs = Handshake::new(HandshakeConfig {
                auth_required: true,
            });
            let used = hs.handle_input(black_box(&auth));
            let creds = hs.poll_event();
            hs.accept_credentials();
            let used2 = hs.handle_input(&auth[used..]);
            black_box((creds, used2, hs.poll_event()))
        })
    });
    g.bench_function("socks5_connect_byte_by_byte", |b| {
        b.iter(|| {
            let mut hs = Handshake::new(HandshakeConfig::default());
            for byte in pipelined[..13].chunks(1) {
                hs.handle_input(black_box(byte));
            }
            black_box(hs.poll_event())
        })
    });
    g.finish();
}

fn tokens(c: &mut Criterion) {
    c.bench_function("token_pack_unpack", |b| {
        let mut slot = 0u32;
        b.iter(|| {
            slot = (slot + 1) & 0xff_ffff;
            let t = Token::with_aux(Op::RecvClient, black_box(slot), 7, 3);
            black_box((t.op(), t.slot(), t.generation(), t.aux()))
        })
    });
}

fn timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_wheel");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("schedule_and_fire_10k", |b| {
        let mut fired = Vec::with_capacity(10_000);
        b.iter(|| {
            let mut wheel = TimerWheel::new(4096);
            for k in 0..10_000u64 {
                wheel.schedule(1 + (k * 7919) % 6000, k);
            }
            let mut t = 0;
            while !wheel.is_empty() {
                t += 1;
                wheel.advance(t, &mut fired);
            }
            black_box(fired.len());
            fired.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, handshake, tokens, timers);
criterion_main!(benches);
