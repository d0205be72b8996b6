//! The signed `InRelease` files a lock was made from, kept by their SHA-256
//! beside the lock (`recipes/inrelease/<sha256>`) and in bundles, so the
//! signatures the lock records can be checked again later, offline: the
//! file must hash to the lock's `inrelease_sha256`, carry a good signature
//! from the keys the lock trusted, and the trusted keys that signed it must
//! be exactly the lock's `signed_by`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::signature::Keyring;
use crate::lock::index_store::DIR;
use crate::lock::{Lock, LockedSource};

#[derive(Debug, Error)]
pub enum SignedSourceError {
    #[error(
        "source `{source_name}`: {path} is missing: the InRelease (sha256:{sha256}) the lock was made from is needed to re-check its signature; run `nodeimg lock` on the recipe again (it keeps the file) and commit recipes/{DIR}/"
    )]
    Missing {
        source_name: String,
        sha256: String,
        path: PathBuf,
    },
    #[error(
        "source `{source_name}`: {path} hashes to sha256:{actual}, the lock says sha256:{expected}"
    )]
    Damaged {
        source_name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("source `{source_name}`: {path}: {reason}")]
    BadSignature {
        source_name: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "source `{source_name}`: the lock says it was signed by {recorded}, but its InRelease is signed by {found} of the trusted keys"
    )]
    SignersDiffer {
        source_name: String,
        recorded: String,
        found: String,
    },
}

pub fn file_name(source: &LockedSource) -> &str {
    &source.inrelease_sha256
}

/// Re-checks every source of `lock` against the InRelease files in `dir`
/// and the key files `keys` (those the lock does not trust are ignored).
/// Returns one line per source saying what was checked.
pub fn recheck(
    lock: &Lock,
    dir: &Path,
    keys: &[PathBuf],
) -> Result<Vec<String>, SignedSourceError> {
    let mut checked = Vec::new();
    for source in &lock.sources {
        verified_text(source, dir, keys)?;
        checked.push(format!(
            "source `{}` ({} {}): InRelease sha256:{} signed by {}",
            source.name,
            source.url,
            source.suite,
            &source.inrelease_sha256[..12],
            source.signed_by.join(", ")
        ));
    }
    Ok(checked)
}

/// The signed text of one source's InRelease, after the checks `recheck`
/// makes: what the Packages indexes of the lock are checked against.
pub fn verified_text(
    source: &LockedSource,
    dir: &Path,
    keys: &[PathBuf],
) -> Result<String, SignedSourceError> {
    let name = &source.name;
    let path = dir.join(file_name(source));
    let bytes = std::fs::read(&path).map_err(|_| SignedSourceError::Missing {
        source_name: name.clone(),
        sha256: source.inrelease_sha256.clone(),
        path: path.clone(),
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != source.inrelease_sha256 {
        return Err(SignedSourceError::Damaged {
            source_name: name.clone(),
            path,
            expected: source.inrelease_sha256.clone(),
            actual,
        });
    }
    let bad = |reason: String| SignedSourceError::BadSignature {
        source_name: name.clone(),
        path: path.clone(),
        reason,
    };
    let keyring = Keyring::load(keys).map_err(|e| bad(e.to_string()))?;
    let verified = keyring
        .verify_cleartext(&bytes)
        .map_err(|e| bad(e.to_string()))?;
    let trusted: BTreeSet<&String> = source.trusted_keys.iter().collect();
    let found: BTreeSet<&String> = verified
        .signers
        .iter()
        .filter(|s| trusted.contains(s))
        .collect();
    let recorded: BTreeSet<&String> = source.signed_by.iter().collect();
    if found != recorded {
        let list = |set: &BTreeSet<&String>| {
            if set.is_empty() {
                "none".to_string()
            } else {
                set.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        return Err(SignedSourceError::SignersDiffer {
            source_name: name.clone(),
            recorded: list(&recorded),
            found: list(&found),
        });
    }
    Ok(verified.text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::index_store::{keep, key_files};

    /// The committed db lock, its InRelease files and Debian's keys: real
    /// signatures by Debian's archive keys.
    fn recipes() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes")
    }

    fn db_lock() -> Lock {
        Lock::read(&recipes().join("db.lock")).unwrap()
    }

    #[test]
    fn the_committed_locks_signatures_check_again() {
        let lines = recheck(
            &db_lock(),
            &recipes().join(DIR),
            &key_files(&recipes().join("keys")),
        )
        .unwrap();
        assert_eq!(lines.len(), db_lock().sources.len());
        assert!(lines[0].contains("signed by"), "{lines:?}");
    }

    #[test]
    fn an_altered_inrelease_a_missing_one_and_other_signers_are_refused() {
        let keys = key_files(&recipes().join("keys"));
        let dir = tempfile::tempdir().unwrap();
        let lock = db_lock();
        let source = &lock.sources[0];
        let original = std::fs::read(recipes().join(DIR).join(file_name(source))).unwrap();

        // Signed text altered (and the lock made to name the altered file).
        let text = String::from_utf8(original.clone()).unwrap();
        let altered = text.replacen("Suite: ", "Suite:  ", 1);
        assert_ne!(altered, text);
        let path = keep(dir.path(), altered.as_bytes()).unwrap();
        let mut forged = lock.clone();
        forged.sources.truncate(1);
        forged.sources[0].inrelease_sha256 =
            path.file_name().unwrap().to_string_lossy().into_owned();
        let err = recheck(&forged, dir.path(), &keys).unwrap_err().to_string();
        assert!(err.contains("BAD signature"), "{err}");

        // The right file, but the lock claims another signer.
        keep(dir.path(), &original).unwrap();
        let mut claims = lock.clone();
        claims.sources.truncate(1);
        claims.sources[0].signed_by = vec!["0000000000000000000000000000000000000000".into()];
        let err = recheck(&claims, dir.path(), &keys).unwrap_err().to_string();
        assert!(err.contains("the lock says it was signed by 0000"), "{err}");

        // A source whose InRelease was never kept.
        let mut second = lock.clone();
        second.sources.drain(..1);
        let err = recheck(&second, dir.path(), &keys).unwrap_err().to_string();
        assert!(
            err.contains("is missing") && err.contains("nodeimg lock"),
            "{err}"
        );
    }
}
