#!/usr/bin/env bash
# Compares two `sluice` binaries (A, the baseline, and B) against the always-DUNNO ceiling,
# round after round in the same run, so that whatever else the machine does weighs on all
# three alike. Each round loads the ceiling, then A, then B (the order rotates from round to
# round), DURATION seconds each; the report gives every round's ratios to that round's
# ceiling and the medians.
#
# Usage: loadtest/ab.sh SLUICE_A SLUICE_B
# Knobs (environment): ROUNDS (5), CONNECTIONS (32), DURATION (6 s), WARMUP (1 s),
# POLICIES (scenarios/embedded-10-policies.toml), PORT_BASE (10940; three ports from it),
# A_ARGS and B_ARGS (extra `serve` arguments for each, e.g. to compare settings of one
# binary: `B_ARGS="--worker-threads 1" loadtest/ab.sh target/release/sluice target/release/sluice`).
# The ceiling and loadgen are the release builds of this tree (build them first:
# `cargo build --release -p sluice-loadtest`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
[[ $# -eq 2 ]] || { echo "usage: $0 SLUICE_A SLUICE_B" >&2; exit 2; }
sluice_a="$(realpath "$1")"
sluice_b="$(realpath "$2")"
ROUNDS="${ROUNDS:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-6}"
WARMUP="${WARMUP:-1}"
POLICIES="${POLICIES:-$here/scenarios/embedded-10-policies.toml}"
PORT_BASE="${PORT_BASE:-10940}"
bin="$root/target/release"
results="$here/results"
stamp="$(date -u +%Y%m%dT%H%M%SZ)-ab"
tmp="$(mktemp -d)"
. "$here/lib.sh"
mkdir -p "$results"

ports=(["0"]=$PORT_BASE ["1"]=$((PORT_BASE + 1)) ["2"]=$((PORT_BASE + 2)))
labels=(ceiling a b)

"$bin/dunno-server" --listen "127.0.0.1:${ports[0]}" 2>"$tmp/dunno.log" &
pids+=($!)
for i in 1 2; do
    binary="$sluice_a"
    extra="${A_ARGS:-}"
    if [[ $i -eq 2 ]]; then
        binary="$sluice_b"
        extra="${B_ARGS:-}"
    fi
    db="sqlite://$tmp/sluice-$i.db"
    "$binary" policy import "$POLICIES" --database "$db" >/dev/null
    # shellcheck disable=SC2086 # extra arguments are split on purpose
    "$binary" serve --listen "127.0.0.1:${ports[$i]}" --database "$db" --metrics-listen off \
        $extra 2>"$tmp/sluice-$i.log" &
    pids+=($!)
done
for i in 0 1 2; do wait_port "${ports[$i]}"; done

# The throughput and p99 (µs) of one load on port $2, labelled $1.
measure() {
    load "$1" "$2" >"$tmp/$1.txt"
    awk '/throughput/ { for (i = 1; i < NF; i++) if ($i == "throughput") r = $(i + 1) }
         /p99/ { for (i = 1; i < NF; i++) if ($i == "p99") p = $(i + 1) }
         END { print r, p }' "$tmp/$1.txt"
}

declare -a ratio_a ratio_b p99_c p99_a p99_b
echo "round  ceiling req/s (p99 us)  A req/s (p99 us) = ratio  B req/s (p99 us) = ratio"
for round in $(seq "$ROUNDS"); do
    declare -A rate=() p99=()
    # Rotate the order so no binary always follows the same one.
    for k in 0 1 2; do
        i=$(((k + round) % 3))
        read -r r p < <(measure "r$round-${labels[$i]}" "${ports[$i]}")
        rate[$i]="$r"
        p99[$i]="$p"
    done
    ra="$(awk -v a="${rate[1]}" -v c="${rate[0]}" 'BEGIN { printf "%.1f", 100 * a / c }')"
    rb="$(awk -v b="${rate[2]}" -v c="${rate[0]}" 'BEGIN { printf "%.1f", 100 * b / c }')"
    ratio_a+=("$ra")
    ratio_b+=("$rb")
    p99_c+=("${p99[0]}")
    p99_a+=("${p99[1]}")
    p99_b+=("${p99[2]}")
    printf '%5d  %7s (%5s)  %7s (%5s) = %5s %%  %7s (%5s) = %5s %%\n' "$round" \
        "${rate[0]}" "${p99[0]}" "${rate[1]}" "${p99[1]}" "$ra" "${rate[2]}" "${p99[2]}" "$rb"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary="$results/$stamp-summary.txt"
{
    echo "A=$sluice_a ${A_ARGS:-}"
    echo "B=$sluice_b ${B_ARGS:-}"
    echo "connections=$CONNECTIONS duration=${DURATION}s rounds=$ROUNDS policies=$(basename "$POLICIES")"
    echo "median ratio to the ceiling: A $(median "${ratio_a[@]}") %, B $(median "${ratio_b[@]}") %"
    echo "median p99 (us): ceiling $(median "${p99_c[@]}"), A $(median "${p99_a[@]}"), B $(median "${p99_b[@]}")"
    echo "B better than A in $(paste <(printf '%s\n' "${ratio_a[@]}") <(printf '%s\n' "${ratio_b[@]}") | awk '$2 > $1' | wc -l) of $ROUNDS rounds"
} | tee "$summary"
