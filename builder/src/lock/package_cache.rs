//! The `.deb` files a lock names, fetched once into a content-addressed
//! cache (`<cache>/debs/sha256/<hash>`) and verified by size and SHA-256
//! every time they are used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::fetch::{FetchError, Fetcher};
use crate::lock::{Lock, LockedPackage};
use crate::util::progress::Progress;

#[derive(Debug, Error)]
pub enum PackageError {
    #[error("package {name} {version}: {err}")]
    Fetch {
        name: String,
        version: String,
        err: FetchError,
    },
    #[error(
        "package {package}: {url}: expected {expected}, got {actual}; nothing was kept: the mirror is corrupt or the lock is wrong (re-run `nodeimg lock`)"
    )]
    Mismatch {
        /// `name version`.
        package: String,
        url: String,
        /// `N bytes with SHA-256 H`.
        expected: String,
        actual: String,
    },
    #[error(
        "package {name} {version} is not in the cache and --offline forbids downloading it: run `nodeimg fetch` on a connected machine first"
    )]
    NotCached { name: String, version: String },
    #[error("package {name} {version}: the mirror no longer serves it ({url}: HTTP 404) and {why}")]
    Gone {
        name: String,
        version: String,
        url: String,
        why: String,
    },
    #[error("package {name}: the lock names source `{source_name}`, which it does not list")]
    UnknownSource { name: String, source_name: String },
    #[error("cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct PackageCache {
    dir: PathBuf,
    offline: bool,
    fetcher: Fetcher,
}

impl PackageCache {
    pub fn new(cache_dir: &Path, offline: bool, fetcher: Fetcher) -> PackageCache {
        PackageCache {
            dir: cache_dir.join("debs").join("sha256"),
            offline,
            fetcher,
        }
    }

    pub fn path_of(&self, package: &LockedPackage) -> PathBuf {
        self.dir.join(&package.sha256)
    }

    /// Returns the verified bytes of one locked package, downloading it when
    /// it is missing or when the cached copy is damaged (which is removed).
    pub fn get(&self, lock: &Lock, package: &LockedPackage) -> Result<Vec<u8>, PackageError> {
        let path = self.path_of(package);
        if let Ok(bytes) = std::fs::read(&path) {
            if verify(package, &bytes).is_ok() {
                return Ok(bytes);
            }
            tracing::warn!(
                "{}: cached copy of {} {} is damaged; removing it",
                path.display(),
                package.name,
                package.version
            );
            std::fs::remove_file(&path).map_err(|source| PackageError::Cache {
                path: path.clone(),
                source,
            })?;
        }
        if self.offline {
            return Err(PackageError::NotCached {
                name: package.name.clone(),
                version: package.version.clone(),
            });
        }
        let url = url_of(lock, package)?;
        let fetch_error = |err| PackageError::Fetch {
            name: package.name.clone(),
            version: package.version.clone(),
            err,
        };
        let (bytes, url) = match self.fetcher.get(&url) {
            Ok(bytes) => (bytes, url),
            // Superseded versions leave the mirror (the security archive
            // drops them): the snapshot archive keeps them.
            Err(FetchError::NotFound { .. }) => self.get_from_snapshot(lock, package, url)?,
            Err(err) => return Err(fetch_error(err)),
        };
        if let Err((actual, actual_size)) = verify(package, &bytes) {
            return Err(PackageError::Mismatch {
                package: format!("{} {}", package.name, package.version),
                url,
                expected: format!("{} bytes with SHA-256 {}", package.size, package.sha256),
                actual: format!("{actual_size} bytes with SHA-256 {actual}"),
            });
        }
        crate::util::fsutil::write_atomic(&path, &bytes, 0o644).map_err(|source| {
            PackageError::Cache {
                path: path.clone(),
                source,
            }
        })?;
        tracing::debug!(
            "fetched {} {} ({} bytes)",
            package.name,
            package.version,
            bytes.len()
        );
        Ok(bytes)
    }

