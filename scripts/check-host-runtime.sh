#!/usr/bin/env bash
# Does what cloud-init installs on the servers resolve, live? Renders the
# user-data of examples/cluster.toml, takes its apt sources and pinned
# packages, and runs `nodeimg lock` on a recipe made of exactly those
# (signatures checked with recipes/keys, dependencies resolved). By default
# against the snapshot archive the user-data points at (snapshot.debian.org,
# or $NODEIMG_SNAPSHOT_URL); with --live against Debian's mirrors instead,
# which holds only until the security archive drops a pinned version.
# Manual, not a test: it depends on the archives as they are today.
# Usage: bash scripts/check-host-runtime.sh [--live]
set -euo pipefail
cd "$(dirname "$0")/.."
live=${1:-}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked
case $target in /*) bin=$target/release/nodeimg ;; *) bin=$PWD/$target/release/nodeimg ;; esac
work=$PWD/target/check-host-runtime
rm -rf "$work" && mkdir -p "$work/keys"
cp recipes/keys/debian-archive-trixie-*.asc "$work/keys/"
cp examples/cluster.toml "$work/cluster.toml"
# The user-data pins image digests too: stand-in layouts are enough here.
for role in db haproxy; do
    mkdir -p "$work/images/$role"
    printf '{"manifests":[{"digest":"sha256:%064d"}]}' 0 > "$work/images/$role/index.json"
done
(cd "$work" && "$bin" secrets init --cluster cluster.toml >/dev/null)
"$bin" cloud-init "$work/cluster.toml" --secrets "$work/cluster.secrets.toml" \
    --images "$work/images" --template cloud-init/node.yaml.j2 \
    --runtime recipes/host-runtime.toml -o "$work/out" 2>/dev/null
user_data=$work/out/db-postgres-01.yaml
keys=$(cd "$work" && printf '"%s", ' keys/*.asc)
{
    echo '[recipe]'
    echo 'name = "check"'
    echo 'kind = "host-packages"'
    n=0
    grep -o 'source: "deb \[[^]]*\] [^"]*"' "$user_data" | sed 's/.*\] //; s/"$//' |
    while read -r url suite components; do
        if [ "$live" = --live ]; then
            case $suite in
                *-security) url=http://security.debian.org/debian-security ;;
                *) url=http://deb.debian.org/debian ;;
            esac
        fi
        n=$((n + 1))
        printf '\n[[source]]\nname = "s%d"\nurl = "%s"\nsuite = "%s"\ncomponents = ["%s"]\nkeys = [%s]\nsnapshot_archive = ""\n' \
            "$n" "$url" "$suite" "$components" "${keys%, }"
    done
    printf '\n[packages]\ninclude = [\n'
    sed -n '/^packages:/,/^[a-z_]*:/p' "$user_data" | sed -n 's/^  - \[ \([^,]*\), "\([^"]*\)" \]$/    "\1 (= \2)",/p'
    printf ']\n'
} > "$work/check.toml"
cat "$work/check.toml"
"$bin" --cache-dir "$work/cache" lock "$work/check.toml"
echo "the user-data's package set resolves${live:+ against the live mirrors} (lock: $work/check.lock)"
