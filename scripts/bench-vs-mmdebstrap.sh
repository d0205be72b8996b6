#!/usr/bin/env bash
# `nodeimg build --all` (cold, warm, no-op) against what a user would do
# instead: mmdebstrap (Debian package) installing the locked packages at
# their locked versions into a tarball, then umoci packing that tarball
# into an OCI image layout. Both sides build db and haproxy.
#
# Usage: bash scripts/bench-vs-mmdebstrap.sh [COLD_RUNS] [WARM_RUNS]
# Results: target/bench/mmdebstrap/*.md and *.json (hyperfine exports).
set -euo pipefail
cd "$(dirname "$0")/.."
cold_runs=${1:-3}
warm_runs=${2:-5}

need=()
for tool in hyperfine mmdebstrap umoci python3; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update && apt-get install -y hyperfine mmdebstrap umoci python3
fi
cargo build --release --locked
bin=$PWD/target/release/nodeimg
work=$PWD/target/bench/mmdebstrap
mkdir -p "$work"

# mmdebstrap checks the archive with the same keys the recipes trust.
mkdir -p "$work/keys"
cp recipes/keys/debian-archive-*.asc "$work/keys/"
sources=(
    "deb http://deb.debian.org/debian trixie main"
    "deb http://deb.debian.org/debian trixie-updates main"
    "deb http://security.debian.org/debian-security trixie-security main"
)
includes() {
    python3 -c "import sys, tomllib
lock = tomllib.load(open(sys.argv[1], 'rb'))
print(','.join(p['name'] + '=' + p['version'] for p in lock['package']))" "recipes/$1.lock"
}

# One role with mmdebstrap + umoci; $1 role, $2 extra mmdebstrap options.
cat > "$work/mmdebstrap-role.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
role=\$1; shift
out=$work/out-mmdebstrap
mkdir -p "\$out"
# mmdebstrap runs maintainer scripts, so it needs Debian's Essential set
# (the 'essential' variant) on top of the locked packages.
mmdebstrap --quiet --variant=essential --mode=root --keyring=$work/keys \\
    --aptopt='APT::Install-Recommends "false"' \\
    --include="\$(cat $work/\$role.includes)" "\$@" \\
    trixie "\$out/\$role.tar" $(printf '"%s" ' "${sources[@]}")
rm -rf "\$out/\$role.oci"
umoci init --layout "\$out/\$role.oci"
umoci new --image "\$out/\$role.oci:latest"
umoci raw add-layer --image "\$out/\$role.oci:latest" "\$out/\$role.tar"
EOF
chmod +x "$work/mmdebstrap-role.sh"
for role in db haproxy; do includes "$role" > "$work/$role.includes"; done

# Warm mmdebstrap: the .debs of a first run are handed back through apt's
# archive cache, so nothing is downloaded (mmdebstrap's documented way).
debcache=$work/deb-cache
mkdir -p "$debcache"
warm_opts="--setup-hook='mkdir -p \"\$1\"/var/cache/apt/archives' --setup-hook='sync-in $debcache /var/cache/apt/archives' --customize-hook='sync-out /var/cache/apt/archives $debcache' --skip=download/empty --skip=essential/unlink"
both_mm="$work/mmdebstrap-role.sh db && $work/mmdebstrap-role.sh haproxy"
both_mm_warm="$work/mmdebstrap-role.sh db $warm_opts && $work/mmdebstrap-role.sh haproxy $warm_opts"
eval "$both_mm_warm"   # fills the .deb cache

hyperfine --runs "$cold_runs" --export-markdown "$work/cold.md" --export-json "$work/cold.json" \
    -n "nodeimg build --all (cold: empty cache)" \
    --prepare "rm -rf $work/nodeimg-cache $work/out-nodeimg" \
    "$bin --quiet --cache-dir $work/nodeimg-cache build --all --output $work/out-nodeimg" \
    -n "mmdebstrap + umoci, db and haproxy (cold: downloads)" \
    "$both_mm"

"$bin" --quiet --cache-dir "$work/nodeimg-cache" build --all --output "$work/out-nodeimg" >/dev/null
hyperfine --runs "$warm_runs" --export-markdown "$work/warm.md" --export-json "$work/warm.json" \
    -n "nodeimg build --all (warm: .debs cached, no layer cache)" \
    --prepare "rm -rf $work/nodeimg-cache/layers $work/out-nodeimg; find $work/nodeimg-cache/blobs -type f -delete" \
    "$bin --quiet --cache-dir $work/nodeimg-cache build --all --offline --output $work/out-nodeimg" \
    -n "mmdebstrap + umoci, db and haproxy (warm: .debs cached)" \
    --prepare "true" \
    "$both_mm_warm"
# hyperfine's --prepare applies to every command of a run: the no-op
# build gets a run of its own.
"$bin" --quiet --cache-dir "$work/nodeimg-cache" build --all --offline --output "$work/out-nodeimg" >/dev/null
hyperfine --runs 20 --warmup 2 --export-markdown "$work/noop.md" --export-json "$work/noop.json" \
    -n "nodeimg build --all (no-op: nothing changed)" \
    "$bin --quiet --cache-dir $work/nodeimg-cache build --all --offline --output $work/out-nodeimg"

# The package sets, compared.
for role in db haproxy; do
    locked=$(tr ',' '\n' < "$work/$role.includes" | wc -l)
    installed=$(tar -xOf "$work/out-mmdebstrap/$role.tar" ./var/lib/dpkg/status | grep -c '^Package:')
    echo "$role: nodeimg installs $locked packages (the lock); mmdebstrap installs $installed"
done
du -b "$work"/out-nodeimg/*.tar "$work"/out-mmdebstrap/*.tar
cat "$work/cold.md" "$work/warm.md" "$work/noop.md"
