//! Debian package versions (`[epoch:]upstream[-revision]`), ordered exactly
//! as `dpkg --compare-versions` orders them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid version {version:?}: {reason}")]
pub struct VersionError {
    pub version: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Version {
    original: String,
    epoch: u32,
    upstream: String,
    revision: String,
}

impl Version {
    pub fn as_str(&self) -> &str {
        &self.original
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Version, VersionError> {
        let error = |reason: &str| VersionError {
            version: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(error("empty version"));
        }
        if trimmed.contains(char::is_whitespace) {
            return Err(error("contains whitespace"));
        }
        let (epoch, rest) = match trimmed.split_once(':') {
            Some((epoch, rest)) => {
                if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(error("epoch must be a number"));
                }
                let epoch = epoch.parse().map_err(|_| error("epoch is too large"))?;
                (epoch, rest)
            }
            None => (0, trimmed),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(error("empty upstream version"));
        }
        if rest.ends_with('-') {
            return Err(error("empty revision after '-'"));
        }
        // dpkg accepts these characters; anything else is an error there too.
        let allowed_upstream = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(allowed_upstream) {
            return Err(error("invalid character in upstream version"));
        }
        if !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c))
        {
            return Err(error("invalid character in revision"));
        }
        Ok(Version {
            original: text.to_string(),
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Compares two version strings with dpkg's rules.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(a.parse::<Version>()?.cmp(&b.parse::<Version>()?))
}

/// Sort weight of a non-digit character: `~` before the end of the string,
/// the end before letters, letters before everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs. Digit runs are
/// compared as numbers of any length (no overflow).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        let start_a = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let start_b = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let ordering = compare_digits(&a[start_a..i], &b[start_b..j]);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|c| **c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        compare(a, b).unwrap()
    }

    #[test]
    fn epochs_dominate() {
        assert_eq!(cmp("1:1.0", "2.0"), Ordering::Greater);
        assert_eq!(cmp("0:1.0", "1.0"), Ordering::Equal);
        assert_eq!(cmp("1:19.1.0", "1:19.1.7-3"), Ordering::Less);
    }

    #[test]
    fn tilde_sorts_before_everything() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0~~", "1.0~"), Ordering::Less);
        assert_eq!(cmp("1.0~~a", "1.0~~"), Ordering::Greater);
        assert_eq!(cmp("17~beta1", "17~~"), Ordering::Greater);
        assert_eq!(cmp("3.4.0", "3.4.0~rc1"), Ordering::Greater);
    }

    #[test]
    fn revisions_and_letters() {
        assert_eq!(cmp("1.0-1", "1.0-2"), Ordering::Less);
        assert_eq!(cmp("1.0-1", "1.0"), Ordering::Greater);
        assert_eq!(cmp("1.0-0", "1.0"), Ordering::Equal);
        assert_eq!(cmp("1.0.", "1.0+"), Ordering::Greater);
        assert_eq!(cmp("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(cmp("1.0.", "1.0+"), Ordering::Greater);
        assert_eq!(cmp("2.41-12+deb13u1", "2.41-12"), Ordering::Greater);
        assert_eq!(cmp("0.0~r130", "0.0~r131"), Ordering::Less);
    }

    #[test]
    fn digit_runs_compare_numerically_without_overflow() {
        assert_eq!(cmp("1.010", "1.9"), Ordering::Greater);
        assert_eq!(cmp("1.0001", "1.1"), Ordering::Equal);
        assert_eq!(
            cmp(
                "1.123456789012345678901234567890",
                "1.123456789012345678901234567891"
            ),
            Ordering::Less
        );
    }

    #[test]
    fn keeps_the_original_text() {
        let v: Version = "1:2.0-3".parse().unwrap();
        assert_eq!(v.to_string(), "1:2.0-3");
        assert_eq!((v.epoch(), v.upstream(), v.revision()), (1, "2.0", "3"));
        let v: Version = "1.2-3-4".parse().unwrap();
        assert_eq!((v.upstream(), v.revision()), ("1.2-3", "4"));
    }

    #[test]
    fn rejects_invalid_versions() {
        for bad in ["", "a:1.0", "1.0 2", "1.0-", "1.0_1", ":1.0", "-1"] {
            assert!(
                bad.parse::<Version>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
