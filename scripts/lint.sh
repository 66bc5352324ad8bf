#!/usr/bin/env bash
# cargo fmt and clippy with warnings as errors, for the host crates and the WASM entry point.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TENKI_ROOT"
# The wasm32 target and mold (the host linker, .cargo/config.toml) on a fresh machine: CI lints
# before `make test` installs anything.
bash scripts/tools.sh
cargo fmt --all --check
cargo clippy --locked --workspace --exclude frontend --all-targets -- -D warnings
CARGO_TARGET_DIR="$TENKI_CACHE/target-wasm" cargo clippy --locked -p frontend --target wasm32-unknown-unknown -- -D warnings
