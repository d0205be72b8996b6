//! `nodeimg bundle`, `nodeimg verify <bundle>` and the bundle's install.sh,
//! against the real Docker engine: the archive is reproducible and stores
//! shared blobs once; the installer runs with no network at all, loads the
//! images, installs a node's files, and the loaded images start and serve
//! SQL; one flipped byte in a blob is refused by both verify and install.sh.
//!
//! The images are built with their own agent (the test agent plus a
//! marker), so their tags are not the ones the other tests load and the
//! `docker rmi` here cannot pull an image from under them.

mod support {
    #[allow(dead_code)]
    pub mod images;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::images::{manifest_digest, repo, run, shared_cache, stripped_agent};

/// Held while a test removes, loads or checks the bundle's images.
static DOCKER_IMAGES: Mutex<()> = Mutex::new(());

const PREFIX: &str = "172.29.61";

fn nodeimg(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        // The cache the images were built with: bundle takes the signed
        // Packages indexes of their locks from it.
        .env(
            "NODEIMG_CACHE",
            shared_cache(&repo().join("target/test-bundle")),
        )
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// db and haproxy built once into target/test-bundle/images.
fn built_images() -> &'static Path {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let work = repo().join("target/test-bundle");
        let cache = shared_cache(&work);
        let agent = stripped_agent(&work.join("agent"));
        // Bytes after an ELF's last section are never loaded: the agent
        // runs the same, the images get their own digests.
        let mut bytes = std::fs::read(&agent).unwrap();
        bytes.extend_from_slice(b"\nnodeimg bundle test image\n");
        std::fs::write(&agent, bytes).unwrap();
        run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["build", "--all", "--output"])
            .arg(work.join("images"))
            .current_dir(repo())
            .env("NODEIMG_CACHE", &cache)
            .env("NODEIMG_AGENT", &agent));
        work.join("images")
    })
}

fn spec() -> String {
    format!(
        r#"[cluster]
name = "bundled"
cidr = "{PREFIX}.0/24"

[[db]]
name = "db-1"
ip = "{PREFIX}.11"

[[haproxy]]
name = "proxy-1"
ip = "{PREFIX}.21"

[patroni]
ttl = 20
loop_wait = 1
retry_timeout = 5

[[database]]
name = "appdb"
owner = "app"
extensions = ["vector"]

[[user]]
name = "app"
databases = ["appdb"]

[[pool]]
name = "appdb"
database = "appdb"
"#
    )
}

/// The spec's one node of each role.
fn node_of(role: &str) -> &'static str {
    if role == "db" { "db-1" } else { "proxy-1" }
}

/// A folder with cluster.toml, the cluster's secrets and each node's own
/// file (`<node>.secrets.toml`).
fn inputs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), spec()).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["secrets", "init", "--cluster", "cluster.toml"])
        .current_dir(dir.path()));
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["secrets", "for-node", "--all", "-o", "."])
        .current_dir(dir.path()));
    dir
}

fn bundle(dir: &Path, output: &str, extra: &[&str]) -> Output {
    let images = built_images().to_str().unwrap().to_string();
    let template = repo().join("cloud-init/node.yaml.j2");
    let recipes = repo().join("recipes");
    let mut args = vec![
        "bundle",
        "cluster.toml",
        "-o",
        output,
        "--images",
        &images,
        "--template",
        template.to_str().unwrap(),
        "--recipes",
        recipes.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = nodeimg(&args, dir);
    assert!(output.status.success(), "{}", text(&output));
    output
}

fn extract(archive: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into));
    into.join("nodeimg-bundled")
}

/// (role, reference, config digest, manifest digest) from the bundle's roles file.
fn roles(bundle: &Path) -> Vec<[String; 4]> {
    std::fs::read_to_string(bundle.join("roles"))
        .unwrap()
        .lines()
        .map(|line| {
            let parts: Vec<String> = line.split(' ').map(str::to_string).collect();
            parts.try_into().unwrap()
        })
        .collect()
}

fn image_id(reference: &str) -> Option<String> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn remove_images(bundle: &Path) {
    for [_, reference, ..] in roles(bundle) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &reference])
            .output();
    }
}

