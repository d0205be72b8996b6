//! An apt archive laid out as a snapshot archive serves it
//! (`<root>/archive/<snapshot_archive>/<snapshot>/`), made of nothing but
//! what a lock names: the InRelease files it verified (beside the lock),
//! the Packages indexes they sign and the locked `.deb`s (both from a
//! nodeimg cache, by SHA-256). Symlinks only; the signatures are Debian's
//! own, so apt checks them with Debian's keyring.

use std::path::{Path, PathBuf};

use nodeimg::lock::Lock;

/// `(sha256, path)` of every file the `SHA256:` section of an InRelease names.
fn signed_files(inrelease: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut in_section = false;
    for line in inrelease.lines() {
        if line.starts_with("SHA256:") {
            in_section = true;
        } else if in_section && line.starts_with(' ') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [hash, _size, path] = fields[..] {
                files.push((hash.to_string(), path.to_string()));
            }
        } else if in_section {
            in_section = false;
        }
    }
    files
}

fn link(target: &Path, at: &Path) {
    assert!(target.is_file(), "{} is missing", target.display());
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    if at.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(target, at).unwrap();
    }
}

/// The lock's archive tree under `root`; returns each source's base
/// directory, relative to `root` (`archive/debian/20261130T142141Z`).
/// `cache` holds `debs/sha256/` and `packages/` (`nodeimg fetch` fills
/// them).
pub fn lay(lock_path: &Path, cache: &Path, root: &Path) -> Vec<(String, String)> {
    let lock = Lock::read(lock_path).unwrap();
    let snapshot = lock.snapshot.as_deref().expect("the lock names a snapshot");
    let inrelease_dir = lock_path.parent().unwrap().join("inrelease");
    let base_of = |source: &str| -> PathBuf {
        let source = lock.sources.iter().find(|s| s.name == source).unwrap();
        let archive = source.snapshot_archive.as_deref().unwrap();
        PathBuf::from(format!("archive/{archive}/{snapshot}"))
    };
    let mut bases = Vec::new();
    for source in &lock.sources {
        let base = base_of(&source.name);
        let dists = root.join(&base).join("dists").join(&source.suite);
        let inrelease = inrelease_dir.join(&source.inrelease_sha256);
        link(&inrelease, &dists.join("InRelease"));
        let text = std::fs::read_to_string(&inrelease).unwrap();
        for (hash, path) in signed_files(&text) {
            let index = cache.join("packages").join(&hash);
            if !index.is_file() {
                continue; // a variant the lock did not keep (apt tries the next)
            }
            link(&index, &dists.join(&path));
            let dir = Path::new(&path).parent().unwrap();
            link(&index, &dists.join(dir).join("by-hash/SHA256").join(&hash));
        }
        bases.push((base.display().to_string(), source.suite.clone()));
    }
    for package in &lock.packages {
        let deb = cache.join("debs/sha256").join(&package.sha256);
        link(
            &deb,
            &root.join(base_of(&package.source)).join(&package.path),
        );
    }
    bases
}
