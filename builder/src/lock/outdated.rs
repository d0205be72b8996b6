//! Which locked packages have a newer version in the recipe's sources now,
//! and which of those come from a security suite: when to re-lock.

use serde::Serialize;

use crate::debian::version::Version;
use crate::lock::Lock;
use crate::lock::index::Universe;

/// One locked package with a newer version in the sources.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Newer {
    pub name: String,
    pub locked: String,
    pub newest: String,
    /// The source (`[[source]]` name) and suite the newest comes from.
    pub source: String,
    pub suite: String,
    /// From a security suite (`trixie-security`): a security update.
    pub security: bool,
    /// Whether the sources still offer the locked version (the security
    /// archive drops superseded ones; builds then use the snapshot).
    pub locked_still_served: bool,
}

/// A suite whose updates are security fixes.
pub fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

/// Every package of `lock` for which `universe` (the recipe's sources as
/// they are now) has a higher version of the same architecture, by name.
pub fn newer_versions(lock: &Lock, universe: &Universe) -> Vec<Newer> {
    let mut found = Vec::new();
    for package in &lock.packages {
        let Ok(locked) = package.version.parse::<Version>() else {
            continue;
        };
        let candidates: Vec<_> = universe
            .candidates(&package.name)
            .iter()
            .filter(|c| c.architecture == package.architecture)
            .collect();
        // Candidates are sorted best first.
        let Some(best) = candidates.first() else {
            continue;
        };
        if best.version <= locked {
            continue;
        }
        let source = &universe.sources[best.source];
        found.push(Newer {
            name: package.name.clone(),
            locked: package.version.clone(),
            newest: best.version.to_string(),
            source: source.name.clone(),
            suite: source.suite.clone(),
            security: is_security_suite(&source.suite),
            locked_still_served: candidates.iter().any(|c| c.version == locked),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_suites_are_recognised() {
        assert!(is_security_suite("trixie-security"));
        assert!(is_security_suite("bookworm/updates"));
        assert!(!is_security_suite("trixie-updates"));
        assert!(!is_security_suite("trixie"));
    }
}
