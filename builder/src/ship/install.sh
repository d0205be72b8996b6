#!/bin/sh
# nodeimg bundle installer. Verifies every file of the bundle against
# SHA256SUMS, loads the images into the local container runtime and
# installs one node of the cluster. Needs no network: only sh, coreutils,
# tar and docker (or podman).
set -eu

usage() {
    cat <<'EOF'
Usage: sh install.sh [--node NAME | --role ROLE] [--secrets FILE] [--root DIR] [--no-start]
       sh install.sh --load-only
       sh install.sh --verify-only

Checks every file against SHA256SUMS (a damaged bundle is refused before
anything is touched), loads the images into Docker or Podman and checks
each loaded image ID, then installs the role's files (the cluster spec,
the systemd unit, host settings) and runs the role's setup, which starts
the node's unit.

  --node NAME      the node this host is (its role comes from the bundle's
                   nodes file; a bundle made --with-secrets gives its secrets)
  --role ROLE      db or haproxy, when --node is not given
  --secrets FILE   the node's secrets (nodeimg secrets for-node NAME), copied
                   to /etc/nodeimg/secrets.toml with mode 0600; not needed
                   with --node on a bundle made --with-secrets, or when the
                   file is already in place
  --root DIR       install the files under DIR instead of / (implies --no-start)
  --no-start       install the files, do not run the setup
  --load-only      verify and load the images, install nothing
  --verify-only    verify the checksums only
  NODEIMG_RUNTIME  docker or podman (default: whichever is installed)
EOF
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

node= role= secrets= root=/ start=yes load=yes install=yes
while [ $# -gt 0 ]; do
    case $1 in
        --node) [ $# -ge 2 ] || die "--node needs a name"; node=$2; shift 2 ;;
        --node=*) node=${1#*=}; shift ;;
        --role) [ $# -ge 2 ] || die "--role needs a value"; role=$2; shift 2 ;;
        --role=*) role=${1#*=}; shift ;;
        --secrets) [ $# -ge 2 ] || die "--secrets needs a file"; secrets=$2; shift 2 ;;
        --secrets=*) secrets=${1#*=}; shift ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; start=no; shift 2 ;;
        --root=*) root=${1#*=}; start=no; shift ;;
        --no-start) start=no; shift ;;
        --load-only) install=no; shift ;;
        --verify-only) install=no load=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if [ -n "$secrets" ]; then
    [ -f "$secrets" ] || die "--secrets $secrets: no such file"
    secrets=$(cd "$(dirname "$secrets")" && pwd)/$(basename "$secrets")
fi

cd "$(dirname "$0")"
[ -f SHA256SUMS ] && [ -f roles ] || die "$(pwd) is not a nodeimg bundle (SHA256SUMS or roles missing)"

# 1. Every file, before anything is loaded or installed.
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is needed"
echo "verifying $(wc -l <SHA256SUMS) files against SHA256SUMS..." >&2
if ! report=$(sha256sum --check --strict --quiet SHA256SUMS 2>&1); then
    echo "$report" | grep -v '^sha256sum: WARNING' >&2 || true
    die "the bundle is damaged: the files above do not match SHA256SUMS. Nothing was loaded or installed; copy the bundle again."
fi
echo "all files match SHA256SUMS" >&2
[ "$load" = yes ] || exit 0

# 2. Which role, and its secrets, before anything changes.
if [ "$install" = yes ]; then
    roles=$(cut -d' ' -f1 roles | tr '\n' ' ')
    if [ -n "$node" ]; then
        line=$(grep "^$node " nodes) || die "no node $node in this bundle (it holds: $(cut -d' ' -f1 nodes | tr '\n' ' '))"
        node_role=${line#* }
        [ -z "$role" ] || [ "$role" = "$node_role" ] || die "$node is a $node_role node, not a $role node"
        role=$node_role
        if [ -z "$secrets" ] && [ -f "secrets/$node.secrets.toml" ]; then
            secrets=$(pwd)/secrets/$node.secrets.toml
        fi
    fi
    if [ -z "$role" ]; then
        [ "$(wc -l <roles)" -eq 1 ] || die "this bundle holds the roles: ${roles}- pass --role ROLE"
        role=$(cut -d' ' -f1 roles)
    fi
    grep -q "^$role " roles || die "no role $role in this bundle (it holds: $roles)"
    if [ -z "$secrets" ] && [ ! -f "host/$role/root/etc/nodeimg/secrets.toml" ] \
        && [ ! -s "$root/etc/nodeimg/secrets.toml" ]; then
        die "no secrets for this $role node: pass --secrets FILE (made by: nodeimg secrets for-node NAME), or make the bundle --with-secrets and pass --node NAME"
    fi
    if [ "$start" = yes ] && ! command -v systemctl >/dev/null; then
        die "systemd is not running here: use --no-start, then start the container as host/$role/root/etc/systemd/system/nodeimg.service does"
    fi
fi

# 3. Load the images and check what the runtime now holds.
runtime=${NODEIMG_RUNTIME:-}
if [ -z "$runtime" ]; then
    if command -v docker >/dev/null; then runtime=docker
    elif command -v podman >/dev/null; then runtime=podman
    else die "no container runtime: install docker.io (or podman) from your local mirror first"
    fi
fi
"$runtime" version >/dev/null 2>&1 || die "$runtime does not answer: is its daemon running, and may this user use it?"
echo "loading the images into $runtime..." >&2
(cd images && tar -cf - oci-layout index.json manifest.json blobs) | "$runtime" load >&2 \
    || die "$runtime load failed (above)"
while read -r name reference config manifest; do
    id=$("$runtime" image inspect --format '{{.Id}}' "$reference" 2>/dev/null) \
        || die "$reference ($name) is not in $runtime after loading"
    case "sha256:${id#sha256:}" in
        "$config"|"$manifest") echo "$name: $reference loaded, image ID $id" >&2 ;;
        *) die "$reference ($name) has image ID $id, expected $config or $manifest" ;;
    esac
done <roles
[ "$install" = yes ] || exit 0

# 4. The node's files, then its setup (the unit starts the container).
echo "installing the $role node's files under $root..." >&2
(cd "host/$role/root" && find . -type f | sort) | while read -r file; do
    file=${file#./}
    mode=$(stat -c %a "host/$role/root/$file")
    install -D -m "$mode" "host/$role/root/$file" "$root/$file"
    echo "  /$file" >&2
done
if [ -n "$secrets" ]; then
    install -D -m 0600 "$secrets" "$root/etc/nodeimg/secrets.toml"
    echo "  /etc/nodeimg/secrets.toml (from $secrets)" >&2
fi
if [ "$start" = yes ]; then
    echo "running host/$role/setup.sh..." >&2
    sh "host/$role/setup.sh"
    echo "the $role node is installed and its unit started: journalctl -u nodeimg -f" >&2
else
    echo "installed, not started: run 'sh $(pwd)/host/$role/setup.sh' as root to start the node" >&2
fi
