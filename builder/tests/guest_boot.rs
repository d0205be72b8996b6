//! The Hetzner path on a booted host: a stand-in for Hetzner's `debian-13`
//! (tests/guest, support::guest) boots under qemu (TCG) from the user-data
//! `nodeimg cloud-init` emits, and cloud-init, systemd, apt and Docker do
//! the whole first boot for real. The guest reaches nothing but the
//! test's own servers: a snapshot archive made of recipes/host-runtime.lock
//! alone (so the runtime pin must resolve from it) and a registry holding
//! the db image. A probe baked into the test guest only (never into what
//! nodeimg ships) reports on a second serial port what the test checks.
//!
//! - `registry_path_first_boot`: a blank volume, formatted XFS; everything
//!   a db node needs, PostgreSQL answering.
//! - `air_gapped_bundle_without_then_with_volume_and_reboot`: the bundle's
//!   user-data and install.sh on a host with no route anywhere: without a
//!   volume the unit refuses, nothing formatted; then a volume already
//!   holding XFS data is attached: kept, not reformatted, PostgreSQL
//!   answers; then rebooted: all of it again, the data written before
//!   still there, swap still off. (The reboot is on this path because its
//!   first boot is the shorter one: the two guests run side by side.)

mod support {
    pub mod archive;
    pub mod guest;
    #[allow(dead_code)]
    pub mod images;
    pub mod mirror;
    pub mod pgp;
    pub mod qemu;
}

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::archive::Server;
use support::images::{built_images_dir, loaded_images, manifest_digest, repo, run};
use support::qemu::{Guest, HOST, Options};

const SPEC: &str = r#"[cluster]
name = "guest"
cidr = "10.0.2.0/24"

# One db node: qemu's user-mode network gives the guest 10.0.2.15.
[[db]]
name = "db-1"
ip = "10.0.2.15"

[[database]]
name = "appdb"
owner = "app"

[[user]]
name = "app"
databases = ["appdb"]

[images]
db = "10.0.2.100:5000/nodeimg/db"
"#;

/// How long one boot may take under TCG before the test gives up.
const BOOT_LIMIT: Duration = Duration::from_secs(30 * 60);

fn nodeimg(dir: &Path, args: &[&str]) {
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        // The cache the images were built with: `bundle` re-checks their
        // locks against the signed indexes kept there.
        .env(
            "NODEIMG_CACHE",
            support::images::shared_cache(&repo().join("target/test-cluster")),
        )
        .env_remove("NODEIMG_SNAPSHOT_URL"));
}

