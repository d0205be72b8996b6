//! Finished package layers, cached by everything that decides their bytes
//! (the packages' SHA-256s, prune rules, timestamp, layer format), so an
//! unchanged rebuild does no decompression and no compression at all.
//!
//! `<cache>/layers/<key>.json` records the layer's digests and an index of
//! its entries (for conflict checks between layers) and control files (for
//! the dpkg database); the blob itself lives in `<cache>/blobs/sha256/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::debian::deb::Deb;
use crate::image::layer::{self, Layer};
use crate::image::layer_plan::PackageLayer;
use crate::image::rootfs::{Content, Entry, MERGED_USR_AMD64, Rootfs, RootfsError};
use crate::lock::Lock;
use crate::lock::package_cache::{PackageCache, PackageError};

/// Bump when the way layers are made changes, so old cache entries are
/// never reused for a new format.
const FORMAT: &str = "nodeimg-layer-2";

/// What, besides the packages, decides a layer's bytes.
pub struct LayerSettings {
    pub epoch: u64,
    pub prune_patterns: Vec<String>,
    pub keep_patterns: Vec<String>,
    pub prune: globset::GlobSet,
    pub keep: globset::GlobSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
    Hardlink,
}

/// One path of a layer, as much as a conflict check needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedEntry {
    pub path: String,
    pub owner: String,
    pub kind: EntryKind,
    pub mode: u32,
    /// SHA-256 of a file's bytes, a link's target, empty for a directory.
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub layer: Layer,
    pub entries: Vec<IndexedEntry>,
    /// `(package, control file)` in lock order.
    pub controls: Vec<(String, String)>,
    /// CA certificates the layer ships (`usr/share/ca-certificates/…`),
    /// path and PEM, for the bundle ca-certificates' postinst would make.
    #[serde(default)]
    pub ca_certificates: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Identity(#[from] crate::lock::package_identity::IdentityError),
    #[error("package {package}: cannot read its control file: {err}")]
    Control {
        package: String,
        err: crate::debian::deb::DebError,
    },
    #[error("cannot write layer {label} under {dir}: {err}")]
    Write {
        label: String,
        dir: PathBuf,
        err: std::io::Error,
    },
}

pub struct LayerCache {
    records: PathBuf,
    blobs: PathBuf,
}

impl LayerCache {
    pub fn new(cache_dir: &Path) -> LayerCache {
        LayerCache {
            records: cache_dir.join("layers"),
            blobs: cache_dir.join("blobs").join("sha256"),
        }
    }

    /// The cache key of a package layer: a hash of every input.
    pub fn key(spec: &PackageLayer, settings: &LayerSettings) -> String {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.as_bytes());
            hasher.update([0]);
        };
        field("format", FORMAT);
        field("gzip", &layer::GZIP_LEVEL.to_string());
        field("epoch", &settings.epoch.to_string());
        field("base", &spec.is_base.to_string());
        field("label", &spec.label());
        for pattern in &settings.prune_patterns {
            field("prune", pattern);
        }
        for pattern in &settings.keep_patterns {
            field("keep", pattern);
        }
        for package in &spec.packages {
            field("package", &package.name);
            field("sha256", &package.sha256);
        }
        hex::encode(hasher.finalize())
    }

    /// A cached layer whose blob is still there with its recorded size;
    /// anything unreadable counts as a miss and is rebuilt.
    pub fn load(&self, key: &str) -> Option<LayerRecord> {
        let bytes = std::fs::read(self.records.join(format!("{key}.json"))).ok()?;
        let mut record: LayerRecord = serde_json::from_slice(&bytes).ok()?;
        let path = self
            .blobs
            .join(record.layer.digest.trim_start_matches("sha256:"));
        let size = std::fs::metadata(&path).ok()?.len();
        if size != record.layer.size {
            return None;
        }
        record.layer.path = path;
        Some(record)
    }

    /// Unpacks the layer's packages, prunes, writes the blob and records
    /// it under `key`.
    pub fn build(
        &self,
        key: &str,
        spec: &PackageLayer,
        settings: &LayerSettings,
        lock: &Lock,
        packages: &PackageCache,
    ) -> Result<LayerRecord, LayerError> {
        let mut rootfs = Rootfs::default();
        let mut controls = Vec::new();
        for package in &spec.packages {
            let bytes = packages.get(lock, package)?;
            rootfs.add_deb(&package.name, &bytes)?;
            let control = Deb::parse(&bytes)
                .and_then(|deb| deb.control_text())
                .map_err(|err| LayerError::Control {
                    package: package.name.clone(),
                    err,
                })?;
            // Before anything of it is laid out: the .deb is the package
            // the lock names, or the build stops here.
            crate::lock::package_identity::check(package, &control)?;
            controls.push((package.name.clone(), control));
        }
        let (files, bytes) = rootfs.prune(&settings.prune, &settings.keep);
        tracing::debug!(
            "layer {}: pruned {files} files ({:.1} MB)",
            spec.name,
            bytes as f64 / 1e6
        );
        if spec.is_base {
            for dir in MERGED_USR_AMD64 {
                rootfs
                    .entries
                    .entry(format!("usr/{dir}"))
                    .or_insert_with(|| Entry::directory(0o755, settings.epoch));
            }
            rootfs.add_merged_usr_links(settings.epoch)?;
        }
        rootfs.add_missing_parents(settings.epoch);
        rootfs.clamp_mtimes(settings.epoch);
        let write_error = |err| LayerError::Write {
            label: spec.name.clone(),
            dir: self.blobs.clone(),
            err,
        };
        let layer = layer::write_layer(rootfs.entries.iter(), &self.blobs, spec.label())
            .map_err(write_error)?;
        let record = LayerRecord {
            layer,
            entries: index(&rootfs),
            controls,
            ca_certificates: ca_certificates(&rootfs),
        };
        let json = serde_json::to_vec(&record).expect("a layer record serializes");
        crate::util::fsutil::write_atomic(&self.records.join(format!("{key}.json")), &json, 0o644)
            .map_err(write_error)?;
        Ok(record)
    }
}

