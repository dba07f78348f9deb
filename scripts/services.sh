#!/usr/bin/env bash
# Install if needed and start the servers marketloop's tests use, on loopback only:
#   PostgreSQL 127.0.0.1:5432, trust auth, superuser "postgres", database "test";
#   Redis      127.0.0.1:6379, no persistence.
# Also installs Debian's chromium (the report's browser test) when it is missing; a machine
# where it cannot be installed skips that test, and says so.
# Usage: scripts/services.sh start|stop|status
# Idempotent. Without root (no apt-get, no runuser) it says why it cannot start a server and
# exits 0: tests that need it then skip with that reason, except under CI=true, where they fail.
set -uo pipefail

PG_PORT="${PGPORT:-5432}"
PG_DATA="${ML_PGDATA:-/var/tmp/marketloop-pg}"
PG_DB="${ML_PGDB:-test}"
PG_SOCK=/var/run/postgresql
REDIS_PORT="${REDIS_PORT:-6379}"

say() { echo "services: $*"; }

apt_install() {
  [ "$(id -u)" = 0 ] || { say "cannot install $* (not root)"; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  { timeout 600 apt-get install -y -q "$@" ||
    { timeout 600 apt-get update -q && timeout 600 apt-get install -y -q "$@"; }; } >/dev/null 2>&1
}

pg_ready() {
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DB" -tAc 'select 1' >/dev/null 2>&1
}

pg_alive() {  # the pid in a lock file is a live, non-zombie process
  local p
  p="$(head -1 "$1" 2>/dev/null)" || return 1
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$p/stat"
}

pg_start() {
  if command -v psql >/dev/null 2>&1 && pg_ready; then say "postgres up on 127.0.0.1:$PG_PORT"; return 0; fi
  if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql || { say "postgres not installed and cannot be installed"; return 1; }
  fi
  [ "$(id -u)" = 0 ] || { say "postgres: need root to run the server as user postgres"; return 1; }
  local bin log
  bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -1)"
  log="$PG_DATA.log"
  install -d -o postgres -g postgres -m 2775 "$PG_SOCK"
  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    rm -rf "$PG_DATA"
    install -d -o postgres -g postgres -m 700 "$PG_DATA"
    runuser -u postgres -- "$bin/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 \
      --locale=C.UTF-8 --no-sync >/dev/null || { say "postgres initdb failed"; return 1; }
  fi
  touch "$log" && chown postgres:postgres "$log"
  if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    if pg_alive "$PG_DATA/postmaster.pid"; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -f "$PG_DATA/postmaster.pid"
    pg_alive "$PG_SOCK/.s.PGSQL.$PG_PORT.lock" || rm -f "$PG_SOCK/.s.PGSQL.$PG_PORT" "$PG_SOCK/.s.PGSQL.$PG_PORT.lock"
    runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -l "$log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      >/dev/null || { say "postgres failed to start, see $log"; tail -5 "$log"; return 1; }
  fi
  if ! psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
       "select 1 from pg_database where datname='$PG_DB'" | grep -q 1; then
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "create database \"$PG_DB\"" >/dev/null
  fi
  pg_ready && say "postgres up on 127.0.0.1:$PG_PORT (db=$PG_DB)"
}

redis_pong() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

redis_start() {
  if command -v redis-cli >/dev/null 2>&1 && redis_pong; then say "redis up on 127.0.0.1:$REDIS_PORT"; return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || { say "redis not installed and cannot be installed"; return 1; }
    redis_pong && { say "redis up on 127.0.0.1:$REDIS_PORT (packaged service)"; return 0; }
  fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save '' --appendonly no \
    --dir /var/tmp --pidfile "/var/tmp/marketloop-redis-$REDIS_PORT.pid" \
    --logfile "/var/tmp/marketloop-redis-$REDIS_PORT.log" >/dev/null
  for _ in $(seq 1 50); do redis_pong && { say "redis up on 127.0.0.1:$REDIS_PORT"; return 0; }; sleep 0.2; done
  say "redis not answering on 127.0.0.1:$REDIS_PORT"; return 1
}

browser_install() {  # Debian's own chromium, never a downloaded browser
  [ -x /usr/bin/chromium ] && return 0
  apt_install chromium && say "chromium installed" || say "chromium not installed: the browser test skips"
}

case "${1:-start}" in
  start)
    rc=0
    browser_install
    pg_start || rc=1
    redis_start || rc=1
    # Outside CI a machine without the servers still runs the rest; the tests say what they skip.
    if [ "$rc" != 0 ] && [ "${CI:-}" = true ]; then say "a server could not be started under CI=true"; exit 1; fi
    exit 0 ;;
  stop)
    bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)"
    [ -n "$bin" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
    say "stopped"; exit 0 ;;
  status)
    pg_ready && say "postgres up" || say "postgres down"
    redis_pong && say "redis up" || say "redis down"
    exit 0 ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
