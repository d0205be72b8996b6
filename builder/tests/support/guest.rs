//! The qemu test guest: tests/guest/guest.lock's packages (a stand-in
//! for Hetzner's `debian-13`) installed by mmdebstrap from an archive laid
//! from that lock alone (support::mirror), so every package is the locked
//! one and Debian's maintainer scripts run as on Debian's own images; then
//! packed as an ext4 root disk, with the kernel and initrd beside it (qemu
//! boots them directly: no bootloader). A raw root disk, not the rootfs
//! as an initramfs, so a reboot keeps what the first boot did, as a
//! server's disk does. Built once per input (the locks and the scripts
//! under tests/guest/), cached in target/test-guest/.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::images::{repo, run, shared_cache};
use super::mirror;

pub struct GuestDisk {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The raw ext4 root disk: use it as a qcow2 backing file, never write it.
    pub disk: PathBuf,
}

/// `name=version` of every package of a lock.
fn pinned(lock: &Path) -> Vec<String> {
    nodeimg::lock::Lock::read(lock)
        .unwrap()
        .packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

/// Fills the shared cache with a lock's .debs and signed indexes.
pub fn fetch(recipe: &Path, cache: &Path) {
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .arg("fetch")
        .arg(recipe)
        .env("NODEIMG_CACHE", cache));
}

/// The guest, with the host runtime's packages preinstalled too when
/// `with_runtime` (an air-gapped host's image: its operator installed
/// them from a local mirror).
/// The cache the guest tests share (its .debs those of every test).
pub fn cache() -> PathBuf {
    shared_cache(&repo().join("target/test-guest"))
}

pub fn built(with_runtime: bool) -> GuestDisk {
    let work = repo().join("target/test-guest");
    let cache = cache();
    let guest_recipe = repo().join("tests/guest/guest.toml");
    let runtime_recipe = repo().join("recipes/host-runtime.toml");
    let mut locks = vec![repo().join("tests/guest/guest.lock")];
    if with_runtime {
        locks.push(repo().join("recipes/host-runtime.lock"));
    }
    let mut key = Sha256::new();
    for file in locks
        .iter()
        .cloned()
        .chain(["customize.sh", "probe.sh"].map(|f| repo().join("tests/guest").join(f)))
    {
        key.update(std::fs::read(&file).unwrap());
    }
    let key: String = key.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let variant = if with_runtime { "runtime" } else { "plain" };
    let out = work.join(format!("{variant}-{key}"));
    // Disks of this variant's older inputs are never used again.
    for entry in std::fs::read_dir(&work).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{variant}-")) && entry.path() != out {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let disk = GuestDisk {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.img"),
        disk: out.join("root.raw"),
    };
    if disk.disk.is_file() {
        return disk;
    }
    fetch(&guest_recipe, &cache);
    if with_runtime {
        fetch(&runtime_recipe, &cache);
    }
    let archive = work.join(format!("archive-{key}"));
    let _ = std::fs::remove_dir_all(&archive);
    let mut sources = Vec::new();
    let mut includes = Vec::new();
    for lock in &locks {
        for (base, suite) in mirror::lay(lock, &cache, &archive) {
            let line = format!("deb copy://{}/{base} {suite} main", archive.display());
            if !sources.contains(&line) {
                sources.push(line);
            }
        }
        includes.extend(pinned(lock));
    }
    includes.sort();
    includes.dedup();
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for entry in std::fs::read_dir(repo().join("recipes/keys")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("debian-archive-")
        {
            std::fs::copy(&path, keys.join(path.file_name().unwrap())).unwrap();
        }
    }
    let rootfs = work.join(format!("rootfs-{key}"));
    let _ = std::fs::remove_dir_all(&rootfs);
    let epoch = nodeimg::lock::Lock::read(&locks[0])
        .unwrap()
        .source_date_epoch;
    run(Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--mode=root",
            "--variant=custom",
            "--format=directory",
        ])
        .arg(format!("--keyring={}", keys.display()))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--aptopt=Acquire::Languages \"none\"")
        .arg(format!("--include={}", includes.join(",")))
        .arg(format!(
            "--customize-hook=sh {} \"$1\"",
            repo().join("tests/guest/customize.sh").display()
        ))
        .arg("trixie")
        .arg(&rootfs)
        .args(&sources)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()));
    std::fs::create_dir_all(&out).unwrap();
    let boot = |prefix: &str| -> PathBuf {
        std::fs::read_dir(rootfs.join("boot"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no /boot/{prefix}* in the guest"))
    };
    std::fs::copy(boot("vmlinuz-"), &disk.kernel).unwrap();
    std::fs::copy(boot("initrd.img-"), &disk.initrd).unwrap();
    let partial = out.join("root.raw.partial");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "guestroot", "-d"])
        .arg(&rootfs)
        .arg(&partial)
        .arg("6G"));
    std::fs::rename(&partial, &disk.disk).unwrap();
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_dir_all(&archive);
    disk
}
