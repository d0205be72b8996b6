//! Package indexes of the recipe's sources, verified along the chain
//! InRelease signature → Release SHA-256 → Packages file, and cached on
//! disk so that a second `lock` downloads nothing but a freshness check.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::deb822;
use crate::debian::fetch::{FetchError, Fetched, Fetcher};
use crate::debian::relation::{self, Relation};
use crate::debian::release::{Release, parse_release_date};
use crate::debian::signature::{Keyring, SignatureError};
use crate::debian::version::Version;
use crate::lock::recipe::{LoadedRecipe, Source};

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("source `{source_name}`: {err}")]
    Fetch {
        source_name: String,
        err: FetchError,
    },
    #[error("source `{source_name}`: {err}")]
    Keys {
        source_name: String,
        err: SignatureError,
    },
    #[error("source `{source_name}`: {url}: signature check failed: {err}")]
    Signature {
        source_name: String,
        url: String,
        err: SignatureError,
    },
    #[error("source `{source_name}`: {url}: {message}")]
    Release {
        source_name: String,
        url: String,
        message: String,
    },
    #[error(
        "source `{source_name}`: {path}: expected SHA-256 {expected} ({expected_size} bytes) as signed in InRelease, got {actual} ({actual_size} bytes); the mirror may be mid-update or tampered with: try again later or use another mirror"
    )]
    HashMismatch {
        source_name: String,
        path: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error("source `{source_name}`: {path}: {message}")]
    Corrupt {
        source_name: String,
        path: String,
        message: String,
    },
    #[error(
        "source `{source_name}`: no cached index for {url} and --offline forbids downloading it: run once without --offline"
    )]
    NotCached { source_name: String, url: String },
    #[error("cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was verified about one source, recorded in the lock.
#[derive(Debug, Clone)]
pub struct SourceIndex {
    pub name: String,
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    pub inrelease_sha256: String,
    pub date: Option<String>,
    pub date_epoch: Option<i64>,
    /// Primary fingerprints of the recipe keys that signed the InRelease.
    pub signed_by: Vec<String>,
    /// Primary fingerprints of every key the recipe trusts for this source.
    pub trusted_keys: Vec<String>,
    /// The archive's name in snapshot archives, if it has one.
    pub snapshot_archive: Option<String>,
}

/// One installable package from an index.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Position of the source in the recipe (earlier wins ties).
    pub source: usize,
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub depends: String,
    pub pre_depends: String,
    pub conflicts: String,
    pub breaks: String,
    pub provides: Vec<Relation>,
    pub priority: String,
    pub source_package: String,
}

/// Every candidate package of every source, by name.
#[derive(Debug, Default)]
pub struct Universe {
    pub sources: Vec<SourceIndex>,
    pub packages: HashMap<String, Vec<Candidate>>,
    /// Virtual name → (providing package, index into its candidates).
    pub providers: HashMap<String, Vec<(String, usize)>>,
}

impl Universe {
    pub fn candidates(&self, name: &str) -> &[Candidate] {
        self.packages.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.packages.keys()
    }

    fn add(&mut self, candidate: Candidate) {
        let list = self.packages.entry(candidate.name.clone()).or_default();
        // The same package seen in two components or sources: keep the first.
        if list
            .iter()
            .any(|c| c.version == candidate.version && c.architecture == candidate.architecture)
        {
            return;
        }
        list.push(candidate);
    }

    /// Sorts candidates best first (highest version, then earliest source)
    /// and builds the Provides map.
    fn finish(&mut self) {
        for list in self.packages.values_mut() {
            list.sort_by(|a, b| b.version.cmp(&a.version).then(a.source.cmp(&b.source)));
        }
        let mut providers: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for (name, list) in &self.packages {
            for (i, candidate) in list.iter().enumerate() {
                for provided in &candidate.provides {
                    providers
                        .entry(provided.name.clone())
                        .or_default()
                        .push((name.clone(), i));
                }
            }
        }
        for list in providers.values_mut() {
            list.sort();
        }
        self.providers = providers;
    }
}

pub struct IndexCache {
    dir: PathBuf,
    offline: bool,
    fetcher: Fetcher,
}

impl IndexCache {
    pub fn new(dir: PathBuf, offline: bool, fetcher: Fetcher) -> IndexCache {
        IndexCache {
            dir,
            offline,
            fetcher,
        }
    }