/// cluster.toml and its secrets (each node's own file too) in a new folder.
fn inputs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), SPEC).unwrap();
    nodeimg(
        dir.path(),
        &["secrets", "init", "--cluster", "cluster.toml"],
    );
    nodeimg(dir.path(), &["secrets", "for-node", "--all", "-o", "."]);
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's docker-registry on loopback, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config digest of a built image layout: the image ID Docker gives it.
fn config_digest(layout: &Path) -> String {
    let manifest = manifest_digest(layout);
    let path = layout
        .join("blobs/sha256")
        .join(manifest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// The lines of one `--- name` section of the probe's report, from the
/// `=== start` line on.
fn section(report: &str, start: &str, name: &str) -> String {
    let from = report
        .find(&format!("=== {start}"))
        .unwrap_or_else(|| panic!("no `=== {start}` in the report:\n{report}"));
    let rest = &report[from..];
    let header = format!("\n--- {name}\n");
    let begin = rest
        .find(&header)
        .unwrap_or_else(|| panic!("no section {name} after {start}:\n{rest}"))
        + header.len();
    // From the header's newline on, so an empty section ends at once.
    let body = &rest[begin - 1..];
    let end = [body.find("\n--- "), body.find("\n=== ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    body[..end].trim().to_string()
}

/// A blank data volume (sparse).
fn blank_volume(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(4 << 30).unwrap();
}

fn work_dir(name: &str) -> PathBuf {
    let dir = repo().join("target/test-guest/runs").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// cloud-init's own verdict on a boot: done, no errors. A failure shows
/// what the unit and the boot's commands said, so it can be read from CI.
fn assert_cloud_init_done(report: &str, boot: &str) {
    let cloud_init = section(report, boot, "cloud-init");
    let why = || {
        ["journal", "cloud-init-output", "failed"]
            .map(|name| format!("--- {name}\n{}", section(report, boot, name)))
            .join("\n")
    };
    assert!(
        cloud_init.contains("status: done") && cloud_init.ends_with("exit 0"),
        "{boot}: {cloud_init}\n{}",
        why()
    );
}

/// What every booted db node shows, whichever way it was installed: the
/// probe's sections after its `=== boot` line.
fn assert_db_node(report: &str, boot: &str, volume_uuid: Option<&str>, image_id: &str) {
    let s = |name: &str| section(report, boot, name);
    assert_eq!(s("swap"), "", "{boot}: swap is on");
    let mount = s("mount");
    assert!(
        mount.starts_with("xfs /dev/sd"),
        "{boot}: {} is not the XFS volume: {mount:?}",
        "/var/lib/nodeimg"
    );
    let volume = s("volume");
    if let Some(uuid) = volume_uuid {
        assert!(volume.starts_with(uuid), "{boot}: volume {volume}");
    }
    assert!(
        volume.contains("postgresql") && volume.contains("etcd"),
        "{volume}"
    );
    let sysctl = s("sysctl");
    for line in [
        "vm.swappiness = 1",
        "vm.overcommit_memory = 2",
        "vm.overcommit_ratio = 90",
        "vm.dirty_background_ratio = 5",
        "vm.dirty_ratio = 10",
    ] {
        assert!(
            sysctl.contains(line),
            "{boot}: {line} not in effect: {sysctl}"
        );
    }
    assert_eq!(
        s("thp"),
        "always madvise [never]\nalways defer defer+madvise madvise [never]",
        "{boot}: transparent huge pages"
    );
    assert_eq!(s("watchdog"), "/dev/watchdog\n1", "{boot}: softdog");
    let runtime = nodeimg::lock::Lock::read(&repo().join("recipes/host-runtime.lock")).unwrap();
    let installed = s("runtime");
    for name in ["docker.io", "containerd", "runc", "nftables", "xfsprogs"] {
        let locked = runtime.packages.iter().find(|p| p.name == name).unwrap();
        assert!(
            installed.contains(&format!("{name} {}", locked.version)),
            "{boot}: {name} is not the locked {}: {installed}",
            locked.version
        );
    }
    assert_eq!(s("unit"), "active\nenabled", "{boot}: nodeimg.service");
    assert_eq!(s("image"), image_id, "{boot}: the container's image");
    let binds = s("binds");
    assert!(
        binds.contains("/var/lib/nodeimg/postgresql:/var/lib/postgresql"),
        "{boot}: {binds}"
    );
    assert_ne!(
        s("firewall"),
        "0",
        "{boot}: the host firewall is not loaded"
    );
}

#[test]
fn registry_path_first_boot() {
    let images = loaded_images();
    let _ = images;
    let layout = built_images_dir().join("db");
    let disk = support::guest::built(false);
    let inputs = inputs();
    let dir = inputs.path();

    // The db image in a registry, pulled by digest as on Hetzner.
    let registry = Registry::start();
    nodeimg(
        dir,
        &[
            "push",
            layout.to_str().unwrap(),
            &format!("127.0.0.1:{}/nodeimg/db:guest", registry.port),
        ],
    );
    // The host runtime's snapshot, made of its lock alone.
    let archive = dir.join("archive");
    let cache = support::guest::cache();
    support::guest::fetch(&repo().join("recipes/host-runtime.toml"), &cache);
    support::mirror::lay(&repo().join("recipes/host-runtime.lock"), &cache, &archive);
    let server = Server::start(&archive);
    let template = repo().join("cloud-init/node.yaml.j2");
    let runtime = repo().join("recipes/host-runtime.toml");
    nodeimg(
        dir,
        &[
            "cloud-init",
            "cluster.toml",
            "--images",
            built_images_dir().to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--runtime",
            runtime.to_str().unwrap(),
            "--snapshot-url",
            &format!("http://{HOST}"),
            "--nocloud",
            "nocloud",
        ],
    );

    let run_dir = work_dir("registry");
    let volume = run_dir.join("volume.raw");
    blank_volume(&volume);
    let mut guest = Guest::start(
        &run_dir,
        &Options {
            disk: &disk,
            seed: &dir.join("nocloud/db-1"),
            volume: Some(&volume),
            disks: vec![],
            forwards: vec![(80, server.addr.port()), (5000, registry.port)],
            mode: "full",
        },
    );
    let ready = guest.wait_for("postgres-ready", 1, BOOT_LIMIT);
    eprintln!("guest power-on to PostgreSQL answering: {ready:.0} s (TCG)");
    guest.wait_for("poweroff", 1, BOOT_LIMIT);
    guest.wait_exit(BOOT_LIMIT);
    let report = guest.report();
    assert_cloud_init_done(&report, "boot 1");
    assert_db_node(&report, "boot 1", None, &config_digest(&layout));
    assert_eq!(section(&report, "boot 1", "data"), "before-reboot");
    // Everything apt fetched came from the snapshot the user-data names.
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|(path, status)| path.contains("/docker.io_") && *status == 200),
        "{requests:?}"
    );
}

#[test]
fn air_gapped_bundle_without_then_with_volume_and_reboot() {
    loaded_images();
    let layout = built_images_dir().join("db");
    // The operator's image of an air-gapped host: the runtime preinstalled.
    let disk = support::guest::built(true);
    let inputs = inputs();
    let dir = inputs.path();
    let template = repo().join("cloud-init/node.yaml.j2");
    let recipes = repo().join("recipes");
    nodeimg(
        dir,
        &[
            "bundle",
            "cluster.toml",
            "-o",
            "bundle.tar",
            "--with-secrets",
            "--images",
            built_images_dir().to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--recipes",
            recipes.to_str().unwrap(),
        ],
    );
    // The seed: the bundle's own user-data for the role.
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    let user_data = run(Command::new("tar")
        .args(["-xOf", "bundle.tar", "nodeimg-guest/cloud-init/db.yaml"])
        .current_dir(dir))
    .stdout;
    std::fs::write(seed.join("user-data"), user_data).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: db-1\nlocal-hostname: db-1\n",
    )
    .unwrap();
    // A volume that already holds an XFS filesystem, of a known UUID.
    let run_dir = work_dir("airgap");
    let volume = run_dir.join("volume.raw");
    blank_volume(&volume);
    let uuid = "6d1f5e0a-2c4b-4e8f-9a7d-3b2c1d0e9f18";
    run(Command::new("mkfs.xfs")
        .args(["-q", "-L", "existing", "-m"])
        .arg(format!("uuid={uuid}"))
        .arg(&volume));

    // No forward at all: the guest has no route to anything.
    let mut guest = Guest::start(
        &run_dir,
        &Options {
            disk: &disk,
            seed: &seed,
            volume: None,
            disks: vec![("bundle", &dir.join("bundle.tar"))],
            forwards: vec![],
            mode: "airgap",
        },
    );
    guest.wait_for("volume wanted", 1, BOOT_LIMIT);
    let report = guest.report();
    let refused = section(&report, "boot 1", "refused");
    assert!(
        refused.contains("nodeimg: no Hetzner volume attached (/dev/disk/by-id/scsi-0HC_Volume_*): attach one; refusing to put the database on the root disk"),
        "{refused}"
    );
    assert!(!refused.ends_with("\nactive"), "{refused}");
    assert_eq!(
        section(&report, "boot 1", "disks"),
        "0",
        "something was formatted"
    );
    let install = section(&report, "boot 1", "install");
    assert!(install.contains("all files match SHA256SUMS"), "{install}");
    assert!(
        install.contains("db: "),
        "the image was not loaded: {install}"
    );
    assert!(install.contains("loaded, image ID sha256:"), "{install}");

    guest.attach_volume(&volume);
    let ready = guest.wait_for("postgres-ready", 1, BOOT_LIMIT);
    eprintln!(
        "air-gapped guest power-on to PostgreSQL answering (volume attached late): {ready:.0} s"
    );
    let rebooting = guest.wait_for("reboot", 1, BOOT_LIMIT);
    let report = guest.report();
    let image_id = config_digest(&layout);
    // Kept, not reformatted: the same filesystem, now holding the node's data.
    assert_db_node(&report, "postgres-ready", Some(uuid), &image_id);
    assert_eq!(section(&report, "boot 1", "data"), "before-reboot");

    // Rebooted (the probe's `systemctl reboot`; the volume stays attached):
    // everything again from the host's own state, the data still there.
    eprintln!(
        "reboot to PostgreSQL answering: {:.0} s",
        guest.wait_for("postgres-ready", 2, rebooting_limit(rebooting)) - rebooting
    );
    guest.wait_for("poweroff", 1, rebooting_limit(rebooting));
    guest.wait_exit(rebooting_limit(rebooting));
    let report = guest.report();
    assert_cloud_init_done(&report, "boot 2");
    assert_db_node(&report, "boot 2", Some(uuid), &image_id);
    assert_eq!(section(&report, "boot 2", "data"), "before-reboot");
}

/// The limit for the second boot, counted like all of `wait_for`'s limits
/// from qemu's start.
fn rebooting_limit(rebooting: f64) -> Duration {
    Duration::from_secs_f64(rebooting) + BOOT_LIMIT
}
