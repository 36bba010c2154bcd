#!/usr/bin/env bash
# End-to-end test of DELAY quotas (issue 19, docs/delay.md): a real Postfix asks a real
# `sluice serve` (SQLite, admin service on), `sluice release-agent` runs beside Postfix, and
# smtp-sink is the next hop. Uses the helpers of tests/e2e/postfix.sh (sourced).
#
#   1. room: a DELAY quota of $LIMIT messages per $PERIOD s; $BURST messages from one sender
#      at once: $LIMIT delivered at once, the rest in the hold queue (postqueue -j); sluice
#      and the agent are restarted while they are held; then they are released so that no
#      $PERIOD-second window delivers more than $LIMIT, until all $BURST are delivered, in
#      the order they were held, none lost, none twice.
#   2. paced: the same with `release = "paced"`: one release per $PERIOD/$LIMIT s.
#   3. deleted: a message deleted by hand from the hold queue is dropped from the ledger,
#      and its turn goes to the next one.
#   4. cluster: room again, in cluster mode: PostgreSQL, a Redis Cluster (3 primaries, 3
#      replicas), two quota services, two edges (Postfix asks one on its port 25-like
#      listener and the other on a second smtpd listener), `sluice admin` for the agent; a
#      quota service and the agent are restarted while messages are held.
#
# Environment: SLUICE_BIN (default target/debug/sluice), E2E_KEEP=1 (keep the temp dir).
# Prints "e2e delay: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

# shellcheck source=tests/e2e/postfix.sh
source "$(dirname "${BASH_SOURCE[0]}")/postfix.sh"

readonly PERIOD=10
readonly BURST=12
readonly ROOM_SENDER="room@example.com"
readonly PACED_SENDER="paced@example.com"
readonly DEL_SENDER="deleted@example.com"
readonly CLUSTER_SENDER="cluster@example.com"
readonly PG_ADMIN="${E2E_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
CLUSTER_PIDS=()
QUOTA_URLS=""
PG_DB=""
readonly ADMIN_PASSWORD="e2e admin password 1234"
AGENT_PID=""
ADMIN_PORT=""

log() { printf 'e2e delay: %s\n' "$*" >&2; }

die() {
	log "FAIL: $*"
	dump_logs
	for f in "$WORK/agent.log" "$WORK"/quota-*.log "$WORK"/edge-*.log "$WORK/admin.log"; do
		[[ -s "$f" ]] && { log "---- last lines of $f ----"; tail -n 30 "$f" >&2; }
	done
	FAILED=$((FAILED + 1))
	printf 'e2e delay: %d passed, %d failed\n' "$PASSED" "$FAILED"
	exit 1
}

delay_cleanup() {
	stop_pid "$AGENT_PID"
	local pid
	for pid in "${CLUSTER_PIDS[@]}"; do stop_pid "$pid"; done
	cleanup
	if [[ -n "$PG_DB" ]]; then
		psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
	fi
}
trap delay_cleanup EXIT

write_policy() {
	local name sender extra
	: >"$WORK/policy.toml"
	for spec in "room|$ROOM_SENDER|$LIMIT|" "paced|$PACED_SENDER|$LIMIT|release = \"paced\"" "deleted|$DEL_SENDER|1|" "cluster|$CLUSTER_SENDER|$LIMIT|"; do
		IFS='|' read -r name sender limit extra <<<"$spec"
		cat >>"$WORK/policy.toml" <<EOF
[[policy]]
name = "e2e-delay-$name"
priority = 10

[[policy.member]]
source = "$sender"

[[policy.quota]]
name = "$name"
track = "Sender:user@domain"
period = $PERIOD
verdict = "DELAY"
$extra

[[policy.quota.limit]]
type = "MessageCount"
limit = $limit

EOF
	done
}

# import_with_agent DB TAG: the test policies into DB, and an admin account "agent" whose
# API token the release agent reads ($WORK/token); logs in $WORK/*-TAG.log.
import_with_agent() {
	local db="$1" tag="$2"
	timeout 60 "$SLUICE_BIN" policy import "$WORK/policy.toml" --database "$db" >"$WORK/import-$tag.log" 2>&1 ||
		{ cat "$WORK/import-$tag.log" >&2; die "sluice policy import ($tag) failed"; }
	printf '%s\n' "$ADMIN_PASSWORD" | timeout 60 "$SLUICE_BIN" admin user add agent --role admin --database "$db" >/dev/null 2>"$WORK/user-$tag.log" ||
		{ cat "$WORK/user-$tag.log" >&2; die "sluice admin user add ($tag) failed"; }
	timeout 60 "$SLUICE_BIN" admin token add release-agent --user agent --database "$db" >"$WORK/token" 2>"$WORK/token-$tag.log" ||
		{ cat "$WORK/token-$tag.log" >&2; die "sluice admin token add ($tag) failed"; }
}

