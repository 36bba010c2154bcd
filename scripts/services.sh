# Shell functions that make sure the services Sluice's tests talk to are installed and
# running on this machine (Debian). Sourced by scripts/test.sh. Everything listens on
# 127.0.0.1 only.

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  echo "== installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # wait_for SECONDS command...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# Python 3: the end-to-end tests and the deploy checks parse JSON and Prometheus files with it.
ensure_python3() {
  command -v python3 >/dev/null 2>&1 || apt_install --no-install-recommends python3
}

# PostgreSQL on 127.0.0.1:5432, user postgres, trust authentication.
ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "== installing PostgreSQL"
    apt_install postgresql postgresql-client
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  # psql: the cluster tests and the DELAY end-to-end test create their databases with it.
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "== starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for 30 pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
  fi
}

# MariaDB on 127.0.0.1:3306, root with an empty password (for the Policyd MySQL import test).
ensure_mariadb() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    echo "== installing MariaDB"
    apt_install mariadb-server mariadb-client
  fi
  if ! mariadb -h 127.0.0.1 -u root -e 'select 1' >/dev/null 2>&1; then
    if ! mariadb-admin ping >/dev/null 2>&1; then
      echo "== starting MariaDB"
      mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
      wait_for 60 mariadb-admin ping || { echo "MariaDB did not start" >&2; return 1; }
    fi
    # A fresh Debian install authenticates root by unix socket only: allow TCP without password.
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" 2>/dev/null || true
    wait_for 10 mariadb -h 127.0.0.1 -u root -e 'select 1' || { echo "MariaDB does not accept root@127.0.0.1" >&2; return 1; }
  fi
}

# redis-server and redis-cli: tests start their own Redis Cluster nodes on free loopback ports.
ensure_redis_tools() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "== installing Redis"
    apt_install redis-server
  fi
}

# openssl: the deploy checks make stand-in certificates for the rendered TLS settings, and
# the TestPki unit test verifies its chains with it.
ensure_openssl() {
  if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl
  fi
}

# promtool (Debian package prometheus): the observability tests run `promtool check metrics`
# on real scrapes, and the deploy checks `promtool check rules`.
ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    echo "== installing promtool (prometheus)"
    apt_install prometheus
  fi
}

# postconf (Debian package postfix): the README test reads the README's main.cf lines with
# `postconf -c DIR`; the end-to-end test runs a private Postfix.
ensure_postfix() {
  if [ ! -x /usr/sbin/postconf ]; then
    echo "== installing Postfix"
    # "No configuration": the package starts no system Postfix; the tests run their own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install --no-install-recommends postfix
  fi
}

# Headless Chromium and its WebDriver (Debian packages chromium and chromium-driver): the
# admin service's browser test (services/sluice/tests/admin_browser.rs) drives it.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "== installing Chromium and chromedriver"
    apt_install chromium chromium-driver
  fi
}
