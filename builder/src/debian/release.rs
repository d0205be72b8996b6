//! The signed `Release` document of a Debian suite: which index files exist
//! and their SHA-256 hashes. Only the text that passed signature
//! verification is ever parsed here.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::debian::deb822;

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("the Release file is not valid deb822: {0}")]
    Syntax(#[from] deb822::Deb822Error),
    #[error("the Release file is empty")]
    Empty,
    #[error("the Release file has no SHA256 field: refusing an archive without SHA-256 hashes")]
    NoSha256,
    #[error("bad SHA256 line in the Release file: {0:?}")]
    BadHashLine(String),
}

/// Size and SHA-256 of one file listed in a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFileHash {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub acquire_by_hash: bool,
    /// True when arch-`all` packages have an index of their own to read:
    /// `all` is among the Architectures and they are not already listed in
    /// each architecture's index (`No-Support-for-Architecture-all`). This
    /// is apt's rule too.
    pub separate_all_index: bool,
    pub files: BTreeMap<String, IndexFileHash>,
}

impl Release {
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let paragraph = deb822::paragraphs(text)
            .next()
            .ok_or(ReleaseError::Empty)??;
        let owned = |name: &str| paragraph.get(name).map(str::to_string);
        let sha256 = paragraph.get("SHA256").ok_or(ReleaseError::NoSha256)?;
        let mut files = BTreeMap::new();
        for line in sha256.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, path] = parts[..] else {
                return Err(ReleaseError::BadHashLine(line.to_string()));
            };
            let size = size
                .parse()
                .map_err(|_| ReleaseError::BadHashLine(line.to_string()))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReleaseError::BadHashLine(line.to_string()));
            }
            files.insert(
                path.to_string(),
                IndexFileHash {
                    size,
                    sha256: hash.to_ascii_lowercase(),
                },
            );
        }
        Ok(Release {
            suite: owned("Suite"),
            codename: owned("Codename"),
            date: owned("Date"),
            valid_until: owned("Valid-Until"),
            acquire_by_hash: paragraph
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            separate_all_index: paragraph
                .get("Architectures")
                .is_some_and(|archs| archs.split_whitespace().any(|a| a == "all"))
                && paragraph.get("No-Support-for-Architecture-all") != Some("Packages"),
            files,
        })
    }

    /// Whether this Release describes `suite` (matched against both Suite
    /// and Codename, as apt does), so a signed Release of another suite
    /// cannot be substituted for the one asked for.
    pub fn describes_suite(&self, suite: &str) -> bool {
        let matches = |field: &Option<String>| field.as_deref() == Some(suite);
        (self.suite.is_none() && self.codename.is_none())
            || matches(&self.suite)
            || matches(&self.codename)
    }

    /// The best available variant of an index (`main/binary-amd64/Packages`),
    /// preferring the smallest download: `.xz`, then `.gz`, then plain.
    pub fn pick_index(&self, base: &str) -> Option<(String, &IndexFileHash)> {
        ["xz", "gz", ""].iter().find_map(|ext| {
            let path = if ext.is_empty() {
                base.to_string()
            } else {
                format!("{base}.{ext}")
            };
            self.files.get(&path).map(|hash| (path, hash))
        })
    }
}

impl Release {
    /// The Packages indexes a source of these `components` and `arch` is
    /// read from, with their signed size and hash: one per component and
    /// architecture (plus `all` when it has its own index), the smallest
    /// variant. Err names a component without any.
    pub fn package_indexes(
        &self,
        components: &[String],
        arch: &str,
    ) -> Result<Vec<(String, IndexFileHash)>, String> {
        let mut indexes = Vec::new();
        for component in components {
            let mut arches = vec![arch];
            if self.separate_all_index {
                arches.push("all");
            }
            let before = indexes.len();
            for index_arch in arches {
                let base = format!("{component}/binary-{index_arch}/Packages");
                if let Some((path, hash)) = self.pick_index(&base) {
                    indexes.push((path, hash.clone()));
                }
            }
            if indexes.len() == before {
                return Err(component.clone());
            }
        }
        Ok(indexes)
    }
}

/// Parses an RFC 2822 date as written in Release files
/// (`Sat, 12 Sep 2026 07:55:41 UTC`) into seconds since the epoch.
pub fn parse_release_date(date: &str) -> Option<i64> {
    let parts: Vec<&str> = date.split_whitespace().collect();
    // Optional leading weekday.
    let parts = match parts.first() {
        Some(first) if first.ends_with(',') => &parts[1..],
        _ => &parts[..],
    };
    let [day, month, year, time, zone] = parts else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT" | "+0000" | "Z") {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month))? as i64
        + 1;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so no date library is needed for one field.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Debian\nSuite: stable\nCodename: trixie\n\
Date: Sat, 12 Sep 2026 07:55:41 UTC\nAcquire-By-Hash: yes\nArchitectures: all amd64\n\
No-Support-for-Architecture-all: Packages\nMD5Sum:\n 3e49 12 x\nSHA256:\n \
4f2c68d67001d595fbd343f6dbad44468953a51c4d9dec3a4803249f6e295940 56620099 main/binary-amd64/Packages\n \
7778d3e3f303b7ddb8ce0fe7c8d57473a076c6bf2e8f241f75421d2396352498  9678380 main/binary-amd64/Packages.xz\n";

    #[test]
    fn parses_debian_release() {
        let release = Release::parse(RELEASE).unwrap();
        assert!(release.acquire_by_hash);
        assert!(!release.separate_all_index);
        assert!(release.describes_suite("trixie"));
        assert!(release.describes_suite("stable"));
        assert!(!release.describes_suite("bookworm"));
        let (path, hash) = release.pick_index("main/binary-amd64/Packages").unwrap();
        assert_eq!(path, "main/binary-amd64/Packages.xz");
        assert_eq!(hash.size, 9_678_380);
    }

    #[test]
    fn refuses_release_without_sha256() {
        let err = Release::parse("Suite: x\nMD5Sum:\n abc 1 f\n").unwrap_err();
        assert!(matches!(err, ReleaseError::NoSha256));
    }

    #[test]
    fn parses_dates() {
        assert_eq!(
            parse_release_date("Sat, 12 Sep 2026 07:55:41 UTC"),
            Some(1_789_199_741)
        );
        assert_eq!(parse_release_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_release_date("yesterday"), None);
    }
}
