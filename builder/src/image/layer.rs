//! Deterministic layers: a sorted tar with normalized headers (numeric
//! owners, no user/group names, no device numbers), then gzip with a fixed
//! header, level and backend. Same entries in, same bytes out.
//!
//! The tar is streamed through two hashers and the gzip encoder straight
//! into a file, so a layer never sits in memory twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::rootfs::{Content, Entry};

/// The gzip level is part of the image's identity: changing it changes
/// every layer digest.
pub const GZIP_LEVEL: u32 = 6;

/// A finished layer blob on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// `sha256:…` of the compressed blob (the manifest digest).
    pub digest: String,
    /// `sha256:…` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
    pub uncompressed_size: u64,
    /// What the layer holds, for humans (`base: libc6, …`); recorded in the
    /// image config's history.
    pub label: String,
    /// Where the blob is: the layer cache, or a build's scratch folder.
    #[serde(skip)]
    pub path: PathBuf,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hasher: Sha256::new(),
        count: 0,
    }
}

/// Writes the entries (already in path order) as one gzip layer blob in
/// `dir`, named by its digest. The blob appears under its final name only
/// once complete.
pub fn write_layer<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Entry)>,
    dir: &Path,
    label: String,
) -> std::io::Result<Layer> {
    std::fs::create_dir_all(dir)?;
    let temp = tempfile::NamedTempFile::new_in(dir)?;
    let file = hashing(std::io::BufWriter::with_capacity(
        1 << 20,
        temp.as_file().try_clone()?,
    ));
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(file, flate2::Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(hashing(gzip));
    builder.mode(tar::HeaderMode::Complete);
    for (path, entry) in entries {
        append(&mut builder, path, entry)?;
    }
    let tar = builder.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(tar.hasher.finalize()));
    let uncompressed_size = tar.count;
    let mut file = tar.inner.finish()?;
    file.flush()?;
    let size = file.count;
    let digest = format!("sha256:{}", hex::encode(file.hasher.finalize()));
    let path = dir.join(digest.trim_start_matches("sha256:"));
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(Layer {
        digest,
        diff_id,
        size,
        uncompressed_size,
        label,
        path,
    })
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    entry: &Entry,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    match &entry.content {
        Content::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, format!("{path}/"), std::io::empty())
        }
        Content::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_slice())
        }
        Content::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
        Content::Hardlink(target) => {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn same_entries_give_the_same_blob_and_digests_match_the_bytes() {
        let mut entries = std::collections::BTreeMap::new();
        entries.insert("etc".to_string(), Entry::directory(0o755, 10));
        entries.insert(
            "etc/motd".to_string(),
            Entry::file(b"hello\n".to_vec(), 0o644, 10),
        );
        entries.insert("etc/link".to_string(), Entry::symlink("motd", 10));
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = write_layer(entries.iter(), a.path(), "t".into()).unwrap();
        let second = write_layer(entries.iter(), b.path(), "t".into()).unwrap();
        assert_eq!(first.digest, second.digest);
        let blob = std::fs::read(&first.path).unwrap();
        assert_eq!(blob.len() as u64, first.size);
        assert_eq!(sha256_digest(&blob), first.digest);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(sha256_digest(&tar), first.diff_id);
        assert_eq!(tar.len() as u64, first.uncompressed_size);
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["etc/", "etc/link", "etc/motd"]);
    }
}
