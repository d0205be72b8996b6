//! The whole chain of a lock, offline: each source's InRelease signature
//! (`signed_sources`), then each Packages index the signed Release names
//! (by SHA-256 and size, kept compressed as served in a `packages/`
//! folder), then every locked package against its entry in those indexes:
//! same version, architecture, path, size and SHA-256. A lock edited by
//! hand with its checksums recomputed names a package the signed indexes
//! do not have, and is refused here, naming it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::deb822;
use crate::debian::release::Release;
use crate::lock::index::decompress;
use crate::lock::index_store;
use crate::lock::signed_sources::{self, SignedSourceError};
use crate::lock::{Lock, LockedPackage};

#[derive(Debug, Error)]
pub enum SignedPackagesError {
    #[error(transparent)]
    Signature(#[from] SignedSourceError),
    #[error("source `{source_name}`: its signed Release: {message}")]
    Release {
        source_name: String,
        message: String,
    },
    #[error(
        "source `{source_name}`: the signed index {path} (sha256:{sha256}) is not in {searched}: {hint}"
    )]
    MissingIndex {
        source_name: String,
        path: String,
        sha256: String,
        searched: String,
        hint: String,
    },
    #[error(
        "source `{source_name}`: {file} is damaged: {actual}, the signed Release says {expected} ({path})"
    )]
    DamagedIndex {
        source_name: String,
        path: String,
        file: PathBuf,
        /// `N bytes with SHA-256 H`.
        expected: String,
        actual: String,
    },
    #[error("source `{source_name}`: {path}: {message}")]
    Corrupt {
        source_name: String,
        path: String,
        message: String,
    },
    #[error(
        "package {name} {version} is not in the signed indexes of source `{source_name}` ({suite}{has}): the lock was not made from them (edited by hand?); re-lock with `nodeimg lock <recipe>`"
    )]
    NotInIndex {
        name: String,
        version: String,
        source_name: String,
        suite: String,
        /// `; they have name 1.0-1` when another version is there.
        has: String,
    },
    #[error(
        "package {name} {version}: the lock says {locked}, the signed index of source `{source_name}` says {signed}: the lock was not made from it (edited by hand?); re-lock with `nodeimg lock <recipe>`"
    )]
    Differs {
        name: String,
        version: String,
        source_name: String,
        locked: String,
        signed: String,
    },
}

/// What a Packages entry says of one package file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    filename: String,
    size: u64,
    sha256: String,
}

/// Where the InRelease files, Packages indexes and keys of a lock are, and
/// what to tell the user when an index is missing.
pub struct Store<'a> {
    pub inrelease: &'a std::path::Path,
    /// Searched in order for `<sha256>`.
    pub packages: &'a [PathBuf],
    pub keys: &'a [PathBuf],
    /// How to get a missing index (`run nodeimg fetch ...`).
    pub hint: &'a str,
    /// Indexes already checked and decompressed, shared by the locks of
    /// one run (a bundle's roles read the same 56 MB trixie index).
    pub memo: &'a IndexMemo,
}

/// The text of each Packages index checked so far, by its SHA-256.
#[derive(Default)]
pub struct IndexMemo {
    texts: RefCell<HashMap<String, Rc<String>>>,
}

