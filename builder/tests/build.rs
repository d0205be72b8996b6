//! `nodeimg build` end to end on the committed db and haproxy locks, with
//! real packages from Debian's archive: reproducible digests across
//! directories, umask and TZ; accepted by skopeo, umoci and Docker; the
//! binaries inside run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Packages are cached across test runs under target/, like a user's cache.
fn shared_debs() -> PathBuf {
    let debs = repo().join("target/test-package-cache/debs");
    std::fs::create_dir_all(&debs).unwrap();
    debs
}

/// A cache folder of its own under `work` (so layers are really built in
/// each), whose downloaded `.deb`s and signed indexes are shared with every
/// other test.
fn cache_in(work: &Path) -> PathBuf {
    let cache = work.join("cache");
    if !cache.exists() {
        std::fs::create_dir_all(&cache).unwrap();
        std::os::unix::fs::symlink(shared_debs(), cache.join("debs")).unwrap();
        let packages = repo().join("target/test-package-cache/packages");
        std::fs::create_dir_all(&packages).unwrap();
        std::os::unix::fs::symlink(packages, cache.join("packages")).unwrap();
    }
    cache
}

/// The agent laid into the images: this build of nodeimg, stripped as a
/// release build would be (a debug binary is over 200 MB).
fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let dir = repo().join("target/test-agent");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodeimg");
        std::fs::copy(env!("CARGO_BIN_EXE_nodeimg"), &path).unwrap();
        run(Command::new("strip").arg(&path));
        path
    })
}

/// Copies recipes/ and overlays/ under `work`.
fn copy_recipes(work: &Path) {
    run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("overlays"))
        .arg(work));
    // What a checkout holds: the recipes and locks, their keys, and the
    // signed InRelease files the locks were checked against (the build
    // fetches the signed indexes they name for `verify`).
    std::fs::create_dir_all(work.join("recipes/keys")).unwrap();
    std::fs::create_dir_all(work.join("recipes/inrelease")).unwrap();
    for entry in std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .chain(std::fs::read_dir(repo().join("recipes/keys")).unwrap())
        .chain(std::fs::read_dir(repo().join("recipes/inrelease")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            let relative = path.strip_prefix(repo().join("recipes")).unwrap();
            std::fs::copy(&path, work.join("recipes").join(relative)).unwrap();
        }
    }
}

/// `nodeimg <args>` in `work` with its own cache; returns the output
/// whatever the exit status.
fn nodeimg_in(work: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(work)
        .env("NODEIMG_CACHE", cache_in(work))
        .env("NODEIMG_AGENT", agent())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds both roles into `out`, from a copy of recipes/ under `work`,
/// with the given umask and TZ. Returns the `role digest` lines.
fn build(work: &Path, umask: &str, tz: &str) -> String {
    copy_recipes(work);
    let script = format!("umask {umask}; exec \"$0\" build --all --output images");
    let output = run(Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_nodeimg"))
        .current_dir(work)
        .env("NODEIMG_CACHE", cache_in(work))
        .env("NODEIMG_AGENT", agent())
        .env("TZ", tz)
        .env_remove("SOURCE_DATE_EPOCH"));
    String::from_utf8(output.stdout).unwrap()
}

struct Built {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    first: PathBuf,
    digests: String,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = build(a.path(), "022", "UTC");
        let second = build(b.path(), "077", "Asia/Tokyo");
        assert_eq!(
            first, second,
            "same lock, different directory, umask and TZ: same digests"
        );
        Built {
            first: a.path().join("images"),
            _dirs: (a, b),
            digests: first,
        }
    })
}

fn digest_of(role: &str) -> String {
    built()
        .digests
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{role} ")))
        .unwrap()
        .to_string()
}

#[test]
fn builds_are_bit_identical_across_directories_umask_and_tz() {
    let built = built();
    let _guard = first_dir_lock();
    assert_eq!(built.digests.lines().count(), 2, "{}", built.digests);
    // Not only the manifest: the docker tarballs are byte-identical too.
    let other = built._dirs.1.path().join("images");
    for role in ["db", "haproxy"] {
        let a = std::fs::read(built.first.join(format!("{role}.tar"))).unwrap();
        let b = std::fs::read(other.join(format!("{role}.tar"))).unwrap();
        assert!(a == b, "{role}.tar differs between the two builds");
    }
}