/// `sh install.sh ARGS` in a network namespace of its own: only the
/// loopback device exists, the Docker socket (a file) stays reachable.
fn install_offline(bundle: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--net", "sh"])
        .arg(bundle.join("install.sh"))
        .args(args)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_bundle_is_reproducible_stores_shared_blobs_once_and_keeps_secrets_out() {
    let dir = inputs();
    let first = bundle(dir.path(), "first.tar", &[]);
    bundle(dir.path(), "second.tar", &[]);
    let bytes = std::fs::read(dir.path().join("first.tar")).unwrap();
    assert!(
        bytes == std::fs::read(dir.path().join("second.tar")).unwrap(),
        "two bundles of the same inputs differ"
    );

    // Smaller than the two docker-load tarballs together: blobs both
    // images hold are stored once.
    let separate: u64 = ["db.tar", "haproxy.tar"]
        .iter()
        .map(|t| std::fs::metadata(built_images().join(t)).unwrap().len())
        .sum();
    assert!(
        (bytes.len() as u64) < separate,
        "bundle {} bytes, images {separate}",
        bytes.len()
    );
    let report = String::from_utf8_lossy(&first.stdout).into_owned();
    let (stored, referenced) = report
        .split_once(" blobs stored for ")
        .map(|(a, b)| {
            (
                a.rsplit(' ').next().unwrap().parse::<usize>().unwrap(),
                b.split(' ').next().unwrap().parse::<usize>().unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("{report}"));
    assert!(stored < referenced, "{report}");
    let unpacked = tempfile::tempdir().unwrap();
    let root = extract(&dir.path().join("first.tar"), unpacked.path());
    let blob_files = std::fs::read_dir(root.join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blob_files, stored);
    assert_eq!(mode(&dir.path().join("first.tar")), 0o644);

    // No password of the cluster is in a bundle made without --with-secrets.
    let secrets: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.path().join("cluster.secrets.toml")).unwrap())
            .unwrap();
    let superuser = secrets["superuser_password"].as_str().unwrap();
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(!contains(&bytes, superuser));
    assert!(!contains(&bytes, "PRIVATE KEY"), "no key of any node or CA");
    assert!(!root.join("host/db/root/etc/nodeimg/secrets.toml").exists());
    assert!(!root.join("secrets").exists());

    // With --with-secrets: each node's own file, 0600 in the archive and on
    // disk, and never the CA's key.
    bundle(dir.path(), "secret.tar", &["--with-secrets"]);
    assert_eq!(mode(&dir.path().join("secret.tar")), 0o600);
    let secret_bytes = std::fs::read(dir.path().join("secret.tar")).unwrap();
    let ca_key = secrets["tls"]["ca_key"].as_str().unwrap();
    assert!(
        !contains(&secret_bytes, ca_key.lines().nth(1).unwrap()),
        "the CA key is in a bundle"
    );
    let secret_root = extract(&dir.path().join("secret.tar"), &unpacked.path().join("s"));
    let db_secrets = secret_root.join("secrets/db-1.secrets.toml");
    assert_eq!(mode(&db_secrets), 0o600);
    let db_text = std::fs::read_to_string(&db_secrets).unwrap();
    assert!(db_text.contains(superuser));
    assert_eq!(
        db_text.matches("BEGIN PRIVATE KEY").count(),
        1,
        "its own key only"
    );
    assert!(db_text.contains("[tls.nodes.db-1]"));
    assert_eq!(
        std::fs::read_to_string(secret_root.join("nodes")).unwrap(),
        "db-1 db\nproxy-1 haproxy\n"
    );
    let proxy_secrets =
        std::fs::read_to_string(secret_root.join("secrets/proxy-1.secrets.toml")).unwrap();

    // The bundle's user-data (image loaded from the bundle, no package
    // installs) passes Debian trixie's cloud-init schema check.
    for role in ["db", "haproxy"] {
        let checked = run(Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!(
                "{}:/seed:ro",
                secret_root.join("cloud-init").display()
            ))
            .args([
                "--entrypoint",
                "cloud-init",
                support::images::loaded_host_image(),
            ])
            .args(["schema", "--config-file", &format!("/seed/{role}.yaml")]));
        assert!(
            text(&checked).contains("Valid schema"),
            "{role}: {}",
            text(&checked)
        );
        let user_data =
            std::fs::read_to_string(secret_root.join(format!("cloud-init/{role}.yaml"))).unwrap();
        assert!(
            !user_data.contains("packages:"),
            "{role}: nothing to install"
        );
    }
    assert!(
        !proxy_secrets.contains(superuser),
        "proxies get no Patroni password"
    );
}

