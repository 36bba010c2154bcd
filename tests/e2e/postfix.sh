#!/usr/bin/env bash
# End-to-end test: a real Postfix asks a real `sluice serve` through check_policy_service.
#
# Runs as root on Debian (what CI does): installs the `postfix` package if missing, starts a
# private Postfix instance (own config and queue directories under a temp dir, loopback
# only, logging to a file), an smtp-sink as its relay, and `sluice serve` with a temp SQLite
# database holding one quota: at most $LIMIT messages per hour from $SENDER, REJECT with
# $QUOTA_TEXT. Then:
#   1. quota: $LIMIT+1 messages from $SENDER; exactly the last is refused at RCPT with the
#      quota's text, and the first $LIMIT are relayed to smtp-sink.
#   2. recipients: a MessageCount limit of $MULTI_LIMIT counts a message to 3 recipients once
#      (Postfix's `instance` correlates the RCPTs), so message $MULTI_LIMIT+1 is refused.
#   3. size: a MessageCumulativeSize limit is charged at END-OF-MESSAGE with the real size;
#      the message that would exceed it is refused at end of data.
#   4. greylisting: a policy greylists $GREY_SENDER with a $GREY_PERIOD s period; the first
#      attempt gets "451 4.7.1 Greylisting in effect, please come back later" (in the
#      maillog), and the same triplet after the period is relayed to smtp-sink.
#   5. fallback: sluice is stopped; a message still goes through because the policy service
#      is declared with `default_action=DUNNO` (Postfix >= 3.0 per-service settings).
#
# Environment:
#   SLUICE_BIN          the binary (default: target/debug/sluice; built with cargo if missing)
#   E2E_KEEP=1          keep the temp dir (logs, maillog, configs) after the run
#
# Prints "e2e postfix: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

readonly LIMIT=5
readonly SENDER="sender@example.com"
readonly OTHER_SENDER="other@example.com"
readonly RCPT="rcpt@example.net"
readonly QUOTA_TEXT="sluice-e2e: sender over its hourly message quota"
readonly MULTI_SENDER="multi@example.com"
readonly MULTI_LIMIT=2
readonly MULTI_TEXT="sluice-e2e: multi-recipient sender over its message quota"
readonly SIZE_SENDER="big@example.com"
readonly SIZE_LIMIT=2500
readonly SIZE_TEXT="sluice-e2e: sender over its size quota"
readonly GREY_SENDER="grey@example.com"
readonly GREY_PERIOD=4
readonly GREY_TEXT="451 4.7.1 Greylisting in effect, please come back later"
readonly WAIT_SECS=30

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=""
POSTFIX_CONF=""
SLUICE_PID=""
SINK_PID=""
PASSED=0
FAILED=0

log() { printf 'e2e postfix: %s\n' "$*" >&2; }

die() {
	log "FAIL: $*"
	dump_logs
	FAILED=$((FAILED + 1))
	printf 'e2e postfix: %d passed, %d failed\n' "$PASSED" "$FAILED"
	exit 1
}

dump_logs() {
	[[ -n "$WORK" && -d "$WORK" ]] || return 0
	for f in "$WORK/maillog" "$WORK/policy.log" "$WORK/sink.log"; do
		if [[ -s "$f" ]]; then
			log "---- last lines of $f ----"
			tail -n 40 "$f" >&2 || true
		fi
	done
}

