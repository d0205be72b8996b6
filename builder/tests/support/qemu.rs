//! One qemu guest under TCG (KVM does not work on these machines): the
//! guest's kernel and initrd booted directly, its root disk as a qcow2
//! overlay (the cached image stays untouched), a NoCloud seed disk, an
//! optional Hetzner-like volume (virtio-scsi, vendor HC, model Volume, so
//! udev names it /dev/disk/by-id/scsi-0HC_Volume_<serial>), user-mode
//! networking with `restrict=on` (the guest reaches nothing but the
//! explicit forwards to the test's own servers on loopback), the console
//! on the first serial port and the test probe's report on the second.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::guest::GuestDisk;
use super::images::run;

/// The address the guest reaches the test's servers at.
pub const HOST: &str = "10.0.2.100";

pub struct Options<'a> {
    pub disk: &'a GuestDisk,
    /// A folder holding `user-data` and `meta-data`.
    pub seed: &'a Path,
    /// The data volume's raw file, attached at power-on.
    pub volume: Option<&'a Path>,
    /// Extra read-only raw disks: (virtio serial, file).
    pub disks: Vec<(&'a str, &'a Path)>,
    /// (port on HOST in the guest, port on 127.0.0.1).
    pub forwards: Vec<(u16, u16)>,
    /// `nodeimg.test=<mode>` for the probe.
    pub mode: &'a str,
}

/// How Hetzner's volumes look to the guest (a volume of ID 100001).
const VOLUME_ID: &str = "vendor=HC,product=Volume,serial=100001";

pub struct Guest {
    child: Child,
    pub dir: PathBuf,
    started: Instant,
}

impl Guest {
    pub fn start(dir: &Path, options: &Options) -> Guest {
        std::fs::create_dir_all(dir).unwrap();
        let root = dir.join("root.qcow2");
        let _ = std::fs::remove_file(&root);
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&options.disk.disk)
            .arg(&root));
        // The network config Hetzner's datasource would give (DHCPv4 on
        // the NIC, enp0s2 on this machine type): cloud-init's fallback also
        // asks DHCPv6, which qemu never answers.
        let network = dir.join("network-config");
        std::fs::write(
            &network,
            "version: 2\nethernets:\n  enp0s2:\n    dhcp4: true\n",
        )
        .unwrap();
        let seed = dir.join("seed.iso");
        run(Command::new("genisoimage")
            .args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"])
            .arg(&seed)
            .arg(options.seed.join("user-data"))
            .arg(options.seed.join("meta-data"))
            .arg(&network));
        let mut netdev = String::from("user,id=net0,restrict=on");
        for (guest_port, host_port) in &options.forwards {
            // cmd: one socat per connection (a tcp: chardev is one
            // connection for the guest's whole life).
            netdev.push_str(&format!(
                ",guestfwd=tcp:{HOST}:{guest_port}-cmd:socat - TCP:127.0.0.1:{host_port}"
            ));
        }
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
            .args(["-smp", "1", "-m", "3072"])
            .arg("-kernel")
            .arg(&options.disk.kernel)
            .arg("-initrd")
            .arg(&options.disk.initrd)
            .arg("-append")
            .arg(format!(
                "root=LABEL=guestroot rw console=ttyS0 panic=-1 nodeimg.test={}",
                options.mode
            ))
            .arg("-serial")
            .arg(format!("file:{}", dir.join("console.log").display()))
            .arg("-serial")
            .arg(format!("file:{}", dir.join("report.log").display()))
            .arg("-monitor")
            .arg(format!(
                "unix:{},server=on,wait=off",
                dir.join("monitor.sock").display()
            ))
            .arg("-drive")
            .arg(format!("if=virtio,format=qcow2,file={}", root.display()))
            .arg("-drive")
            .arg(format!(
                "if=virtio,format=raw,readonly=on,file={}",
                seed.display()
            ))
            .args(["-device", "virtio-scsi-pci,id=scsi"])
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        if let Some(volume) = options.volume {
            qemu.arg("-drive")
                .arg(format!(
                    "if=none,id=vol,format=raw,file={}",
                    volume.display()
                ))
                .arg("-device")
                .arg(format!("scsi-hd,bus=scsi.0,drive=vol,{VOLUME_ID}"));
        }
        for (i, (serial, file)) in options.disks.iter().enumerate() {
            qemu.arg("-drive")
                .arg(format!(
                    "if=none,id=extra{i},format=raw,readonly=on,file={}",
                    file.display()
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=extra{i},serial={serial}"));
        }
        Guest {
            child: qemu
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("qemu.stderr")).unwrap())
                .spawn()
                .expect("qemu-system-x86_64 (Debian package qemu-system-x86) must be installed"),
            dir: dir.to_path_buf(),
            started: Instant::now(),
        }
    }

    /// Hot-plugs the data volume, as attaching a Hetzner volume to a
    /// running server does.
    pub fn attach_volume(&self, volume: &Path) {
        let mut monitor = UnixStream::connect(self.dir.join("monitor.sock")).unwrap();
        writeln!(
            monitor,
            "drive_add 0 if=none,id=vol,format=raw,file={}",
            volume.display()
        )
        .unwrap();
        writeln!(
            monitor,
            "device_add scsi-hd,bus=scsi.0,drive=vol,{VOLUME_ID}"
        )
        .unwrap();
        // Give the monitor time to act before the connection closes.
        std::thread::sleep(Duration::from_secs(2));
    }

    /// The probe's report so far, without the serial line's carriage returns.
    pub fn report(&self) -> String {
        std::fs::read_to_string(self.dir.join("report.log"))
            .unwrap_or_default()
            .replace('\r', "")
    }

    /// Seconds since qemu started when the `nth` `=== line` of the
    /// probe appeared, waiting up to `limit` (since qemu started).
    pub fn wait_for(&mut self, line: &str, nth: usize, limit: Duration) -> f64 {
        loop {
            if self.report().matches(&format!("=== {line}")).count() >= nth {
                return self.started.elapsed().as_secs_f64();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{}",
                    self.failure(&format!("qemu exited ({status}) before `{line}`"))
                );
            }
            if self.started.elapsed() > limit {
                panic!("{}", self.failure(&format!("no `{line}` after {limit:?}")));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits for the guest to power off.
    pub fn wait_exit(&mut self, limit: Duration) {
        while self.child.try_wait().unwrap().is_none() {
            if self.started.elapsed() > limit {
                panic!(
                    "{}",
                    self.failure(&format!("the guest was still running after {limit:?}"))
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The report and the console's end, for a failing assertion.
    pub fn failure(&self, what: &str) -> String {
        let console = std::fs::read_to_string(self.dir.join("console.log"))
            .unwrap_or_default()
            .replace('\r', "");
        let tail: Vec<&str> = console.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{what} (files in {})\n--- report\n{}\n--- console (end)\n{}\n--- qemu\n{}",
            self.dir.display(),
            self.report(),
            tail.join("\n"),
            std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default()
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
