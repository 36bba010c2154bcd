#!/usr/bin/env bash
# Sluice's whole test suite: formatting and lints, every crate's unit and integration tests
# (against a real PostgreSQL and MariaDB on 127.0.0.1, and Redis Cluster nodes the tests start
# themselves; whatever is missing is installed or started here),
# and the end-to-end test with a real Postfix. Run as root on Debian (apt-get is used for
# anything missing). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_postgres
ensure_mariadb
ensure_redis_tools
ensure_promtool
ensure_postfix

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== end-to-end with Postfix"
cargo build -p sluice --locked
SLUICE_BIN="$PWD/target/debug/sluice" bash tests/e2e/postfix.sh
echo "== deploy assets (systemd, Grafana, alert rules, Helm chart)"
SLUICE_BIN="$PWD/target/debug/sluice" bash scripts/check-deploy.sh