impl LayerCache {
    /// A layer made from a model the caller builds (the agent binary),
    /// cached under `key` like package layers.
    pub fn cached_layer(
        &self,
        key: &str,
        label: &str,
        make: impl FnOnce() -> Result<Rootfs, LayerError>,
    ) -> Result<Layer, LayerError> {
        if let Some(record) = self.load(key) {
            return Ok(record.layer);
        }
        let rootfs = make()?;
        let write_error = |err| LayerError::Write {
            label: label.to_string(),
            dir: self.blobs.clone(),
            err,
        };
        let layer = layer::write_layer(rootfs.entries.iter(), &self.blobs, label.to_string())
            .map_err(write_error)?;
        let record = LayerRecord {
            layer,
            entries: Vec::new(),
            controls: Vec::new(),
            ca_certificates: Vec::new(),
        };
        let json = serde_json::to_vec(&record).expect("a layer record serializes");
        crate::util::fsutil::write_atomic(&self.records.join(format!("{key}.json")), &json, 0o644)
            .map_err(write_error)?;
        Ok(record.layer)
    }
}

fn ca_certificates(rootfs: &Rootfs) -> Vec<(String, String)> {
    rootfs
        .entries
        .range("usr/share/ca-certificates/".to_string()..)
        .take_while(|(path, _)| path.starts_with("usr/share/ca-certificates/"))
        .filter(|(path, _)| path.ends_with(".crt"))
        .filter_map(|(path, entry)| match &entry.content {
            Content::File(data) => Some((path.clone(), String::from_utf8_lossy(data).into_owned())),
            _ => None,
        })
        .collect()
}

fn index(rootfs: &Rootfs) -> Vec<IndexedEntry> {
    rootfs
        .entries
        .iter()
        .map(|(path, entry)| {
            let (kind, content) = match &entry.content {
                Content::Directory => (EntryKind::Directory, String::new()),
                Content::File(data) => (EntryKind::File, hex::encode(Sha256::digest(&data[..]))),
                Content::Symlink(target) => (EntryKind::Symlink, target.clone()),
                Content::Hardlink(target) => (EntryKind::Hardlink, target.clone()),
            };
            IndexedEntry {
                path: path.clone(),
                owner: entry.owner.clone(),
                kind,
                mode: entry.mode,
                content,
            }
        })
        .collect()
}

/// A path shipped by packages of two layers must be a directory or the
/// very same file/link in both; anything else is the same conflict error
/// as within one layer.
pub fn check_conflicts(records: &[&LayerRecord]) -> Result<(), RootfsError> {
    let mut seen: std::collections::HashMap<&str, &IndexedEntry> = Default::default();
    for record in records {
        for entry in &record.entries {
            match seen.get(entry.path.as_str()) {
                None => {
                    seen.insert(&entry.path, entry);
                }
                Some(first) if first.kind == EntryKind::Directory && entry.kind == first.kind => {}
                Some(first)
                    if first.kind == entry.kind
                        && first.content == entry.content
                        && first.mode == entry.mode => {}
                Some(first) => {
                    return Err(RootfsError::Conflict {
                        path: entry.path.clone(),
                        first: first.owner.clone(),
                        second: entry.owner.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}
