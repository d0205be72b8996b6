//! The signed Packages indexes a lock was made from, put in the cache
//! (`<cache>/packages/<sha256>`, compressed as served) so that `verify` and
//! `bundle` can re-check the lock offline. Each is asked for by its signed
//! hash: from the mirror (by-hash, then its plain path while it is still
//! that file), then from the snapshot archive at the lock's timestamp
//! (the same two ways). Only bytes with the signed SHA-256 and size are
//! kept.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::fetch::{FetchError, Fetcher};
use crate::debian::release::Release;
use crate::debian::snapshot;
use crate::lock::signed_sources::{self, SignedSourceError};
use crate::lock::{Lock, LockedSource, index_store};

#[derive(Debug, Error)]
pub enum IndexFetchError {
    #[error(transparent)]
    Signature(#[from] SignedSourceError),
    #[error("source `{source_name}`: its signed Release: {message}")]
    Release {
        source_name: String,
        message: String,
    },
    #[error(
        "source `{source_name}`: the signed index {path} (sha256:{sha256}) is not in the cache and --offline forbids downloading it: run `nodeimg fetch` on a connected machine"
    )]
    NotCached {
        source_name: String,
        path: String,
        sha256: String,
    },
    #[error(
        "source `{source_name}`: no copy of the signed index {path} (sha256:{sha256}, {size} bytes) found: {tried}"
    )]
    NotFound {
        source_name: String,
        path: String,
        sha256: String,
        size: u64,
        tried: String,
    },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// Makes sure every Packages index of `lock` is in `<cache_dir>/packages`.
/// `inrelease` are the folders to find the lock's InRelease files in (the
/// one beside the lock, the cache's); `keys` the recipe's key files.
/// Returns how many were downloaded.
pub fn ensure(
    lock: &Lock,
    inrelease: &[PathBuf],
    keys: &[PathBuf],
    cache_dir: &Path,
    fetcher: &Fetcher,
    offline: bool,
) -> Result<usize, IndexFetchError> {
    let dir = index_store::packages_dir(cache_dir);
    let mut downloaded = 0;
    for source in &lock.sources {
        let folder = inrelease
            .iter()
            .find(|d| d.join(signed_sources::file_name(source)).is_file())
            .unwrap_or(&inrelease[0]);
        let text = signed_sources::verified_text(source, folder, keys)?;
        let release_error = |message: String| IndexFetchError::Release {
            source_name: source.name.clone(),
            message,
        };
        let release = Release::parse(&text).map_err(|e| release_error(e.to_string()))?;
        let indexes = release
            .package_indexes(&source.components, &lock.architecture)
            .map_err(|c| release_error(format!("it lists no Packages index for `{c}`")))?;
        for (path, hash) in indexes {
            let target = dir.join(&hash.sha256);
            if std::fs::read(&target).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == hash.sha256)
            {
                continue;
            }
            if offline {
                return Err(IndexFetchError::NotCached {
                    source_name: source.name.clone(),
                    path,
                    sha256: hash.sha256.clone(),
                });
            }
            let mut tried = Vec::new();
            let mut found = None;
            for url in candidates(lock, source, &release, &path, &hash.sha256, fetcher) {
                match fetcher.get(&url) {
                    Ok(bytes)
                        if bytes.len() as u64 == hash.size
                            && hex::encode(Sha256::digest(&bytes)) == hash.sha256 =>
                    {
                        found = Some(bytes);
                        tracing::info!("{url}: the signed index {path} of `{}`", source.name);
                        break;
                    }
                    Ok(bytes) => tried.push(format!("{url}: other bytes ({})", bytes.len())),
                    Err(FetchError::NotFound { .. }) => tried.push(format!("{url}: 404")),
                    Err(err) => tried.push(err.to_string()),
                }
            }
            let Some(bytes) = found else {
                return Err(IndexFetchError::NotFound {
                    source_name: source.name.clone(),
                    path,
                    sha256: hash.sha256.clone(),
                    size: hash.size,
                    tried: tried.join("; "),
                });
            };
            crate::util::fsutil::write_atomic(&target, &bytes, 0o644).map_err(|err| {
                IndexFetchError::Write {
                    path: target.clone(),
                    err,
                }
            })?;
            downloaded += 1;
        }
    }
    Ok(downloaded)
}

/// [`ensure`] for the lock of a recipe: its InRelease files are looked up
/// beside the lock, then in the cache; its keys are the recipe's.
pub fn ensure_for_recipe(
    recipe: &crate::lock::recipe::LoadedRecipe,
    lock_path: &Path,
    lock: &Lock,
    cache_dir: &Path,
    fetcher: &Fetcher,
    offline: bool,
) -> Result<usize, IndexFetchError> {
    let beside = lock_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(index_store::DIR);
    let keys: Vec<PathBuf> = recipe
        .recipe
        .sources
        .iter()
        .flat_map(|s| recipe.key_paths(s))
        .collect();
    ensure(
        lock,
        &[beside, cache_dir.join(index_store::DIR)],
        &keys,
        cache_dir,
        fetcher,
        offline,
    )
}

/// Where the index `path` with `sha256` may be, best first.
fn candidates(
    lock: &Lock,
    source: &LockedSource,
    release: &Release,
    path: &str,
    sha256: &str,
    fetcher: &Fetcher,
) -> Vec<String> {
    let dir = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    let below_root = |by_hash: bool| {
        if by_hash {
            format!("dists/{}/{dir}/by-hash/SHA256/{sha256}", source.suite)
        } else {
            format!("dists/{}/{path}", source.suite)
        }
    };
    let ways: &[bool] = if release.acquire_by_hash {
        &[true, false]
    } else {
        &[false]
    };
    let mut urls: Vec<String> = ways
        .iter()
        .map(|by_hash| {
            format!(
                "{}/{}",
                source.url.trim_end_matches('/'),
                below_root(*by_hash)
            )
        })
        .collect();
    if let (Some(timestamp), Some(archive)) = (&lock.snapshot, &source.snapshot_archive) {
        urls.extend(ways.iter().map(|by_hash| {
            snapshot::url(
                fetcher.snapshot_base(),
                archive,
                timestamp,
                &below_root(*by_hash),
            )
        }));
    }
    urls
}
