#!/bin/sh
# mmdebstrap's customize hook for the qemu test guest ($1: its root).
# Everything here stands in for what the test's world lacks, never for
# what the user-data does: the image's own fstab (with a swap file, so
# turning swap off is proved, not assumed), no apt sources and no
# datasource but the test's NoCloud seed (so the guest reaches nothing
# but the test's servers), the identity the Hetzner metadata service
# would give the agent, a plain-HTTP registry, and the test's probe.
set -eu
root=$1
here=$(dirname "$0")

printf 'LABEL=guestroot / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n' >"$root/etc/fstab"
# Not zeros: mkfs.ext4 -d would store them as holes, which swapon refuses.
yes nodeimg-test | head -c 64M >"$root/swapfile"
chmod 600 "$root/swapfile"
mkswap -q "$root/swapfile"

rm -f "$root/etc/apt/sources.list" "$root/etc/apt/sources.list.d/"*
mkdir -p "$root/etc/cloud/cloud.cfg.d"
printf 'datasource_list: [ NoCloud, None ]\n' >"$root/etc/cloud/cloud.cfg.d/99-nodeimg-test.cfg"

# What `--metadata auto` finds before it would ask 169.254.169.254.
mkdir -p "$root/etc/nodeimg"
printf 'instance-id: db-1\nlocal-hostname: db-1\nprivate-ip: 10.0.2.15\n' >"$root/etc/nodeimg/meta-data"

mkdir -p "$root/etc/docker"
printf '{ "insecure-registries": ["10.0.2.100:5000"] }\n' >"$root/etc/docker/daemon.json"

install -m 0755 "$here/probe.sh" "$root/usr/local/sbin/nodeimg-test-probe"
cat >"$root/etc/systemd/system/nodeimg-test-probe.service" <<'UNIT'
[Unit]
Description=nodeimg test probe (reports on ttyS1; test guests only)
# No ordering on cloud-final (which is After=multi-user.target): the
# probe waits for cloud-init itself.
[Service]
Type=exec
ExecStart=/usr/local/sbin/nodeimg-test-probe
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../nodeimg-test-probe.service "$root/etc/systemd/system/multi-user.target.wants/nodeimg-test-probe.service"
# qemu boots the kernel and initrd on its command line, never the guest's
# own: regenerating that (xfsprogs' hook) would only cost minutes of TCG.
sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$root/etc/initramfs-tools/update-initramfs.conf"
grep -q '^update_initramfs=no' "$root/etc/initramfs-tools/update-initramfs.conf"

# A clean first boot: systemd makes the machine ID, cloud-init its state.
: >"$root/etc/machine-id"
rm -rf "$root/var/lib/cloud"