#[test]
fn skopeo_and_umoci_accept_the_layout() {
    let layout = built().first.join("db");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let output = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{tag}", layout.display())));
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspected["Digest"].as_str(), Some(digest_of("db").as_str()));
    assert_eq!(inspected["Architecture"], "amd64");

    let bundle = tempfile::tempdir().unwrap();
    let unpacked = bundle.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&unpacked));
    let rootfs = unpacked.join("rootfs");
    assert!(rootfs.join("usr/lib/postgresql/17/bin/postgres").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let tmp = std::fs::metadata(rootfs.join("tmp")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&tmp.permissions()) & 0o7777,
        0o1777
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("postgres:x:999:999:"), "{passwd}");
    // The dpkg database lists every locked package at its exact version.
    let listed = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            rootfs.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version}\\n"]));
    let lock: toml::Table = std::fs::read_to_string(repo().join("recipes/db.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    for package in lock["package"].as_array().unwrap() {
        let line = format!(
            "{} {}",
            package["name"].as_str().unwrap(),
            package["version"].as_str().unwrap()
        );
        assert!(listed.lines().any(|l| l == line), "dpkg-query lacks {line}");
    }
    // ... though dpkg's programs are pruned (the recipe says why): no
    // maintainer script ever runs in the image.
    assert!(listed.lines().any(|l| l.starts_with("dpkg ")));
    for program in [
        "usr/bin/dpkg",
        "usr/bin/dpkg-deb",
        "usr/bin/dpkg-divert",
        "usr/bin/dpkg-query",
        "usr/bin/dpkg-split",
        "usr/bin/dpkg-statoverride",
        "usr/bin/dpkg-trigger",
        "usr/bin/dpkg-maintscript-helper",
        "usr/bin/dpkg-realpath",
        "usr/bin/update-alternatives",
        "usr/sbin/start-stop-daemon",
        "usr/libexec/dpkg/dpkg-db-backup",
    ] {
        assert!(
            std::fs::symlink_metadata(rootfs.join(program)).is_err(),
            "/{program} is in the db image"
        );
    }
    let left: Vec<_> = std::fs::read_dir(rootfs.join("usr/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dpkg"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The overlays are on top, the agent in its place.
    assert!(rootfs.join("usr/share/nodeimg/README.md").is_file());
    let agent = std::fs::metadata(rootfs.join("usr/bin/nodeimg")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&agent.permissions()) & 0o777,
        0o755
    );
    // The recipe and lock travel inside the image; docs were pruned.
    assert!(rootfs.join("usr/share/nodeimg/recipe.lock").is_file());
    assert!(!rootfs.join("usr/share/man").join("man1").exists());
}

#[test]
fn docker_loads_and_runs_the_images() {
    let built = built();
    for (role, binary, args, expected) in [
        (
            "db",
            "/usr/lib/postgresql/17/bin/postgres",
            "--version",
            "postgres (PostgreSQL) 17.",
        ),
        ("db", "/usr/bin/patroni", "--version", "patroni 4."),
        ("haproxy", "/usr/sbin/haproxy", "-v", "HAProxy version 3.0"),
        ("haproxy", "/usr/bin/nodeimg", "--version", "nodeimg "),
    ] {
        let loaded = run(Command::new("docker")
            .arg("load")
            .arg("-i")
            .arg(built.first.join(format!("{role}.tar"))));
        let loaded = String::from_utf8(loaded.stdout).unwrap();
        // Docker may first say it renamed an older image of the same tag.
        let reference = loaded
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| panic!("no `Loaded image:` line in {loaded:?}"))
            .to_string();
        assert!(
            reference.starts_with(&format!("nodeimg/{role}:")),
            "{loaded}"
        );
        let output = run(Command::new("docker").args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            binary,
            &reference,
            args,
        ]));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(expected), "{binary} {args}: {text}");
    }
}

