#!/usr/bin/env bash
# The comparison behind the README's Benchmarks section: every figure the project
# tracks, ringsocks against Dante, microsocks and merino and the direct path.
#
# Memory per idle connection is measured in a second invocation, against servers that
# have served nothing yet: a server keeps what earlier cases made it allocate (relay
# buffers, thread stacks, forked children), which would otherwise be charged to the
# idle connections.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
export SERVERS=${SERVERS:-"ringsocks dante microsocks merino"}
OUT=$out bench/compare.sh \
    --duration 5s --warmup 1s --repeats 3 \
    --case throughput-up:conns=1 --case throughput-down:conns=1 \
    --case throughput-up:conns=8 --case throughput-down:conns=8 \
    --case latency:conns=64 --case latency:conns=512 \
    --case latency-rate:conns=64,rate=10000 \
    --case connect:conns=32 \
    --case udp:conns=8 --case udp-flood:conns=4 \
    "$@"
OUT=$out/idle bench/compare.sh --duration 5s --warmup 1s --repeats 3 \
    --case idle:conns=5000 "$@"
