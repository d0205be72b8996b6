//! A `.deb` is the package its lock entry names: the control file's
//! Package, Version, Architecture and source package must be the lock's.
//! The SHA-256 already ties the bytes to the lock; this ties the lock's
//! words (what the SBOM and the dpkg database will say) to the bytes, so a
//! lock edited by hand with its checksums recomputed cannot relabel a
//! package.

use thiserror::Error;

use crate::debian::deb822;
use crate::lock::LockedPackage;

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error(
        "package {name}: its .deb says {field} {actual:?}, the lock says {locked:?}: the lock does not describe this file (edited by hand?); re-lock with `nodeimg lock <recipe>` and review the change"
    )]
    Mismatch {
        name: String,
        field: &'static str,
        actual: String,
        locked: String,
    },
    #[error("package {name}: its .deb's control file is not readable: {message}")]
    Control { name: String, message: String },
}

/// Checks the control file of `package`'s `.deb` against its lock entry.
pub fn check(package: &LockedPackage, control: &str) -> Result<(), IdentityError> {
    let paragraph = deb822::paragraphs(control)
        .next()
        .ok_or_else(|| IdentityError::Control {
            name: package.name.clone(),
            message: "it is empty".into(),
        })?
        .map_err(|err| IdentityError::Control {
            name: package.name.clone(),
            message: err.to_string(),
        })?;
    let field = |name: &str| paragraph.get(name).unwrap_or("").trim().to_string();
    let package_name = field("Package");
    // `Source: name (version)` when the binary version differs; absent when
    // the source is named like the binary.
    let source = field("Source")
        .split_whitespace()
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| package_name.clone());
    let mut checks = vec![
        ("Package", package_name, &package.name),
        ("Version", field("Version"), &package.version),
        ("Architecture", field("Architecture"), &package.architecture),
    ];
    if !package.source_package.is_empty() {
        checks.push(("Source", source, &package.source_package));
    }
    for (name, actual, locked) in checks {
        if &actual != locked {
            return Err(IdentityError::Mismatch {
                name: package.name.clone(),
                field: name,
                actual,
                locked: locked.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> LockedPackage {
        LockedPackage {
            name: "haproxy".into(),
            version: "3.0.11-1+deb13u5".into(),
            architecture: "amd64".into(),
            source: "debian-security".into(),
            path: "pool/updates/main/h/haproxy/haproxy_3.0.11-1+deb13u5_amd64.deb".into(),
            size: 1,
            sha256: "0".repeat(64),
            source_package: "haproxy".into(),
            required_by: vec!["recipe".into()],
        }
    }

    const CONTROL: &str =
        "Package: haproxy\nVersion: 3.0.11-1+deb13u5\nArchitecture: amd64\nDescription: x\n";

    #[test]
    fn the_lock_entry_of_the_deb_passes_any_other_word_is_named() {
        check(&locked(), CONTROL).unwrap();
        let forged = LockedPackage {
            version: "3.0.11-1+deb13u59".into(),
            ..locked()
        };
        let err = check(&forged, CONTROL).unwrap_err().to_string();
        assert!(
            err.contains("package haproxy")
                && err.contains("Version \"3.0.11-1+deb13u5\"")
                && err.contains("the lock says \"3.0.11-1+deb13u59\""),
            "{err}"
        );
        for (forged, field) in [
            (
                LockedPackage {
                    name: "haproxy2".into(),
                    ..locked()
                },
                "Package",
            ),
            (
                LockedPackage {
                    architecture: "all".into(),
                    ..locked()
                },
                "Architecture",
            ),
            (
                LockedPackage {
                    source_package: "nginx".into(),
                    ..locked()
                },
                "Source",
            ),
        ] {
            let err = check(&forged, CONTROL).unwrap_err().to_string();
            assert!(err.contains(&format!("its .deb says {field}")), "{err}");
        }
        // The Source field with a version in parentheses, and a lock
        // that does not record the source package.
        let binnmu =
            "Package: libfoo1\nSource: foo (1.0-1)\nVersion: 1.0-1+b1\nArchitecture: amd64\n";
        let entry = LockedPackage {
            name: "libfoo1".into(),
            version: "1.0-1+b1".into(),
            source_package: "foo".into(),
            ..locked()
        };
        check(&entry, binnmu).unwrap();
        check(
            &LockedPackage {
                source_package: String::new(),
                ..entry
            },
            binnmu,
        )
        .unwrap();
    }
}