    /// Loads, verifies and parses every active source of the recipe.
    pub fn load_universe(&self, recipe: &LoadedRecipe) -> Result<Universe, IndexError> {
        let arch = &recipe.recipe.recipe.architecture;
        let mut universe = Universe::default();
        for (position, source) in recipe.recipe.sources.iter().enumerate() {
            let keyring =
                Keyring::load(&recipe.key_paths(source)).map_err(|err| IndexError::Keys {
                    source_name: source.name.clone(),
                    err,
                })?;
            let (index, release) = self.load_release(source, &keyring)?;
            let indexes = release
                .package_indexes(&source.components, arch)
                .map_err(|component| IndexError::Release {
                    source_name: source.name.clone(),
                    url: self.inrelease_url(source),
                    message: format!(
                        "the signed Release lists no Packages index for component `{component}` and architecture `{arch}`: check components and recipe.architecture"
                    ),
                })?;
            for (path, hash) in indexes {
                let compressed =
                    self.packages_file(source, &release, &path, hash.size, &hash.sha256)?;
                let text =
                    decompress(&path, &compressed).map_err(|message| IndexError::Corrupt {
                        source_name: source.name.clone(),
                        path: path.clone(),
                        message,
                    })?;
                parse_packages(&text, position, arch, &mut universe).map_err(|message| {
                    IndexError::Corrupt {
                        source_name: source.name.clone(),
                        path: path.clone(),
                        message,
                    }
                })?;
            }
            universe.sources.push(index);
        }
        universe.finish();
        Ok(universe)
    }

    fn inrelease_url(&self, source: &Source) -> String {
        format!(
            "{}/dists/{}/InRelease",
            source.url.trim_end_matches('/'),
            source.suite
        )
    }

    fn source_dir(&self, source: &Source) -> PathBuf {
        let key: String = format!("{}_{}", source.url, source.suite)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join("indexes").join(key)
    }

    /// Where verified InRelease files are kept by their SHA-256.
    pub fn inrelease_dir(&self) -> PathBuf {
        self.dir.join(crate::lock::index_store::DIR)
    }

    /// Where the Packages indexes are kept by their SHA-256, compressed as
    /// served.
    pub fn packages_dir(&self) -> PathBuf {
        crate::lock::index_store::packages_dir(&self.dir)
    }

    fn load_release(
        &self,
        source: &Source,
        keyring: &Keyring,
    ) -> Result<(SourceIndex, Release), IndexError> {
        let url = self.inrelease_url(source);
        let dir = self.source_dir(source);
        let cached_path = dir.join("InRelease");
        let stamp_path = dir.join("InRelease.last-modified");
        let cached = std::fs::read(&cached_path).ok();
        // Freshly downloaded bytes are cached only after they verify, so
        // the cache only ever holds signed data.
        let (bytes, fresh) = if self.offline {
            let cached = cached.ok_or_else(|| IndexError::NotCached {
                source_name: source.name.clone(),
                url: url.clone(),
            })?;
            (cached, None)
        } else {
            let since = cached
                .as_ref()
                .and_then(|_| std::fs::read_to_string(&stamp_path).ok());
            let fetched = self
                .fetcher
                .get_if_modified(&url, since.as_deref())
                .map_err(|err| IndexError::Fetch {
                    source_name: source.name.clone(),
                    err,
                })?;
            match (fetched, cached) {
                (Fetched::NotModified, Some(cached)) => {
                    tracing::info!("{url}: unchanged since the cached copy");
                    (cached, None)
                }
                (Fetched::NotModified, None) => {
                    unreachable!("no If-Modified-Since without a cached copy")
                }
                (
                    Fetched::Body {
                        bytes,
                        last_modified,
                    },
                    _,
                ) => {
                    tracing::info!("{url}: downloaded {} bytes", bytes.len());
                    (bytes, Some(last_modified))
                }
            }
        };
        let verified = keyring
            .verify_cleartext(&bytes)
            .map_err(|err| IndexError::Signature {
                source_name: source.name.clone(),
                url: url.clone(),
                err,
            })?;
        // Kept by hash too, so `nodeimg lock` can put the exact verified
        // bytes beside the lock for later signature re-checks.
        if let Err(err) = crate::lock::index_store::keep(&self.inrelease_dir(), &bytes) {
            tracing::warn!("{err}");
        }
        if let Some(last_modified) = fresh {
            write_atomic(&cached_path, &bytes)?;
            match last_modified {
                Some(stamp) => write_atomic(&stamp_path, stamp.as_bytes())?,
                None => {
                    let _ = std::fs::remove_file(&stamp_path);
                }
            }
        }
        let release_error = |message: String| IndexError::Release {
            source_name: source.name.clone(),
            url: url.clone(),
            message,
        };
        let release =
            Release::parse(&verified.text).map_err(|err| release_error(err.to_string()))?;
        if !release.describes_suite(&source.suite) {
            return Err(release_error(format!(
                "signed for suite {:?} (codename {:?}), not {:?}: refusing a Release of another suite",
                release.suite.as_deref().unwrap_or("?"),
                release.codename.as_deref().unwrap_or("?"),
                source.suite
            )));
        }
        if let Some(valid_until) = &release.valid_until
            && let Some(until) = parse_release_date(valid_until)
            && until < now_epoch()
        {
            let message = format!(
                "the signed Release expired at {valid_until} (Valid-Until): the mirror serves stale data"
            );
            if self.offline {
                tracing::warn!(
                    "source `{}`: {message}; using the cached copy because of --offline",
                    source.name
                );
            } else {
                return Err(release_error(message));
            }
        }
        let index = SourceIndex {
            name: source.name.clone(),
            url: source.url.clone(),
            suite: source.suite.clone(),
            components: source.components.clone(),
            inrelease_sha256: hex::encode(Sha256::digest(&bytes)),
            date: release.date.clone(),
            date_epoch: release.date.as_deref().and_then(parse_release_date),
            signed_by: verified.signers.clone(),
            trusted_keys: keyring.fingerprints(),
            snapshot_archive: source.snapshot_archive(),
        };
        Ok((index, release))
    }

