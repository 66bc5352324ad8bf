#!/usr/bin/env bash
# `make test`: installs what is missing, starts its own PostgreSQL and TigerBeetle (.data/test,
# other ports than `make run`), runs every Rust test (cargo nextest) and the Playwright tests in
# Debian's Chromium, stops what it started, and exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TENKI_ROOT"
started=$(date +%s)
bash scripts/tools.sh

trap 'bash scripts/services.sh stop test || true' EXIT
exports=$(bash scripts/services.sh start test)
eval "$exports"
# #[sqlx::test] creates a database per test from this URL.
export DATABASE_URL="$TENKI_DATABASE_URL"
export TENKI_TEST_TIGERBEETLE_ADDRESSES="$TENKI_TIGERBEETLE_ADDRESSES"
# The browser tests' second server (signing in through the Kratos double) has a database of its own.
pg_base=${TENKI_DATABASE_URL%/*}
psql "$pg_base/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'tenki_kratos'" | grep -q 1 \
  || psql "$pg_base/postgres" -qc "CREATE DATABASE tenki_kratos"
export TENKI_KRATOS_DATABASE_URL="$pg_base/tenki_kratos"

bash scripts/build.sh debug

echo "== Rust tests"
cargo nextest run --locked --workspace --exclude frontend --no-fail-fast

echo "== Browser tests (Playwright, Debian Chromium)"
(cd end2end && { [ -d node_modules/@playwright/test ] || npm ci --no-audit --no-fund; })
export TENKI_E2E_SERVER="$CARGO_TARGET_DIR/debug/tenki"
(cd end2end && npx playwright test)

echo "make test: everything passed in $(( $(date +%s) - started )) s"
