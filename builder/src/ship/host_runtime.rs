//! What cloud-init installs on a node's host, pinned durably: the packages
//! `recipes/host-runtime.toml` asks for (the container runtime, xfsprogs),
//! at the exact versions of its lock, from apt sources pinned to the
//! snapshot of the lock's date. Debian's security archive drops superseded
//! versions; the snapshot keeps them, so a server created months after the
//! lock still installs what was tested.

use std::path::Path;

use serde::Serialize;
use thiserror::Error;

use crate::lock::recipe::{self, RecipeKind};
use crate::lock::{Lock, resolve::RECIPE};

/// The key every Debian host has for the archive's signatures (from
/// debian-archive-keyring): snapshot archives serve Debian's own signed
/// files.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.pgp";

#[derive(Debug, Error)]
pub enum HostRuntimeError {
    #[error(transparent)]
    Recipe(#[from] recipe::RecipeError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(
        "{path}: kind = \"host-packages\" is missing: the host runtime recipe lists packages a host installs, not an image"
    )]
    NotHostPackages { path: String },
    #[error(
        "{lock}: {what}: the host's packages must come from a snapshot so they stay installable; re-lock it (`nodeimg lock {recipe}`) with a nodeimg that records one"
    )]
    NoSnapshot {
        lock: String,
        recipe: String,
        what: String,
    },
    #[error(
        "[hosts] docker_version = {spec:?}, but {lock} pins docker.io {locked}: remove docker_version from the spec (the lock pins the runtime), or re-lock"
    )]
    DockerVersion {
        spec: String,
        lock: String,
        locked: String,
    },
}

/// One apt source line, and the file cloud-init writes it to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AptSource {
    /// `nodeimg-debian-security.list`
    pub file: String,
    /// `deb [check-valid-until=no signed-by=...] URL SUITE COMPONENTS`
    pub line: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PinnedPackage {
    pub name: String,
    pub version: String,
}

/// The host's package set, as the user-data template uses it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRuntime {
    /// The lock it comes from, for messages.
    pub lock: String,
    pub sources: Vec<AptSource>,
    /// The packages the recipe includes, at their locked versions, sorted.
    pub packages: Vec<PinnedPackage>,
}

impl HostRuntime {
    /// From the host runtime recipe and its lock (which must match it);
    /// `snapshot_base` is where snapshot archives are (`--snapshot-url`).
    pub fn load(recipe_path: &Path, snapshot_base: &str) -> Result<HostRuntime, HostRuntimeError> {
        let recipe = recipe::load(recipe_path, &[])?;
        if recipe.recipe.recipe.kind != RecipeKind::HostPackages {
            return Err(HostRuntimeError::NotHostPackages {
                path: recipe_path.display().to_string(),
            });
        }
        let lock_path = recipe.default_lock_path();
        let lock = Lock::read(&lock_path)?;
        lock.ensure_matches(&lock_path, &recipe)?;
        Self::from_lock(&lock, &lock_path, recipe_path, snapshot_base)
    }

    pub fn from_lock(
        lock: &Lock,
        lock_path: &Path,
        recipe_path: &Path,
        snapshot_base: &str,
    ) -> Result<HostRuntime, HostRuntimeError> {
        let no_snapshot = |what: String| HostRuntimeError::NoSnapshot {
            lock: lock_path.display().to_string(),
            recipe: recipe_path.display().to_string(),
            what,
        };
        let timestamp = lock
            .snapshot
            .as_deref()
            .ok_or_else(|| no_snapshot("it records no snapshot".into()))?;
        let mut sources = Vec::new();
        for source in &lock.sources {
            let archive = source.snapshot_archive.as_deref().ok_or_else(|| {
                no_snapshot(format!(
                    "source `{}` has no snapshot archive (set [[source]] snapshot_archive)",
                    source.name
                ))
            })?;
            let url = crate::debian::snapshot::url(snapshot_base, archive, timestamp, "");
            sources.push(AptSource {
                file: format!("nodeimg-{}.list", source.name),
                // check-valid-until=no: a snapshot's Release is as old as
                // the lock, its Valid-Until long past.
                line: format!(
                    "deb [check-valid-until=no signed-by={DEBIAN_KEYRING}] {} {} {}",
                    url.trim_end_matches('/'),
                    source.suite,
                    source.components.join(" ")
                ),
            });
        }
        let mut packages: Vec<PinnedPackage> = lock
            .packages
            .iter()
            .filter(|p| p.required_by.iter().any(|by| by == RECIPE))
            .map(|p| PinnedPackage {
                name: p.name.clone(),
                version: p.version.clone(),
            })
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(HostRuntime {
            lock: lock_path.display().to_string(),
            sources,
            packages,
        })
    }

    /// The locked version of `name`, if the recipe includes it.
    pub fn version_of(&self, name: &str) -> Option<&str> {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.version.as_str())
    }

    /// A spec's `[hosts] docker_version` (kept for old specs) must say
    /// what the lock pins.
    pub fn check_docker_version(&self, spec_version: Option<&str>) -> Result<(), HostRuntimeError> {
        match (spec_version, self.version_of("docker.io")) {
            (Some(spec), Some(locked)) if spec != locked => Err(HostRuntimeError::DockerVersion {
                spec: spec.to_string(),
                lock: self.lock.clone(),
                locked: locked.to_string(),
            }),
            _ => Ok(()),
        }
    }
}
