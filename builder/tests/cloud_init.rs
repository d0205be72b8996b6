//! `nodeimg cloud-init` against Debian trixie's real cloud-init (in a
//! container image nodeimg builds from tests/host): schema validation,
//! what the user-data says, what cloud-init's write_files leaves behind,
//! and the mistakes refused before anything is written.

mod support {
    // Shared with tests/cluster.rs, which uses all of it.
    #[allow(dead_code)]
    pub mod images;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::images::{built_images_dir, loaded_host_image, loaded_images, manifest_digest, repo};

fn nodeimg(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs `script` with /bin/sh in the cloud-init host image, `seed`
/// mounted at /seed. (cloud-init's HTTP stack needs the CA bundle that
/// ca-certificates' postinst would make; nodeimg's build makes it.)
fn in_host(seed: &Path, script: &str) -> Output {
    Command::new("docker")
        .args(["run", "--rm", "--network", "none"])
        .args([
            "-v",
            "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
        ])
        .arg("-v")
        .arg(format!("{}:/seed:ro", seed.display()))
        .args(["--entrypoint", "/bin/sh", loaded_host_image(), "-c", script])
        .output()
        .unwrap()
}

struct Generated {
    _dir: tempfile::TempDir,
    work: PathBuf,
}

fn generate() -> Generated {
    generate_with("")
}

/// The example spec with `extra` appended, its secrets and user-data.
fn generate_with(extra: &str) -> Generated {
    loaded_images();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let spec = std::fs::read_to_string(repo().join("examples/cluster.toml")).unwrap();
    std::fs::write(work.join("cluster.toml"), spec + extra).unwrap();
    let init = nodeimg(&["secrets", "init", "--cluster", "cluster.toml"], &work);
    assert!(init.status.success(), "{init:?}");
    let images = built_images_dir();
    let template = repo().join("cloud-init/node.yaml.j2");
    let runtime = repo().join("recipes/host-runtime.toml");
    let output = nodeimg(
        &[
            "cloud-init",
            "cluster.toml",
            "--images",
            images.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--runtime",
            runtime.to_str().unwrap(),
            "--nocloud",
            "nocloud",
        ],
        &work,
    );
    assert!(output.status.success(), "{output:?}");
    Generated { _dir: dir, work }
}

fn digest_of(role: &str) -> String {
    manifest_digest(&built_images_dir().join(role))
}

#[test]
fn user_data_passes_cloud_init_schema_and_says_what_the_node_needs() {
    let generated = generate();
    // One file per node: each carries that node's own key.
    let written: Vec<String> = std::fs::read_dir(generated.work.join("out/cloud-init"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 5, "{written:?}");
    for (node, role) in [("db-postgres-01", "db"), ("haproxy-01", "haproxy")] {
        let path = generated.work.join(format!("out/cloud-init/{node}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#cloud-config\n"),
            "no BOM, the header first"
        );
        assert!(text.len() <= 32 * 1024, "{role}: {} bytes", text.len());
        let checked = in_host(
            path.parent().unwrap(),
            &format!("cloud-init schema --config-file /seed/{node}.yaml"),
        );
        let said = String::from_utf8_lossy(&checked.stdout).to_string()
            + &String::from_utf8_lossy(&checked.stderr);
        assert!(
            checked.status.success() && said.contains("Valid schema"),
            "{role}: {said}"
        );

        // Swap off now and after reboot, nothing recreating it.
        assert!(text.contains("swapoff -a"));
        assert!(text.contains("mounts:\n  - [ swap ]"));
        assert!(text.contains("swap:\n  size: 0"));
        // The image by digest, the pinned runtime, the unit.
        let image = format!(
            "registry.example.com/keybuzz/nodeimg-{role}@{}",
            digest_of(role)
        );
        assert!(
            text.contains(&format!("        {image}\n")),
            "{role}: image not pinned by digest"
        );
        // The runtime at the version recipes/host-runtime.lock pins, with
        // apt sources pinned to the snapshot of that lock's date.
        let runtime = nodeimg::lock::Lock::read(&repo().join("recipes/host-runtime.lock")).unwrap();
        let docker = runtime
            .packages
            .iter()
            .find(|p| p.name == "docker.io")
            .unwrap();
        assert!(text.contains(&format!("[ docker.io, \"{}\" ]", docker.version)));
        assert!(text.contains(&format!(
            "https://snapshot.debian.org/archive/debian-security/{} trixie-security main",
            runtime.snapshot.as_deref().unwrap()
        )));
        assert!(text.contains("ExecStart=/usr/bin/docker run --rm --name nodeimg --network host"));
        assert!(text.contains(&format!(
            "# nodeimg {role} node {node} of cluster keybuzz-pg17"
        )));
        // A rotated secrets file is read on `systemctl reload`.
        assert!(text.contains("-v /etc/nodeimg:/etc/nodeimg:ro"));
        assert!(text.contains("ExecReload=/usr/bin/docker kill --signal HUP nodeimg"));
        // The host firewall: the role's ports from the private network only.
        let ports = if role == "db" {
            "5432, 8008, 2379, 2380"
        } else {
            "5000, 5001, 7000, 6432"
        };
        assert!(
            text.contains(&format!("tcp dport {{ {ports} }} drop")),
            "{role}"
        );
        assert!(text.contains("ip saddr 10.0.0.0/16 accept"));
        assert!(text.contains("[ systemctl, enable, --now, nodeimg-firewall.service ]"));
        assert!(text.contains("Restart=always"));
        assert!(
            text.contains("vm.overcommit_memory = 2") && text.contains("vm.overcommit_ratio = 90")
        );
        assert!(text.contains("RemoveIPC=no"));
        assert!(text.contains("transparent_hugepage/enabled"));
        if role == "db" {
            assert!(text.contains("ExecStartPre=/usr/local/sbin/nodeimg-prepare-volume"));
            assert!(text.contains("/dev/disk/by-id/scsi-0HC_Volume_*"));
            assert!(
                text.contains("if [ -z \"$fstype\" ]; then\n          mkfs.xfs"),
                "formats only an empty volume"
            );
            assert!(text.contains("defaults,noatime"));
            assert!(text.contains("chown 999:999"));
            assert!(text.contains("--device /dev/watchdog") && text.contains("softdog"));
        } else {
            assert!(!text.contains("nodeimg-prepare-volume"));
        }
    }
    // NoCloud seeds per node.
    let meta =
        std::fs::read_to_string(generated.work.join("nocloud/db-postgres-02/meta-data")).unwrap();
    assert!(
        meta.contains("local-hostname: db-postgres-02") && meta.contains("private-ip: 10.0.0.121")
    );
}

#[test]
fn real_cloud_init_writes_the_files_and_a_db_node_without_volume_stops() {
    let generated = generate();
    let spec = std::fs::read_to_string(generated.work.join("cluster.toml")).unwrap();
    for (node, role) in [("db-postgres-01", "db"), ("haproxy-01", "haproxy")] {
        let seed = generated.work.join("nocloud").join(node);
        let output = in_host(
            &seed,
            "mkdir -p /etc/cloud/cloud.cfg.d && echo 'datasource_list: [ None ]' > /etc/cloud/cloud.cfg.d/99-test.cfg \
             && cloud-init init >/dev/null 2>&1; \
             cloud-init single --name write_files --frequency always --file /seed/user-data >/dev/null 2>&1 || exit 9; \
             echo '--- cluster'; cat /etc/nodeimg/cluster.toml; \
             echo '--- secrets'; ls -l /etc/nodeimg/secrets.toml; cat /etc/nodeimg/secrets.toml; \
             echo '--- unit'; cat /etc/systemd/system/nodeimg.service; \
             echo '--- firewall'; cat /etc/nodeimg/firewall.nft; \
             echo '--- volume'; if [ -x /usr/local/sbin/nodeimg-prepare-volume ]; then /usr/local/sbin/nodeimg-prepare-volume; echo \"status $?\"; fi",
        );
        let out = String::from_utf8_lossy(&output.stdout).to_string();
        let err = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{role}: {out}{err}");
        let section = |name: &str| -> String {
            let start = out.find(&format!("--- {name}\n")).unwrap() + name.len() + 5;
            out[start..].split("\n--- ").next().unwrap().to_string()
        };
        assert_eq!(
            section("cluster").trim_end(),
            spec.trim_end(),
            "{role}: the spec, byte for byte"
        );
        let secrets = section("secrets");
        assert!(secrets.starts_with("-rw-------"), "{role}: {secrets}");
        assert!(secrets.contains("scram = \"SCRAM-SHA-256$4096:"));
        // The node's own key and certificate, the CA certificate; never the
        // CA key or another node's key.
        assert_eq!(secrets.matches("BEGIN PRIVATE KEY").count(), 1, "{role}");
        assert!(
            secrets.contains(&format!("[tls.nodes.{node}]")),
            "{secrets}"
        );
        assert!(!secrets.contains("ca_key"), "the CA key reached {node}");
        // The firewall script nftables really loads (in a namespace of its own).
        let fw = generated.work.join(format!("{node}.nft"));
        std::fs::write(&fw, section("firewall")).unwrap();
        let loaded = Command::new("unshare")
            .args(["--net", "sh", "-c"])
            .arg(format!(
                "nft -f {} && nft list table inet nodeimg",
                fw.display()
            ))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&loaded.stdout);
        assert!(
            loaded.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        assert!(
            listing.contains("ip saddr 10.0.0.0/16 accept") && listing.contains("drop"),
            "{listing}"
        );
        if role == "db" {
            assert!(secrets.contains("superuser_password"));
            // No Hetzner volume in a container: the node refuses, loudly.
            assert!(section("volume").contains("status 1"), "{out}");
            assert!(err.contains("no Hetzner volume attached"), "{err}");
        } else {
            assert!(
                !secrets.contains("password"),
                "proxies get verifiers only: {secrets}"
            );
        }
        assert!(section("unit").contains(&digest_of(role)));
    }
}

#[test]
fn mistakes_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let spec = std::fs::read_to_string(repo().join("examples/cluster.toml")).unwrap();
    std::fs::write(work.join("cluster.toml"), &spec).unwrap();
    assert!(
        nodeimg(&["secrets", "init", "--cluster", "cluster.toml"], work)
            .status
            .success()
    );
    let template = repo().join("cloud-init/node.yaml.j2");
    let runtime = repo().join("recipes/host-runtime.toml");
    let images = built_images_dir();
    let attempt = |spec_file: &str, secrets: &str, images: &Path| -> String {
        let output = nodeimg(
            &[
                "cloud-init",
                spec_file,
                "--secrets",
                secrets,
                "--images",
                images.to_str().unwrap(),
                "--template",
                template.to_str().unwrap(),
                "--runtime",
                runtime.to_str().unwrap(),
            ],
            work,
        );
        assert!(!output.status.success());
        assert!(!work.join("out").exists(), "nothing written");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    loaded_images();
    let edited = |name: &str, from: &str, to: &str| {
        std::fs::write(work.join(name), spec.replace(from, to)).unwrap();
        name.to_string()
    };
    let dup = edited("dup.toml", "ip = \"10.0.0.12\"", "ip = \"10.0.0.11\"");
    assert!(attempt(&dup, "cluster.secrets.toml", &images).contains("duplicate member address"));
    let outside = edited("outside.toml", "ip = \"10.0.0.122\"", "ip = \"172.16.0.9\"");
    assert!(
        attempt(&outside, "cluster.secrets.toml", &images).contains("outside the private network")
    );
    let even = edited(
        "even.toml",
        "[[db]]\nname = \"db-postgres-03\"\nip = \"10.0.0.122\"\n",
        "",
    );
    assert!(attempt(&even, "cluster.secrets.toml", &images).contains("odd number"));
    std::fs::write(
        work.join("partial.toml"),
        "superuser_password = \"a-long-enough-secret\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        work.join("partial.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert!(attempt("cluster.toml", "partial.toml", &images).contains("replication_password"));
    let empty = tempfile::tempdir().unwrap();
    let never = attempt("cluster.toml", "cluster.secrets.toml", empty.path());
    assert!(
        never.contains("never built") && never.contains("nodeimg build recipes/db.toml"),
        "{never}"
    );
}

#[test]
fn a_posix_repository_is_bind_mounted_only_once_the_host_has_it_mounted() {
    // The unmounted case is a folder of this host's disk; the mounted one
    // /proc, which every Linux host mounts.
    let unmounted = tempfile::tempdir().unwrap();
    let unmounted = unmounted.path().to_str().unwrap().to_string();
    let mut checks = Vec::new();
    for path in [unmounted.as_str(), "/proc"] {
        let generated = generate_with(&format!(
            "\n[backup]\nrepository = \"posix\"\npath = \"{path}\"\n"
        ));
        let db = std::fs::read_to_string(generated.work.join("out/cloud-init/db-postgres-01.yaml"))
            .unwrap();
        assert!(db.contains(&format!("RequiresMountsFor={path}\n")), "{db}");
        assert!(
            db.contains(&format!("        -v {path}:{path} \\\n")),
            "{db}"
        );
        // The repository's port joins the db ports the firewall guards.
        assert!(
            db.contains("tcp dport { 5432, 8008, 2379, 2380, 8432 } drop"),
            "{db}"
        );
        let proxy =
            std::fs::read_to_string(generated.work.join("out/cloud-init/haproxy-01.yaml")).unwrap();
        assert!(!proxy.contains("RequiresMountsFor") && !proxy.contains(path));
        let check = db
            .lines()
            .find_map(|l| l.trim().strip_prefix("ExecStartPre=/bin/sh -c 'mountpoint"))
            .map(|rest| format!("mountpoint{}", rest.strip_suffix('\'').unwrap()))
            .expect("a mount check");
        // The unit's own check, run by this host's shell.
        checks.push(Command::new("sh").args(["-c", &check]).output().unwrap());
    }
    let refused = &checks[0];
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains(&format!(
            "the backup repository {unmounted} ([backup] path) is not a mounted filesystem"
        )),
        "{said}"
    );
    assert!(checks[1].status.success(), "{:?}", checks[1]);
}
