#!/usr/bin/env bash
# Builds the TigerBeetle server from the sources shipped in the tigerbeetle-unofficial-sys crate
# (no download from GitHub is possible here) and caches it in $TENKI_CACHE/bin. Prints its path.
set -euo pipefail
source "$(dirname "$0")/env.sh"

TB_VERSION=0.16.78
TB_COMMIT=c3d9b09dc88e94dde9ac915c6e94a4c650332080
bin="$TENKI_CACHE/bin/tigerbeetle-$TB_VERSION"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tigerbeetle-unofficial-sys-*+"$TB_VERSION" 2>/dev/null | head -n 1 || true)
if [ -z "$src" ]; then
  (cd "$TENKI_ROOT" && cargo fetch --locked >&2)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tigerbeetle-unofficial-sys-*+"$TB_VERSION" | head -n 1)
fi
work="$TENKI_CACHE/tigerbeetle-src"
rm -rf "$work" && cp -r "$src/tigerbeetle" "$work"
echo "building TigerBeetle $TB_VERSION (about 5 minutes, once)" >&2
(cd "$work" && "$ZIG_PATH" build -Drelease -Dconfig-release="$TB_VERSION" \
  -Dconfig-release-client-min="$TB_VERSION" -Dgit-commit="$TB_COMMIT" >&2)
mkdir -p "$TENKI_CACHE/bin"
cp "$work/zig-out/bin/tigerbeetle" "$bin.tmp" && mv "$bin.tmp" "$bin"
echo "$bin"
