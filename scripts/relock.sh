#!/usr/bin/env bash
# From a fresh checkout: build nodeimg and (re)lock every role recipe
# against the live, signed Debian archive. Prints what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install a Rust toolchain (https://rustup.rs) and run again" >&2
    exit 1
fi
cargo build --release --locked
for recipe in recipes/*.toml; do
    ./target/release/nodeimg lock "$recipe"
done
git --no-pager diff --stat -- recipes/ 2>/dev/null || true
