#!/usr/bin/env bash
# Measures the figures in docs/benchmarks.md: the release WASM bundle (raw and gzipped), the
# release server's resident memory after start, /readyz latency (p50/p99 of 500 sequential
# requests, next to /healthz as the same-run baseline), then the metering and webhook intake
# load scripts (server/benches/{metering,intake,runners,billing}.rs). Bounded, and only against 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TENKI_ROOT"
bash scripts/tools.sh
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; bash scripts/services.sh stop test || true' EXIT
exports=$(bash scripts/services.sh start test)
eval "$exports"
export TENKI_SITE_ROOT="$TENKI_CACHE/site-release"
bash scripts/build.sh release

bundle="$TENKI_SITE_ROOT/pkg/$(cat "$TENKI_SITE_ROOT/pkg/BUNDLE")"
echo "wasm raw bytes:     $(stat -c %s "$bundle.wasm")"
echo "wasm gzip-9 bytes:  $(stat -c %s "$bundle.wasm.gz")"
echo "wasm brotli bytes:  $(stat -c %s "$bundle.wasm.br")"
echo "js glue raw bytes:  $(stat -c %s "$bundle.js")"

TENKI_ADDR=127.0.0.1:3200 TENKI_LOG=warn "$CARGO_TARGET_DIR/release/tenki" serve &
server=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:3200/readyz >/dev/null && break; sleep 0.2; done
sleep 1
echo "server RSS after start (KiB): $(awk '/VmRSS/ {print $2}' /proc/$server/status)"

latency() {
  local path=$1
  for _ in $(seq 500); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:3200$path"; done \
    | sort -n | awk '{a[NR]=$1} END {printf "p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000, a[NR]*1000}'
}
echo "/healthz latency (baseline): $(latency /healthz)"
echo "/readyz latency:             $(latency /readyz)"
for _ in $(seq 20); do curl -s -o /dev/null http://127.0.0.1:3200/sign-in; done
echo "server RSS after 1,020 requests (KiB): $(awk '/VmRSS/ {print $2}' /proc/$server/status)"

kill "$server" 2>/dev/null || true; server=""
echo
echo "== metering (cargo bench -p server --bench metering)"
DATABASE_URL="$TENKI_DATABASE_URL" cargo bench --locked -p server --bench metering
echo
echo "== webhook intake (cargo bench -p server --bench intake)"
DATABASE_URL="$TENKI_DATABASE_URL" cargo bench --locked -p server --bench intake
echo
echo "== runners (cargo bench -p server --bench runners)"
DATABASE_URL="$TENKI_DATABASE_URL" cargo bench --locked -p server --bench runners
echo
echo "== monthly billing cycle (cargo bench -p server --bench billing)"
DATABASE_URL="$TENKI_DATABASE_URL" cargo bench --locked -p server --bench billing
