#!/usr/bin/env bash
# Installs whatever the build needs and is missing: the wasm32 target, wasm-bindgen-cli at the
# exact version of the wasm-bindgen crate, Zig + libclang (for TigerBeetle) and brotli from PyPI, Debian's
# PostgreSQL, Chromium and mold (the linker). Every step is skipped when already done.
set -euo pipefail
source "$(dirname "$0")/env.sh"

WASM_BINDGEN_VERSION=0.2.129
mkdir -p "$TENKI_CACHE"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 15 minutes, once)" >&2
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
fi

# Brotli compresses the WASM bundle at build time.
if [ ! -x "$ZIG_PATH" ] || [ ! -d "$LIBCLANG_PATH" ] || ! "$VENV/bin/python" -c "import brotli" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet ziglang==0.14.1 libclang==18.1.1 brotli==1.1.0
fi

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v mold >/dev/null || missing+=(mold)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
