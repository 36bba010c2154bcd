#!/usr/bin/env bash
# Instructions per request of a policy server, counted by `valgrind --tool=callgrind`:
# repeatable for the same binary and inputs whatever else the machine runs, unlike req/s.
#
# Method (docs/benchmarks.md): the load-test policies imported into a fresh SQLite file,
# WARM requests from loadgen (8 connections), counters zeroed (`callgrind_control -z`), then
# exactly REQUESTS requests, dumped (`callgrind_control -d`); the dump's total instructions
# (every thread, tokio included) divided by REQUESTS. The dump is kept for
# `callgrind_annotate` (its path is printed).
#
# Usage: loadtest/callgrind.sh [SERVER_BINARY]
#   SERVER_BINARY: a `sluice` binary (default: target/profiling/sluice, built first: the
#   release build with line tables), or a `dunno-server` binary for the ceiling.
# Knobs (environment): REQUESTS (40000), WARM (5000), PORT (10960),
# POLICIES (scenarios/embedded-10-policies.toml), OUT (directory for the dump; default
# loadtest/results), SKIP_BUILD=1, SERVE_ARGS (extra `serve` arguments, e.g.
# `--dns-servers 127.0.0.1:10953` for the helo-spf scenario, with a DNS server started
# first); CARGO_TARGET_DIR is honoured.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
REQUESTS="${REQUESTS:-40000}"
WARM="${WARM:-5000}"
PORT="${PORT:-10960}"
POLICIES="${POLICIES:-$here/scenarios/embedded-10-policies.toml}"
OUT="${OUT:-$here/results}"
target="${CARGO_TARGET_DIR:-$root/target}"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }

if [[ $# -ge 1 ]]; then
    server="$(realpath "$1")"
else
    server="$target/profiling/sluice"
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        (cd "$root" && cargo build --profile profiling -p sluice)
    fi
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p sluice-loadtest)
fi
loadgen="$target/release/loadgen"
mkdir -p "$OUT"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out_file="$OUT/$stamp-callgrind.out"
tmp="$(mktemp -d)"
bin="$target/release" results="$OUT" DURATION=0 WARMUP=0 CONNECTIONS=8
. "$here/lib.sh"

if [[ "$(basename "$server")" == dunno-server ]]; then
    args=(--listen "127.0.0.1:$PORT")
else
    db="sqlite://$tmp/sluice.db"
    "$server" policy import "$POLICIES" --database "$db" >/dev/null
    # shellcheck disable=SC2206 # extra arguments are split on purpose
    args=(serve --listen "127.0.0.1:$PORT" --database "$db" --metrics-listen off ${SERVE_ARGS:-})
fi
valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$out_file" "$server" "${args[@]}" \
    2>"$tmp/server.log" &
pids+=($!)
vg=$!
wait_port "$PORT" 60 # valgrind starts slowly

"$loadgen" --target "127.0.0.1:$PORT" --connections 8 --requests "$WARM" --warmup 0 \
    >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
"$loadgen" --target "127.0.0.1:$PORT" --connections 8 --requests "$REQUESTS" --warmup 0 \
    >"$tmp/load.txt"
callgrind_control -d "$vg" >/dev/null 2>&1
sleep 1
kill "$vg" 2>/dev/null || true
wait "$vg" 2>/dev/null || true

# The dump taken after zeroing is the one with the highest suffix (`.1`, `.2`...).
dump="$(ls -1 "$out_file".* 2>/dev/null | sort -t. -k3 -n | tail -n 1)"
total="$(grep -m1 '^summary:\|^totals:' "$dump" | awk '{print $2}')"
grep -q 'errors 0' "$tmp/load.txt" || { echo "loadgen reported errors:" >&2; cat "$tmp/load.txt" >&2; }
echo "server:   $server"
echo "requests: $REQUESTS (after $WARM warm-up)"
echo "instructions / request: $((total / REQUESTS))"
echo "dump:     $dump (callgrind_annotate --inclusive=yes $dump)"