start_policy_server() {
	ensure_sluice
	local db="sqlite://$WORK/sluice.db"
	write_policy
	timeout 60 "$SLUICE_BIN" policy check "$WORK/policy.toml" >"$WORK/check.log" 2>&1 ||
		{ cat "$WORK/check.log" >&2; die "sluice policy check rejected the test policy"; }
	import_with_agent "$db" sqlite
	free_port POLICY_PORT
	free_port ADMIN_PORT
	run_sluice
}

run_sluice() {
	"$SLUICE_BIN" serve --listen "127.0.0.1:$POLICY_PORT" --metrics-listen off \
		--admin-listen "127.0.0.1:$ADMIN_PORT" --database "sqlite://$WORK/sluice.db" >>"$WORK/policy.log" 2>&1 &
	SLUICE_PID=$!
	wait_for "$WAIT_SECS" "the policy server on 127.0.0.1:$POLICY_PORT" policy_server_up
	wait_for "$WAIT_SECS" "the admin service on 127.0.0.1:$ADMIN_PORT" port_open "$ADMIN_PORT"
}

run_agent() {
	"$SLUICE_BIN" release-agent --admin-url "http://127.0.0.1:$ADMIN_PORT" --token-file "$WORK/token" \
		--postfix-config-dir "$POSTFIX_CONF" --interval-ms 500 >>"$WORK/agent.log" 2>&1 &
	AGENT_PID=$!
}

# The held messages as the admin API lists them: "queue_id state" lines, arrival order.
ledger() {
	python3 - "http://127.0.0.1:$ADMIN_PORT/api/held" "$WORK/token" <<'EOF'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + open(sys.argv[2]).read().strip()})
for m in json.load(urllib.request.urlopen(req, timeout=10)):
    print(m["queue_id"], m["state"])
EOF
}

hold_count() { postqueue -c "$POSTFIX_CONF" -j | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if l.strip() and json.loads(l)["queue_name"] == "hold"))'; }
queue_empty() { [[ -z "$(postqueue -c "$POSTFIX_CONF" -j)" ]]; }
ledger_empty() { [[ -z "$(ledger)" ]]; }

# Sink files newer than marker file $1, as "mtime" lines (fractional seconds), sorted.
deliveries_since() { find "$WORK/sink" -type f -newer "$1" -printf '%T@\n' | sort -n; }
count_since() { deliveries_since "$1" | wc -l; }
count_at_least() { (($(count_since "$1") >= $2)); }

# Fails when some window of PERIOD seconds holds more than LIMIT of the delivery times in $1.
check_windows() {
	python3 - "$1" "$PERIOD" "$2" <<'EOF'
import sys
times = [float(l) for l in open(sys.argv[1]) if l.strip()]
period, limit = float(sys.argv[2]), int(sys.argv[3])
worst = max(sum(1 for u in times if t <= u < t + period) for t in times)
print(f"most deliveries in any {period:g} s window: {worst} (limit {limit}); times: " + " ".join(f"{t - times[0]:.2f}" for t in times))
sys.exit(0 if worst <= limit else 1)
EOF
}

# Queue IDs in the order Postfix released them from hold: postsuper logs each one as it
# releases it, in the order the agent named them. (Not the order of `status=sent`: the
# messages of one release are delivered by parallel smtp processes, which may finish in
# any order.)
released_order() { grep -o '[0-9A-F]\{6,\}: released from hold' "$WORK/maillog" | cut -d: -f1; }
# Queue IDs in the order the maillog shows them delivered.
sent_order() { grep -o '[0-9A-F]\{6,\}: to=<[^>]*>.*status=sent' "$WORK/maillog" | cut -d: -f1; }