#[test]
fn the_installer_loads_and_installs_with_no_network_and_the_images_serve() {
    let dir = inputs();
    // Unpacked in x/ below, as --host-dir tells the units.
    let host_dir = dir.path().join("x");
    bundle(
        dir.path(),
        "cluster-bundle.tar",
        &["--host-dir", host_dir.to_str().unwrap()],
    );
    let verify = nodeimg(&["verify", "cluster-bundle.tar"], dir.path());
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("sboms/db.spdx.json: agrees with the lock"));
    // Debian's signatures over the sources, re-checked from the bundle alone.
    assert!(
        text(&verify).contains("db.toml: source `debian-security` (http://security.debian.org/debian-security trixie-security): InRelease sha256:"),
        "{}",
        text(&verify)
    );
    let root = extract(
        &dir.path().join("cluster-bundle.tar"),
        &dir.path().join("x"),
    );

    // The namespace install.sh runs in has no network but loopback.
    // (/proc/net/dev lists the devices of the reader's namespace.)
    let devices = run(Command::new("unshare").args(["--net", "cat", "/proc/net/dev"]));
    let devices: Vec<String> = String::from_utf8_lossy(&devices.stdout)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .collect();
    assert_eq!(devices, ["lo"]);

    let guard = DOCKER_IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    remove_images(&root);
    let mut installed = Vec::new();
    for role in ["db", "haproxy"] {
        let target = dir.path().join(format!("{role}-host"));
        let secrets = dir.path().join(format!("{}.secrets.toml", node_of(role)));
        // The role comes from the bundle's list of nodes.
        let output = install_offline(
            &root,
            &[
                "--node",
                node_of(role),
                "--root",
                target.to_str().unwrap(),
                "--secrets",
                secrets.to_str().unwrap(),
            ],
        );
        let log = text(&output);
        assert!(output.status.success(), "{log}");
        assert!(log.contains("all files match SHA256SUMS"), "{log}");
        installed.push(target);
    }
    let roles = roles(&root);
    for [role, reference, config, manifest] in &roles {
        let id = image_id(reference).unwrap_or_else(|| panic!("{reference} not loaded"));
        assert!(id == *config || id == *manifest, "{role}: {id}");
    }
    drop(guard);

    // What each host got: the spec, its secrets 0600, a unit naming the image.
    for (target, [role, reference, ..]) in installed.iter().zip(&roles) {
        assert_eq!(
            std::fs::read_to_string(target.join("etc/nodeimg/cluster.toml")).unwrap(),
            spec()
        );
        let secrets = target.join("etc/nodeimg/secrets.toml");
        assert_eq!(mode(&secrets), 0o600);
        assert_eq!(
            std::fs::read(&secrets).unwrap(),
            std::fs::read(dir.path().join(format!("{}.secrets.toml", node_of(role)))).unwrap()
        );
        let unit =
            std::fs::read_to_string(target.join("etc/systemd/system/nodeimg.service")).unwrap();
        assert!(unit.contains(&format!("\n  {reference}\n")), "{unit}");
        // The unit's own pre-start checks accept the image install.sh loaded.
        assert!(unit_image_checks(&unit).status.success());
    }

    // Images gone (a pruned engine): the unit loads them again from the
    // unpacked bundle, with no network, and its ID check passes.
    let guard = DOCKER_IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    remove_images(&root);
    let unit =
        std::fs::read_to_string(installed[0].join("etc/systemd/system/nodeimg.service")).unwrap();
    let reloaded = unit_image_checks(&unit);
    assert!(reloaded.status.success(), "{}", text(&reloaded));
    assert!(
        text(&reloaded).contains("all files match SHA256SUMS"),
        "{}",
        text(&reloaded)
    );
    for [_, reference, config, manifest] in &roles {
        let id = image_id(reference).unwrap_or_else(|| panic!("{reference} not reloaded"));
        assert!(id == *config || id == *manifest);
    }
    drop(guard);

    // The loaded images start with the installed files and serve SQL
    // through PgBouncer with SCRAM.
    let mut network = Network::create();
    for (target, [role, reference, ..]) in installed.iter().zip(&roles) {
        let host = if role == "db" { 11 } else { 21 };
        network.start(role, reference, host, target);
    }
    let secrets: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.path().join("cluster.secrets.toml")).unwrap())
            .unwrap();
    let password = secrets["users"]["app"]["password"].as_str().unwrap();
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(120) {
        match psql(&format!("{PREFIX}.21"), password, "select 6 * 7") {
            Ok(answer) => {
                assert_eq!(answer, "42");
                return;
            }
            Err(err) => last = err,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "no answer through PgBouncer after 120 s: {last}\n{}",
        network.logs()
    );
}