#[test]
fn the_sbom_lists_every_locked_package_with_a_purl() {
    let built = built();
    let bytes = std::fs::read(built.first.join("db.spdx.json")).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(built._dirs.1.path().join("images/db.spdx.json")).unwrap(),
        "reproducible SBOM"
    );
    let sbom: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let purls: Vec<&str> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
        .collect();
    assert!(purls[0].starts_with("pkg:oci/db@sha256%3A"), "{}", purls[0]);
    let lock: toml::Table = std::fs::read_to_string(repo().join("recipes/db.lock"))
        .unwrap()
        .parse()
        .unwrap();
    for package in lock["package"].as_array().unwrap() {
        // purl names are percent-encoded: libstdc++6 → libstdc%2B%2B6.
        let name = package["name"].as_str().unwrap().replace('+', "%2B");
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with(&format!("pkg:deb/debian/{name}@"))),
            "no purl for {name}"
        );
    }
    assert!(
        purls.contains(&"pkg:deb/debian/patroni@4.0.7-3~deb13u1?arch=all"),
        "{purls:?}"
    );
    // The agent and the overlays are named with their SHA-256.
    use sha2::Digest;
    let agent_sha = hex::encode(sha2::Sha256::digest(std::fs::read(agent()).unwrap()));
    assert!(
        purls
            .iter()
            .any(|p| p.starts_with("pkg:generic/nodeimg@") && p.ends_with(&agent_sha)),
        "{purls:?}"
    );
    assert!(
        purls
            .iter()
            .any(|p| p.starts_with("pkg:generic/nodeimg-overlays-db@")),
        "{purls:?}"
    );
}

#[test]
fn inspect_reports_the_digest_and_packages() {
    let built = built();
    let output = run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["inspect", "--json"])
        .arg(built.first.join("haproxy")));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["digest"].as_str(),
        Some(digest_of("haproxy").as_str())
    );
    let lock: toml::Table = std::fs::read_to_string(repo().join("recipes/haproxy.lock"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        report["package_count"].as_u64(),
        Some(lock["package"].as_array().unwrap().len() as u64)
    );
    let sizes: Vec<u64> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["installed_size_kib"].as_u64().unwrap())
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "largest first: {sizes:?}"
    );
}