    /// A Packages file by its signed hash: from the content-addressed cache
    /// when present, otherwise downloaded (by hash when the archive supports
    /// it, so a mirror update mid-download cannot mix versions).
    fn packages_file(
        &self,
        source: &Source,
        release: &Release,
        path: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Vec<u8>, IndexError> {
        let cached_path = self.packages_dir().join(sha256);
        if let Ok(bytes) = std::fs::read(&cached_path) {
            if hex::encode(Sha256::digest(&bytes)) == sha256 {
                return Ok(bytes);
            }
            tracing::warn!(
                "{}: cached index is corrupt; removing it",
                cached_path.display()
            );
            let _ = std::fs::remove_file(&cached_path);
        }
        let base = format!(
            "{}/dists/{}",
            source.url.trim_end_matches('/'),
            source.suite
        );
        let plain_url = format!("{base}/{path}");
        if self.offline {
            return Err(IndexError::NotCached {
                source_name: source.name.clone(),
                url: plain_url,
            });
        }
        let fetch_err = |err| IndexError::Fetch {
            source_name: source.name.clone(),
            err,
        };
        let bytes = if release.acquire_by_hash {
            let dir = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
            let by_hash = format!("{base}/{dir}/by-hash/SHA256/{sha256}");
            match self.fetcher.get(&by_hash) {
                Err(FetchError::NotFound { .. }) => {
                    self.fetcher.get(&plain_url).map_err(fetch_err)?
                }
                other => other.map_err(fetch_err)?,
            }
        } else {
            self.fetcher.get(&plain_url).map_err(fetch_err)?
        };
        tracing::info!("{plain_url}: downloaded {} bytes", bytes.len());
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 || bytes.len() as u64 != size {
            return Err(IndexError::HashMismatch {
                source_name: source.name.clone(),
                path: plain_url,
                expected: sha256.to_string(),
                expected_size: size,
                actual,
                actual_size: bytes.len() as u64,
            });
        }
        write_atomic(&cached_path, &bytes)?;
        Ok(bytes)
    }
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The text of a Packages index, compressed as its `path` says (`.xz`,
/// `.gz` or plain).
pub fn decompress(path: &str, bytes: &[u8]) -> Result<String, String> {
    let mut text = String::new();
    let result = if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(bytes).read_to_string(&mut text)
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)
    } else {
        return String::from_utf8(bytes.to_vec()).map_err(|err| format!("not UTF-8: {err}"));
    };
    result.map_err(|err| format!("cannot decompress: {err}"))?;
    Ok(text)
}

fn parse_packages(
    text: &str,
    source: usize,
    arch: &str,
    universe: &mut Universe,
) -> Result<(), String> {
    for paragraph in deb822::paragraphs(text) {
        let paragraph = paragraph.map_err(|err| err.to_string())?;
        let field = |name: &str| paragraph.get(name).unwrap_or("");
        let architecture = field("Architecture");
        if architecture != arch && architecture != "all" {
            continue;
        }
        let name = field("Package");
        let missing = |what: &str| {
            format!(
                "line {}: package {name:?} has no {what} field",
                paragraph.line
            )
        };
        let version: Version = field("Version")
            .parse()
            .map_err(|err| format!("line {}: package {name:?}: {err}", paragraph.line))?;
        let filename = paragraph
            .get("Filename")
            .ok_or_else(|| missing("Filename"))?;
        let size = paragraph
            .get("Size")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| missing("Size"))?;
        let sha256 = paragraph.get("SHA256").ok_or_else(|| missing("SHA256"))?;
        let provides = match paragraph.get("Provides") {
            Some(field) => relation::parse_provides(field)
                .map_err(|err| format!("line {}: package {name:?}: {err}", paragraph.line))?,
            None => Vec::new(),
        };
        let source_package = field("Source")
            .split_whitespace()
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(name);
        universe.add(Candidate {
            source,
            name: name.to_string(),
            version,
            architecture: architecture.to_string(),
            filename: filename.to_string(),
            size,
            sha256: sha256.to_ascii_lowercase(),
            depends: field("Depends").to_string(),
            pre_depends: field("Pre-Depends").to_string(),
            conflicts: field("Conflicts").to_string(),
            breaks: field("Breaks").to_string(),
            provides,
            priority: field("Priority").to_string(),
            source_package: source_package.to_string(),
        });
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    crate::util::fsutil::write_atomic(path, bytes, 0o644).map_err(|source| IndexError::Cache {
        path: path.to_path_buf(),
        source,
    })
}