/// Runs, in order and with no network, the unit's ExecStartPre lines that
/// deal with its image (load from the bundle if missing, check its ID),
/// as systemd would (`$$` is a literal `$`).
fn unit_image_checks(unit: &str) -> Output {
    let script: Vec<String> = unit
        .lines()
        .filter(|l| l.contains("docker image inspect"))
        .map(|l| {
            l.strip_prefix("ExecStartPre=/bin/sh -c '")
                .and_then(|l| l.strip_suffix('\''))
                .unwrap_or_else(|| panic!("not a sh -c line: {l}"))
                .replace("$$", "$")
        })
        .collect();
    assert_eq!(script.len(), 2, "load and check lines in {unit}");
    Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            &format!("({}) && ({})", script[0], script[1]),
        ])
        .output()
        .unwrap()
}

fn psql(host: &str, password: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .arg(format!(
            "host={host} port=6432 dbname=appdb user=app connect_timeout=2"
        ))
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// A Docker network for the bundled nodes, removed with them on drop.
struct Network {
    name: String,
    containers: Vec<String>,
}

impl Network {
    fn create() -> Network {
        let name = "nodeimg-bundle-test".to_string();
        // What an interrupted run left behind holds the subnet.
        for node in ["db", "haproxy"] {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &format!("{name}-{node}")])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
        run(Command::new("docker").args([
            "network",
            "create",
            "--subnet",
            &format!("{PREFIX}.0/24"),
            &name,
        ]));
        Network {
            name,
            containers: Vec::new(),
        }
    }

    /// Starts a node as its unit would, from the files install.sh put under `host_root`.
    fn start(&mut self, role: &str, reference: &str, host: u8, host_root: &Path) {
        let container = format!("{}-{role}", self.name);
        let etc = host_root.join("etc/nodeimg");
        run(Command::new("docker")
            .args(["run", "-d", "--name", &container])
            .args(["--network", &self.name, "--ip", &format!("{PREFIX}.{host}")])
            .arg("-v")
            .arg(format!(
                "{}:/etc/nodeimg/cluster.toml:ro",
                etc.join("cluster.toml").display()
            ))
            .arg("-v")
            .arg(format!(
                "{}:/run/secrets/nodeimg.toml:ro",
                etc.join("secrets.toml").display()
            ))
            .args(["-e", &format!("NODEIMG_PRIVATE_IP={PREFIX}.{host}")])
            .arg(reference));
        self.containers.push(container);
    }

    fn logs(&self) -> String {
        self.containers
            .iter()
            .map(|c| {
                let output = Command::new("docker").args(["logs", c]).output().unwrap();
                format!("--- {c}\n{}", text(&output))
            })
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", container])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

#[test]
fn one_flipped_byte_in_a_blob_is_refused_by_verify_and_by_the_installer() {
    let dir = inputs();
    bundle(dir.path(), "cluster-bundle.tar", &[]);
    let root = extract(
        &dir.path().join("cluster-bundle.tar"),
        &dir.path().join("x"),
    );

    // The db image's first layer: flip one byte in its middle.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("images/index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blobs = root.join("images/blobs/sha256");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blobs.join(manifest_digest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let path = blobs.join(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let named = format!("images/blobs/sha256/{layer}");

    let verify = nodeimg(&["verify", root.to_str().unwrap()], dir.path());
    assert!(!verify.status.success());
    assert!(
        text(&verify).contains(&format!("{named} is damaged")),
        "{}",
        text(&verify)
    );
    // The same, handed over as an archive.
    run(Command::new("tar")
        .arg("-cf")
        .arg(dir.path().join("damaged.tar"))
        .arg("-C")
        .arg(root.parent().unwrap())
        .arg("nodeimg-bundled"));
    let verify = nodeimg(&["verify", "damaged.tar"], dir.path());
    assert!(!verify.status.success());
    assert!(text(&verify).contains(&named), "{}", text(&verify));

    let _guard = DOCKER_IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    remove_images(&root);
    let secrets = dir.path().join("db-1.secrets.toml");
    let target = dir.path().join("host");
    let install = install_offline(
        &root,
        &[
            "--role",
            "db",
            "--root",
            target.to_str().unwrap(),
            "--secrets",
            secrets.to_str().unwrap(),
        ],
    );
    let log = text(&install);
    assert!(!install.status.success(), "{log}");
    assert!(log.contains(&named), "{log}");
    assert!(log.contains("Nothing was loaded or installed"), "{log}");
    for [_, reference, ..] in roles(&root) {
        assert_eq!(image_id(&reference), None, "{reference} was loaded");
    }
    assert!(
        !target.exists(),
        "files were installed from a damaged bundle"
    );
}

#[test]
fn an_offline_build_from_a_folder_of_debs_gives_the_same_image() {
    let online = built_images();
    let agent = repo().join("target/test-bundle/agent/nodeimg");
    let dir = tempfile::tempdir().unwrap();

    // The haproxy lock's .debs, laid out as on the mirror (a copied subset).
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("recipes/haproxy.lock")).unwrap())
            .unwrap();
    let debs = repo().join("target/test-package-cache/debs/sha256");
    for package in lock["package"].as_array().unwrap() {
        let target = dir
            .path()
            .join("debs")
            .join(package["path"].as_str().unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(debs.join(package["sha256"].as_str().unwrap()), target).unwrap();
    }

    // No network at all, an empty cache: the folder is the only source.
    let offline = |args: &[&str]| {
        run(Command::new("unshare")
            .args(["--net", env!("CARGO_BIN_EXE_nodeimg")])
            .args(args)
            .current_dir(repo())
            .env("NODEIMG_CACHE", dir.path().join("cache"))
            .env("NODEIMG_AGENT", &agent))
    };
    let folder = dir.path().join("debs");
    let fetched = offline(&[
        "fetch",
        "recipes/haproxy.toml",
        "--from-dir",
        folder.to_str().unwrap(),
    ]);
    assert!(
        text(&fetched).contains("packages of the lock taken from them"),
        "{}",
        text(&fetched)
    );
    let out = dir.path().join("out");
    offline(&[
        "build",
        "recipes/haproxy.toml",
        "--offline",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        manifest_digest(&out.join("haproxy")),
        manifest_digest(&online.join("haproxy"))
    );
}

#[test]
fn podman_loads_the_bundle_too() {
    let dir = inputs();
    bundle(dir.path(), "cluster-bundle.tar", &[]);
    let root = extract(
        &dir.path().join("cluster-bundle.tar"),
        &dir.path().join("x"),
    );
    let roles = roles(&root);
    let podman_rmi = || {
        for [_, reference, ..] in &roles {
            let _ = Command::new("podman")
                .args(["rmi", "-f", reference])
                .output();
        }
    };
    podman_rmi();
    let output = Command::new("unshare")
        .args(["--net", "sh"])
        .arg(root.join("install.sh"))
        .arg("--load-only")
        .env("NODEIMG_RUNTIME", "podman")
        .output()
        .unwrap();
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    // install.sh compared each image ID podman reports with the bundle's.
    for [role, reference, config, _] in &roles {
        assert!(
            log.contains(&format!(
                "{role}: {reference} loaded, image ID {}",
                &config[7..]
            )),
            "{log}"
        );
    }
    podman_rmi();
}
