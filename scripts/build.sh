#!/usr/bin/env bash
# Builds the whole of Tenki: the WASM bundle (frontend → $TENKI_SITE_ROOT/pkg/tenki-<hash>.{js,wasm},
# with .br and .gz beside them),
# the static files, and the `tenki` server (which embeds the CSS). No cargo-leptos needed.
#   scripts/build.sh [debug|release]
set -euo pipefail
source "$(dirname "$0")/env.sh"
mode=${1:-debug}
cd "$TENKI_ROOT"

case "$mode" in
  # The bundle is the small release one in both modes: what customers download (docs/adr/0010).
  debug)   wasm_profile=wasm-release; wasm_dir=wasm-release; server_flags=() ;;
  release) wasm_profile=wasm-release; wasm_dir=wasm-release; server_flags=(--release) ;;
  *) echo "mode is debug or release" >&2; exit 2 ;;
esac

# Its own target dir: the WASM build never waits for the server build's lock, and the two can run
# side by side.
wasm_target="$TENKI_CACHE/target-wasm"
CARGO_TARGET_DIR="$wasm_target" cargo build --locked -p frontend --lib \
  --target wasm32-unknown-unknown --profile "$wasm_profile"
pkg="$TENKI_SITE_ROOT/pkg"
mkdir -p "$pkg"
rm -f "$pkg"/tenki.js "$pkg"/tenki.wasm "$pkg"/tenki-*
wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name tenki \
  "$wasm_target/wasm32-unknown-unknown/$wasm_dir/frontend.wasm"
# Named by content (the server reads pkg/BUNDLE), so browsers keep each build for good and a new
# build is a new address; compressed once here, not on every request.
bundle="tenki-$(cat "$pkg/tenki.js" "$pkg/tenki_bg.wasm" | sha256sum | cut -c1-16)"
mv -f "$pkg/tenki.js" "$pkg/$bundle.js"
mv -f "$pkg/tenki_bg.wasm" "$pkg/$bundle.wasm"
"$VENV/bin/python" - "$pkg/$bundle.js" "$pkg/$bundle.wasm" <<'PY'
import gzip, sys
import brotli
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    open(path + ".br", "wb").write(brotli.compress(data, quality=11))
    open(path + ".gz", "wb").write(gzip.compress(data, 9))
PY
echo "$bundle" >"$pkg/BUNDLE"
cp -r public/. "$TENKI_SITE_ROOT/"
echo "$mode" >"$pkg/MODE"

# The server must be built in the same mode as the WASM, or hydration fails.
cargo build --locked --workspace --exclude frontend --bins "${server_flags[@]}"
