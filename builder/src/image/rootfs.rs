//! The image's root filesystem as a model (path → entry), assembled from
//! the data archives of locked `.deb`s without running any maintainer
//! script. Paths are relative (`usr/bin/patroni`), merged-/usr applied.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use thiserror::Error;

use crate::debian::deb::{Deb, DebError};

/// Top-level directories that are symlinks into /usr on a merged-/usr
/// system (Debian's amd64 list).
pub const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The links an amd64 image always has, whatever its packages ship.
pub const MERGED_USR_AMD64: &[&str] = &["bin", "sbin", "lib", "lib64"];

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("package {package}: {err}")]
    Deb { package: String, err: DebError },
    #[error("package {package}: data archive: {err}")]
    Tar {
        package: String,
        err: std::io::Error,
    },
    #[error(
        "/{path} is shipped by both {first} and {second} with different content: a file may come from one package only; exclude one of them"
    )]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error(
        "package {package}: /{path}: unsupported entry type {kind:?} (devices, fifos and sockets do not belong in a package)"
    )]
    Unsupported {
        package: String,
        path: String,
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Directory,
    File(Arc<Vec<u8>>),
    Symlink(String),
    /// A hard link to another path of the model.
    Hardlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub content: Content,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The package that shipped it; empty for files nodeimg generates.
    pub owner: String,
}

impl Entry {
    pub fn directory(mode: u32, mtime: u64) -> Entry {
        Entry {
            content: Content::Directory,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            owner: String::new(),
        }
    }

    pub fn file(bytes: Vec<u8>, mode: u32, mtime: u64) -> Entry {
        Entry {
            content: Content::File(Arc::new(bytes)),
            mode,
            uid: 0,
            gid: 0,
            mtime,
            owner: String::new(),
        }
    }

    pub fn symlink(target: &str, mtime: u64) -> Entry {
        Entry {
            content: Content::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime,
            owner: String::new(),
        }
    }
}

/// Sorted by path, so iteration order is the archive order.
#[derive(Debug, Default, Clone)]
pub struct Rootfs {
    pub entries: BTreeMap<String, Entry>,
}

/// `./bin/sh` → `usr/bin/sh`; `./` → None.
pub fn normalize(path: &str) -> Option<String> {
    let trimmed = path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return None;
    }
    let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if MERGED_USR.contains(&first) {
        return Some(if rest.is_empty() {
            format!("usr/{first}")
        } else {
            format!("usr/{first}/{rest}")
        });
    }
    Some(trimmed.to_string())
}

impl Rootfs {
    /// Inserts an entry; directories merge, identical files and links are
    /// fine, anything else shipped twice is a conflict.
    pub fn insert(&mut self, path: String, entry: Entry) -> Result<(), RootfsError> {
        match self.entries.get(&path) {
            None => {
                self.entries.insert(path, entry);
                Ok(())
            }
            Some(existing)
                if existing.content == Content::Directory
                    && entry.content == Content::Directory =>
            {
                Ok(())
            }
            Some(existing) if existing.content == entry.content && existing.mode == entry.mode => {
                Ok(())
            }
            Some(existing) => Err(RootfsError::Conflict {
                path,
                first: existing.owner.clone(),
                second: entry.owner,
            }),
        }
    }

