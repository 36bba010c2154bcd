#!/usr/bin/env bash
# Compares the real server (sluice serve, embedded mode, 10 policies) with the always-DUNNO
# ceiling, both on 127.0.0.1, and writes the results to loadtest/results/.
#
# Knobs (environment): CONNECTIONS (32), DURATION (10 s), WARMUP (2 s),
# DUNNO_PORT (10930), SLUICE_PORT (10931), POLICIES (scenarios/embedded-10-policies.toml),
# SKIP_BUILD=1 to reuse the release binaries, PERF=sluice (or dunno) to profile.
# Besides req/s and latency, each phase reports the CPU time per request of the server and
# of loadgen over the measured window (utime + stime from /proc): less sensitive to other
# load on the machine than req/s.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
DUNNO_PORT="${DUNNO_PORT:-10930}"
SLUICE_PORT="${SLUICE_PORT:-10931}"
POLICIES="${POLICIES:-$here/scenarios/embedded-10-policies.toml}"
bin="$root/target/release"
results="$here/results"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
tmp="$(mktemp -d)"
. "$here/lib.sh"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p sluice -p sluice-loadtest)
fi
mkdir -p "$results"

echo "== always-DUNNO ceiling on 127.0.0.1:$DUNNO_PORT"
"$bin/dunno-server" --listen "127.0.0.1:$DUNNO_PORT" 2>"$tmp/dunno.log" &
pids+=($!)
dunno_pid=$!
wait_port "$DUNNO_PORT"
dunno_procs=("dunno=$dunno_pid")
load_with_cpu dunno "$DUNNO_PORT" dunno_procs | tee "$tmp/dunno-report.txt"

echo "== sluice serve (embedded, $(basename "$POLICIES")) on 127.0.0.1:$SLUICE_PORT"
db="sqlite://$tmp/sluice.db"
"$bin/sluice" policy import "$POLICIES" --database "$db"
"$bin/sluice" serve --listen "127.0.0.1:$SLUICE_PORT" --database "$db" --metrics-listen off 2>"$tmp/sluice.log" &
pids+=($!)
sluice_pid=$!
wait_port "$SLUICE_PORT"
sluice_procs=("sluice=$sluice_pid")
load_with_cpu sluice "$SLUICE_PORT" sluice_procs --baseline "$results/$stamp-dunno.json" | tee "$tmp/sluice-report.txt"

summary="$results/$stamp-summary.txt"
{
    echo "connections=$CONNECTIONS duration=${DURATION}s warmup=${WARMUP}s policies=$(basename "$POLICIES")"
    tail -n 1 "$tmp/sluice.txt"
    echo "ceiling $(grep 'CPU us/request' "$tmp/dunno-report.txt" | sed 's/^ *//')"
    echo "sluice  $(grep 'CPU us/request' "$tmp/sluice-report.txt" | sed 's/^ *//')"
} >"$summary"
echo "== results in $results/$stamp-*.json, summary:"
cat "$summary"
