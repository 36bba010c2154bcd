#!/usr/bin/env bash
# What `buckets` (sub-buckets per quota period) costs one counter in Redis: a measurement,
# not a test. For each bucket count it fills one counter's hash with a full window (one
# field per sub-bucket of a 1 h period, as the counter script writes them), then reports
#   bytes   MEMORY USAGE of the key (SAMPLES 0: every field counted);
#   take    server time per counter-script take (EVALSHA of services/redis/src/counter.lua,
#           from INFO commandstats: Redis's own time, no network);
#   check   server time per HGETALL (what a check or a level report reads).
# on a private redis-server (127.0.0.1:$PORT, default 24100; nothing else is touched).
# Knobs: PORT, BUCKETS ("60 120 128 129 240 600 1000 3600"), TAKES (2000).
# Prints a Markdown table (docs/quotas.md, "Sub-buckets in Redis").
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
PORT="${PORT:-24100}"
BUCKETS="${BUCKETS:-60 120 128 129 240 600 1000 3600}"
TAKES="${TAKES:-2000}"
period=3600000
tmp="$(mktemp -d)"
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "$tool not found (install redis-server, redis-tools)" >&2; exit 1; }
done
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --daemonize no >"$tmp/redis.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
cli() { redis-cli -p "$PORT" "$@"; }
for _ in $(seq 100); do cli PING >/dev/null 2>&1 && break; sleep 0.05; done
sha="$(cli SCRIPT LOAD "$(cat "$root/services/redis/src/counter.lua")")"
usec() { cli INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:.*usec_per_call=\([0-9.]*\).*/\1/p"; }

echo "| buckets | sub-bucket (1 h period) | bytes per key | encoding | take (µs, in Redis) | check (µs, in Redis) |"
echo "|---:|---:|---:|---|---:|---:|"
for n in $BUCKETS; do
    width=$((period / n))
    key="sluice:{bench-$n}:w"
    now_ms=$(($(date +%s%3N)))
    cur=$((now_ms / width))
    # A full window: every sub-bucket of the period holds a count (written in batches).
    cli DEL "$key" >/dev/null
    for ((start = cur - n + 1; start <= cur; start += 500)); do
        args=()
        for ((j = start; j <= cur && j < start + 500; j++)); do args+=("$j" 3); done
        cli HSET "$key" "${args[@]}" >/dev/null
    done
    cli PEXPIRE "$key" $((period + width)) >/dev/null
    bytes="$(cli MEMORY USAGE "$key" SAMPLES 0)"
    encoding="$(cli OBJECT ENCODING "$key")"
    cli CONFIG RESETSTAT >/dev/null
    redis-benchmark -p "$PORT" -c 1 -n "$TAKES" -q \
        EVALSHA "$sha" 1 "$key" take -1 1 1000000000 "$period" "$width" >/dev/null
    redis-benchmark -p "$PORT" -c 1 -n "$TAKES" -q HGETALL "$key" >/dev/null
    fields="$(cli HLEN "$key")"
    [[ $fields -ge $n ]] || echo "warning: $n buckets: only $fields fields after the run" >&2
    printf '| %s | %s ms | %s | %s | %s | %s |\n' "$n" "$width" "$bytes" "$encoding" \
        "$(usec evalsha)" "$(usec hgetall)"
done