    /// Lays a package's data archive into the model.
    pub fn add_deb(&mut self, package: &str, bytes: &[u8]) -> Result<(), RootfsError> {
        let deb = Deb::parse(bytes).map_err(|err| RootfsError::Deb {
            package: package.to_string(),
            err,
        })?;
        let reader = deb.data_reader().map_err(|err| RootfsError::Deb {
            package: package.to_string(),
            err,
        })?;
        let tar_err = |err| RootfsError::Tar {
            package: package.to_string(),
            err,
        };
        let mut archive = tar::Archive::new(reader);
        for item in archive.entries().map_err(tar_err)? {
            let mut item = item.map_err(tar_err)?;
            let raw_path = item.path().map_err(tar_err)?.to_string_lossy().into_owned();
            let Some(path) = normalize(&raw_path) else {
                continue;
            };
            let header = item.header();
            let mode = header.mode().map_err(tar_err)? & 0o7777;
            let uid = header.uid().map_err(tar_err)?;
            let gid = header.gid().map_err(tar_err)?;
            let mtime = header.mtime().map_err(tar_err)?;
            let kind = header.entry_type();
            // base-files ships the merged-/usr links itself (`bin` →
            // `usr/bin`); they are made once, after all packages.
            if kind == tar::EntryType::Symlink
                && MERGED_USR
                    .iter()
                    .any(|d| raw_path.trim_start_matches("./").trim_end_matches('/') == *d)
            {
                continue;
            }
            let link = || -> Result<String, RootfsError> {
                Ok(item
                    .link_name()
                    .map_err(tar_err)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let content = match kind {
                tar::EntryType::Directory => Content::Directory,
                tar::EntryType::Symlink => Content::Symlink(link()?),
                tar::EntryType::Link => {
                    let target = link()?;
                    Content::Hardlink(normalize(&target).unwrap_or(target))
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut bytes = Vec::with_capacity(item.size() as usize);
                    item.read_to_end(&mut bytes).map_err(tar_err)?;
                    Content::File(Arc::new(bytes))
                }
                other => {
                    return Err(RootfsError::Unsupported {
                        package: package.to_string(),
                        path,
                        kind: format!("{other:?}"),
                    });
                }
            };
            self.insert(
                path,
                Entry {
                    content,
                    mode,
                    uid,
                    gid,
                    mtime,
                    owner: package.to_string(),
                },
            )?;
        }
        Ok(())
    }

    /// Adds the merged-/usr symlinks (`bin` → `usr/bin`) for the
    /// directories that exist under usr/.
    pub fn add_merged_usr_links(&mut self, mtime: u64) -> Result<(), RootfsError> {
        for dir in MERGED_USR {
            if self.entries.contains_key(&format!("usr/{dir}")) {
                self.insert(
                    dir.to_string(),
                    Entry::symlink(&format!("usr/{dir}"), mtime),
                )?;
            }
        }
        Ok(())
    }

    /// Makes sure every parent directory of every entry exists.
    pub fn add_missing_parents(&mut self, mtime: u64) {
        let mut missing = Vec::new();
        for path in self.entries.keys() {
            let mut current = path.as_str();
            while let Some((parent, _)) = current.rsplit_once('/') {
                if !self.entries.contains_key(parent) {
                    missing.push(parent.to_string());
                }
                current = parent;
            }
        }
        for path in missing {
            self.entries
                .entry(path)
                .or_insert_with(|| Entry::directory(0o755, mtime));
        }
    }

    /// Removes entries matching `prune` unless they match `keep` (globs on
    /// absolute paths, `/usr/share/doc/**`).
    pub fn prune(&mut self, prune: &globset::GlobSet, keep: &globset::GlobSet) -> (usize, u64) {
        let mut removed = 0;
        let mut bytes = 0;
        self.entries.retain(|path, entry| {
            let absolute = format!("/{path}");
            let drop = entry.content != Content::Directory
                && prune.is_match(&absolute)
                && !keep.is_match(&absolute);
            if drop {
                removed += 1;
                if let Content::File(data) = &entry.content {
                    bytes += data.len() as u64;
                }
            }
            !drop
        });
        // Directories matched by a pattern go too once nothing is left in
        // them (deepest first, so emptied parents follow their children).
        let candidates: Vec<String> = self
            .entries
            .iter()
            .filter(|(path, entry)| {
                let absolute = format!("/{path}");
                entry.content == Content::Directory
                    && prune.is_match(&absolute)
                    && !keep.is_match(&absolute)
            })
            .map(|(path, _)| path.clone())
            .rev()
            .collect();
        for dir in candidates {
            let prefix = format!("{dir}/");
            let has_children = self
                .entries
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(path, _)| path.starts_with(&prefix));
            if !has_children {
                self.entries.remove(&dir);
            }
        }
        // Hard links whose target was pruned become dangling: drop them too.
        let present: std::collections::BTreeSet<String> = self.entries.keys().cloned().collect();
        self.entries.retain(|_, entry| match &entry.content {
            Content::Hardlink(target) => present.contains(target),
            _ => true,
        });
        (removed, bytes)
    }

    /// Clamps every timestamp to `epoch`, so nothing is newer than the lock.
    pub fn clamp_mtimes(&mut self, epoch: u64) {
        for entry in self.entries.values_mut() {
            entry.mtime = entry.mtime.min(epoch);
        }
    }

    pub fn size(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.content {
                Content::File(data) => data.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths_onto_merged_usr() {
        assert_eq!(normalize("./bin/sh").as_deref(), Some("usr/bin/sh"));
        assert_eq!(
            normalize("./lib64/ld-linux-x86-64.so.2").as_deref(),
            Some("usr/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(normalize("./lib").as_deref(), Some("usr/lib"));
        assert_eq!(normalize("./etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(normalize("./usr/share/").as_deref(), Some("usr/share"));
        assert_eq!(normalize("./"), None);
        assert_eq!(normalize("./binary/x").as_deref(), Some("binary/x"));
    }

    #[test]
    fn identical_files_merge_and_different_ones_conflict() {
        let mut fs = Rootfs::default();
        let file = |bytes: &[u8], owner: &str| Entry {
            owner: owner.into(),
            ..Entry::file(bytes.to_vec(), 0o644, 1)
        };
        fs.insert("etc/x".into(), file(b"a", "p1")).unwrap();
        fs.insert("etc/x".into(), file(b"a", "p2")).unwrap();
        let err = fs.insert("etc/x".into(), file(b"b", "p3")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("/etc/x") && message.contains("p1") && message.contains("p3"),
            "{message}"
        );
    }
}
