#!/usr/bin/env bash
# Issue 18's benchmark: embedded mode with CheckHelo and CheckSPF on every request, against
# the always-DUNNO ceiling (`loadtest/ab.sh`, both sides the same binary and settings), the
# DNS answers from dnsmasq on 127.0.0.1 (Debian's dnsmasq-base; started here, stopped on
# exit) with long TTLs so that Sluice serves them from its cache.
#
# Usage: loadtest/helo-spf.sh SLUICE [SLUICE_B]   (knobs of ab.sh apply: ROUNDS, DURATION,
# PORT_BASE, ...; A_ARGS and B_ARGS come after the DNS server's flag; DNS_PORT, 10953 by
# default). With SLUICE_B, SLUICE is the baseline (A) and SLUICE_B is
# compared with it in the same run; without it, both sides are SLUICE. The replies of every
# load are listed by action at the end: a DEFER there is a lookup that failed (a DNS
# timeout), not the modules' verdict on these requests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[[ $# -eq 1 || $# -eq 2 ]] || { echo "usage: $0 SLUICE [SLUICE_B]" >&2; exit 2; }
DNS_PORT="${DNS_PORT:-10953}"
tmp="$(mktemp -d)"
. "$here/lib.sh" # pids, cleanup (stops them, removes $tmp) on exit, start_spf_zone
start_spf_zone "$DNS_PORT"
sleep 0.5
args="--dns-servers 127.0.0.1:$DNS_PORT"
marker="$tmp/marker"
touch "$marker"
POLICIES="$here/scenarios/embedded-10-policies-helo-spf.toml" A_ARGS="$args ${A_ARGS:-}" B_ARGS="$args ${B_ARGS:-}" \
    "$here/ab.sh" "$1" "${2:-$1}"
echo "replies by action (each load of this run):"
for f in $(find "$here/results" -name '*-ab-r*.json' -newer "$marker" | sort); do
    printf '  %s: %s\n' "$(basename "$f" .json)" "$(tr -d ' \n' <"$f" | grep -o '"actions":{[^}]*}' || echo '?')"
done
