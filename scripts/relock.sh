#!/usr/bin/env bash
# Re-lock every role recipe against the live, signed Debian archive: a step
# of its own, taken when you want newer packages (security updates), not
# part of setting up. `nodeimg lock` prints each change (old → new); the
# decision to commit the new locks is yours:
#   git diff recipes/            review
#   git add recipes/ && git commit -m "re-lock"     keep them
#   git checkout recipes/ && git clean -f recipes/inrelease/   drop them
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install a Rust toolchain (https://rustup.rs) and run again" >&2
    exit 1
fi
cargo build --release --locked
nodeimg="${CARGO_TARGET_DIR:-target}/release/nodeimg"
for recipe in recipes/*.toml; do
    "$nodeimg" lock "$recipe"
done
git --no-pager diff --stat -- recipes/ 2>/dev/null || true
