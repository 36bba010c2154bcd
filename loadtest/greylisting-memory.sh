#!/usr/bin/env bash
# What greylisting state costs in Redis: a measurement, not a test. On a private redis-server
# in cluster mode (127.0.0.1:$PORT, default 10960; all 16384 slots on it, so keys carry the
# same per-key slot bookkeeping as in a real cluster; nothing else is touched) it records N
# distinct triplets (default 1 000 000) by running services/redis/src/greylisting.lua once
# per triplet (EVALSHA through `redis-cli --pipe`, Policyd's default settings), in two
# shapes: one triplet per /24 network (the worst case: one key per triplet) and 10 per
# network. Reports used_memory before and after, bytes per triplet, keys, and that every
# key has a TTL (idle networks leave by themselves).
# Knobs: PORT, N. Prints a Markdown table (docs/benchmarks.md, "Greylisting memory").
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
PORT="${PORT:-10960}"
N="${N:-1000000}"
tmp="$(mktemp -d)"
for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --cluster-enabled yes --cluster-config-file "$tmp/nodes.conf" \
    --daemonize no >"$tmp/redis.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
cli() { redis-cli -p "$PORT" "$@"; }
for _ in $(seq 100); do cli PING >/dev/null 2>&1 && break; sleep 0.05; done
cli CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
for _ in $(seq 100); do cli CLUSTER INFO | grep -q 'cluster_state:ok' && break; sleep 0.1; done
sha="$(cli SCRIPT LOAD "$(cat "$root/services/redis/src/greylisting.lua")")"
used() { cli INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }

echo "| triplets per network | triplets | keys | bytes per triplet | every key has a TTL |"
echo "|---|---|---|---|---|"
for per in 1 10; do
    cli FLUSHALL >/dev/null
    before="$(used)"
    # RESP for N EVALSHA calls: now from Redis's clock, not a dry run, period 240 s, auth
    # validity 7 days, unauth validity 1 day, no auto-lists, not training.
    python3 - "$sha" "$N" "$per" <<'PY' | cli --pipe >"$tmp/pipe.log"
import sys
sha, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)
buf = []
for i in range(n):
    j = i // per
    net = "SenderIP:%d.%d.%d.0/24" % (10 + (j >> 16) % 200, (j >> 8) & 255, j & 255)
    key = "sluice:{g:%s}:g" % net
    triplet = "sender%08d@example.com\nrcpt%06d@example.net" % (i, i % 1000000)
    buf.append(cmd("EVALSHA", sha, "1", key, "-1", "0", triplet, "240000", "604800000",
                   "86400000", "0", "0", "0", "0", "0", "0", "0", "0", "0"))
    if len(buf) >= 10000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
PY
    after="$(used)"
    keys="$(cli DBSIZE)"
    errors="$(grep -o 'errors: [0-9]*' "$tmp/pipe.log" | awk '{print $2}')"
    [[ "${errors:-0}" == 0 ]] || { cat "$tmp/pipe.log" >&2; exit 1; }
    no_ttl=0
    sampled=0
    for key in $( (cli --scan || true) | head -200); do
        sampled=$((sampled + 1))
        [[ "$(cli PTTL "$key")" -gt 0 ]] || no_ttl=$((no_ttl + 1))
    done
    ((sampled > 0)) || { echo "no key to sample" >&2; exit 1; }
    per_triplet=$(( (after - before) / N ))
    echo "| $per | $N | $keys | $per_triplet | $([[ $no_ttl == 0 ]] && echo "yes ($sampled sampled)" || echo "NO: $no_ttl of $sampled") |"
done
