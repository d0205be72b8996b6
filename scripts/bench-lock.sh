#!/usr/bin/env bash
# Benchmark of `nodeimg lock recipes/db.toml` (cold and warm index cache)
# against apt-get computing the same package set with an empty dpkg status.
# Needs network access to deb.debian.org and security.debian.org.
# Usage: bash scripts/bench-lock.sh [RUNS]   (results: target/bench/lock.md)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v hyperfine >/dev/null || { apt-get update && apt-get install -y hyperfine; }
cargo build --release --locked
bin=$PWD/target/release/nodeimg
work=$PWD/target/bench/lock
rm -rf "$work" && mkdir -p "$work"

# The packages the db recipe asks for, as apt arguments.
packages=$(sed -n '/^include = \[/,/^\]/p' recipes/db.toml | grep -o '"[^"]*"' | tr -d '"' \
    | sed 's/{{ pg_major }}/17/; s/ (.*//' | tr '\n' ' ')

# A private apt root: empty status, the same sources and keys as the recipe.
apt_root=$work/apt
mkdir -p "$apt_root"/{state/lists/partial,cache/archives/partial,etc/trusted.gpg.d,etc/preferences.d}
: > "$apt_root/status"
cp recipes/keys/debian-archive-trixie-*.asc "$apt_root/etc/trusted.gpg.d/"
cat > "$apt_root/etc/sources.list" <<LIST
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-updates main
deb http://security.debian.org/debian-security trixie-security main
LIST
apt_opts="-o Dir::State=$apt_root/state -o Dir::State::status=$apt_root/status \
 -o Dir::Cache=$apt_root/cache -o Dir::Etc::SourceList=$apt_root/etc/sources.list \
 -o Dir::Etc::SourceParts=- -o Dir::Etc::TrustedParts=$apt_root/etc/trusted.gpg.d \
 -o Dir::Etc::Preferences=- -o Dir::Etc::PreferencesParts=$apt_root/etc/preferences.d \
 -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Debug::NoLocking=1 -o APT::Install-Recommends=0 -qq"
apt_closure="apt-get $apt_opts install --download-only --simulate -y $packages"

hyperfine --runs "$runs" --export-markdown "$work/lock.md" \
    --prepare "rm -rf $work/cache" \
    -n "nodeimg lock (cold cache)" "$bin --quiet --cache-dir $work/cache lock recipes/db.toml -o $work/db.lock" \
    --prepare "rm -rf $apt_root/state/lists; mkdir -p $apt_root/state/lists/partial" \
    -n "apt-get update + install --download-only -s (cold lists)" "apt-get $apt_opts update && $apt_closure"

"$bin" --quiet --cache-dir "$work/cache" lock recipes/db.toml -o "$work/db.lock"
apt-get $apt_opts update
hyperfine --runs "$runs" --warmup 1 --export-markdown "$work/lock-warm.md" \
    -n "nodeimg lock (warm cache)" "$bin --quiet --cache-dir $work/cache lock recipes/db.toml -o $work/db.lock" \
    -n "nodeimg lock --offline (warm cache)" "$bin --quiet --cache-dir $work/cache lock recipes/db.toml -o $work/db.lock --offline" \
    -n "apt-get install --download-only -s (warm lists)" "$apt_closure"

echo "nodeimg closure: $(grep -c '^\[\[package\]\]' "$work/db.lock") packages"
echo "apt closure:     $($apt_closure | grep -c '^Inst ') packages"
cat "$work/lock.md" "$work/lock-warm.md"
