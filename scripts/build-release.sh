#!/usr/bin/env bash
# Builds the release `sluice` binary that the image and the packages ship: statically linked
# (glibc's static libc, `+crt-static`), so it runs on `scratch` and on any x86-64 Linux, and
# optimised with the profile in pgo/ (see below).
# Built once: cargo sees nothing to do on the second call (same target, same flags), so
# scripts/build-image.sh and scripts/build-packages.sh both call this. Prints the binary's
# path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
# With an explicit --target, RUSTFLAGS reach only the target's crates (not build scripts
# or proc macros, which stay dynamically linked host programs).
RUSTFLAGS="-C target-feature=+crt-static"
# Profile-guided optimisation from the committed profile (scripts/pgo-profile.sh makes it;
# docs/benchmarks.md, "Profile-guided optimisation"). SLUICE_PGO=0 builds without it.
# Functions changed since the profile was made are compiled as without one (LLVM checks
# each function's control-flow hash and ignores a stale record; the warning is silenced).
# The profile is unpacked once, under a name made of its hash: rustc records the file in its
# dep-info, so cargo rebuilds when that file changes; unpacking it anew on every call would
# rebuild every time, and a new profile gets a new name (new flags) and one rebuild.
PROFILE="$PWD/pgo/sluice.profdata.gz"
if [[ "${SLUICE_PGO:-1}" != 0 && -f "$PROFILE" ]]; then
    mkdir -p target/pgo
    USED="$PWD/target/pgo/$(sha256sum "$PROFILE" | cut -c1-16).profdata"
    # Unpacked under a temporary name first: an interrupted unpack leaves no truncated file
    # under the name a later build would trust.
    if [[ ! -f "$USED" ]]; then
        gzip -dc "$PROFILE" >"$USED.tmp.$$"
        mv "$USED.tmp.$$" "$USED"
    fi
    RUSTFLAGS="$RUSTFLAGS -C profile-use=$USED -C llvm-args=-no-pgo-warn-mismatch"
    # Another compiler may hash functions differently: the profile would then quietly
    # match less of the code. Say so (the build goes on).
    made_with="$(cat pgo/rustc-version.txt 2>/dev/null || echo unknown)"
    if [[ "$(rustc -V)" != "$made_with" ]]; then
        echo "build-release: pgo/sluice.profdata.gz was made with '$made_with', this is '$(rustc -V)': remake it with scripts/pgo-profile.sh" >&2
    fi
fi
RUSTFLAGS="$RUSTFLAGS" cargo build --release --locked -p sluice --target "$TARGET" >&2
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/$TARGET/release/sluice"
# Symbols stripped in place (about a third of the size; cargo still sees the build as fresh,
# and stripping twice changes nothing). The image and both packages ship this file.
strip "$BIN"
# A dynamically linked binary would not start on scratch: refuse it here, not at run time.
if readelf -l "$BIN" | grep -q 'Requesting program interpreter'; then
    echo "build-release: $BIN is dynamically linked" >&2
    exit 1
fi
echo "$BIN"