# burst SENDER: BURST messages at once (parallel sessions); with a second smtpd listener
# (the cluster test), half through each.
burst() {
	if [[ -z "${SMTP_PORT_B:-}" ]]; then
		timeout "$WAIT_SECS" smtp-source -s "$BURST" -m "$BURST" -M e2e-client.invalid -f "$1" -t "$RCPT" \
			"127.0.0.1:$SMTP_PORT" >"$WORK/source.log" 2>&1 || die "smtp-source failed: $(cat "$WORK/source.log")"
		return
	fi
	local half=$((BURST / 2)) a b
	timeout "$WAIT_SECS" smtp-source -s "$half" -m "$half" -M e2e-client.invalid -f "$1" -t "$RCPT" \
		"127.0.0.1:$SMTP_PORT" >"$WORK/source-a.log" 2>&1 &
	a=$!
	timeout "$WAIT_SECS" smtp-source -s "$half" -m "$half" -M e2e-client.invalid -f "$1" -t "$RCPT" \
		"127.0.0.1:$SMTP_PORT_B" >"$WORK/source-b.log" 2>&1 &
	b=$!
	wait "$a" || die "smtp-source (edge A) failed: $(cat "$WORK/source-a.log")"
	wait "$b" || die "smtp-source (edge B) failed: $(cat "$WORK/source-b.log")"
}

# run_burst NAME SENDER: the common part of the room and paced tests; sets HELD_ORDER.
run_burst() {
	local name="$1" sender="$2" marker="$WORK/start-$1"
	touch "$marker"
	sleep 0.05
	burst "$sender"
	wait_for 15 "$LIMIT deliveries ($name)" count_at_least "$marker" "$LIMIT"
	wait_for 15 "$((BURST - LIMIT)) messages in the hold queue ($name)" eval '(( $(hold_count) == BURST - LIMIT ))'
	HELD_ORDER="$(ledger | cut -d' ' -f1)"
	(($(printf '%s\n' "$HELD_ORDER" | grep -c .) == BURST - LIMIT)) ||
		die "the ledger holds $(printf '%s\n' "$HELD_ORDER" | grep -c .) messages, expected $((BURST - LIMIT)): $(ledger)"
	(($(count_since "$marker") == LIMIT)) || die "$(count_since "$marker") delivered at once, expected $LIMIT ($name)"
	log "$name: $LIMIT delivered at once, $((BURST - LIMIT)) held (postqueue -j and the ledger agree)"
}

# finish_burst NAME: all delivered, windows respected, in order, nothing lost or twice.
finish_burst() {
	local name="$1" marker="$WORK/start-$1"
	wait_for 90 "all $BURST messages delivered ($name)" count_at_least "$marker" "$BURST"
	wait_for 15 "an empty ledger ($name)" ledger_empty
	wait_for 15 "an empty queue ($name)" queue_empty
	sleep 2
	(($(count_since "$marker") == BURST)) || die "$(count_since "$marker") delivered, expected exactly $BURST ($name)"
	deliveries_since "$marker" >"$WORK/times-$name"
	check_windows "$WORK/times-$name" "$LIMIT" >&2 || die "a $PERIOD s window delivered more than $LIMIT ($name)"
	# The held ones were released in the order they were held (and all delivered: above).
	local released held_released
	released="$(released_order)"
	held_released="$(printf '%s\n' "$released" | grep -Fx -f <(printf '%s\n' "$HELD_ORDER") || true)"
	[[ "$held_released" == "$HELD_ORDER" ]] || die "held messages released out of order ($name): held $(echo $HELD_ORDER), released $(echo $held_released)"
}

test_room() {
	log "test room: $BURST messages at once from $ROOM_SENDER, DELAY quota $LIMIT per $PERIOD s"
	run_burst room "$ROOM_SENDER"
	# Restart Sluice and the agent while the messages are held.
	stop_pid "$SLUICE_PID"
	stop_pid "$AGENT_PID"
	run_sluice
	run_agent
	grep -q "Held messages restored" "$WORK/policy.log" || die "the restarted sluice did not restore the held messages"
	log "room: sluice and the agent restarted while $((BURST - LIMIT)) messages were held"
	finish_burst room
	log "ok: room: all $BURST delivered, never more than $LIMIT per $PERIOD s, held ones in order"
	PASSED=$((PASSED + 1))
}