fn manifest_layers(layout: &Path) -> Vec<String> {
    let read = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = read(layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read(layout.join("blobs/sha256").join(&digest[7..]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn roles_share_their_base_layer_blob() {
    let built = built();
    let db = manifest_layers(&built.first.join("db"));
    let haproxy = manifest_layers(&built.first.join("haproxy"));
    assert!(db.len() >= 4, "db is split into several layers: {db:?}");
    assert!(haproxy.len() >= 3, "{haproxy:?}");
    assert_eq!(db[0], haproxy[0], "the base layer is one shared blob");
    // The agent binary is the same too; nothing else is.
    assert_eq!(
        db.iter().filter(|d| haproxy.contains(d)).count(),
        2,
        "only the base and the agent are shared: {db:?} {haproxy:?}"
    );
}

#[test]
fn an_unchanged_rebuild_writes_nothing() {
    let work = &built()._dirs.0;
    let _guard = first_dir_lock();
    let tarball = work.path().join("images/db.tar");
    let before = std::fs::metadata(&tarball).unwrap().modified().unwrap();
    let output = nodeimg_in(work.path(), &["build", "--all", "--output", "images"]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("up to date").count(), 2, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), built().digests);
    assert_eq!(
        std::fs::metadata(&tarball).unwrap().modified().unwrap(),
        before,
        "a no-op build rewrote {}",
        tarball.display()
    );
}

/// Tests that rebuild in the first build's folder take turns.
fn first_dir_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_damaged_cached_layer_is_refused_removed_and_rebuilt() {
    let expected = digest_of("haproxy");
    let work = tempfile::tempdir().unwrap();
    copy_recipes(work.path());
    let args = ["build", "recipes/haproxy.toml", "--output", "images"];
    let first = nodeimg_in(work.path(), &args);
    assert!(first.status.success(), "{first:?}");
    // Same size, one byte changed: only the digest check can see it.
    let layers = manifest_layers(&work.path().join("images/haproxy"));
    let blob = work.path().join("cache/blobs/sha256").join(&layers[1][7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    std::fs::remove_dir_all(work.path().join("images")).unwrap();

    let damaged = nodeimg_in(work.path(), &args);
    assert!(!damaged.status.success());
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert!(
        stderr.contains(&layers[1][7..]) && stderr.contains("damaged"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(work.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-written: {left:?}");

    let again = nodeimg_in(work.path(), &args);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!("haproxy {expected}")
    );
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_no_image() {
    // A real ENOSPC: the build runs in a container (the haproxy image has
    // a shell and glibc) writing to a 16 MB tmpfs.
    let built = built();
    let loaded = run(Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(built.first.join("haproxy.tar")));
    let loaded = String::from_utf8(loaded.stdout).unwrap();
    let reference = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    copy_recipes(work.path());
    let cache = cache_in(work.path());
    std::fs::remove_file(cache.join("debs")).unwrap();
    let output = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--tmpfs", "/out:size=16m"])
        .arg("-v")
        .arg(format!("{}:/nodeimg:ro", env!("CARGO_BIN_EXE_nodeimg")))
        .arg("-v")
        .arg(format!("{}:/work", work.path().display()))
        .arg("-v")
        .arg(format!("{}:/work/cache/debs:ro", shared_debs().display()))
        .args(["-w", "/work", "-e", "NODEIMG_CACHE=/work/cache"])
        .args(["--entrypoint", "/bin/sh", &reference, "-c"])
        .arg("/nodeimg build recipes/db.toml --output /out; status=$?; echo left: $(ls -A /out); exit $status")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("/out"),
        "the message names the place: {stderr}"
    );
    assert_eq!(stdout.trim(), "left:", "nothing half-written in /out");
}

#[test]
fn verify_accepts_the_build_and_names_a_damaged_blob() {
    let built = built();
    let copy = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-r")
        .arg(built.first.join("haproxy"))
        .arg(built.first.join("haproxy.spdx.json"))
        .arg(copy.path()));
    let layout = copy.path().join("haproxy");
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .arg("verify")
            .arg(&layout)
            .arg("--recipes")
            .arg(repo().join("recipes"))
            .env("NODEIMG_CACHE", cache_in(built._dirs.0.path()))
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("agrees with the lock"));
    // The signatures the lock recorded, re-checked from recipes/inrelease.
    let report = String::from_utf8_lossy(&ok.stderr);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("haproxy.toml: source `debian` (") && l.contains(" signed by ")),
        "{report}"
    );

    // The SBOM must match the lock inside the image.
    let sbom_path = copy.path().join("haproxy.spdx.json");
    let sbom = std::fs::read_to_string(&sbom_path).unwrap();
    std::fs::write(
        &sbom_path,
        sbom.replace("\"name\":\"pgbouncer\"", "\"name\":\"pgbouncer-fake\""),
    )
    .unwrap();
    let bad_sbom = verify();
    assert!(!bad_sbom.status.success());
    assert!(
        String::from_utf8_lossy(&bad_sbom.stderr).contains("pgbouncer"),
        "{bad_sbom:?}"
    );
    std::fs::write(&sbom_path, sbom).unwrap();

    // One flipped byte in a layer: refused, and the blob is named.
    let layers = manifest_layers(&layout);
    let blob = layout.join("blobs/sha256").join(&layers[1][7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let damaged = verify();
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert!(!damaged.status.success());
    assert!(
        stderr.contains(&layers[1]) && stderr.contains("damaged"),
        "{stderr}"
    );
}

/// The committed haproxy lock with haproxy's version edited and its
/// content_sha256 recomputed, as someone with write access to a checkout
/// could: (the path of the lock, the real version, the forged one).
fn forge_haproxy_lock(work: &Path) -> (PathBuf, String, String) {
    let path = work.join("recipes/haproxy.lock");
    let mut lock = nodeimg::lock::Lock::read(&path).unwrap();
    let haproxy = lock
        .packages
        .iter_mut()
        .find(|p| p.name == "haproxy")
        .unwrap();
    let real = haproxy.version.clone();
    haproxy.version = format!("{real}9");
    let forged = haproxy.version.clone();
    lock.seal();
    std::fs::write(&path, lock.to_toml()).unwrap();
    // It reads as a well-formed, self-consistent lock.
    nodeimg::lock::Lock::read(&path).unwrap();
    (path, real, forged)
}

#[test]
fn a_lock_with_a_forged_version_and_a_recomputed_checksum_is_refused_by_build() {
    let work = tempfile::tempdir().unwrap();
    copy_recipes(work.path());
    let args = ["build", "recipes/haproxy.toml", "--output", "images"];
    // First with the layers cached from an honest build (a cached layer is
    // found by the packages' SHA-256s), then with an empty layer cache (the
    // .debs are read again).
    let honest = nodeimg_in(work.path(), &args);
    assert!(honest.status.success(), "{honest:?}");
    std::fs::remove_dir_all(work.path().join("images")).unwrap();
    let (_, real, forged) = forge_haproxy_lock(work.path());
    for cache in ["warm", "cold"] {
        if cache == "cold" {
            std::fs::remove_dir_all(work.path().join("cache/layers")).unwrap();
        }
        let output = nodeimg_in(work.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{cache}: built from a forged lock"
        );
        assert!(
            stderr.contains(&format!(
                "package haproxy: its .deb says Version \"{real}\", the lock says \"{forged}\""
            )),
            "{cache}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(work.path().join("images"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{cache}: nothing written: {left:?}");
    }
}
