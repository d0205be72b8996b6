//! Overlay folders (`overlays/common`, `overlays/<role>`): files laid on
//! top of an image in a layer of their own, hashed so the SBOM can name
//! exactly what was added. Owners are root, modes are 0755 for anything
//! executable and 0644 otherwise, timestamps the build's epoch: nothing of
//! the checkout (umask, owner, clock) leaks into the image.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::rootfs::{Content, Entry, Rootfs};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error(
        "overlay folder {0} does not exist: fix `[overlays] dirs` in the recipe (paths are relative to the recipe's folder)"
    )]
    Missing(PathBuf),
    #[error("overlay {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("overlay {0}: only files, folders and symbolic links can be laid into an image")]
    Unsupported(PathBuf),
}

pub struct Overlay {
    pub rootfs: Rootfs,
    /// SHA-256 over every path, mode and content, in path order.
    pub sha256: String,
}

/// Reads the folders in order; a path in a later folder replaces the same
/// path from an earlier one.
pub fn load(dirs: &[PathBuf], epoch: u64) -> Result<Overlay, OverlayError> {
    let mut rootfs = Rootfs::default();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(OverlayError::Missing(dir.clone()));
        }
        walk(dir, dir, epoch, &mut rootfs)?;
    }
    rootfs.add_missing_parents(epoch);
    let mut hasher = Sha256::new();
    for (path, entry) in &rootfs.entries {
        hasher.update(format!("{path}\0{:o}\0", entry.mode));
        match &entry.content {
            Content::File(data) => hasher.update(Sha256::digest(&data[..])),
            Content::Symlink(target) => hasher.update(target.as_bytes()),
            Content::Directory | Content::Hardlink(_) => {}
        }
        hasher.update([0]);
    }
    Ok(Overlay {
        rootfs,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn walk(root: &Path, dir: &Path, epoch: u64, rootfs: &mut Rootfs) -> Result<(), OverlayError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |err| OverlayError::Read { path, err }
    };
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let relative = path
            .strip_prefix(root)
            .expect("walked paths are under the root")
            .to_string_lossy()
            .into_owned();
        // Normalized like package paths, so /bin/x lands in usr/bin/x.
        let Some(image_path) = crate::image::rootfs::normalize(&relative) else {
            continue;
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let entry = if meta.is_dir() {
            Entry::directory(0o755, epoch)
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(read_err(&path))?;
            let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111;
            Entry::file(bytes, if executable != 0 { 0o755 } else { 0o644 }, epoch)
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(read_err(&path))?;
            Entry::symlink(&target.to_string_lossy(), epoch)
        } else {
            return Err(OverlayError::Unsupported(path));
        };
        let is_dir = meta.is_dir();
        rootfs.entries.insert(
            image_path,
            Entry {
                owner: "overlay".into(),
                ..entry
            },
        );
        if is_dir {
            walk(root, &path, epoch, rootfs)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_folders_win_modes_are_normalized_and_the_hash_follows_content() {
        let common = tempfile::tempdir().unwrap();
        let role = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(common.path().join("etc/nodeimg")).unwrap();
        std::fs::write(common.path().join("etc/nodeimg/a.conf"), "common\n").unwrap();
        std::fs::create_dir_all(role.path().join("etc/nodeimg")).unwrap();
        std::fs::write(role.path().join("etc/nodeimg/a.conf"), "role\n").unwrap();
        std::fs::create_dir_all(role.path().join("bin")).unwrap();
        let script = role.path().join("bin/hook");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let dirs = [common.path().to_path_buf(), role.path().to_path_buf()];
        let overlay = load(&dirs, 7).unwrap();
        let conf = &overlay.rootfs.entries["etc/nodeimg/a.conf"];
        assert_eq!(
            conf.content,
            Content::File(std::sync::Arc::new(b"role\n".to_vec()))
        );
        assert_eq!(conf.mode, 0o644);
        assert_eq!(overlay.rootfs.entries["usr/bin/hook"].mode, 0o755);
        assert_eq!(overlay.rootfs.entries["usr/bin/hook"].mtime, 7);
        let again = load(&dirs, 7).unwrap();
        assert_eq!(overlay.sha256, again.sha256);
        std::fs::write(role.path().join("etc/nodeimg/a.conf"), "changed\n").unwrap();
        assert_ne!(load(&dirs, 7).unwrap().sha256, overlay.sha256);
        let missing = load(&[common.path().join("nope")], 7).err().unwrap();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }
}
