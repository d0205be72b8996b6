#!/usr/bin/env bash
# What keeping the signed Packages indexes costs (issue 15): their bytes in
# the cache and in a bundle, and `nodeimg verify` of a bundle before (the
# InRelease signatures only) and after (InRelease -> Packages -> every
# package). "Before" is nodeimg at BASE (default: the commit before the
# indexes were kept), built from `git archive` into target/bench/verify/.
# Usage: bash scripts/bench-verify.sh [RUNS] [BASE]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
base=${2:-925765b~1}
command -v hyperfine >/dev/null || { apt-get update && apt-get install -y hyperfine; }
target=${CARGO_TARGET_DIR:-target}
work=$PWD/target/bench/verify
# Everything but the old build's target folder, which is kept for reruns.
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name old-target -exec rm -rf {} +
mkdir -p "$work/old-src"
cargo build --release --locked
case $target in /*) new=$target/release/nodeimg ;; *) new=$PWD/$target/release/nodeimg ;; esac
git archive "$base" | tar -x -C "$work/old-src"
(cd "$work/old-src" && CARGO_TARGET_DIR="$work/old-target" cargo build --release --locked)
old=$work/old-target/release/nodeimg
cache=$work/cache
"$new" --quiet --cache-dir "$cache" fetch recipes/db.toml
"$new" --quiet --cache-dir "$cache" fetch recipes/haproxy.toml
"$new" --quiet --cache-dir "$cache" build --all --offline --output "$work/images"
cp examples/cluster.toml "$work/cluster.toml"
(cd "$work" && "$new" secrets init --cluster cluster.toml >/dev/null)
common=(bundle "$work/cluster.toml" --secrets "$work/cluster.secrets.toml" --images "$work/images"
    --recipes recipes)
# Each with the user-data template of its own version.
"$old" --quiet --cache-dir "$cache" "${common[@]}" --template "$work/old-src/cloud-init/node.yaml.j2" \
    -o "$work/before.tar"
"$new" --quiet --cache-dir "$cache" "${common[@]}" --template cloud-init/node.yaml.j2 -o "$work/after.tar"
hyperfine --runs "$runs" --warmup 1 --export-json "$work/verify.json" \
    -n "verify, InRelease only (before)" "$old verify $work/before.tar" \
    -n "verify, InRelease -> Packages -> packages (after)" "$new --cache-dir $cache verify $work/after.tar"
echo "signed Packages indexes in the cache ($cache/packages):"
du -b "$cache"/packages/* | sort -n
echo "total $(du -cb "$cache"/packages/* | tail -1 | cut -f1) bytes"
before=$(stat -c %s "$work/before.tar")
after=$(stat -c %s "$work/after.tar")
echo "bundle before $before bytes, after $after bytes (+$((after - before)))"
echo "InRelease files committed in recipes/inrelease: $(du -cb recipes/inrelease/* | tail -1 | cut -f1) bytes"
python3 scripts/hyperfine-medians.py "$work/verify.json"
