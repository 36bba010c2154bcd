#!/usr/bin/env bash
# Builds the Debian and RPM packages of sluice into target/packages/:
#   sluice_<version>-1_amd64.deb   (cargo-deb)
#   sluice-<version>-1.x86_64.rpm  (cargo-generate-rpm)
# from the static release binary (scripts/build-release.sh), with what it generates itself:
# man pages (`sluice man`), bash/zsh/fish completions (`sluice completions`), and the units
# of deploy/systemd with ExecStart=/usr/bin/sluice (the packages' path; the files in the
# repository keep /usr/local/bin for manual installs). Metadata: [package.metadata.deb] and
# [package.metadata.generate-rpm] in services/sluice/Cargo.toml; maintainer scripts in
# deploy/packaging/. cargo-deb and cargo-generate-rpm are installed (`cargo install
# --locked`, pinned versions) if missing. Prints the two package paths last.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="3.8.0"
CARGO_GENERATE_RPM_VERSION="0.21.1"
TARGET=x86_64-unknown-linux-gnu
OUT=target/packages
GEN="$OUT/generated"

have_version() { # have_version COMMAND VERSION
    command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -qF "$2"
}
have_version cargo-deb "$CARGO_DEB_VERSION" ||
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" >&2
# cargo-generate-rpm has no --version; its install receipt names the version.
grep -q "cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION " "${CARGO_HOME:-$HOME/.cargo}/.crates.toml" 2>/dev/null ||
    cargo install --locked --quiet cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION" >&2

BIN="$(scripts/build-release.sh | tail -n 1)"

rm -rf "$OUT"
mkdir -p "$GEN/man" "$GEN/completions" "$GEN/systemd"

# Man pages and completions, from the binary being packaged.
"$BIN" man "$GEN/man" >/dev/null
gzip -9n "$GEN"/man/*.1
"$BIN" completions bash >"$GEN/completions/sluice.bash"
"$BIN" completions zsh >"$GEN/completions/_sluice"
"$BIN" completions fish >"$GEN/completions/sluice.fish"

# Units: the binary in /usr/bin, the docs in /usr/share/doc/sluice, and a header saying how
# a packaged unit is enabled instead of the repository's manual-install comment.
for unit in deploy/systemd/*.service; do
    name="$(basename "$unit" .service)"
    {
        echo "# $name.service, installed by the sluice package (not enabled, not started):"
        echo "#   systemctl enable --now $name"
        echo "# Settings: /etc/sluice/ (see /usr/share/doc/sluice/deploy.md); overrides: systemctl edit $name."
        # Drop the leading comment block (manual install steps), keep the rest.
        awk 'started || !/^#/ { started = 1; print }' "$unit"
    } | sed -e 's|/usr/local/bin/sluice|/usr/bin/sluice|g' \
        -e 's|/usr/local/share/doc/sluice/|/usr/share/doc/sluice/|g' >"$GEN/systemd/$name.service"
    if grep -n '/usr/local' "$GEN/systemd/$name.service" >&2; then
        echo "build-packages: $name.service still names /usr/local" >&2
        exit 1
    fi
done

echo "== cargo deb" >&2
cargo deb -p sluice --no-build --no-strip --target "$TARGET" -o "$OUT/" >&2
echo "== cargo generate-rpm" >&2
cargo generate-rpm -p services/sluice --target "$TARGET" -o "$OUT/" >&2

ls "$OUT"/*.deb "$OUT"/*.rpm