test_paced() {
	log "test paced: $BURST messages at once from $PACED_SENDER, paced release of $LIMIT per $PERIOD s"
	run_burst paced "$PACED_SENDER"
	finish_burst paced
	# Paced: the released ones (the last BURST-LIMIT deliveries) come at least most of a pace apart.
	python3 - "$WORK/times-paced" "$LIMIT" "$(python3 -c "print($PERIOD / $LIMIT * 0.6)")" <<'EOF' >&2 || die "paced releases came too close together"
import sys
times = [float(l) for l in open(sys.argv[1]) if l.strip()]
released = times[int(sys.argv[2]):]
gaps = [b - a for a, b in zip(released, released[1:])]
print("paced gaps between releases: " + " ".join(f"{g:.2f}" for g in gaps))
sys.exit(0 if min(gaps) >= float(sys.argv[3]) else 1)
EOF
	log "ok: paced: one release per pace, all delivered in order"
	PASSED=$((PASSED + 1))
}

test_deleted() {
	log "test deleted: 3 messages from $DEL_SENDER (1 per $PERIOD s); the first held one deleted by hand"
	local marker="$WORK/start-deleted" out i first second
	touch "$marker"
	sleep 0.05
	for i in 1 2 3; do
		out="$(send_one "$DEL_SENDER")"
		[[ -z "$out" ]] || die "message $i was refused: $out"
	done
	wait_for 15 "2 held messages in the ledger" eval '(( $(ledger | grep -c " held$" || true) == 2 ))'
	local rows
	rows="$(ledger)"
	first="$(sed -n 1p <<<"$rows" | cut -d' ' -f1)"
	second="$(sed -n 2p <<<"$rows" | cut -d' ' -f1)"
	wait_for 15 "2 messages in the hold queue" eval '(( $(hold_count) == 2 ))'
	postsuper -c "$POSTFIX_CONF" -d "$first" >/dev/null 2>&1 || die "postsuper -d $first failed"
	wait_for 15 "the ledger to drop $first" eval '! ledger | grep -q "^$first "'
	wait_for 30 "the next held message to be delivered" count_at_least "$marker" 2
	wait_for 15 "an empty ledger" ledger_empty
	sleep 2
	(($(count_since "$marker") == 2)) || die "$(count_since "$marker") delivered, expected 2 (the deleted one must not be)"
	sent_order | grep -qx "$second" || die "the message after the deleted one ($second) was not delivered"
	log "ok: deleted: $first dropped from the ledger, $second released in its turn"
	PASSED=$((PASSED + 1))
}

