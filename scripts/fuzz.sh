#!/usr/bin/env bash
# Fuzzes the policy-protocol codec (services/protocol/fuzz, target `decode`: arbitrary bytes
# in arbitrary chunks through the request decoder and request typing) with cargo-fuzz and
# libFuzzer on the nightly toolchain. Not part of CI (it runs for minutes); results are
# recorded in docs/fuzzing.md.
#
#   scripts/fuzz.sh                 # 10 minutes
#   FUZZ_SECONDS=3600 scripts/fuzz.sh
#
# Installs what is missing: the nightly toolchain (rustup) and cargo-fuzz (crates.io). The
# corpus starts from the requests Postfix 3.7.11 sent in ../shared/data/postfix (if present)
# and a few hand-made edge cases, and grows in target/fuzz-corpus/decode (kept between runs).
# A crash leaves its input in services/protocol/fuzz/artifacts/decode/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECONDS_TO_RUN="${FUZZ_SECONDS:-600}"
JOBS="${FUZZ_JOBS:-1}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

CORPUS="$ROOT/target/fuzz-corpus/decode"
mkdir -p "$CORPUS"
captured="$ROOT/../shared/data/postfix/captured-requests-3.7.11.txt"
if [ -f "$captured" ]; then
    # One seed per captured request: the lines after each `--- request` header up to the next.
    awk -v dir="$CORPUS" '
        /^--- request/ { n++; file = sprintf("%s/captured-%03d", dir, n); next }
        /^#/ { next }
        n { print > file }
    ' "$captured"
fi
printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.org\nrecipient=b@example.net\nsize=12345\n\n' >"$CORPUS/seed-rcpt"
printf '\n\n\nrequest=smtpd_access_policy\n=novalue\nname=\nclient_address=[::1]\n\n' >"$CORPUS/seed-odd"
printf 'request=smtpd_access_policy\r\nsize=18446744073709551616\n\n' >"$CORPUS/seed-overflow"

cd services/protocol
echo "== fuzzing target decode for ${SECONDS_TO_RUN} s (corpus $CORPUS)"
log="$ROOT/target/fuzz-decode.log"
set +e
parallel=()
# With more than one job libFuzzer runs workers that log to fuzz-N.log instead.
[ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
cargo +nightly fuzz run decode "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 "${parallel[@]}" \
    -print_final_stats=1 2>&1 | tee "$log" | grep -E '^#[0-9]+ +(pulse|DONE|NEW)' | tail -n 5
status=${PIPESTATUS[0]}
set -e
grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|cov:|==.*ERROR)' "$log" | tail -n 8 || true
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
echo "last status line: $last"
echo "corpus: $(find "$CORPUS" -type f | wc -l) inputs"
if [ "$status" -ne 0 ]; then
    echo "FUZZING FOUND A FAILURE (exit $status): see $log and services/protocol/fuzz/artifacts/decode/" >&2
    exit "$status"
fi
echo "fuzz: no crash in ${SECONDS_TO_RUN} s"
