#!/usr/bin/env bash
# Builds the whole of Tenki: the WASM bundle (frontend → $TENKI_SITE_ROOT/pkg/tenki.{js,wasm}),
# the static files, and the `tenki` server (which embeds the CSS). No cargo-leptos needed.
#   scripts/build.sh [debug|release]
set -euo pipefail
source "$(dirname "$0")/env.sh"
mode=${1:-debug}
cd "$TENKI_ROOT"

case "$mode" in
  debug)   wasm_profile=dev; wasm_dir=debug; server_flags=() ;;
  release) wasm_profile=wasm-release; wasm_dir=wasm-release; server_flags=(--release) ;;
  *) echo "mode is debug or release" >&2; exit 2 ;;
esac

# Its own target dir: the WASM build never waits for the server build's lock, and the two can run
# side by side.
wasm_target="$TENKI_CACHE/target-wasm"
CARGO_TARGET_DIR="$wasm_target" cargo build --locked -p frontend --lib \
  --target wasm32-unknown-unknown --profile "$wasm_profile"
mkdir -p "$TENKI_SITE_ROOT/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$TENKI_SITE_ROOT/pkg" --out-name tenki \
  "$wasm_target/wasm32-unknown-unknown/$wasm_dir/frontend.wasm"
mv -f "$TENKI_SITE_ROOT/pkg/tenki_bg.wasm" "$TENKI_SITE_ROOT/pkg/tenki.wasm"
cp -r public/. "$TENKI_SITE_ROOT/"
echo "$mode" >"$TENKI_SITE_ROOT/pkg/MODE"

# The server must be built in the same mode as the WASM, or hydration fails.
cargo build --locked --workspace --exclude frontend --bins "${server_flags[@]}"
