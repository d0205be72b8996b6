//! Deterministic layers: a sorted tar with normalized headers (numeric
//! owners, no user/group names, no device numbers), then gzip with a fixed
//! header, level and backend. Same rootfs in, same bytes out.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::rootfs::{Content, Entry, Rootfs};

/// The gzip level is part of the image's identity: changing it changes
/// every layer digest.
pub const GZIP_LEVEL: u32 = 6;

pub struct Layer {
    /// The compressed blob.
    pub gzip: Vec<u8>,
    /// `sha256:…` of the compressed blob (the manifest digest).
    pub digest: String,
    /// `sha256:…` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    pub uncompressed_size: u64,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes the entries (already in path order) as one layer.
pub fn write_layer<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Entry)>,
) -> std::io::Result<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Complete);
    for (path, entry) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        match &entry.content {
            Content::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Content::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data.as_slice())?;
            }
            Content::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
            Content::Hardlink(target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
        }
    }
    let tar = builder.into_inner()?;
    let diff_id = sha256_digest(&tar);
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    encoder.write_all(&tar)?;
    let gzip = encoder.finish()?;
    Ok(Layer {
        digest: sha256_digest(&gzip),
        diff_id,
        uncompressed_size: tar.len() as u64,
        gzip,
    })
}

/// One layer holding the whole rootfs.
pub fn write_rootfs_layer(rootfs: &Rootfs) -> std::io::Result<Layer> {
    write_layer(rootfs.entries.iter())
}
