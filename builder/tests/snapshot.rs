//! Locks that build forever: when the mirror answers 404 for a locked
//! `.deb` (a superseded security update), `fetch` and `build` take it from
//! a snapshot archive laid out as snapshot.debian.org
//! (`<base>/archive/<archive>/<lock's snapshot>/<pool path>`), still
//! checked against the lock's SHA-256, and the image is the same one.
//! Everything is served on loopback: a signed archive with real `.deb`s
//! and a snapshot stand-in on another port.

mod support {
    pub mod archive;
    pub mod pgp;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::archive::{Archive, Pkg, Server};
use support::pgp::{KeyKind, generate_key};

struct Fixture {
    key: support::pgp::TestKey,
    dir: tempfile::TempDir,
    archive: Archive,
    server: Server,
    /// The snapshot stand-in's root (`archive/<name>/<timestamp>/...`).
    snapshot_root: PathBuf,
    snapshot: Server,
}

fn packages() -> Vec<Pkg> {
    vec![
        Pkg::new("hello", "2.10-3")
            .depends("libhello1 (>= 1.0)")
            .real(&[("usr/bin/hello", "#!/bin/sh\necho hello\n")]),
        Pkg::new("libhello1", "1.0-1").real(&[("usr/lib/libhello.so.1", "ELF?\n")]),
    ]
}

/// The "security" suite: a fixed libhello1 in the pool of updates.
fn security_packages() -> Vec<Pkg> {
    vec![
        Pkg::new("libhello1", "1.0-1+deb13u1")
            .pool("updates/main")
            .real(&[("usr/lib/libhello.so.1", "ELF, fixed\n")]),
    ]
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key(
            KeyKind::Ed25519,
            "Stand-in Archive <archive@example.invalid>",
        );
        let archive = Archive::new(&dir.path().join("mirror"));
        archive.write_suite("stable", &packages(), &[&key]);
        archive.write_suite("stable-security", &security_packages(), &[&key]);
        let server = Server::start(&archive.root);
        let snapshot_root = dir.path().join("snapshot");
        std::fs::create_dir_all(&snapshot_root).unwrap();
        let snapshot = Server::start(&snapshot_root);
        let recipes = dir.path().join("recipes");
        std::fs::create_dir_all(recipes.join("keys")).unwrap();
        std::fs::write(recipes.join("keys/archive.asc"), key.public_armored()).unwrap();
        let url = server.url();
        std::fs::write(
            recipes.join("hello.toml"),
            format!(
                r#"[recipe]
name = "hello"

[[source]]
name = "main"
url = "{url}"
suite = "stable"
components = ["main"]
keys = ["keys/archive.asc"]
snapshot_archive = "standin"

[[source]]
name = "security"
url = "{url}"
suite = "stable-security"
components = ["main"]
keys = ["keys/archive.asc"]
snapshot_archive = "standin-security"

[packages]
include = ["hello"]

[image]
entrypoint = ["/usr/bin/hello"]
"#
            ),
        )
        .unwrap();
        Fixture {
            key,
            dir,
            archive,
            server,
            snapshot_root,
            snapshot,
        }
    }

