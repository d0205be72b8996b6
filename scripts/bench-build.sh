#!/usr/bin/env bash
# Benchmark of `nodeimg build --all` (both roles) with the package cache
# filled, and image sizes. Usage: bash scripts/bench-build.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v hyperfine >/dev/null || { apt-get update && apt-get install -y hyperfine; }
cargo build --release --locked
bin=$PWD/target/release/nodeimg
work=$PWD/target/bench/build
mkdir -p "$work"
"$bin" --quiet fetch recipes/db.toml
"$bin" --quiet fetch recipes/haproxy.toml
hyperfine --runs "$runs" --warmup 1 --export-markdown "$work/build.md" \
    -n "nodeimg build --all --offline (warm package cache)" "$bin --quiet build --all --offline --output $work/images"
"$bin" inspect "$work/images/db" --top 5
du -b "$work/images/db.tar" "$work/images/haproxy.tar"
cat "$work/build.md"