    /// The package from the snapshot archive at the lock's timestamp, and
    /// the URL it came from (checked like any download by the caller).
    fn get_from_snapshot(
        &self,
        lock: &Lock,
        package: &LockedPackage,
        mirror_url: String,
    ) -> Result<(Vec<u8>, String), PackageError> {
        let gone = |why: String| PackageError::Gone {
            name: package.name.clone(),
            version: package.version.clone(),
            url: mirror_url.clone(),
            why,
        };
        let archive = lock
            .sources
            .iter()
            .find(|s| s.name == package.source)
            .and_then(|s| s.snapshot_archive.as_deref());
        let (Some(timestamp), Some(archive)) = (lock.snapshot.as_deref(), archive) else {
            return Err(gone(format!(
                "the lock names no snapshot archive to take it from (lock_version {} or a source without one): re-lock with `nodeimg lock` (a version 2 lock records a snapshot), or give the .deb with `nodeimg fetch --from-dir`",
                lock.lock_version
            )));
        };
        let url = crate::debian::snapshot::url(
            self.fetcher.snapshot_base(),
            archive,
            timestamp,
            &package.path,
        );
        match self.fetcher.get(&url) {
            Ok(bytes) => {
                tracing::info!(
                    "{} {}: not on the mirror any more (404); taken from {url}",
                    package.name,
                    package.version
                );
                Ok((bytes, url))
            }
            Err(FetchError::NotFound { .. }) => Err(gone(format!(
                "neither does the snapshot archive ({url}: HTTP 404): check --snapshot-url / $NODEIMG_SNAPSHOT_URL"
            ))),
            Err(err) => Err(PackageError::Fetch {
                name: package.name.clone(),
                version: package.version.clone(),
                err,
            }),
        }
    }

    /// Puts bytes from elsewhere (a folder of .debs) in the cache if they
    /// are exactly the locked package; returns whether they were.
    pub fn import(&self, package: &LockedPackage, bytes: &[u8]) -> Result<bool, PackageError> {
        if verify(package, bytes).is_err() {
            return Ok(false);
        }
        let path = self.path_of(package);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::util::fsutil::write_atomic(&path, bytes, 0o644))
            .map_err(|source| PackageError::Cache { path, source })?;
        Ok(true)
    }

    /// Makes sure every package of the lock is in the cache and intact.
    /// Returns how many were not cached.
    pub fn fill(&self, lock: &Lock) -> Result<usize, PackageError> {
        let all: Vec<&LockedPackage> = lock.packages.iter().collect();
        self.fill_packages(lock, &all)
    }

    /// Makes sure the given packages are in the cache and intact,
    /// downloading on as many threads as there are cores (at least two, as
    /// downloads mostly wait). Returns how many were not cached.
    pub fn fill_packages(
        &self,
        lock: &Lock,
        packages: &[&LockedPackage],
    ) -> Result<usize, PackageError> {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let missing: Vec<&LockedPackage> = packages
            .iter()
            .copied()
            .filter(|p| !self.path_of(p).exists())
            .collect();
        let progress = Progress::bytes(missing.iter().map(|p| p.size).sum(), "downloading");
        let next = Mutex::new(packages.iter());
        let first_error = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let Some(package) = next.lock().unwrap().next() else {
                            break;
                        };
                        if first_error.lock().unwrap().is_some() {
                            break;
                        }
                        let was_missing = !self.path_of(package).exists();
                        progress.working_on(&package.name);
                        match self.get(lock, package) {
                            Ok(_) if was_missing => progress.advance(package.size),
                            Ok(_) => {}
                            Err(err) => {
                                first_error.lock().unwrap().get_or_insert(err);
                            }
                        }
                    }
                });
            }
        });
        progress.finish();
        match first_error.into_inner().unwrap() {
            Some(err) => Err(err),
            None => Ok(missing.len()),
        }
    }
}

fn url_of(lock: &Lock, package: &LockedPackage) -> Result<String, PackageError> {
    let source = lock
        .sources
        .iter()
        .find(|s| s.name == package.source)
        .ok_or_else(|| PackageError::UnknownSource {
            name: package.name.clone(),
            source_name: package.source.clone(),
        })?;
    Ok(format!(
        "{}/{}",
        source.url.trim_end_matches('/'),
        package.path
    ))
}

/// Checks size then SHA-256; on mismatch returns what was found.
fn verify(package: &LockedPackage, bytes: &[u8]) -> Result<(), (String, u64)> {
    let actual = hex::encode(Sha256::digest(bytes));
    if bytes.len() as u64 == package.size && actual == package.sha256 {
        Ok(())
    } else {
        Err((actual, bytes.len() as u64))
    }
}
