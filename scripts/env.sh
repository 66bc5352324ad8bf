# Sourced by every script: where the caches and tools live. Everything heavy lives under
# $TENKI_CACHE (outside the clone) so a second run and CI on the same machine start warm.
TENKI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TENKI_CACHE="${TENKI_CACHE:-$HOME/.cache/tenki}"
export TENKI_ROOT TENKI_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TENKI_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

VENV="$TENKI_CACHE/venv"
SITE_PACKAGES="$VENV/lib/python3.11/site-packages"
export ZIG_PATH="$SITE_PACKAGES/ziglang/zig"
export LIBCLANG_PATH="$SITE_PACKAGES/clang/native"
export BINDGEN_EXTRA_CLANG_ARGS="-isystem $SITE_PACKAGES/ziglang/lib/include"
export ZIG_GLOBAL_CACHE_DIR="$TENKI_CACHE/zig-global"
export ZIG_LOCAL_CACHE_DIR="$TENKI_CACHE/zig-local"
export TB_CLIENT_DEBUG=false

# The site (WASM, JS, CSS, static files) the server serves; `tenki` is the bundle's name.
export TENKI_SITE_ROOT="${TENKI_SITE_ROOT:-$TENKI_CACHE/site}"
export LEPTOS_OUTPUT_NAME=tenki

# Query macros check against the committed .sqlx/ (scripts/sqlx-prepare.sh regenerates it).
export SQLX_OFFLINE=true
