//! The whole chain of a lock, offline: InRelease signature → Packages
//! SHA-256 from the signed Release → every locked package's version, size
//! and SHA-256. The attack: someone with write access to a checkout swaps
//! a package (haproxy) for another .deb whose control file says what the
//! edited lock says, recomputing the lock's checksums. `build` cannot tell
//! (the .deb is what the lock says); `verify` of the image, `bundle`, and
//! `verify` of a bundle someone rebuilt around the image refuse it, offline,
//! naming the package. Real Debian packages and indexes (the committed
//! haproxy and db locks), cached for every test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A cache of its own whose .debs and signed indexes are shared.
fn cache_in(work: &Path) -> PathBuf {
    let cache = work.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    for shared in ["debs", "packages"] {
        let target = repo().join("target/test-package-cache").join(shared);
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(target, cache.join(shared)).unwrap();
    }
    cache
}

fn agent() -> PathBuf {
    let dir = repo().join("target/test-agent-chain");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nodeimg");
    if !path.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_nodeimg"), &path).unwrap();
        run(Command::new("strip").arg(&path));
    }
    path
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

fn nodeimg(work: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(work)
        .env("NODEIMG_CACHE", work.join("cache"))
        .env("NODEIMG_AGENT", agent())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[track_caller]
fn refused(output: &Output, needles: &[&str]) {
    let text = text(output);
    assert!(!output.status.success(), "accepted:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// recipes/, overlays/, cloud-init/ and the example spec, copied.
fn workspace() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    for dir in ["recipes", "overlays", "cloud-init"] {
        run(Command::new("cp")
            .arg("-r")
            .arg(repo().join(dir))
            .arg(work.path()));
    }
    std::fs::copy(
        repo().join("examples/cluster.toml"),
        work.path().join("cluster.toml"),
    )
    .unwrap();
    cache_in(work.path());
    work
}

/// Rebuilds haproxy's .deb with `version` in its control file (dpkg-deb),
/// writes it under `dir`, and makes the lock name it: version, size and
/// SHA-256, content_sha256 recomputed. Returns (real, forged) versions.
fn forge(work: &Path, dir: &Path) -> (String, String) {
    let lock_path = work.join("recipes/haproxy.lock");
    let mut lock = nodeimg::lock::Lock::read(&lock_path).unwrap();
    let entry = lock
        .packages
        .iter_mut()
        .find(|p| p.name == "haproxy")
        .unwrap();
    let real = entry.version.clone();
    let forged = format!("{real}9");
    let deb = work.join("cache/debs/sha256").join(&entry.sha256);
    let tree = work.join("unpacked");
    run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    std::fs::write(
        &control,
        text.replace(
            &format!("Version: {real}\n"),
            &format!("Version: {forged}\n"),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("haproxy_forged_amd64.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&tree)
        .arg(&out));
    let bytes = std::fs::read(&out).unwrap();
    entry.version = forged.clone();
    entry.size = bytes.len() as u64;
    entry.sha256 = hex::encode(Sha256::digest(&bytes));
    lock.seal();
    std::fs::write(&lock_path, lock.to_toml()).unwrap();
    (real, forged)
}

/// SHA256SUMS of a bundle folder, written again over every file.
fn rewrite_sums(root: &Path) {
    let mut lines = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                if name != "SHA256SUMS" {
                    let sum = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                    lines.push(format!("{sum}  {name}\n"));
                }
            }
        }
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    std::fs::write(root.join("SHA256SUMS"), lines.concat()).unwrap();
}

#[test]
fn a_swapped_package_is_refused_by_verify_of_the_image_by_bundle_and_by_verify_of_a_bundle() {
    let honest = workspace();
    let h = honest.path();
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["build", "--all", "--output", "images"])
        .current_dir(h)
        .env("NODEIMG_CACHE", h.join("cache"))
        .env("NODEIMG_AGENT", agent())
        .env_remove("SOURCE_DATE_EPOCH"));
    // The honest image: the whole chain checks, from the cache and
    // recipes/ alone.
    let ok = nodeimg(h, &["verify", "images/haproxy"]);
    assert!(ok.status.success(), "{}", text(&ok));
    for source in ["debian", "debian-updates", "debian-security"] {
        assert!(
            text(&ok).contains(&format!("haproxy.toml: source `{source}` (trixie"))
                && text(&ok).contains("packages match the signed main/binary-amd64/Packages"),
            "{}",
            text(&ok)
        );
    }
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["secrets", "init", "--cluster", "cluster.toml"])
        .current_dir(h));
    let bundle = nodeimg(h, &["bundle", "cluster.toml", "-o", "honest.tar"]);
    assert!(bundle.status.success(), "{}", text(&bundle));
    let verified = nodeimg(h, &["verify", "honest.tar"]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("haproxy.toml: source `debian-security` (trixie-security):"),
        "{}",
        text(&verified)
    );

    // The case of the issue: only the version edited, content_sha256
    // recomputed. build refuses it (tests/build.rs); the check verify and
    // bundle make refuses it too, offline, from recipes/ and the cache.
    let mut edited = nodeimg::lock::Lock::read(&h.join("recipes/haproxy.lock")).unwrap();
    let entry = edited
        .packages
        .iter_mut()
        .find(|p| p.name == "haproxy")
        .unwrap();
    let version = entry.version.clone();
    entry.version = format!("{version}9");
    edited.seal();
    let keys = nodeimg::lock::index_store::key_files(&h.join("recipes/keys"));
    let packages = [h.join("cache/packages")];
    let store = nodeimg::lock::signed_packages::Store {
        inrelease: &h.join("recipes/inrelease"),
        packages: &packages,
        keys: &keys,
        hint: "",
        memo: &Default::default(),
    };
    let err = nodeimg::lock::signed_packages::recheck(&edited, &store)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "package haproxy {version}9 is not in the signed indexes"
        )) && err.contains(&format!("they have haproxy {version} (amd64)")),
        "{err}"
    );

    // The forgery: a .deb that says what the edited lock says.
    let forged_dir = workspace();
    let f = forged_dir.path();
    let (real, forged) = forge(f, &f.join("usb"));
    let source = nodeimg::lock::Lock::read(&f.join("recipes/haproxy.lock"))
        .unwrap()
        .packages
        .into_iter()
        .find(|p| p.name == "haproxy")
        .unwrap()
        .source;
    let fetched = nodeimg(f, &["fetch", "recipes/haproxy.toml", "--from-dir", "usb"]);
    assert!(fetched.status.success(), "{}", text(&fetched));
    let built = nodeimg(f, &["build", "recipes/haproxy.toml", "--output", "images"]);
    assert!(
        built.status.success(),
        "build cannot tell (the .deb is what the lock says): {}",
        text(&built)
    );
    let not_signed =
        format!("package haproxy {forged} is not in the signed indexes of source `{source}`");
    let they_have = format!("they have haproxy {real} (amd64)");
    refused(
        &nodeimg(f, &["verify", "images/haproxy"]),
        &[&not_signed, &they_have, "nodeimg lock"],
    );
    // bundle refuses to ship it.
    std::fs::copy(h.join("cluster.toml"), f.join("cluster.toml")).unwrap();
    std::fs::copy(
        h.join("cluster.secrets.toml"),
        f.join("cluster.secrets.toml"),
    )
    .unwrap();
    run(Command::new("cp")
        .arg("-r")
        .arg(h.join("images/db"))
        .arg(h.join("images/db.spdx.json"))
        .arg(f.join("images")));
    refused(
        &nodeimg(f, &["bundle", "cluster.toml", "-o", "forged.tar"]),
        &[&not_signed],
    );
    assert!(!f.join("forged.tar").exists());

    // The honest bundle rebuilt around the forged image: its blobs, its
    // descriptor in index.json, its SBOM, and SHA256SUMS made again.
    let unpacked = h.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(h.join("honest.tar"))
        .arg("-C")
        .arg(&unpacked));
    let root = std::fs::read_dir(&unpacked)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let layout = f.join("images/haproxy");
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        std::fs::copy(
            blob.path(),
            root.join("images/blobs/sha256").join(blob.file_name()),
        )
        .unwrap();
    }
    let forged_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("images/index.json")).unwrap()).unwrap();
    for descriptor in index["manifests"].as_array_mut().unwrap() {
        if descriptor["annotations"]["dev.nodeimg.role"] == "haproxy" {
            let mut replacement = forged_index["manifests"][0].clone();
            replacement["annotations"]["dev.nodeimg.role"] = "haproxy".into();
            *descriptor = replacement;
        }
    }
    std::fs::write(
        root.join("images/index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        f.join("images/haproxy.spdx.json"),
        root.join("sboms/haproxy.spdx.json"),
    )
    .unwrap();
    rewrite_sums(&root);
    refused(
        &nodeimg(h, &["verify", root.to_str().unwrap()]),
        &["files match SHA256SUMS", &not_signed, &they_have],
    );

    // A bundle whose signed index went missing says so.
    let packages = root.join("signatures/packages");
    let first = std::fs::read_dir(&packages)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    rewrite_sums(&root);
    refused(
        &nodeimg(h, &["verify", root.to_str().unwrap()]),
        &["is not in", "make the bundle again"],
    );
}
