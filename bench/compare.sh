#!/usr/bin/env bash
# bench/compare.sh -- side-by-side benchmark of ringsocks and peer SOCKS5 servers.
#
# Builds ringsocks and bench-harness (release), starts ringsocks and the peers from
# ../shared/peers (Dante, microsocks, optionally merino) on 127.0.0.1, runs
# `bench-harness compare` against all of them and the direct path, and stops every
# server it started, also on failure or Ctrl-C.
#
# Usage: bench/compare.sh [extra bench-harness compare flags...]
#   e.g. bench/compare.sh --duration 10s --repeats 5 --case latency-rate:rate=20000
#
# Environment:
#   SERVERS      servers to compare (default: "ringsocks dante microsocks"; also "merino")
#   OUT          result directory (default: bench/results)
#   AUTH=auth    username/password everywhere ($BENCH_USER / $BENCH_PASS,
#                default socksbench / socksbench)
#   PIN=0        do not pin (default on 2+ CPUs: servers on CPU 0, harness on CPU 1,
#                so server and harness each own a core instead of fighting over both)
#   BASE_PORT    ringsocks listens on BASE_PORT, microsocks on +1, Dante on +2, merino
#                on +3 (default 21080)
#   RINGSOCKS_ARGS  ringsocks command-line flags (default: --listen 127.0.0.1:BASE_PORT;
#                with AUTH=auth a --users file is added)
#   PEERS_DIR    the peer scripts (default: ../shared/peers beside the repository)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
servers=${SERVERS:-ringsocks dante microsocks}
out=${OUT:-$root/bench/results}
auth=${AUTH:-}
export BENCH_USER=${BENCH_USER:-socksbench} BENCH_PASS=${BENCH_PASS:-socksbench}
target=${CARGO_TARGET_DIR:-$root/target}
base=${BASE_PORT:-21080}
rs_port=$base

die() { echo "compare.sh: $*" >&2; exit 1; }
[[ -z $auth || $auth == auth ]] || die "AUTH must be empty or 'auth'"
[[ -d $peers ]] || die "peer scripts not found in $peers (set PEERS_DIR)"

server_pin=() harness_pin=()
if [[ ${PIN:-1} != 0 ]] && (($(nproc) >= 2)); then
    server_pin=(taskset -c 0)
    harness_pin=(--cpus 1)
fi

peer_ports=()
rs_pid=
cleanup() {
    local status=$?
    if [[ -n $rs_pid ]] && kill -0 "$rs_pid" 2>/dev/null; then
        kill -TERM "$rs_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$rs_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$rs_pid" 2>/dev/null || true
        wait "$rs_pid" 2>/dev/null || true
    fi
    if ((${#peer_ports[@]})); then
        "$peers/stop.sh" "${peer_ports[@]}" || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# listening PORT: true when a TCP socket listens on 127.0.0.1:PORT (reads /proc only).
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6
}

mkdir -p "$out"
echo "building ringsocks and bench-harness (release)" >&2
(cd "$root" && cargo build --release -p ringsocks -p bench-harness >&2)

args=()
for s in $servers; do
    case $s in
    ringsocks)
        listening "$rs_port" && die "port $rs_port is taken (another run?); choose other ports with BASE_PORT"
        read -r -a rs_args <<<"${RINGSOCKS_ARGS:---listen 127.0.0.1:$rs_port}"
        if [[ -n $auth ]]; then
            printf '%s:%s\n' "$BENCH_USER" "$BENCH_PASS" >"$out/ringsocks-users"
            rs_args+=(--users "$out/ringsocks-users")
        fi
        "${server_pin[@]}" "$target/release/ringsocks" "${rs_args[@]}" \
            >"$out/ringsocks.log" 2>&1 </dev/null &
        rs_pid=$!
        for _ in $(seq 1 100); do
            listening "$rs_port" && break
            kill -0 "$rs_pid" 2>/dev/null ||
                die "ringsocks exited at start-up (see $out.ringsocks.log); SERVERS can leave it out"
            sleep 0.1
        done
        listening "$rs_port" || die "ringsocks is not listening on $rs_port after 10 s"
        args+=(--server "ringsocks=127.0.0.1:$rs_port,pid=$rs_pid")
        ;;
    dante | microsocks | merino)
        case $s in microsocks) port=$((base + 1)) ;; dante) port=$((base + 2)) ;; merino) port=$((base + 3)) ;; esac
        listening "$port" && die "port $port is taken (another run?); choose other ports with BASE_PORT"
        pid=$("${server_pin[@]}" "$peers/start-$s.sh" "$port" $auth)
        peer_ports+=("$port")
        args+=(--server "$s=127.0.0.1:$port,pid=$pid")
        ;;
    *) die "unknown server '$s' (ringsocks, dante, microsocks, merino)" ;;
    esac
done
if [[ -n $auth ]]; then
    args+=(--user "$BENCH_USER" --pass "$BENCH_PASS")
fi

# Defaults first; flags given to this script come last and override them.
"$target/release/bench-harness" compare "${args[@]}" "${harness_pin[@]}" \
    --duration 5s --warmup 1s --repeats 3 --out "$out" "$@"
