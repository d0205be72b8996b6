//! Where the signed index files a lock was made from are kept: under their
//! SHA-256, in `recipes/inrelease/` beside the lock and in bundles, so the
//! lock's signatures can be checked again later, offline
//! (`signed_sources::recheck`). Storage only: no knowledge of locks, so the
//! index reader can keep what it verified without depending on them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The folder, beside a lock or in a bundle, holding the InRelease files.
pub const DIR: &str = "inrelease";

/// The folder, beside `DIR` (in the cache and in bundles), holding the
/// Packages indexes the InRelease files sign, by SHA-256, compressed as
/// the archive served them. Not committed: see docs/architecture.md.
pub const PACKAGES_DIR: &str = "packages";

/// `<root>/packages`: the Packages indexes kept under `root` (a cache, or
/// a bundle's `signatures/`).
pub fn packages_dir(root: &Path) -> PathBuf {
    root.join(PACKAGES_DIR)
}

/// The first of `dirs` holding a file named `sha256`.
pub fn find(dirs: &[PathBuf], sha256: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(sha256)).find(|p| p.is_file())
}

#[derive(Debug, Error)]
#[error("cannot write {path}: {err}")]
pub struct KeepError {
    path: PathBuf,
    err: std::io::Error,
}

/// Keeps verified InRelease bytes under `dir`, named by their SHA-256
/// (an existing file of that name already holds the same bytes).
pub fn keep(dir: &Path, bytes: &[u8]) -> Result<PathBuf, KeepError> {
    let path = dir.join(hex::encode(Sha256::digest(bytes)));
    if !path.exists() {
        std::fs::create_dir_all(dir)
            .and_then(|()| crate::util::fsutil::write_atomic(&path, bytes, 0o644))
            .map_err(|err| KeepError {
                path: path.clone(),
                err,
            })?;
    }
    Ok(path)
}

/// The key files under `dir` (`.asc`, `.gpg`), sorted.
pub fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asc" || e == "gpg"))
        .collect();
    files.sort();
    files
}
