#!/usr/bin/env bash
# `make run`: installs what is missing, starts PostgreSQL and TigerBeetle under .data/run (unless
# TENKI_DATABASE_URL / TENKI_TIGERBEETLE_ADDRESSES point elsewhere), builds, and serves Tenki in
# sandbox mode on http://127.0.0.1:3000. Ctrl-C stops the server and the services it started.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TENKI_ROOT"
bash scripts/tools.sh

started=()
cleanup() {
  for s in "${started[@]}"; do bash scripts/services.sh stop "$s" || true; done
}
trap cleanup EXIT
if [ -z "${TENKI_DATABASE_URL:-}" ] || [ -z "${TENKI_TIGERBEETLE_ADDRESSES:-}" ]; then
  exports=$(bash scripts/services.sh start run)
  eval "$exports"
  started+=(run)
fi

bash scripts/build.sh "${TENKI_BUILD:-debug}"
profile_dir=debug; [ "${TENKI_BUILD:-debug}" = release ] && profile_dir=release
"$CARGO_TARGET_DIR/$profile_dir/tenki" migrate
# The first time, a demo workspace with a month of jobs, so the Usage page has something to show.
marker="$TENKI_ROOT/.data/run/demo-created"
if [ " ${started[*]} " = " run " ] && [ ! -f "$marker" ]; then
  "$CARGO_TARGET_DIR/$profile_dir/tenki" demo && touch "$marker"
fi
echo
echo "  Tenki is starting on http://127.0.0.1:3000 (sandbox mode; Ctrl-C stops it)"
echo
# Not exec: the EXIT trap must stop the services after the server ends.
"$CARGO_TARGET_DIR/$profile_dir/tenki" serve &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
