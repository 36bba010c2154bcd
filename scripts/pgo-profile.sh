#!/usr/bin/env bash
# Regenerates pgo/sluice.profdata.gz: the profile that scripts/build-release.sh optimises the
# shipped `sluice` binary with (profile-guided optimisation, rustc's `-Cprofile-use`;
# docs/benchmarks.md, "Profile-guided optimisation"). Run it after changes to the request
# path, and commit the new file. A profile older than the code is still safe: functions
# whose code changed since are compiled as without a profile (LLVM checks each function's
# control-flow hash), so only their gain is lost.
#
# How: an instrumented release build (`-Cprofile-generate`, the same target and flags as
# build-release.sh) serves the load tests' traffic, each role with its own work:
#   - `sluice serve` with the 10 load-test policies, and with CheckHelo and CheckSPF on
#     every request (dnsmasq on 127.0.0.1 answers the DNS, as in loadtest/helo-spf.sh);
#   - cluster mode, `sluice edge` -> `sluice quota` -> a 3-node Redis Cluster (PostgreSQL on
#     127.0.0.1:5432), with loadgen's small key space and with its long tail of keys
#     (loadtest/run-cluster.sh, which also runs `sluice serve` on the long tail).
# Each process writes its counts when it exits; llvm-profdata (rustup's llvm-tools
# component, added here if missing) merges them.
#
# Needs what those scripts need: dnsmasq (Debian's dnsmasq-base), redis-server and
# redis-cli, psql and a PostgreSQL server. Takes one instrumented release build of `sluice`
# (and the load tools' release build, when not built yet) and about two minutes of load.
# INSTRUMENTED=BINARY PROFRAW_DIR=DIR skips the instrumented build: BINARY was built with
# `-Cprofile-generate=DIR` as above.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
TARGET=x86_64-unknown-linux-gnu
out="$root/pgo/sluice.profdata.gz"

sysroot="$(rustc --print sysroot)"
profdata="$sysroot/lib/rustlib/$TARGET/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
    rustup component add llvm-tools
fi

bins="$(mktemp -d)"
if [[ -n "${INSTRUMENTED:-}" ]]; then
    # An instrumented binary built before, writing its counts into PROFRAW_DIR (which must
    # hold no older counts).
    data="${PROFRAW_DIR:?INSTRUMENTED needs PROFRAW_DIR, the directory it was built to write to}"
    trap 'rm -rf "$bins"' EXIT
    cp "$INSTRUMENTED" "$bins/sluice"
else
    data="$(mktemp -d)"
    trap 'rm -rf "$data" "$bins"' EXIT
    echo "== instrumented release build (target/pgo-generate)"
    # The same target and flags as build-release.sh, so that the profile matches its build.
    RUSTFLAGS="-C target-feature=+crt-static -Cprofile-generate=$data" \
        CARGO_TARGET_DIR="$root/target/pgo-generate" \
        cargo build --release --locked -p sluice --target "$TARGET"
    cp "$root/target/pgo-generate/$TARGET/release/sluice" "$bins/sluice"
fi
echo "== load tools (not instrumented)"
cargo build --release --locked -p sluice-loadtest
ln -s "$root/target/release/loadgen" "$bins/loadgen"
ln -s "$root/target/release/dunno-server" "$bins/dunno-server"

echo "== training: embedded, 10 policies"
ROUNDS=1 DURATION=4 PORT_BASE=13940 loadtest/ab.sh "$bins/sluice" "$bins/sluice"
echo "== training: embedded, 10 policies with CheckHelo and CheckSPF"
ROUNDS=1 DURATION=4 PORT_BASE=13940 DNS_PORT=13953 loadtest/helo-spf.sh "$bins/sluice"
for keys in small long-tail; do
    echo "== training: cluster mode and embedded mode, $keys keys"
    KEYS="$keys" SKIP_BUILD=1 BIN_DIR="$bins" DURATION=6 WARMUP=1 SERVE_PORT=13941 \
        EDGE_PORT=13942 QUOTA_PORT=13943 REDIS_PORT=18101 loadtest/run-cluster.sh
done

ls "$data"/*.profraw >/dev/null
mkdir -p "$(dirname "$out")"
# Sparse: functions the training never ran are left out of the profile, so they are
# compiled as without one (not as cold code); gzip: a sixth of the size in git.
"$profdata" merge --sparse -o "$data/merged.profdata" "$data"/*.profraw
gzip -9 -n -c "$data/merged.profdata" >"$out"
# The compiler it matches: build-release.sh says when another one builds with it.
rustc -V >"$(dirname "$out")/rustc-version.txt"
echo "wrote $out ($(du -h "$out" | cut -f1))"
