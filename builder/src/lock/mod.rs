//! The lock (`recipes/<role>.lock`): every package of an image by exact
//! version and SHA-256, the verified sources they came from, and the
//! checksum of the recipe it was made from. Builds read only the lock.

// The locking stage: a recipe resolved against signed indexes into a lock,
// and the packages that lock names fetched into a verified cache.

pub mod index;
pub mod index_fetch;
pub mod index_store;
pub mod outdated;
pub mod package_cache;
pub mod package_identity;
pub mod recipe;
pub mod resolve;
pub mod signed_packages;
pub mod signed_sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::lock::index::SourceIndex;
use crate::lock::recipe::LoadedRecipe;
use crate::lock::resolve::{RECIPE, Resolution};

/// The lock format written. Version 2 added `snapshot` and each source's
/// `snapshot_archive`; version 1 locks are still read (without a snapshot
/// to fall back to).
pub const LOCK_VERSION: u32 = 2;

/// The oldest lock format still read.
pub const OLDEST_LOCK_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum LockError {
    #[error("{path}: cannot read the lock: {source}; create it with `nodeimg lock <recipe>`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid lock: {message}; regenerate it with `nodeimg lock <recipe>`")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{path}: inconsistent lock: {message}; do not edit locks by hand: regenerate it with `nodeimg lock <recipe>`"
    )]
    Inconsistent { path: PathBuf, message: String },
    #[error(
        "{lock} is stale: it was made from a different version of {recipe} (recipe checksum {locked} in the lock, {current} now); run `nodeimg lock {recipe}` and commit the new lock"
    )]
    Stale {
        lock: PathBuf,
        recipe: PathBuf,
        locked: String,
        current: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub lock_version: u32,
    /// The recipe's file name, for humans.
    pub recipe: String,
    /// Checksum of the normalized recipe, its parameters and key files.
    pub recipe_sha256: String,
    pub architecture: String,
    /// Newest signed Release date of the sources: the timestamp builds
    /// stamp into images, so rebuilding never depends on the clock.
    pub source_date_epoch: i64,
    /// When (`YYYYMMDDTHHMMSSZ`, UTC) a snapshot archive holds every
    /// package of the lock: `fetch` and `build` download a `.deb` the
    /// mirror no longer serves from `<snapshot base>/archive/<the source's
    /// snapshot_archive>/<snapshot>/<path>`. Set at lock time to half a day
    /// after the newest signed Release (`debian::snapshot`). None in
    /// version 1 locks and when no source has a snapshot archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// SHA-256 of the sources, packages and exclusions below, so a hand
    /// edit is detected instead of silently built.
    pub content_sha256: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(rename = "source")]
    pub sources: Vec<LockedSource>,
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
    #[serde(rename = "excluded", default)]
    pub excluded: Vec<ExcludedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    pub name: String,
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    /// SHA-256 of the exact InRelease bytes that were verified.
    pub inrelease_sha256: String,
    pub date: String,
    /// Fingerprints of the recipe keys that made a good signature.
    pub signed_by: Vec<String>,
    /// Fingerprints of every key the recipe trusts for this source.
    pub trusted_keys: Vec<String>,
    /// The archive's name in snapshot archives (`debian`,
    /// `debian-security`); None when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_archive: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Name of the source (`[[source]]` above) it is downloaded from.
    pub source: String,
    /// Path of the `.deb` below the source's url.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The Debian source package it was built from.
    pub source_package: String,
    /// Why it is in: `recipe`, or the packages whose dependency it meets.
    pub required_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludedPackage {
    pub name: String,
    /// Packages that asked for it; their dependency is treated as met.
    pub wanted_by: Vec<String>,
}

/// The part of the lock covered by `content_sha256`.
#[derive(Serialize)]
struct Content<'a> {
    /// Left out when unset, so version 1 locks keep their checksum.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a str>,
    source: &'a [LockedSource],
    package: &'a [LockedPackage],
    excluded: &'a [ExcludedPackage],
}

impl Lock {
    pub fn from_resolution(
        recipe: &LoadedRecipe,
        sources: &[SourceIndex],
        resolution: &Resolution,
    ) -> Lock {
        let sources: Vec<LockedSource> = sources
            .iter()
            .map(|s| LockedSource {
                name: s.name.clone(),
                url: s.url.clone(),
                suite: s.suite.clone(),
                components: s.components.clone(),
                inrelease_sha256: s.inrelease_sha256.clone(),
                date: s.date.clone().unwrap_or_default(),
                signed_by: s.signed_by.clone(),
                trusted_keys: s.trusted_keys.clone(),
                snapshot_archive: s.snapshot_archive.clone(),
            })
            .collect();
        let source_names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let packages = resolution
            .packages
            .values()
            .map(|resolved| {
                let c = &resolved.candidate;
                LockedPackage {
                    name: c.name.clone(),
                    version: c.version.to_string(),
                    architecture: c.architecture.clone(),
                    source: source_names[c.source].to_string(),
                    path: c.filename.clone(),
                    size: c.size,
                    sha256: c.sha256.clone(),
                    source_package: c.source_package.clone(),
                    required_by: resolved.required_by.iter().cloned().collect(),
                }
            })
            .collect();
        let excluded = resolution
            .excluded
            .iter()
            .map(|(name, by)| ExcludedPackage {
                name: name.clone(),
                wanted_by: by.iter().cloned().collect(),
            })
            .collect();
        // Epoch + 1 s rather than 0 when no source has a date: some
        // programs treat a zero mtime as "unset".
        let source_date_epoch = sources_epoch(sources.as_slice()).unwrap_or(1);
        let snapshot = sources
            .iter()
            .any(|s| s.snapshot_archive.is_some())
            .then(|| {
                crate::debian::snapshot::timestamp(
                    source_date_epoch + crate::debian::snapshot::AFTER_NEWEST_RELEASE,
                )
            });
        let mut lock = Lock {
            lock_version: LOCK_VERSION,
            recipe: recipe
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            recipe_sha256: recipe.checksum.clone(),
            architecture: recipe.recipe.recipe.architecture.clone(),
            source_date_epoch,
            snapshot,
            content_sha256: String::new(),
            params: recipe.params.clone(),
            sources,
            packages,
            excluded,
        };
        lock.seal();
        lock
    }

