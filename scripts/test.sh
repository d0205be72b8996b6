#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints and the whole test suite.
# Installs what the tests need first (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# git: the fresh-clone test of scripts/setup.sh; nft: the host firewall
# the user-data installs is loaded for real; curl: the security tests; gpg/gpgv: the OpenPGP interoperability tests; dpkg: version ordering is
# checked against dpkg itself; xz-utils: fixture tooling; skopeo and umoci
# validate the OCI layouts; binutils strips the agent the tests lay into images; psql is the
# client of the end-to-end cluster test; docker (already running on CI) loads them;
# docker-registry (Debian's CNCF distribution server) and htpasswd serve the
# push tests (openssl signs the Bearer tokens of their token server);
# unshare (util-linux) cuts the bundle installer off the network; podman
# loads a bundle as Docker does. The qemu guest test (guest_boot.rs):
# qemu-system-x86 and qemu-utils boot it, mmdebstrap assembles it from
# the locked .debs, genisoimage makes its NoCloud seed, socat carries its
# forwards to the test's servers, xfsprogs formats a volume beforehand.
need=()
for tool in git gpg gpgv dpkg xz skopeo umoci strip psql docker-registry htpasswd unshare openssl podman nft curl qemu-system-x86_64 qemu-img mmdebstrap genisoimage socat mkfs.xfs; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# The SCRAM test starts its own PostgreSQL server (initdb in a temp dir).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing test tools: ${need[*]}" >&2
    # No cluster of Debian's own on port 5432: the tests start their own.
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/nodeimg-tests.conf >/dev/null
    as_root apt-get -o DPkg::Lock::Timeout=600 update
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git nftables curl gnupg gpgv dpkg xz-utils skopeo umoci binutils postgresql-client postgresql docker-registry apache2-utils util-linux openssl podman qemu-system-x86 mmdebstrap genisoimage socat xfsprogs
    # qemu-utils (qemu-img) only when it is missing now: a machine may carry
    # a backport, which asking for Debian's would downgrade (apt refuses:
    # "held broken packages") and which breaks Debian's older
    # qemu-system-common, so installing qemu-system-x86 above removed it.
    command -v qemu-img >/dev/null 2>&1 || as_root apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends qemu-utils
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
