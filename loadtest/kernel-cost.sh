#!/usr/bin/env bash
# What a request costs outside a server's own instructions (docs/benchmarks.md, Session 13):
# the same loadgen run (32 connections, N requests after a 20,000-request warm-up) against
# the always-DUNNO ceiling and against `sluice serve` (the helo-spf scenario by default,
# DNS answers from dnsmasq as in `helo-spf.sh`), and per request:
#   MODE=ctx     CPU time (user, system) of the server and of loadgen, minor page faults,
#                voluntary and involuntary context switches of every server thread (by
#                name, from /proc/PID/task/*/status) and of loadgen;
#   MODE=strace  system calls of every server thread (`strace -c -f`; strace slows the
#                server several times over, so the once-a-second work weighs more);
#   MODE=perf    `perf record -g` of each server for 5 s (kernel included), kept in
#                /tmp/kernel-cost-{dunno,sluice}.perf.data for `perf report`.
#
# Usage: loadtest/kernel-cost.sh SLUICE [MODE]   (MODE: ctx, the default; strace; perf)
# Knobs (environment): N (200000), PORT_BASE (10940; two ports), DNS_PORT (10953),
# POLICIES (scenarios/embedded-10-policies-helo-spf.toml), SERVE_ARGS (extra `serve`
# arguments, e.g. `--worker-threads 2`). Build first: `cargo build --release -p sluice-loadtest`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
[[ $# -ge 1 ]] || { echo "usage: $0 SLUICE [ctx|strace|perf]" >&2; exit 2; }
sluice="$(realpath "$1")"
mode="${2:-ctx}"
N="${N:-200000}"
PORT_BASE="${PORT_BASE:-10940}"
DNS_PORT="${DNS_PORT:-10953}"
bin="$root/target/release"
tmp="$(mktemp -d)"
. "$here/lib.sh" # pids, cleanup (stops them, removes $tmp) on exit, start_spf_zone
start_spf_zone "$DNS_PORT"
"$bin/dunno-server" --listen "127.0.0.1:$PORT_BASE" 2>/dev/null &
dunno=$!
pids+=($dunno)
db="sqlite://$tmp/sluice.db"
"$sluice" policy import "${POLICIES:-$here/scenarios/embedded-10-policies-helo-spf.toml}" \
    --database "$db" >/dev/null
# shellcheck disable=SC2086 # extra arguments are split on purpose
"$sluice" serve --listen "127.0.0.1:$((PORT_BASE + 1))" --database "$db" --metrics-listen off \
    --dns-servers "127.0.0.1:$DNS_PORT" ${SERVE_ARGS:-} 2>"$tmp/sluice.log" &
sluice_pid=$!
pids+=($sluice_pid)
sleep 2

# "thread voluntary involuntary" per thread name, summed over threads of that name.
switches() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm")" \
            "$(awk '/^voluntary_ctxt/ { print $2 }' "$t/status")" \
            "$(awk '/^nonvoluntary_ctxt/ { print $2 }' "$t/status")"
    done | awk '{ v[$1] += $2; n[$1] += $3 } END { for (k in v) print k, v[k], n[k] }' | sort
}

loadgen() { # port requests
    "$bin/loadgen" --target "127.0.0.1:$1" --connections 32 --requests "$2" --warmup 0
}

for target in "dunno:$PORT_BASE:$dunno" "sluice:$((PORT_BASE + 1)):$sluice_pid"; do
    IFS=: read -r name port pid <<<"$target"
    loadgen "$port" 20000 >/dev/null
    case "$mode" in
    ctx)
        switches "$pid" >"$tmp/before"
        read -r u0 s0 f0 < <(awk '{ print $14, $15, $10 }' "/proc/$pid/stat")
        /usr/bin/time -f "%U %S %w %c" -o "$tmp/loadgen-time" "$bin/loadgen" --target "127.0.0.1:$port" \
            --connections 32 --requests "$N" --warmup 0 >"$tmp/load.txt"
        read -r u1 s1 f1 < <(awk '{ print $14, $15, $10 }' "/proc/$pid/stat")
        switches "$pid" >"$tmp/after"
        echo "== $name: $(grep -o 'throughput [0-9.]*' "$tmp/load.txt") req/s, $N requests; per request:"
        awk -v n="$N" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v f=$((f1 - f0)) -v t="$(getconf CLK_TCK)" \
            'BEGIN { printf "  server CPU us: user %.2f system %.2f; minor faults %.4f\n", u / t / n * 1e6, s / t / n * 1e6, f / n }'
        read -r lu ls lw lc <"$tmp/loadgen-time"
        awk -v n="$N" -v u="$lu" -v s="$ls" -v w="$lw" -v c="$lc" \
            'BEGIN { printf "  loadgen CPU us: user %.2f system %.2f; context switches: voluntary %.4f involuntary %.4f\n", u / n * 1e6, s / n * 1e6, w / n, c / n }'
        echo "  server context switches by thread (voluntary involuntary):"
        join "$tmp/before" "$tmp/after" | awk -v n="$N" '
            { v = ($4 - $2) / n; c = ($5 - $3) / n; tv += v; tc += c
              if (v + c > 0) printf "    %-20s %.4f %.4f\n", $1, v, c }
            END { printf "    %-20s %.4f %.4f\n", "total", tv, tc }'
        ;;
    strace)
        strace -c -f -p "$pid" -o "$tmp/strace.txt" &
        tracer=$!
        sleep 1
        loadgen "$port" "$N" >"$tmp/load.txt"
        kill -INT "$tracer"
        wait "$tracer" || true
        echo "== $name: system calls per request ($N requests)"
        awk -v n="$N" '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ { printf "  %-18s %.4f\n", $NF, $4 / n }' "$tmp/strace.txt"
        ;;
    perf)
        perf record -g -o "/tmp/kernel-cost-$name.perf.data" -p "$pid" -- sleep 5 >/dev/null 2>&1 &
        recorder=$!
        "$bin/loadgen" --target "127.0.0.1:$port" --connections 32 --duration 6 --warmup 0 >"$tmp/load.txt"
        wait "$recorder" || true
        echo "== $name: $(grep -o 'throughput [0-9.]*' "$tmp/load.txt") req/s; /tmp/kernel-cost-$name.perf.data"
        ;;
    *)
        echo "unknown mode $mode" >&2
        exit 2
        ;;
    esac
done
