#!/usr/bin/env bash
# From a fresh clone to a running local cluster: builds nodeimg, builds the
# db and haproxy images from the committed locks (nothing is re-locked, the
# working tree stays clean), then, when a Docker engine answers, starts the
# demo cluster (3 db + 2 proxy nodes on a private bridge network) and
# prints the psql line that connects through PgBouncer.
#
#   NODEIMG_SKIP_DEMO=1   stop after the images
#   CARGO_TARGET_DIR      where cargo builds (default target/)
#   NODEIMG_DEMO_ARGS     more arguments for `nodeimg demo up` (e.g. --port 16432)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install a Rust toolchain (https://rustup.rs) and run again" >&2
    exit 1
fi
echo "==> building nodeimg" >&2
cargo build --release --locked
nodeimg="${CARGO_TARGET_DIR:-target}/release/nodeimg"

echo "==> building the images from the committed locks (recipes/*.lock)" >&2
"$nodeimg" build --all

if [ -n "${NODEIMG_SKIP_DEMO:-}" ]; then
    echo "images built in images/; NODEIMG_SKIP_DEMO is set, so no demo cluster" >&2
    exit 0
fi
if ! command -v docker >/dev/null 2>&1 || ! docker version >/dev/null 2>&1; then
    echo "images built in images/ (docker load -i images/db.tar); no Docker engine answers here, so no demo cluster was started" >&2
    exit 0
fi
echo "==> starting the demo cluster" >&2
# shellcheck disable=SC2086
"$nodeimg" demo up ${NODEIMG_DEMO_ARGS:-}
