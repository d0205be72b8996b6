//! Reproducible tar archives of whole files (image tarballs, bundles):
//! entries sorted by path, parent directories made explicit, numeric root
//! ownership and one fixed mtime, so the same files give the same bytes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Where an entry's bytes come from.
pub enum Source {
    Bytes(Vec<u8>),
    /// Streamed from disk; must not change between sizing and writing.
    File(PathBuf),
}

pub struct TarFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub mode: u32,
    pub source: Source,
}

impl TarFile {
    pub fn bytes(path: impl Into<String>, mode: u32, bytes: Vec<u8>) -> TarFile {
        TarFile {
            path: path.into(),
            mode,
            source: Source::Bytes(bytes),
        }
    }

    pub fn file(path: impl Into<String>, mode: u32, file: PathBuf) -> TarFile {
        TarFile {
            path: path.into(),
            mode,
            source: Source::File(file),
        }
    }

    fn reader(&self) -> std::io::Result<(u64, Box<dyn Read + '_>)> {
        match &self.source {
            Source::Bytes(bytes) => Ok((bytes.len() as u64, Box::new(bytes.as_slice()))),
            Source::File(path) => {
                let file = std::fs::File::open(path)?;
                let size = file.metadata()?.len();
                Ok((size, Box::new(std::io::BufReader::new(file).take(size))))
            }
        }
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// Writes `files` (sorted here, duplicates by path refused) with their
/// parent directories, all stamped `mtime`.
pub fn write(out: impl Write, mtime: u64, mut files: Vec<TarFile>) -> std::io::Result<()> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = files.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("two archive entries at {}", pair[0].path),
        ));
    }
    let mut builder = tar::Builder::new(out);
    let mut dirs_done = BTreeSet::new();
    for file in &files {
        let mut prefix = String::new();
        for part in file
            .path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            if dirs_done.insert(prefix.clone()) {
                let mut dir = header(tar::EntryType::Directory, 0o755, 0, mtime);
                builder.append_data(&mut dir, format!("{prefix}/"), std::io::empty())?;
            }
        }
        let (size, reader) = file.reader()?;
        let mut entry = header(tar::EntryType::Regular, file.mode, size, mtime);
        builder.append_data(&mut entry, &file.path, reader)?;
    }
    builder.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(bytes: &[u8]) -> Vec<(String, u32, u64)> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn sorted_with_parents_and_one_mtime_whatever_the_input_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blob"), b"layer").unwrap();
        let files = || {
            vec![
                TarFile::bytes("b/x.sh", 0o755, b"#!/bin/sh\n".to_vec()),
                TarFile::file("a/blobs/1", 0o644, dir.path().join("blob")),
                TarFile::bytes("a/index", 0o600, b"{}".to_vec()),
            ]
        };
        let mut first = Vec::new();
        write(&mut first, 42, files()).unwrap();
        let mut reversed = files();
        reversed.reverse();
        let mut second = Vec::new();
        write(&mut second, 42, reversed).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            listing(&first),
            vec![
                ("a/".into(), 0o755, 42),
                ("a/blobs/".into(), 0o755, 42),
                ("a/blobs/1".into(), 0o644, 42),
                ("a/index".into(), 0o600, 42),
                ("b/".into(), 0o755, 42),
                ("b/x.sh".into(), 0o755, 42),
            ]
        );
    }

    #[test]
    fn two_entries_at_one_path_are_refused() {
        let files = vec![
            TarFile::bytes("a", 0o644, vec![1]),
            TarFile::bytes("a", 0o644, vec![2]),
        ];
        let err = write(Vec::new(), 0, files).unwrap_err();
        assert!(
            err.to_string().contains("two archive entries at a"),
            "{err}"
        );
    }
}