    fn nodeimg(&self, args: &[&str], cache: &str, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nodeimg"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("NODEIMG_CACHE", self.dir.path().join(cache))
            .env("NODEIMG_BACKOFF_MS", "10")
            .env_remove("NODEIMG_SNAPSHOT_URL")
            .env_remove("SOURCE_DATE_EPOCH");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    fn lock(&self) -> nodeimg::lock::Lock {
        nodeimg::lock::Lock::read(&self.dir.path().join("recipes/hello.lock")).unwrap()
    }

    /// Copies every locked `.deb` and the suites' indexes into the
    /// snapshot stand-in at the lock's timestamp, then moves the mirror on:
    /// the pool files are gone (404) and the suites are signed again with
    /// other indexes.
    fn supersede_on_the_mirror(&self, key: &support::pgp::TestKey) {
        let lock = self.lock();
        let timestamp = lock.snapshot.clone().unwrap();
        for archive in ["standin", "standin-security"] {
            let target = self
                .snapshot_root
                .join("archive")
                .join(archive)
                .join(&timestamp);
            std::fs::create_dir_all(&target).unwrap();
            let copied = Command::new("cp")
                .arg("-r")
                .arg(self.archive.root.join("dists"))
                .arg(&target)
                .output()
                .unwrap();
            assert!(copied.status.success());
        }
        for package in &lock.packages {
            let archive = lock
                .sources
                .iter()
                .find(|s| s.name == package.source)
                .and_then(|s| s.snapshot_archive.clone())
                .unwrap();
            let target = self
                .snapshot_root
                .join("archive")
                .join(archive)
                .join(&timestamp)
                .join(&package.path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::rename(self.archive.file(&package.path), &target).unwrap();
        }
        let moved_on = |mut packages: Vec<Pkg>| {
            packages.push(Pkg::new("newcomer", "1.0-1"));
            packages
        };
        self.archive
            .write_suite("stable", &moved_on(packages()), &[key]);
        self.archive
            .write_suite("stable-security", &moved_on(security_packages()), &[key]);
        for package in &lock.packages {
            let _ = std::fs::remove_file(self.archive.file(&package.path));
        }
    }
}

#[track_caller]
fn ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

#[track_caller]
fn fails(output: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected a failure:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    stderr
}

fn digest(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hello "))
        .unwrap()
        .to_string()
}

fn image_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_deb_the_mirror_no_longer_serves_comes_from_the_snapshot_with_the_same_image_digest() {
    let fx = Fixture::new();
    ok(&fx.nodeimg(&["lock", "recipes/hello.toml"], "cache", &[]));
    let lock = fx.lock();
    assert_eq!(lock.lock_version, 2);
    // Half a day after the newest signed Release (Sat, 12 Sep 2026 07:55:41).
    assert_eq!(lock.snapshot.as_deref(), Some("20260912T195541Z"));
    let archives: Vec<_> = lock
        .sources
        .iter()
        .map(|s| s.snapshot_archive.as_deref())
        .collect();
    assert_eq!(archives, [Some("standin"), Some("standin-security")]);
    let libhello = lock
        .packages
        .iter()
        .find(|p| p.name == "libhello1")
        .unwrap();
    assert_eq!(libhello.version, "1.0-1+deb13u1", "the security fix wins");

    // The build from the live mirror.
    let args = ["build", "recipes/hello.toml", "--output", "online"];
    let online = fx.nodeimg(&args, "cache", &[]);
    ok(&online);
    let expected = digest(&online);

    // Debian moves on: the locked .debs are gone from the mirror's pool
    // and only the snapshot archive has them.
    fx.supersede_on_the_mirror(&fx.key);
    let snapshot_url = fx.snapshot.url();
    fx.server.clear_log();
    let args = ["build", "recipes/hello.toml", "--output", "offline-mirror"];
    let built = fx.nodeimg(
        &[&args[..], &["--snapshot-url", &snapshot_url]].concat(),
        "fresh-cache",
        &[],
    );
    let stderr = ok(&built);
    assert_eq!(digest(&built), expected, "the same image from the snapshot");
    assert!(
        stderr.contains("not on the mirror any more (404)"),
        "{stderr}"
    );
    // The mirror was asked first and said 404; the snapshot served the
    // exact path of the lock's timestamp.
    for package in &lock.packages {
        assert!(
            fx.server
                .requests()
                .contains(&(format!("/{}", package.path), 404)),
            "{:?}",
            fx.server.requests()
        );
    }
    let served: Vec<(String, u16)> = fx.snapshot.requests();
    assert!(
        served.contains(&(
            format!(
                "/archive/standin-security/20260912T195541Z/{}",
                libhello.path
            ),
            200
        )),
        "{served:?}"
    );

    // The signed indexes the lock was made from came from the snapshot
    // too (the mirror's suites moved on): the image's whole chain checks,
    // offline.
    let verified = fx.nodeimg(
        &["verify", "offline-mirror/hello", "--recipes", "recipes"],
        "fresh-cache",
        &[],
    );
    let said = ok(&verified);
    assert!(
        said.contains("source `security` (stable-security): 1 packages match the signed main/binary-amd64/Packages"),
        "{said}"
    );
    assert!(
        served.iter().any(|(path, status)| path.starts_with(
            "/archive/standin/20260912T195541Z/dists/stable/main/binary-amd64/Packages"
        ) && *status == 200),
        "{served:?}"
    );

    // The base URL from the environment, here a folder (an internal
    // mirror works the same), for `fetch`: packages and indexes.
    let folder = format!("file://{}", fx.snapshot_root.display());
    ok(&fx.nodeimg(
        &["fetch", "recipes/hello.toml"],
        "third-cache",
        &[("NODEIMG_SNAPSHOT_URL", &folder)],
    ));
    assert_eq!(
        std::fs::read_dir(fx.dir.path().join("third-cache/packages"))
            .unwrap()
            .count(),
        2,
        "both suites' signed indexes"
    );

    // The SHA-256 still decides: a snapshot serving other bytes is refused.
    let on_snapshot = fx
        .snapshot_root
        .join("archive/standin-security/20260912T195541Z")
        .join(&libhello.path);
    let good = std::fs::read(&on_snapshot).unwrap();
    std::fs::write(&on_snapshot, b"!<arch>\nsomething else\n").unwrap();
    let args = ["build", "recipes/hello.toml", "--output", "tampered"];
    fails(
        &fx.nodeimg(
            &[&args[..], &["--snapshot-url", &snapshot_url]].concat(),
            "fourth-cache",
            &[],
        ),
        &[
            "package libhello1 1.0-1+deb13u1",
            "/archive/standin-security/20260912T195541Z/",
            "nothing was kept",
        ],
    );
    assert!(image_files(&fx.dir.path().join("tampered")).is_empty());

    // Gone from both: the error names both places.
    std::fs::remove_file(&on_snapshot).unwrap();
    fails(
        &fx.nodeimg(
            &[&args[..], &["--snapshot-url", &snapshot_url]].concat(),
            "fourth-cache",
            &[],
        ),
        &[
            "package libhello1 1.0-1+deb13u1: the mirror no longer serves it",
            "HTTP 404) and neither does the snapshot archive",
            "--snapshot-url",
        ],
    );
    std::fs::write(&on_snapshot, good).unwrap();

    // A lock of format 1 (no snapshot recorded) says what to do.
    let mut old = lock.clone();
    old.lock_version = 1;
    old.snapshot = None;
    for source in &mut old.sources {
        source.snapshot_archive = None;
    }
    old.seal();
    std::fs::write(fx.dir.path().join("recipes/hello.lock"), old.to_toml()).unwrap();
    fails(
        &fx.nodeimg(&["fetch", "recipes/hello.toml"], "fifth-cache", &[]),
        &[
            "the mirror no longer serves it",
            "lock_version 1",
            "re-lock with `nodeimg lock`",
        ],
    );
}
