#!/usr/bin/env python3
"""The Benchmarks table of README.md from a bench/run-readme.sh result directory.

Usage: bench/readme-table.py OUT   (the OUT given to run-readme.sh)

Each cell is the median over the repeats that succeeded; bold marks the best server; the
last column is ringsocks divided by the best peer (higher is better for rates, lower for
costs and latencies).
"""
import json
import statistics
import sys

SERVERS = ["direct", "ringsocks", "dante", "microsocks", "merino"]
PEERS = ["dante", "microsocks", "merino"]
OPEN_LOOP = "latency-rate:conns=64,rate=10000"


def load(out):
    rows = []
    for path in (f"{out}/results.jsonl", f"{out}/idle/results.jsonl"):
        with open(path) as f:
            rows += [json.loads(line) for line in f]
    return rows


def median(rows, case, server, field):
    seen = []
    for r in rows:
        if r["case"] == case and r["server"] == server and r.get("ok"):
            try:
                seen.append(field(r["report"]))
            except (TypeError, KeyError):
                pass
    seen = [v for v in seen if v is not None]
    return statistics.median(seen) if seen else None


def row(rows, label, case, field, fmt, higher, direct=True):
    v = {s: median(rows, case, s, field) for s in SERVERS}
    if not direct:
        v["direct"] = None
    pick = max if higher else min
    ranked = {s: v[s] for s in ["ringsocks"] + PEERS if v[s] is not None}
    best = pick(ranked, key=ranked.get)
    best_peer = pick(v[s] for s in PEERS if v[s] is not None)
    cells = []
    for s in SERVERS:
        if v[s] is None:
            absent = "no UDP" if s == "microsocks" and case.startswith("udp") else "fails"
            cells.append("–" if s == "direct" else absent)
        else:
            cells.append(f"**{fmt(v[s])}**" if s == best else fmt(v[s]))
    return f"| {label} | " + " | ".join(cells) + f" | {v['ringsocks'] / best_peer:.2f}× |"


def main(out):
    rows = load(out)
    gbit = lambda r: r["gbit_per_s"]
    per_gib = lambda r: r["server_s_per_gib"]
    per_op = lambda r: r["server_us_per_op"]
    rate = lambda r: r["ops_per_s"]
    p99 = lambda r: r["latency"]["p99_us"] / 1000
    p999 = lambda r: r["latency"]["p999_us"] / 1000
    idle = lambda r: r["per_connection"]["rss_per_conn"] / 1024
    f1, f2, f3 = (lambda x: f"{x:.1f}"), (lambda x: f"{x:.2f}"), (lambda x: f"{x:.3f}")
    count = lambda x: f"{x:,.0f}"
    ms = lambda x: f"{x:.2f} ms"
    kib = lambda x: f"{x:.2f} KiB"
    lines = [
        "| figure | direct | ringsocks | Dante | microsocks | merino | ringsocks ÷ best peer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for way, mode, conns in [
        ("upload", "up", 1),
        ("download", "down", 1),
        ("upload", "up", 8),
        ("download", "down", 8),
    ]:
        case = f"throughput-{mode}:conns={conns}"
        plural = "s" if conns > 1 else ""
        lines.append(row(rows, f"bulk {way}, {conns} conn{plural}: Gbit/s", case, gbit, f2, True))
        lines.append(row(rows, "↳ CPU-s per GiB", case, per_gib, f3, False, direct=False))
    for conns in (64, 512):
        case = f"latency:conns={conns}"
        lines.append(row(rows, f"64 B ping-pong, {conns} conns: req/s", case, rate, count, True))
        lines.append(row(rows, "↳ CPU-µs per request", case, per_op, f1, False, direct=False))
        lines.append(row(rows, "↳ p99", case, p99, ms, False))
    for label, case, field, fmt, higher, direct in [
        ("open loop, 64 conns at 10,000 req/s: p99", OPEN_LOOP, p99, ms, False, True),
        ("↳ p99.9", OPEN_LOOP, p999, ms, False, True),
        ("↳ CPU-µs per request", OPEN_LOOP, per_op, f1, False, False),
        ("full sessions, 32 workers: sessions/s", "connect:conns=32", rate, count, True, True),
        ("↳ CPU-µs per session", "connect:conns=32", per_op, count, False, False),
        ("UDP ping-pong, 8 associations: datagrams/s", "udp:conns=8", rate, count, True, True),
        ("↳ CPU-µs per datagram", "udp:conns=8", per_op, f1, False, False),
        ("UDP flood, 4 associations: delivered/s", "udp-flood:conns=4", rate, count, True, True),
        ("↳ CPU-µs per datagram", "udp-flood:conns=4", per_op, f1, False, False),
    ]:
        lines.append(row(rows, label, case, field, fmt, higher, direct))
    label = "5,000 idle relayed connections: RSS per connection"
    lines.append(row(rows, label, "idle:conns=5000", idle, kib, False, direct=False))
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/readme-table.py OUT (the directory bench/run-readme.sh wrote)")
    main(sys.argv[1])
