//! Which packages go into which layer. Chosen from the lock alone (names,
//! source packages, sizes), never from the machine or the clock:
//!
//! 1. a base layer of the C library and friends that every role needs, so
//!    roles built from the same archive share that blob;
//! 2. the largest source-package groups, one layer each, biggest first,
//!    within the layer budget (a PostgreSQL update then changes one blob);
//! 3. one layer for all remaining packages;
//! 4. (outside this plan) the files nodeimg itself generates, on top.

use crate::lock::{Lock, LockedPackage};

/// The packages every role's closure contains (libc, libgcc, OpenSSL,
/// base-files, a shell): the shared base layer. A recipe can replace the
/// list with `[layers] base`.
pub const DEFAULT_BASE: &[&str] = &[
    "base-files",
    "dash",
    "debianutils",
    "gcc-14-base",
    "libaudit-common",
    "libaudit1",
    "libc6",
    "libcap-ng0",
    "libcap2",
    "libgcc-s1",
    "libpam0g",
    "libpcre2-8-0",
    "libssl3t64",
    "libstdc++6",
    "libsystemd0",
    "libzstd1",
    "mawk",
    "netbase",
    "openssl-provider-legacy",
    "zlib1g",
];

/// Layers per image by default, counting the base and the generated layer.
pub const DEFAULT_BUDGET: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageLayer {
    /// `base`, a source package name, or `other`.
    pub name: String,
    /// In lock order.
    pub packages: Vec<LockedPackage>,
    /// The base layer also carries the merged-/usr links and /tmp.
    pub is_base: bool,
}

impl PackageLayer {
    pub fn deb_bytes(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }

    /// `base: libc6, zlib1g, …` for the image history and `inspect`.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
        format!("{}: {}", self.name, names.join(", "))
    }
}

/// Splits the lock's packages into at most `budget - 1` package layers (the
/// last slot is for the generated layer). The base layer always exists,
/// even empty, because it also holds the merged-/usr links.
pub fn plan(lock: &Lock, base: &[String], budget: usize) -> Vec<PackageLayer> {
    let (base_packages, rest): (Vec<_>, Vec<_>) = lock
        .packages
        .iter()
        .cloned()
        .partition(|p| base.contains(&p.name));
    let mut layers = vec![PackageLayer {
        name: "base".into(),
        packages: base_packages,
        is_base: true,
    }];

    let mut groups: std::collections::BTreeMap<String, Vec<LockedPackage>> = Default::default();
    for package in rest {
        groups
            .entry(package.source_package.clone())
            .or_default()
            .push(package);
    }
    let mut groups: Vec<(String, Vec<LockedPackage>)> = groups.into_iter().collect();
    // Biggest first; the name breaks ties so the order is total.
    groups.sort_by(|a, b| {
        let size = |g: &[LockedPackage]| g.iter().map(|p| p.size).sum::<u64>();
        size(&b.1).cmp(&size(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    // Slots left: budget minus base, minus generated layer, minus `other`.
    let own_layers = budget.saturating_sub(3);
    let spill = if groups.len() > own_layers + 1 {
        groups.split_off(own_layers)
    } else {
        Vec::new()
    };
    for (name, packages) in groups {
        layers.push(PackageLayer {
            name,
            packages,
            is_base: false,
        });
    }
    if !spill.is_empty() {
        let mut packages: Vec<LockedPackage> = spill.into_iter().flat_map(|(_, p)| p).collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        layers.push(PackageLayer {
            name: "other".into(),
            packages,
            is_base: false,
        });
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, source: &str, size: u64) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            source: "debian".into(),
            path: format!("pool/{name}.deb"),
            size,
            sha256: "0".repeat(64),
            source_package: source.into(),
            required_by: vec!["recipe".into()],
        }
    }

    fn lock(packages: Vec<LockedPackage>) -> Lock {
        Lock {
            lock_version: 1,
            recipe: "t.toml".into(),
            recipe_sha256: String::new(),
            architecture: "amd64".into(),
            source_date_epoch: 0,
            snapshot: None,
            content_sha256: String::new(),
            params: Default::default(),
            sources: vec![],
            packages,
            excluded: vec![],
        }
    }

    fn names(layer: &PackageLayer) -> Vec<&str> {
        layer.packages.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn base_first_then_source_groups_by_size_then_the_rest() {
        let lock = lock(vec![
            package("libc6", "glibc", 3),
            package("libpq5", "postgresql-17", 1),
            package("postgresql-17", "postgresql-17", 20),
            package("python3.13", "python3.13", 5),
            package("tiny-a", "a", 1),
            package("tiny-b", "b", 1),
            package("zlib1g", "zlib", 1),
        ]);
        let base = vec!["libc6".to_string(), "zlib1g".to_string()];
        let layers = plan(&lock, &base, 5);
        assert_eq!(layers.len(), 4, "{layers:#?}");
        assert_eq!(names(&layers[0]), ["libc6", "zlib1g"]);
        assert!(layers[0].is_base);
        assert_eq!(layers[1].name, "postgresql-17");
        assert_eq!(names(&layers[1]), ["libpq5", "postgresql-17"]);
        assert_eq!(layers[2].name, "python3.13");
        assert_eq!(layers[3].name, "other");
        assert_eq!(names(&layers[3]), ["tiny-a", "tiny-b"]);
        assert_eq!(layers[1].label(), "postgresql-17: libpq5, postgresql-17");
    }

    #[test]
    fn no_other_layer_when_every_group_fits() {
        let lock = lock(vec![package("a", "a", 2), package("b", "b", 1)]);
        let layers = plan(&lock, &[], 5);
        let layer_names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(layer_names, ["base", "a", "b"]);
        assert!(layers[0].packages.is_empty());
    }
}
