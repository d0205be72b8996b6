#!/usr/bin/env bash
# Bundle size against the separate image tarballs, and the time to make,
# verify and installer-check a bundle. Usage: bash scripts/bench-bundle.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v hyperfine >/dev/null || { apt-get update && apt-get install -y hyperfine; }
cargo build --release --locked
bin=$PWD/target/release/nodeimg
work=$PWD/target/bench/bundle
rm -rf "$work" && mkdir -p "$work"
"$bin" --quiet fetch recipes/db.toml
"$bin" --quiet fetch recipes/haproxy.toml
"$bin" --quiet build --all --offline --output "$work/images"
cp examples/cluster.toml "$work/cluster.toml"
(cd "$work" && "$bin" secrets init --cluster cluster.toml)
bundle=(bundle "$work/cluster.toml" --secrets "$work/cluster.secrets.toml" --images "$work/images"
    --template cloud-init/node.yaml.j2 --recipes recipes -o "$work/cluster-bundle.tar")
"$bin" "${bundle[@]}"
mkdir -p "$work/unpacked" && tar -xf "$work/cluster-bundle.tar" -C "$work/unpacked"
installer=$(echo "$work"/unpacked/nodeimg-*/install.sh)
hyperfine --runs "$runs" --warmup 1 --export-json "$work/bundle.json" \
    -n "nodeimg bundle (2 roles)" "$bin ${bundle[*]}" \
    -n "nodeimg verify cluster-bundle.tar" "$bin verify $work/cluster-bundle.tar" \
    -n "install.sh --verify-only" "sh $installer --verify-only"
db=$(stat -c %s "$work/images/db.tar")
haproxy=$(stat -c %s "$work/images/haproxy.tar")
total=$(stat -c %s "$work/cluster-bundle.tar")
echo "db.tar $db + haproxy.tar $haproxy = $((db + haproxy)) bytes; bundle $total bytes"
awk -v b="$total" -v s="$((db + haproxy))" 'BEGIN { printf "bundle / sum of image tarballs = %.3f\n", b / s }'
python3 scripts/hyperfine-medians.py "$work/bundle.json"