/// Re-checks the whole chain of `lock`; one line per source on success.
pub fn recheck(lock: &Lock, store: &Store) -> Result<Vec<String>, SignedPackagesError> {
    let mut lines = Vec::new();
    for source in &lock.sources {
        let text = signed_sources::verified_text(source, store.inrelease, store.keys)?;
        let release_error = |message: String| SignedPackagesError::Release {
            source_name: source.name.clone(),
            message,
        };
        let release = Release::parse(&text).map_err(|e| release_error(e.to_string()))?;
        let indexes = release
            .package_indexes(&source.components, &lock.architecture)
            .map_err(|component| {
                release_error(format!(
                    "it lists no Packages index for component `{component}`"
                ))
            })?;
        let locked: Vec<&LockedPackage> = lock
            .packages
            .iter()
            .filter(|p| p.source == source.name)
            .collect();
        let wanted: BTreeSet<&str> = locked.iter().map(|p| p.name.as_str()).collect();
        // (name, version, architecture) → entry, for the locked names only.
        let mut signed: BTreeMap<(String, String, String), Entry> = BTreeMap::new();
        let mut shown = Vec::new();
        for (path, hash) in &indexes {
            let known = store.memo.texts.borrow().get(&hash.sha256).cloned();
            if let Some(text) = known {
                read_entries(&text, &wanted, &mut signed).map_err(|message| {
                    SignedPackagesError::Corrupt {
                        source_name: source.name.clone(),
                        path: path.clone(),
                        message,
                    }
                })?;
                shown.push(format!("{path} sha256:{}", &hash.sha256[..12]));
                continue;
            }
            let file = index_store::find(store.packages, &hash.sha256).ok_or_else(|| {
                SignedPackagesError::MissingIndex {
                    source_name: source.name.clone(),
                    path: path.clone(),
                    sha256: hash.sha256.clone(),
                    searched: searched(store),
                    hint: store.hint.to_string(),
                }
            })?;
            let bytes = std::fs::read(&file).map_err(|err| SignedPackagesError::Corrupt {
                source_name: source.name.clone(),
                path: file.display().to_string(),
                message: err.to_string(),
            })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != hash.sha256 || bytes.len() as u64 != hash.size {
                return Err(SignedPackagesError::DamagedIndex {
                    source_name: source.name.clone(),
                    path: path.clone(),
                    file,
                    expected: format!("{} bytes with SHA-256 {}", hash.size, hash.sha256),
                    actual: format!("{} bytes with SHA-256 {actual}", bytes.len()),
                });
            }
            let corrupt = |message: String| SignedPackagesError::Corrupt {
                source_name: source.name.clone(),
                path: path.clone(),
                message,
            };
            let text = Rc::new(decompress(path, &bytes).map_err(corrupt)?);
            read_entries(&text, &wanted, &mut signed).map_err(corrupt)?;
            store
                .memo
                .texts
                .borrow_mut()
                .insert(hash.sha256.clone(), text);
            shown.push(format!("{path} sha256:{}", &hash.sha256[..12]));
        }
        for package in &locked {
            let key = (
                package.name.clone(),
                package.version.clone(),
                package.architecture.clone(),
            );
            let Some(entry) = signed.get(&key) else {
                let others: Vec<String> = signed
                    .keys()
                    .filter(|(name, _, _)| name == &package.name)
                    .map(|(name, version, arch)| format!("{name} {version} ({arch})"))
                    .collect();
                return Err(SignedPackagesError::NotInIndex {
                    name: package.name.clone(),
                    version: package.version.clone(),
                    source_name: source.name.clone(),
                    suite: source.suite.clone(),
                    has: if others.is_empty() {
                        String::new()
                    } else {
                        format!("; they have {}", others.join(", "))
                    },
                });
            };
            let locked_entry = Entry {
                filename: package.path.clone(),
                size: package.size,
                sha256: package.sha256.clone(),
            };
            if entry != &locked_entry {
                let describe =
                    |e: &Entry| format!("{} ({} bytes, sha256:{})", e.filename, e.size, e.sha256);
                return Err(SignedPackagesError::Differs {
                    name: package.name.clone(),
                    version: package.version.clone(),
                    source_name: source.name.clone(),
                    locked: describe(&locked_entry),
                    signed: describe(entry),
                });
            }
        }
        lines.push(format!(
            "source `{}` ({}): {} packages match the signed {}",
            source.name,
            source.suite,
            locked.len(),
            shown.join(", ")
        ));
    }
    Ok(lines)
}

/// The Packages index files of `lock` in `store` (by SHA-256), after its
/// InRelease files were checked: what a bundle carries beside them.
pub fn index_files(
    lock: &Lock,
    store: &Store,
) -> Result<Vec<(String, PathBuf)>, SignedPackagesError> {
    let mut files = Vec::new();
    for source in &lock.sources {
        let text = signed_sources::verified_text(source, store.inrelease, store.keys)?;
        let release = Release::parse(&text).map_err(|e| SignedPackagesError::Release {
            source_name: source.name.clone(),
            message: e.to_string(),
        })?;
        let indexes = release
            .package_indexes(&source.components, &lock.architecture)
            .map_err(|component| SignedPackagesError::Release {
                source_name: source.name.clone(),
                message: format!("it lists no Packages index for component `{component}`"),
            })?;
        for (path, hash) in indexes {
            let file = index_store::find(store.packages, &hash.sha256).ok_or_else(|| {
                SignedPackagesError::MissingIndex {
                    source_name: source.name.clone(),
                    path,
                    sha256: hash.sha256.clone(),
                    searched: searched(store),
                    hint: store.hint.to_string(),
                }
            })?;
            files.push((hash.sha256, file));
        }
    }
    Ok(files)
}

fn searched(store: &Store) -> String {
    store
        .packages
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Adds the entries of the packages named in `wanted` to `into`. Only
/// those paragraphs are parsed: the rest of a 56 MB index is skipped by
/// its `Package` line.
fn read_entries(
    text: &str,
    wanted: &BTreeSet<&str>,
    into: &mut BTreeMap<(String, String, String), Entry>,
) -> Result<(), String> {
    for paragraph in text.split("\n\n") {
        let Some(name) = paragraph
            .lines()
            .find_map(|line| line.strip_prefix("Package:"))
            .map(str::trim)
        else {
            continue;
        };
        if !wanted.contains(name) {
            continue;
        }
        let mut fields = deb822::paragraphs(paragraph);
        let Some(parsed) = fields.next() else {
            continue;
        };
        let parsed = parsed.map_err(|err| format!("package {name:?}: {err}"))?;
        let field = |key: &str| parsed.get(key).unwrap_or("").trim();
        let size = field("Size")
            .parse()
            .map_err(|_| format!("package {name:?} has no Size"))?;
        into.insert(
            (
                name.to_string(),
                field("Version").to_string(),
                field("Architecture").to_string(),
            ),
            Entry {
                filename: field("Filename").to_string(),
                size,
                sha256: field("SHA256").to_ascii_lowercase(),
            },
        );
    }
    Ok(())
}
