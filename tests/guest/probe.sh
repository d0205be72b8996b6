#!/bin/sh
# The qemu test guest's probe (never in what nodeimg ships): once
# cloud-init is done, writes what builder/tests/guest_boot.rs checks to
# the second serial port, then reboots or powers off. The mode comes from
# the kernel command line (nodeimg.test=full|airgap).
set -u
exec >/dev/ttyS1 2>&1
mode=$(sed -n 's/.*nodeimg\.test=\([a-z]*\).*/\1/p' /proc/cmdline)
state=/var/lib/nodeimg-test
mkdir -p $state
boot=$(($(cat $state/boots 2>/dev/null || echo 0) + 1))
echo $boot >$state/boots
data=/var/lib/nodeimg

say() { echo "=== $* uptime $(cut -d' ' -f1 /proc/uptime)"; }
section() { echo "--- $1"; }
pg() { docker exec -u postgres nodeimg psql -h /run/postgresql -U postgres -XtAqc "$1"; }
# Polls "$@" every 2 s for up to $limit seconds.
within() {
    limit=$1; shift
    waited=0
    while [ $waited -lt "$limit" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 2; waited=$((waited + 2))
    done
    return 1
}
refused() { journalctl -u nodeimg.service -o cat | grep -q 'no Hetzner volume attached'; }

say "boot $boot mode $mode"
cloud-init status --wait >/dev/null 2>&1
section cloud-init
cloud-init status --long
echo "exit $?"

state() {
    section swap; swapon --show --noheadings; cat /proc/swaps | tail -n +2
    section mount; findmnt -no FSTYPE,SOURCE "$data"
    section volume; blkid -o value -s UUID /dev/disk/by-id/scsi-0HC_Volume_* 2>&1; ls "$data"
    section sysctl; sysctl vm.swappiness vm.overcommit_memory vm.overcommit_ratio vm.dirty_background_ratio vm.dirty_ratio
    section thp; cat /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/defrag
    section watchdog; ls /dev/watchdog; grep -c '^softdog ' /proc/modules
    section runtime; dpkg-query -W -f '${Package} ${Version}\n' docker.io containerd runc nftables xfsprogs
    section unit; systemctl is-active nodeimg.service; systemctl is-enabled nodeimg.service
    section image; docker inspect --format '{{.Image}}' nodeimg
    section binds; docker inspect --format '{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}' nodeimg
    section firewall; nft list table inet nodeimg | grep -c 'drop'
}
debug() {
    section journal; journalctl -u nodeimg.service -o cat --no-pager | tail -n 30
    section cloud-init-log; grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 30
    section cloud-init-output; tail -n 40 /var/log/cloud-init-output.log
    section failed; systemctl --failed --no-legend
}

# Boot 1 of an air-gapped host: the operator installs the bundle, which
# arrives on a disk, before any volume is attached. Later boots find it
# installed.
case $mode$boot in
airgap1)
    # The operator of an air-gapped host: the bundle arrives on a disk.
    mkdir -p /opt/nodeimg
    tar -xf /dev/disk/by-id/virtio-bundle -C /opt/nodeimg
    section install
    sh /opt/nodeimg/nodeimg-guest/install.sh --node db-1 >$state/install.log 2>&1
    echo "install.sh exit $?"
    grep -E 'all files match SHA256SUMS|loaded, image ID|nodeimg:' $state/install.log
    within 300 refused
    section refused; journalctl -u nodeimg.service -o cat | grep 'nodeimg:' | head -n 2
    systemctl is-active nodeimg.service
    section disks; lsblk -nro NAME,FSTYPE | grep -c xfs
    say "volume wanted"
    # The host attaches the volume; the unit's next restart takes it.
    within 300 mountpoint -q "$data"
    ;;
esac
if within 900 pg 'select 1'; then say "postgres-ready"; else say "postgres-timeout"; fi
state
section data
if [ "$boot" = 1 ]; then
    pg "create table written (v text); insert into written values ('before-reboot')"
fi
pg "select v from written"
debug
sync
# The air-gapped host is rebooted once (the faster first boot of the two
# tests, so the suite's longest guest stays short).
if [ "$mode" = airgap ] && [ "$boot" = 1 ]; then
    say "reboot"
    systemctl reboot --no-block
else
    say "poweroff"
    systemctl poweroff --no-block
fi
