#!/usr/bin/env bash
# Regenerates .sqlx/ (the offline data of the compile-time checked queries) against a scratch
# database with every migration applied. Run it after changing a query or a migration.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TENKI_ROOT"
trap 'bash scripts/services.sh stop test || true' EXIT
exports=$(bash scripts/services.sh start test)
eval "$exports"
base=${TENKI_DATABASE_URL%/*}
psql "$base/postgres" -qc "DROP DATABASE IF EXISTS tenki_prepare" -c "CREATE DATABASE tenki_prepare"
cat migrations/*.sql | psql -q -v ON_ERROR_STOP=1 "$base/tenki_prepare"
rm -rf .sqlx && mkdir .sqlx
# Touch the crates with queries so the macros run again and write their data.
touch server/core/src/lib.rs
SQLX_OFFLINE=false DATABASE_URL="$base/tenki_prepare" SQLX_OFFLINE_DIR="$TENKI_ROOT/.sqlx" \
  cargo check --locked --workspace --exclude frontend --all-targets
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
