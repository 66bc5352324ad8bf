#!/usr/bin/env bash
# Starts or stops the private PostgreSQL and one-replica TigerBeetle of a profile ("run" or
# "test") under .data/<profile>/. Safe after a killed run: stale processes are stopped first.
#   scripts/services.sh start run|test     prints the exports for the started services
#   scripts/services.sh stop  run|test
set -euo pipefail
source "$(dirname "$0")/env.sh"

action=${1:?start or stop}
profile=${2:?run or test}
case "$profile" in
  run)  pg_port=5433; tb_port=3001 ;;
  test) pg_port=5434; tb_port=3002 ;;
  *) echo "unknown profile $profile" >&2; exit 2 ;;
esac
data="$TENKI_ROOT/.data/$profile"
pg_data="$data/pg"
tb_file="$data/tb/0_0.tigerbeetle"
tb_pid="$data/tb/tigerbeetle.pid"
# Keep these flags identical everywhere: a data file must never be started with a smaller
# request limit than it was written with. `--development` shrinks the grid cache (TigerBeetle's
# page cache) to 32 MiB, and once the data file outgrew it, metering's p99 doubled
# (docs/benchmarks.md, "Metering once the ledger has grown"): the cache is set back to
# TigerBeetle's own default, 1 GiB.
TB_FLAGS=(--development --experimental --limit-request=1MiB --cache-grid=1GiB)

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    echo "installing PostgreSQL from Debian" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$dir"
}

# PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop_tigerbeetle() {
  if [ -f "$tb_pid" ]; then
    local pid; pid=$(cat "$tb_pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$tb_pid"
  fi
}

stop_postgres() {
  local bin; bin=$(pg_bin)
  if [ -f "$pg_data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$what did not open port $port" >&2
  return 1
}

# Fails with a clear message when something that is not ours holds `port`.
require_free_port() {
  local port=$1 what=$2
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port, needed for $what ($profile), is in use by another process" \
      "(another checkout's services?). Stop it and try again." >&2
    exit 1
  fi
}

start() {
  mkdir -p "$data/tb"
  local bin; bin=$(pg_bin)
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    rm -rf "$pg_data"; mkdir -p "$pg_data"
    [ "$(id -u)" = 0 ] && chown postgres "$data" "$pg_data"
    as_pg "$bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres "$pg_data"
  # A previous run killed with -9 leaves a running server or a stale pid file: stop, restart.
  stop_postgres
  require_free_port "$pg_port" PostgreSQL
  as_pg "$bin/pg_ctl" -D "$pg_data" -l "$data/pg.log" -w -o "-p $pg_port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  local db
  for db in tenki; do
    as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
      || as_pg "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$db"
  done

  local tb; tb=$(bash "$TENKI_ROOT/scripts/tigerbeetle.sh")
  stop_tigerbeetle
  require_free_port "$tb_port" TigerBeetle
  if [ ! -f "$tb_file" ]; then
    "$tb" format --cluster=0 --replica=0 --replica-count=1 --development "$tb_file" >"$data/tb.log" 2>&1
  fi
  nohup "$tb" start --addresses="127.0.0.1:$tb_port" "${TB_FLAGS[@]}" "$tb_file" >>"$data/tb.log" 2>&1 &
  echo $! >"$tb_pid"
  wait_for_port "$tb_port" TigerBeetle

  echo "export TENKI_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/tenki"
  echo "export TENKI_TIGERBEETLE_ADDRESSES=127.0.0.1:$tb_port"
  echo "export TENKI_TIGERBEETLE_BIN=$tb"
}

case "$action" in
  start) start ;;
  stop) stop_tigerbeetle; stop_postgres ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