cleanup() {
	set +e
	if [[ -n "$POSTFIX_CONF" && -f "$POSTFIX_CONF/main.cf" ]]; then
		timeout 30 postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 ||
			timeout 10 postfix -c "$POSTFIX_CONF" abort >/dev/null 2>&1
		# Make sure no process of this instance survives (master's pid file).
		if [[ -s "$WORK/queue/pid/master.pid" ]]; then
			kill "$(tr -d ' ' <"$WORK/queue/pid/master.pid")" 2>/dev/null
		fi
	fi
	stop_pid "$SLUICE_PID"
	stop_pid "$SINK_PID"
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if [[ "${E2E_KEEP:-0}" == 1 ]]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
	local pid="$1"
	[[ -n "$pid" ]] || return 0
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# free_port VAR: sets VAR to a loopback port nobody uses (and not handed out before in this
# run). Ports are taken below Linux's ephemeral range (32768-60999), so an outgoing
# connection's local port cannot grab one between our check and the server's bind.
USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		[[ "$USED_PORTS" == *" $p "* ]] && continue
		if ! port_open "$p" && ! { command -v ss >/dev/null && [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; }; then
			USED_PORTS+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free loopback port found"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
	local secs="$1" what="$2"
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
		sleep 0.2
	done
}

ensure_postfix() {
	if [[ -x /usr/sbin/postfix && -x /usr/sbin/smtp-source && -x /usr/sbin/smtp-sink ]]; then
		return 0
	fi
	[[ $EUID -eq 0 ]] || die "postfix is not installed and we are not root to install it"
	log "installing Debian's postfix package"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	timeout 600 apt-get update -q >/dev/null || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends postfix >/dev/null ||
		die "apt-get install postfix failed"
	[[ -x /usr/sbin/smtp-source && -x /usr/sbin/smtp-sink ]] || die "smtp-source/smtp-sink not found after installing postfix"
}

ensure_sluice() {
	local default_bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sluice"
	SLUICE_BIN="${SLUICE_BIN:-$default_bin}"
	# Not passed on: sluice refuses SLUICE_* variables that are none of its settings.
	export -n SLUICE_BIN
	[[ "$SLUICE_BIN" == /* ]] || SLUICE_BIN="$ROOT/$SLUICE_BIN"
	if [[ ! -x "$SLUICE_BIN" && "$SLUICE_BIN" == "$default_bin" ]]; then
		log "building sluice (cargo build -p sluice)"
		(cd "$ROOT" && timeout 1800 cargo build -q -p sluice) || die "cargo build -p sluice failed"
	fi
	[[ -x "$SLUICE_BIN" ]] || die "sluice binary not found at $SLUICE_BIN"
}

write_policy() {
	cat >"$WORK/policy.toml" <<EOF
# e2e: at most $LIMIT messages per hour from $SENDER.
[[policy]]
name = "e2e-sender-limit"
priority = 10
description = "end-to-end test policy"

[[policy.member]]
source = "$SENDER"

[[policy.quota]]
name = "per-sender-hourly"
track = "Sender:user@domain"
period = 3600
verdict = "REJECT"
data = "$QUOTA_TEXT"

[[policy.quota.limit]]
type = "MessageCount"
limit = $LIMIT

# e2e: messages (not recipients) are counted.
[[policy]]
name = "e2e-multi-recipient"
priority = 20

[[policy.member]]
source = "$MULTI_SENDER"

[[policy.quota]]
name = "messages"
track = "Sender:user@domain"
period = "1h"
verdict = "REJECT"
data = "$MULTI_TEXT"

[[policy.quota.limit]]
type = "MessageCount"
limit = $MULTI_LIMIT

# e2e: sizes are charged at END-OF-MESSAGE.
[[policy]]
name = "e2e-size"
priority = 30

[[policy.member]]
source = "$SIZE_SENDER"

[[policy.quota]]
name = "bytes"
track = "Sender:user@domain"
period = "1h"
verdict = "REJECT"
data = "$SIZE_TEXT"

[[policy.quota.limit]]
type = "MessageCumulativeSize"
limit = $SIZE_LIMIT

# e2e: greylisting with a short period.
[[policy]]
name = "e2e-greylisting"
priority = 40

[[policy.member]]
source = "$GREY_SENDER"

[policy.greylisting]
period = $GREY_PERIOD
EOF
}

start_policy_server() {
	free_port POLICY_PORT
	ensure_sluice
	local db="sqlite://$WORK/sluice.db"
	write_policy
	timeout 60 "$SLUICE_BIN" policy check "$WORK/policy.toml" >"$WORK/check.log" 2>&1 ||
		{ cat "$WORK/check.log" >&2; die "sluice policy check rejected the test policy"; }
	timeout 60 "$SLUICE_BIN" migrate --database "$db" >"$WORK/migrate.log" 2>&1 ||
		{ cat "$WORK/migrate.log" >&2; die "sluice migrate failed"; }
	timeout 60 "$SLUICE_BIN" policy import "$WORK/policy.toml" --database "$db" >"$WORK/import.log" 2>&1 ||
		{ cat "$WORK/import.log" >&2; die "sluice policy import failed"; }
	free_port ADMIN_PORT
	"$SLUICE_BIN" serve --listen "127.0.0.1:$POLICY_PORT" --metrics-listen "127.0.0.1:$ADMIN_PORT" \
		--database "$db" >"$WORK/policy.log" 2>&1 &
	SLUICE_PID=$!
	wait_for "$WAIT_SECS" "the policy server on 127.0.0.1:$POLICY_PORT" policy_server_up
}

policy_server_up() {
	kill -0 "$SLUICE_PID" 2>/dev/null || die "the policy server exited (see $WORK/policy.log)"
	port_open "$POLICY_PORT"
}

start_sink() {
	free_port SINK_PORT
	mkdir -p "$WORK/sink"
	chown postfix "$WORK/sink"
	# -d: one file per received message; -u: drop root privileges.
	smtp-sink -u postfix -d "$WORK/sink/%Y%m%d%H%M%S." "127.0.0.1:$SINK_PORT" 64 >"$WORK/sink.log" 2>&1 &
	SINK_PID=$!
	wait_for "$WAIT_SECS" "smtp-sink on 127.0.0.1:$SINK_PORT" port_open "$SINK_PORT"
}

write_postfix_config() {
	POSTFIX_CONF="$WORK/etc"
	mkdir -p "$POSTFIX_CONF" "$WORK/queue" "$WORK/data"
	chown postfix "$WORK/data"
	local policy="{ inet:127.0.0.1:$POLICY_PORT, timeout=10s, default_action=DUNNO }"
	cat >"$POSTFIX_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/queue
data_directory = $WORK/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $WORK/maillog
maillog_file_prefixes = $WORK
myhostname = e2e.sluice.invalid
mydomain = sluice.invalid
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
smtp_host_lookup = native
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_policy_service $policy
smtpd_end_of_data_restrictions = check_policy_service $policy
smtpd_policy_service_retry_delay = 1s
alias_maps =
alias_database =
local_recipient_maps =
biff = no
EOF
	cat >"$POSTFIX_CONF/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
}

start_postfix() {
	free_port SMTP_PORT
	write_postfix_config
	timeout 60 postfix -c "$POSTFIX_CONF" check >"$WORK/postfix-check.log" 2>&1 ||
		{ cat "$WORK/postfix-check.log" >&2; die "postfix check failed"; }
	timeout 60 postfix -c "$POSTFIX_CONF" start >"$WORK/postfix-start.log" 2>&1 ||
		{ cat "$WORK/postfix-start.log" >&2; die "postfix start failed"; }
	wait_for "$WAIT_SECS" "Postfix smtpd on 127.0.0.1:$SMTP_PORT" port_open "$SMTP_PORT"
}

# send_one SENDER [SMTP-SOURCE OPTIONS...]: one message in one SMTP session; smtp-source's
# output (empty when the message was accepted) goes to stdout.
send_one() {
	local from="$1"
	shift
	timeout "$WAIT_SECS" smtp-source -s 1 -m 1 -M e2e-client.invalid -f "$from" -t "$RCPT" "$@" \
		"127.0.0.1:$SMTP_PORT" 2>&1 || true
}

sink_count() { find "$WORK/sink" -type f | wc -l; }
sent_count() { grep -c 'status=sent' "$WORK/maillog" 2>/dev/null || true; }
at_least() { (($("$1") >= $2)); }

test_quota() {
	log "test quota: $((LIMIT + 1)) messages from $SENDER, limit $LIMIT per hour"
	local i out
	for i in $(seq "$LIMIT"); do
		out="$(send_one "$SENDER")"
		if [[ -n "$out" ]]; then
			printf '%s\n' "$out" >&2
			die "message $i of $LIMIT was refused; it should have been accepted"
		fi
	done
	out="$(send_one "$SENDER")"
	[[ "$out" == *"$QUOTA_TEXT"* ]] ||
		die "message $((LIMIT + 1)) was not refused with the quota text (smtp-source said: ${out:-nothing})"
	[[ "$out" == *" 5"[0-9][0-9]" "* || "$out" == *"5"[0-9][0-9]" 5."* ]] ||
		die "message $((LIMIT + 1)) was refused, but not with a 5xx code: $out"

	wait_for "$WAIT_SECS" "$LIMIT messages to reach smtp-sink" at_least sink_count "$LIMIT"
	wait_for "$WAIT_SECS" "$LIMIT status=sent lines in the maillog" at_least sent_count "$LIMIT"
	local rejects
	rejects="$(grep -c "NOQUEUE: reject: RCPT from .*$QUOTA_TEXT" "$WORK/maillog" || true)"
	((rejects == 1)) || die "expected exactly 1 quota reject in the maillog, found $rejects"
	# Nothing more arrives afterwards (the refused one never was queued).
	(($(sink_count) == LIMIT)) || die "smtp-sink received $(sink_count) messages, expected $LIMIT"
	log "ok: first $LIMIT relayed, message $((LIMIT + 1)) refused: $out"
	PASSED=$((PASSED + 1))
}

test_recipients() {
	log "test recipients: messages to 3 recipients from $MULTI_SENDER, MessageCount limit $MULTI_LIMIT"
	local before i out
	before=$(sink_count)
	for i in $(seq "$MULTI_LIMIT"); do
		out="$(send_one "$MULTI_SENDER" -r 3)"
		[[ -z "$out" ]] || die "message $i (3 recipients) was refused; a message counts once: $out"
	done
	out="$(send_one "$MULTI_SENDER" -r 3)"
	[[ "$out" == *"$MULTI_TEXT"* ]] ||
		die "message $((MULTI_LIMIT + 1)) was not refused with the quota text (smtp-source said: ${out:-nothing})"
	wait_for "$WAIT_SECS" "$MULTI_LIMIT more messages at smtp-sink" at_least sink_count $((before + MULTI_LIMIT))
	log "ok: $MULTI_LIMIT messages with 3 recipients each accepted, the next refused"
	PASSED=$((PASSED + 1))
}

test_size() {
	log "test size: ~1.5 kB messages from $SIZE_SENDER, MessageCumulativeSize limit $SIZE_LIMIT bytes"
	local before out
	before=$(sink_count)
	out="$(send_one "$SIZE_SENDER" -l 1200)"
	[[ -z "$out" ]] || die "the first message was refused; it fits the size limit: $out"
	out="$(send_one "$SIZE_SENDER" -l 1200)"
	[[ "$out" == *"$SIZE_TEXT"* ]] ||
		die "the second message was not refused with the size quota text (smtp-source said: ${out:-nothing})"
	grep -q "reject: END-OF-MESSAGE from .*$SIZE_TEXT" "$WORK/maillog" ||
		die "the maillog does not show the size refusal at END-OF-MESSAGE"
	wait_for "$WAIT_SECS" "the first message at smtp-sink" at_least sink_count $((before + 1))
	(($(sink_count) == before + 1)) || die "the refused message reached smtp-sink"
	log "ok: the message that would exceed the size limit was refused at end of data: $out"
	PASSED=$((PASSED + 1))
}

test_greylisting() {
	log "test greylisting: $GREY_SENDER greylisted for $GREY_PERIOD s"
	local before out
	before=$(sink_count)
	out="$(send_one "$GREY_SENDER")"
	[[ "$out" == *"Greylisting in effect, please come back later"* ]] ||
		die "the first attempt was not greylisted (smtp-source said: ${out:-nothing})"
	# Postfix writes the policy's "451 4.7.1 text" as "451 4.7.1 <rcpt>: Recipient address
	# rejected: text".
	grep -q "NOQUEUE: reject: RCPT from .*: 451 4.7.1 .*Greylisting in effect, please come back later" "$WORK/maillog" ||
		die "the maillog does not show '$GREY_TEXT' for the first attempt"
	out="$(send_one "$GREY_SENDER")"
	[[ "$out" == *"Greylisting in effect"* ]] ||
		die "a retry within the period was not greylisted (smtp-source said: ${out:-nothing})"
	sleep $((GREY_PERIOD + 1))
	out="$(send_one "$GREY_SENDER")"
	[[ -z "$out" ]] || die "the retry after the period was refused: $out"
	wait_for "$WAIT_SECS" "the greylisted message to reach smtp-sink" at_least sink_count $((before + 1))
	log "ok: first attempt deferred with '$GREY_TEXT', the same triplet relayed after $GREY_PERIOD s"
	PASSED=$((PASSED + 1))
}

test_fallback() {
	log "test fallback: policy server stopped, default_action=DUNNO lets mail through"
	stop_pid "$SLUICE_PID"
	SLUICE_PID=""
	local out before
	before=$(sink_count)
	out="$(send_one "$OTHER_SENDER")"
	[[ -z "$out" ]] || die "with the policy server down the message was refused: $out"
	wait_for "$WAIT_SECS" "the message to reach smtp-sink" at_least sink_count $((before + 1))
	grep -q "problem talking to server 127.0.0.1:$POLICY_PORT" "$WORK/maillog" ||
		die "the maillog does not show Postfix failing to reach the policy server"
	grep -q "policy_default_action\|default_action\|127.0.0.1:$POLICY_PORT.*Connection refused" "$WORK/maillog" ||
		log "note: no connection-refused line in the maillog"
	log "ok: message accepted while the policy service was down"
	PASSED=$((PASSED + 1))
}

main() {
	[[ $EUID -eq 0 ]] || die "must run as root (Postfix's master runs as root)"
	ensure_postfix
	log "Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
	WORK="$(mktemp -d /tmp/sluice-e2e.XXXXXX)"
	chmod 755 "$WORK" # Postfix daemons (user postfix) must reach the queue directory.
	start_policy_server
	start_sink
	start_postfix
	test_quota
	test_recipients
	test_size
	test_greylisting
	test_fallback
	printf 'e2e postfix: %d passed, %d failed\n' "$PASSED" "$FAILED"
}

# Run when executed; tests/e2e/delay.sh sources this file for its helpers.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	main "$@"
fi