# A Redis Cluster of 3 primaries and 3 replicas on free loopback ports; sets REDIS_URLS.
start_redis_cluster() {
	local i port bus nodes=() ok
	for i in 0 1 2 3 4 5; do
		free_port port
		free_port bus
		mkdir -p "$WORK/redis-$port"
		redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
			--cluster-port "$bus" --appendonly no --save '' --protected-mode no \
			--logfile redis.log --daemonize no >/dev/null 2>&1 &
		CLUSTER_PIDS+=($!)
		nodes+=("127.0.0.1:$port")
	done
	for i in "${nodes[@]}"; do wait_for "$WAIT_SECS" "redis-server on $i" port_open "${i##*:}"; done
	redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
		{ cat "$WORK/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
	for _ in $(seq 300); do
		ok=0
		for i in "${nodes[@]}"; do
			redis-cli -p "${i##*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && ok=$((ok + 1))
		done
		((ok == 6)) && break
		sleep 0.1
	done
	((ok == 6)) || die "the Redis Cluster did not become healthy"
	REDIS_URLS="$(printf 'redis://%s,' "${nodes[@]}")"
	REDIS_URLS="${REDIS_URLS%,}"
}

# run_quota N PORT: quota service N on PORT; sets QUOTA_PID_N.
run_quota() {
	"$SLUICE_BIN" quota --grpc-listen "127.0.0.1:$2" --metrics-listen off --redis "$REDIS_URLS" \
		>>"$WORK/quota-$1.log" 2>&1 &
	printf -v "QUOTA_PID_$1" '%s' "$!"
	CLUSTER_PIDS+=($!)
	wait_for "$WAIT_SECS" "quota service $1 on 127.0.0.1:$2" port_open "$2"
}

# run_edge NAME PORT: an edge on PORT asking the quota services.
run_edge() {
	"$SLUICE_BIN" edge --listen "127.0.0.1:$2" --metrics-listen off --database "$PG_URL" \
		--quota "$QUOTA_URLS" >>"$WORK/edge-$1.log" 2>&1 &
	CLUSTER_PIDS+=($!)
	wait_for "$WAIT_SECS" "edge $1 on 127.0.0.1:$2" port_open "$2"
}

# The cluster: the same policies in PostgreSQL, Redis Cluster, two quota services, edge A
# on the port Postfix asks (sluice serve stopped), edge B on a second port that a second
# smtpd listener asks, and `sluice admin` on the admin port the agent and ledger() use.
start_cluster() {
	stop_pid "$SLUICE_PID"
	stop_pid "$AGENT_PID"
	PG_DB="sluice_e2e_delay_$$"
	PG_URL="${PG_ADMIN%/*}/$PG_DB"
	psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "cannot create the PostgreSQL database $PG_DB"
	timeout 60 "$SLUICE_BIN" migrate --database "$PG_URL" >"$WORK/migrate.log" 2>&1 ||
		{ cat "$WORK/migrate.log" >&2; die "sluice migrate failed"; }
	import_with_agent "$PG_URL" pg
	start_redis_cluster
	free_port QUOTA_PORT_1
	free_port QUOTA_PORT_2
	QUOTA_URLS="http://127.0.0.1:$QUOTA_PORT_1,http://127.0.0.1:$QUOTA_PORT_2"
	run_quota 1 "$QUOTA_PORT_1"
	run_quota 2 "$QUOTA_PORT_2"
	free_port EDGE_B_PORT
	run_edge A "$POLICY_PORT"
	run_edge B "$EDGE_B_PORT"
	"$SLUICE_BIN" admin --database "$PG_URL" --admin-listen "127.0.0.1:$ADMIN_PORT" --metrics-listen off \
		--quota "$QUOTA_URLS" >>"$WORK/admin.log" 2>&1 &
	CLUSTER_PIDS+=($!)
	wait_for "$WAIT_SECS" "sluice admin on 127.0.0.1:$ADMIN_PORT" port_open "$ADMIN_PORT"
	# A second smtpd listener whose policy service is edge B.
	free_port SMTP_PORT_B
	printf '127.0.0.1:%s inet n - n - - smtpd -o smtpd_recipient_restrictions=check_policy_service,inet:127.0.0.1:%s -o smtpd_end_of_data_restrictions=check_policy_service,inet:127.0.0.1:%s\n' \
		"$SMTP_PORT_B" "$EDGE_B_PORT" "$EDGE_B_PORT" >>"$POSTFIX_CONF/master.cf"
	timeout 60 postfix -c "$POSTFIX_CONF" reload >"$WORK/postfix-reload.log" 2>&1 ||
		{ cat "$WORK/postfix-reload.log" >&2; die "postfix reload failed"; }
	wait_for "$WAIT_SECS" "Postfix smtpd on 127.0.0.1:$SMTP_PORT_B" port_open "$SMTP_PORT_B"
	run_agent
}

test_cluster() {
	log "test cluster: $BURST messages at once from $CLUSTER_SENDER through two edges, DELAY quota $LIMIT per $PERIOD s"
	start_cluster
	run_burst cluster "$CLUSTER_SENDER"
	# A quota service and the agent restart while the messages are held: the ledger is in Redis.
	stop_pid "$QUOTA_PID_1"
	stop_pid "$AGENT_PID"
	run_quota 1 "$QUOTA_PORT_1"
	run_agent
	log "cluster: a quota service and the agent restarted while $((BURST - LIMIT)) messages were held"
	finish_burst cluster
	log "ok: cluster: all $BURST delivered through two edges, never more than $LIMIT per $PERIOD s, held ones in order"
	PASSED=$((PASSED + 1))
}

delay_main() {
	[[ $EUID -eq 0 ]] || die "must run as root (Postfix's master runs as root)"
	ensure_postfix
	log "Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
	WORK="$(mktemp -d /tmp/sluice-e2e-delay.XXXXXX)"
	chmod 755 "$WORK"
	start_policy_server
	start_sink
	start_postfix
	run_agent
	test_room
	test_paced
	test_deleted
	test_cluster
	printf 'e2e delay: %d passed, %d failed\n' "$PASSED" "$FAILED"
}

delay_main "$@"
