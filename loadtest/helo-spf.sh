#!/usr/bin/env bash
# Issue 18's benchmark: embedded mode with CheckHelo and CheckSPF on every request, against
# the always-DUNNO ceiling (`loadtest/ab.sh`, both sides the same binary and settings), the
# DNS answers from dnsmasq on 127.0.0.1 (Debian's dnsmasq-base; started here, stopped on
# exit) with long TTLs so that Sluice serves them from its cache.
#
# Usage: loadtest/helo-spf.sh SLUICE [SLUICE_B]   (knobs of ab.sh apply: ROUNDS, DURATION,
# ...; DNS_PORT, 10953 by default). With SLUICE_B, SLUICE is the baseline (A) and SLUICE_B is
# compared with it in the same run; without it, both sides are SLUICE. The replies of every
# load are listed by action at the end: a DEFER there is a lookup that failed (a DNS
# timeout), not the modules' verdict on these requests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[[ $# -eq 1 || $# -eq 2 ]] || { echo "usage: $0 SLUICE [SLUICE_B]" >&2; exit 2; }
command -v dnsmasq >/dev/null || { echo "needs dnsmasq (apt-get install dnsmasq-base)" >&2; exit 2; }
DNS_PORT="${DNS_PORT:-10953}"
records=(--host-record=mail.client.example,192.0.2.10)
for n in $(seq 0 39); do
    records+=("--txt-record=domain$n.example,v=spf1 ip4:10.0.0.0/14 -all")
done
# Authoritative for example. (no upstream), as a domain's own servers are: every answer,
# NXDOMAIN and NODATA too (mail.client.example has no AAAA and no MX), carries a TTL of an
# hour (negative ones through the zone's SOA, RFC 2308). Without the SOA (dnsmasq's
# `--local`, as this script had until 2026-12-06) no resolver caches the NODATA answers, and
# every request asked dnsmasq for the AAAA and the MX again.
dnsmasq --keep-in-foreground --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces --port="$DNS_PORT" \
    --auth-zone=example --auth-server=ns.example,127.0.0.1 --auth-ttl=3600 \
    --auth-soa=1,hostmaster.example,1200,120,604800 --local-ttl=3600 --neg-ttl=3600 \
    "${records[@]}" --pid-file= --user=root &
dns=$!
trap 'kill "$dns" 2>/dev/null || true' EXIT
sleep 0.5
args="--dns-servers 127.0.0.1:$DNS_PORT"
marker="$(mktemp)"
trap 'kill "$dns" 2>/dev/null || true; rm -f "$marker"' EXIT
POLICIES="$here/scenarios/embedded-10-policies-helo-spf.toml" A_ARGS="$args" B_ARGS="$args" \
    "$here/ab.sh" "$1" "${2:-$1}"
echo "replies by action (each load of this run):"
for f in $(find "$here/results" -name '*-ab-r*.json' -newer "$marker" | sort); do
    printf '  %s: %s\n' "$(basename "$f" .json)" "$(tr -d ' \n' <"$f" | grep -o '"actions":{[^}]*}' || echo '?')"
done
