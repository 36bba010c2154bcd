#!/usr/bin/env bash
# Cluster mode vs embedded mode, measured in the same run on this machine (a benchmark,
# not a test):
#   cluster:  loadgen -> sluice edge -> gRPC -> sluice quota -> Redis Cluster (3 primaries)
#   embedded: loadgen -> sluice serve (in-process counters)
# both with the same policies (scenarios/embedded-10-policies.toml) and the same load
# (loadgen's builtin RCPT + END-OF-MESSAGE mix, CONNECTIONS persistent connections).
# KEYS=long-tail runs both with the long-tail key mix (no sender seen twice in the run,
# 50,000 client addresses) instead of the small one (300 senders, 250 client addresses).
# Policies of the cluster come from a fresh PostgreSQL database on 127.0.0.1:5432 (dropped
# at the end); those of `sluice serve` from a SQLite file, as in run.sh.
#
# Knobs (environment): CONNECTIONS (32), DURATION (10 s), WARMUP (2 s), SERVE_PORT (10941),
# EDGE_PORT (10942), QUOTA_PORT (10943), REDIS_PORT (17101; uses 3 ports from there, and
# the cluster bus ports +10000), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres),
# POLICIES, SKIP_BUILD=1 to reuse the release binaries, BIN_DIR (target/release) to run other
# builds' binaries (A/B comparisons).
# EDGE_ARGS: extra `sluice edge` flags (e.g. "--worker-threads 1"); QUOTA_ARGS: extra
# `sluice quota` flags (e.g. "--redis-wait-replicas 0"); SERVE_ARGS: extra `sluice serve`
# flags (e.g. "--counter-flush-ms 0": embedded mode without counter persistence).
# REPLICAS (0): replicas per primary (on the ports after the primaries'); with replicas the
# quota service waits for one per charge (WAIT) unless told otherwise.
# BUS_OFFSET (10000): cluster bus port = node port + this.
# Results: loadtest/results/<stamp>-{embedded,cluster}.json and <stamp>-cluster-summary.txt.
# PERF=quota (or edge, redis0..2) records `perf record -g` of that process during the
# cluster's measured window into results/<stamp>-<name>.perf.data.
# PERF_CALLGRAPH=dwarf for call stacks of builds without frame pointers.
# CPU per request: every process's utime+stime (from /proc) over the measured window
# (WARMUP .. WARMUP+DURATION after loadgen starts) divided by the measured requests; less
# sensitive to other load on the machine than req/s.
# Redis commands per request: INFO commandstats of every node at both ends of the cluster's
# measured window; the difference per command (all nodes) divided by the measured requests.
# The summary also records `uptime` (the machine is shared: note the load with each run).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
KEYS="${KEYS:-small}"
SERVE_PORT="${SERVE_PORT:-10941}"
EDGE_PORT="${EDGE_PORT:-10942}"
QUOTA_PORT="${QUOTA_PORT:-10943}"
REDIS_PORT="${REDIS_PORT:-17101}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
POLICIES="${POLICIES:-$here/scenarios/embedded-10-policies.toml}"
bin="${BIN_DIR:-$root/target/release}"
results="$here/results"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
tmp="$(mktemp -d)"
pg_db="sluice_bench_${stamp,,}"
pg_url="${PG_ADMIN_URL%/*}/$pg_db"
pg_created=0
. "$here/lib.sh"
drop_bench_db() {
    if [[ $pg_created == 1 ]]; then
        psql -X -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
cleanup_hooks+=(drop_bench_db)

for tool in redis-server redis-cli psql; do
    command -v "$tool" >/dev/null || { echo "$tool not found (install redis-server, postgresql-client)" >&2; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p sluice -p sluice-loadtest)
fi
mkdir -p "$results"

uptime_before="$(uptime)"
REPLICAS="${REPLICAS:-0}"
BUS_OFFSET="${BUS_OFFSET:-10000}"
n_nodes=$((3 * (1 + REPLICAS)))
echo "== Redis Cluster: 3 primaries, $REPLICAS replica(s) each, on 127.0.0.1:$REDIS_PORT-$((REDIS_PORT + n_nodes - 1))"
nodes=()
redis_pids=()
for i in $(seq 0 $((n_nodes - 1))); do
    port=$((REDIS_PORT + i))
    mkdir -p "$tmp/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/redis-$port" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-port $((port + BUS_OFFSET)) --cluster-require-full-coverage no \
        --appendonly no --save '' --protected-mode no --logfile redis.log --daemonize no &
    pids+=($!)
    redis_pids+=($!)
    nodes+=("127.0.0.1:$port")
done
for i in $(seq 0 $((n_nodes - 1))); do wait_port $((REDIS_PORT + i)); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >"$tmp/cluster-create.log"
for _ in $(seq 300); do
    ok=0
    for i in $(seq 0 $((n_nodes - 1))); do
        redis-cli -p $((REDIS_PORT + i)) cluster info | grep -q cluster_state:ok && ok=$((ok + 1))
    done
    # With replicas: each listed in CLUSTER SLOTS (after it gossiped its offset).
    listed=$(redis-cli -p "$REDIS_PORT" cluster slots | grep -c '^127.0.0.1$' || true)
    [[ $ok == "$n_nodes" && $listed -ge $n_nodes ]] && break
    sleep 0.1
done
[[ $ok == "$n_nodes" ]] || { echo "Redis Cluster did not become healthy" >&2; exit 1; }
redis_urls="redis://127.0.0.1:$REDIS_PORT,redis://127.0.0.1:$((REDIS_PORT + 1)),redis://127.0.0.1:$((REDIS_PORT + 2))"

echo "== PostgreSQL database $pg_db"
psql -X -q "$PG_ADMIN_URL" -c "CREATE DATABASE $pg_db" >/dev/null
pg_created=1
"$bin/sluice" migrate --database "$pg_url"
"$bin/sluice" policy import "$POLICIES" --database "$pg_url"

echo "== sluice quota on 127.0.0.1:$QUOTA_PORT, sluice edge on 127.0.0.1:$EDGE_PORT"
"$bin/sluice" quota --grpc-listen "127.0.0.1:$QUOTA_PORT" --metrics-listen off \
    --redis "$redis_urls" ${QUOTA_ARGS:-} 2>"$tmp/quota.log" &
pids+=($!)
quota_pid=$!
wait_port "$QUOTA_PORT"
"$bin/sluice" edge --listen "127.0.0.1:$EDGE_PORT" --metrics-listen off \
    --database "$pg_url" --quota "http://127.0.0.1:$QUOTA_PORT" ${EDGE_ARGS:-} 2>"$tmp/edge.log" &
pids+=($!)
edge_pid=$!
wait_port "$EDGE_PORT"

echo "== sluice serve (embedded) on 127.0.0.1:$SERVE_PORT"
db="sqlite://$tmp/sluice.db"
"$bin/sluice" policy import "$POLICIES" --database "$db"
"$bin/sluice" serve --listen "127.0.0.1:$SERVE_PORT" --database "$db" --metrics-listen off \
    ${SERVE_ARGS:-} 2>"$tmp/serve.log" &
pids+=($!)
serve_pid=$!
wait_port "$SERVE_PORT"

# INFO commandstats of every node, one "node command calls" line per command.
window_snapshot() { # label before|after
    [[ $1 == cluster ]] || return 0
    local i
    for i in $(seq 0 $((n_nodes - 1))); do
        redis-cli -p $((REDIS_PORT + i)) info commandstats | tr -d '\r' |
            awk -v n="redis$i" -F '[:,=]' '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); print n, $1, $3 }'
    done >"$tmp/$1-redis-$2.txt"
}

# "redis commands/request" over the window: per command (all nodes), per node, in all.
commands_per_request() { # label
    awk -v req="$(cat "$tmp/$1-window-requests.txt")" '
        FNR == NR { before[$1 " " $2] = $3; next }
        $2 != "info" {
            d = $3 - before[$1 " " $2]
            cmd[$2] += d; node[$1] += d; total += d
        }
        END {
            line = "redis commands/request:"
            for (c in cmd) if (cmd[c] > 0) line = line sprintf(" %s %.3f", c, cmd[c] / req)
            line = line sprintf("  total %.3f (", total / req)
            for (n in node) line = line sprintf(" %s %.3f", n, node[n] / req)
            print line " )"
        }' "$tmp/$1-redis-before.txt" "$tmp/$1-redis-after.txt"
}

echo "== load: embedded (keys: $KEYS)"
embedded_procs=("serve=$serve_pid")
load_with_cpu embedded "$SERVE_PORT" embedded_procs --keys "$KEYS" | tee "$tmp/embedded-report.txt"
# The embedded server is stopped (cleanly) before the cluster is measured: with counter
# persistence on a long tail of keys it goes on writing its backlog of counters to SQLite
# for seconds after its load ends (and flushes the rest when it stops), CPU that the
# cluster's measured window would otherwise share. Until 2026-12-07 it kept running.
stop_started=$SECONDS
kill "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
echo "== embedded server stopped in $((SECONDS - stop_started)) s"
echo "== load: cluster (keys: $KEYS)"
cluster_procs=("edge=$edge_pid" "quota=$quota_pid")
for i in $(seq 0 $((n_nodes - 1))); do cluster_procs+=("redis$i=${redis_pids[$i]}"); done
load_with_cpu cluster "$EDGE_PORT" cluster_procs --keys "$KEYS" --baseline "$results/$stamp-embedded.json" | tee "$tmp/cluster-report.txt"
commands_per_request cluster | tee "$tmp/cluster-commands.txt"

for i in $(seq 0 $((n_nodes - 1))); do
    echo "-- redis $((REDIS_PORT + i)) commandstats ($(redis-cli -p $((REDIS_PORT + i)) info stats | tr -d '\r' | grep -E '^total_(commands_processed|reads_processed|writes_processed):' | tr '\n' ' '))"
    redis-cli -p $((REDIS_PORT + i)) info commandstats | grep -v '^#' | tr -d '\r' | grep .
done >"$tmp/commandstats.txt"
fallbacks="$(grep -c 'fallback\|unavailable\|timed out' "$tmp/edge.log" || true)"
summary="$results/$stamp-cluster-summary.txt"
{
    echo "connections=$CONNECTIONS duration=${DURATION}s warmup=${WARMUP}s keys=$KEYS replicas=$REPLICAS policies=$(basename "$POLICIES") cpus=$(nproc)"
    echo "uptime before: $uptime_before; after: $(uptime)"
    tail -n 1 "$tmp/cluster.txt"
    echo "embedded $(grep 'latency us' "$tmp/embedded-report.txt" | sed 's/^ *//')"
    echo "cluster  $(grep 'latency us' "$tmp/cluster-report.txt" | sed 's/^ *//')"
    echo "embedded $(grep 'CPU us/request' "$tmp/embedded-report.txt" | sed 's/^ *//')"
    echo "cluster  $(grep 'CPU us/request' "$tmp/cluster-report.txt" | sed 's/^ *//')"
    cat "$tmp/cluster-commands.txt"
    echo "edge log lines mentioning fallback/unavailable/timeouts: $fallbacks"
    grep -m 3 'fallback\|unavailable\|timed out' "$tmp/edge.log" | cut -c1-300 || true
    cat "$tmp/commandstats.txt"
} >"$summary"
echo "== results in $results/$stamp-{embedded,cluster}.json, summary:"
cat "$summary"