    /// Sets `content_sha256` from the content, as `lock` does before it
    /// writes a lock. (A forger can do the same, which is why builds also
    /// check each `.deb` against its entry and `verify` each entry against
    /// the signed indexes.)
    pub fn seal(&mut self) {
        self.content_sha256 = self.compute_content_sha256();
    }

    fn compute_content_sha256(&self) -> String {
        let content = Content {
            snapshot: self.snapshot.as_deref(),
            source: &self.sources,
            package: &self.packages,
            excluded: &self.excluded,
        };
        let text = toml::to_string(&content).expect("lock content serializes");
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The lock's file contents: stable field order, packages sorted by
    /// name, so the same resolution always gives the same bytes.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("lock serializes");
        format!(
            "# nodeimg lock for {} — generated by `nodeimg lock`, do not edit by hand.\n\
             # Every package of the image, pinned by version and SHA-256.\n\n{body}",
            self.recipe
        )
    }

    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let lock: Lock = toml::from_str(&text).map_err(|err| LockError::Syntax {
            path: path.to_path_buf(),
            message: err.to_string().trim_end().to_string(),
        })?;
        lock.validate().map_err(|message| LockError::Inconsistent {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(lock)
    }

    /// Checks what a hand edit could break, most specific problem first.
    fn validate(&self) -> Result<(), String> {
        if !(OLDEST_LOCK_VERSION..=LOCK_VERSION).contains(&self.lock_version) {
            return Err(format!(
                "lock_version {} is not supported (this nodeimg reads versions {OLDEST_LOCK_VERSION} to {LOCK_VERSION})",
                self.lock_version
            ));
        }
        if let Some(snapshot) = &self.snapshot
            && !crate::debian::snapshot::is_timestamp(snapshot)
        {
            return Err(format!(
                "snapshot = {snapshot:?} is not a YYYYMMDDTHHMMSSZ timestamp"
            ));
        }
        let sources: BTreeSet<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        let mut names = BTreeSet::new();
        for package in &self.packages {
            if !names.insert(package.name.as_str()) {
                return Err(format!("package `{}` is listed twice", package.name));
            }
        }
        for package in &self.packages {
            if !sources.contains(package.source.as_str()) {
                return Err(format!(
                    "package `{}` comes from source `{}`, which the lock does not list",
                    package.name, package.source
                ));
            }
            if package.sha256.len() != 64 || !package.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(format!(
                    "package `{}` has a malformed sha256 {:?}",
                    package.name, package.sha256
                ));
            }
            if let Some(missing) = package
                .required_by
                .iter()
                .find(|by| by.as_str() != RECIPE && !names.contains(by.as_str()))
            {
                return Err(format!(
                    "package `{}` is required by `{missing}`, which is not in the lock",
                    package.name
                ));
            }
            if let Err(err) = package.version.parse::<crate::debian::version::Version>() {
                return Err(format!("package `{}`: {err}", package.name));
            }
        }
        if self.content_sha256 != self.compute_content_sha256() {
            return Err(
                "its sources, packages or exclusions no longer match content_sha256".into(),
            );
        }
        Ok(())
    }

    /// Refuses a lock made from another version of the recipe.
    pub fn ensure_matches(&self, lock_path: &Path, recipe: &LoadedRecipe) -> Result<(), LockError> {
        if self.recipe_sha256 == recipe.checksum {
            return Ok(());
        }
        Err(LockError::Stale {
            lock: lock_path.to_path_buf(),
            recipe: recipe.path.clone(),
            locked: short(&self.recipe_sha256),
            current: short(&recipe.checksum),
        })
    }

    /// What changed between two locks, one line per package, for humans.
    pub fn diff(&self, newer: &Lock) -> Vec<String> {
        let old: BTreeMap<&str, &LockedPackage> =
            self.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        let new: BTreeMap<&str, &LockedPackage> = newer
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        let mut lines = Vec::new();
        if self.recipe_sha256 != newer.recipe_sha256 {
            lines.push("recipe changed since the lock was made".to_string());
        }
        for (name, package) in &old {
            match new.get(name) {
                None => lines.push(format!("- {name} {}", package.version)),
                Some(now) if now.version != package.version => {
                    lines.push(format!("~ {name} {} → {}", package.version, now.version))
                }
                Some(now) if now != package => {
                    lines.push(format!("~ {name} {} (metadata changed)", now.version))
                }
                Some(_) => {}
            }
        }
        for (name, package) in &new {
            if !old.contains_key(name) {
                lines.push(format!("+ {name} {}", package.version));
            }
        }
        let old_sources: Vec<_> = self
            .sources
            .iter()
            .map(|s| (&s.name, &s.inrelease_sha256))
            .collect();
        let new_sources: Vec<_> = newer
            .sources
            .iter()
            .map(|s| (&s.name, &s.inrelease_sha256))
            .collect();
        if old_sources != new_sources && lines.is_empty() {
            lines.push("the sources' signed indexes changed (same packages)".to_string());
        }
        lines
    }
}

fn sources_epoch(sources: &[LockedSource]) -> Option<i64> {
    sources
        .iter()
        .filter_map(|s| crate::debian::release::parse_release_date(&s.date))
        .max()
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
