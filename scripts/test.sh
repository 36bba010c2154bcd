#!/usr/bin/env bash
# Sluice's whole test suite: formatting and lints, every crate's unit and integration tests
# (against a real PostgreSQL and MariaDB on 127.0.0.1, and Redis Cluster nodes the tests start
# themselves; whatever is missing is installed or started here),
# the end-to-end tests with a real Postfix (quotas, greylisting; DELAY quotas with the release
# agent), the deploy assets, and what operators install
# (container image run with podman, .deb installed with dpkg, .rpm file list: one static
# release build for all three). Run as root on Debian (apt-get is used for anything
# missing). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_python3
ensure_postgres
ensure_mariadb
ensure_redis_tools
ensure_promtool
ensure_openssl
ensure_postfix
ensure_chromium

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== release binary (static; the end-to-end tests, the image and the packages use it)"
SLUICE_RELEASE_BIN="$(scripts/build-release.sh | tail -n 1)"
echo "== end-to-end with Postfix"
SLUICE_BIN="$SLUICE_RELEASE_BIN" bash tests/e2e/postfix.sh
echo "== end-to-end: DELAY quotas with Postfix and sluice release-agent"
SLUICE_BIN="$SLUICE_RELEASE_BIN" bash tests/e2e/delay.sh
echo "== deploy assets (systemd, Grafana, alert rules, Helm chart)"
SLUICE_BIN="$SLUICE_RELEASE_BIN" bash scripts/check-deploy.sh
echo "== packages (container image, .deb, .rpm)"
bash scripts/test-packages.sh
