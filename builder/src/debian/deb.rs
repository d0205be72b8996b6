//! Reading `.deb` files: an `ar` archive holding `debian-binary`,
//! `control.tar.*` and `data.tar.*`. Only the data is ever unpacked into an
//! image; maintainer scripts in the control archive are never run.

use std::io::Read;
use std::ops::Range;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DebError {
    #[error("not a .deb: {0}")]
    Format(String),
    #[error("unsupported compression {member:?} (nodeimg reads .gz, .xz, .zst and plain tar)")]
    UnknownCompression { member: String },
    #[error("{member}: {source}")]
    Read {
        member: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    fn from_member(name: &str, stem: &str) -> Result<Compression, DebError> {
        match name.strip_prefix(stem) {
            Some("") => Ok(Compression::None),
            Some(".gz") => Ok(Compression::Gzip),
            Some(".xz") => Ok(Compression::Xz),
            Some(".zst") => Ok(Compression::Zstd),
            _ => Err(DebError::UnknownCompression {
                member: name.to_string(),
            }),
        }
    }
}

/// A parsed `.deb` borrowing the file's bytes.
pub struct Deb<'a> {
    bytes: &'a [u8],
    control: (String, Compression, Range<usize>),
    data: (String, Compression, Range<usize>),
}

impl<'a> Deb<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Deb<'a>, DebError> {
        let format = |what: &str| DebError::Format(what.to_string());
        let body = bytes
            .strip_prefix(b"!<arch>\n")
            .ok_or_else(|| format("missing the ar magic `!<arch>`"))?;
        let mut offset = bytes.len() - body.len();
        let mut members = Vec::new();
        while offset < bytes.len() {
            let header = bytes
                .get(offset..offset + 60)
                .ok_or_else(|| format("truncated ar member header"))?;
            if &header[58..60] != b"`\n" {
                return Err(format("corrupt ar member header"));
            }
            let name = String::from_utf8_lossy(&header[..16])
                .trim_end()
                .trim_end_matches('/')
                .to_string();
            let size: usize = std::str::from_utf8(&header[48..58])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format("bad ar member size"))?;
            let start = offset + 60;
            let end = start
                .checked_add(size)
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| DebError::Format(format!("member {name} is truncated")))?;
            members.push((name, start..end));
            // Members are aligned to even offsets.
            offset = end + (size % 2);
        }
        match members.first() {
            Some((name, range))
                if name == "debian-binary" && bytes[range.clone()].starts_with(b"2.") => {}
            _ => return Err(format("first member is not debian-binary 2.x")),
        }
        let find = |stem: &str| -> Result<(String, Compression, Range<usize>), DebError> {
            let (name, range) = members
                .iter()
                .find(|(name, _)| name.starts_with(stem))
                .ok_or_else(|| DebError::Format(format!("no {stem} member")))?;
            Ok((
                name.clone(),
                Compression::from_member(name, stem)?,
                range.clone(),
            ))
        };
        Ok(Deb {
            bytes,
            control: find("control.tar")?,
            data: find("data.tar")?,
        })
    }

    pub fn data_compression(&self) -> Compression {
        self.data.1
    }

    /// A streaming reader of the uncompressed `data.tar`.
    pub fn data_reader(&self) -> Result<Box<dyn Read + 'a>, DebError> {
        decoder(&self.data.0, self.data.1, &self.bytes[self.data.2.clone()])
    }

    /// The `control` file of the control archive, as text.
    pub fn control_text(&self) -> Result<String, DebError> {
        let member = &self.control.0;
        let read_err = |source| DebError::Read {
            member: member.clone(),
            source,
        };
        let reader = decoder(member, self.control.1, &self.bytes[self.control.2.clone()])?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let path = entry.path().map_err(read_err)?.into_owned();
            if path.to_str().map(|p| p.trim_start_matches("./")) == Some("control") {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(read_err)?;
                return Ok(text);
            }
        }
        Err(DebError::Format(format!("{member} has no control file")))
    }
}

fn decoder<'a>(
    member: &str,
    compression: Compression,
    bytes: &'a [u8],
) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match compression {
        Compression::None => Box::new(bytes),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(bytes)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(bytes).map_err(
            |source| DebError::Read {
                member: member.to_string(),
                source,
            },
        )?),
    })
}
