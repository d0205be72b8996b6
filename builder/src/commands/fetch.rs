//! `nodeimg fetch`: download every `.deb` a lock names into the cache and
//! verify it, so a later build (or an air-gapped one) needs no network.
//! With `--from-dir` the packages come from a local folder of `.deb` files
//! instead (a mirror subset, a USB stick), matched to the lock by SHA-256.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use std::time::Instant;

use crate::debian::fetch::Fetcher;
use crate::lock::Lock;
use crate::lock::package_cache::PackageCache;
use crate::lock::recipe;

pub struct FetchOptions {
    pub recipe: PathBuf,
    pub params: Vec<(String, String)>,
    pub lock: Option<PathBuf>,
    pub offline: bool,
    /// Take the packages from this folder of .deb files; download nothing.
    pub from_dir: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub fetcher: Fetcher,
}

pub fn run(options: &FetchOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let recipe = recipe::load(&options.recipe, &options.params)?;
    let lock_path = options
        .lock
        .clone()
        .unwrap_or_else(|| recipe.default_lock_path());
    let lock = Lock::read(&lock_path)?;
    lock.ensure_matches(&lock_path, &recipe)?;
    let offline = options.offline || options.from_dir.is_some();
    let cache = PackageCache::new(&options.cache_dir, offline, options.fetcher.clone());
    if let Some(dir) = &options.from_dir {
        import_dir(&cache, &lock, dir)?;
    }
    let downloaded = cache.fill(&lock)?;
    // The signed indexes too, so `verify` and `bundle` can re-check the
    // lock's whole chain offline.
    match crate::lock::index_fetch::ensure_for_recipe(
        &recipe,
        &lock_path,
        &lock,
        &options.cache_dir,
        &options.fetcher,
        offline,
    ) {
        Ok(0) => {}
        Ok(n) => eprintln!("{n} signed Packages indexes downloaded"),
        Err(err) if offline => tracing::warn!(
            "{err}; `nodeimg verify` and `nodeimg bundle` need it to re-check the lock"
        ),
        Err(err) => return Err(err.into()),
    }
    let bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    eprintln!(
        "{} packages of {} verified in {} ({} downloaded, {:.1} MB in all) in {:.2}s",
        lock.packages.len(),
        lock_path.display(),
        options.cache_dir.join("debs").display(),
        downloaded,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `.deb` files below `dir` (any depth), sorted.
fn deb_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read the folder {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "deb") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Copies into the cache every .deb of `dir` that is a package of the lock
/// (same SHA-256 and size); fails naming every locked package the folder
/// lacks, with the file name Debian gives it.
fn import_dir(cache: &PackageCache, lock: &Lock, dir: &Path) -> anyhow::Result<()> {
    let wanted: std::collections::HashMap<&str, &crate::lock::LockedPackage> = lock
        .packages
        .iter()
        .filter(|p| !cache.path_of(p).exists())
        .map(|p| (p.sha256.as_str(), p))
        .collect();
    let files = deb_files(dir)?;
    let mut imported = std::collections::BTreeSet::new();
    for file in &files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        match wanted.get(sha256.as_str()) {
            Some(package) if cache.import(package, &bytes)? => {
                imported.insert(package.sha256.as_str());
            }
            _ => {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                if let Some(p) = lock.packages.iter().find(|p| p.path.ends_with(&*name))
                    && p.sha256 != sha256
                {
                    tracing::warn!(
                        "{}: named like {} {} but its SHA-256 is not the lock's: ignored",
                        file.display(),
                        p.name,
                        p.version
                    );
                }
            }
        }
    }
    let missing: Vec<String> = wanted
        .values()
        .filter(|p| !imported.contains(p.sha256.as_str()))
        .map(|p| {
            format!(
                "{} {} ({})",
                p.name,
                p.version,
                p.path.rsplit('/').next().unwrap_or(&p.path)
            )
        })
        .collect();
    eprintln!(
        "{}: {} .deb files read, {} packages of the lock taken from them",
        dir.display(),
        files.len(),
        imported.len()
    );
    if !missing.is_empty() {
        let mut missing = missing;
        missing.sort();
        bail!(
            "{} of {} locked packages are not in {} (matched by SHA-256): {}; copy them there (from a machine that ran `nodeimg fetch`, or from the mirror paths in the lock) and run again",
            missing.len(),
            lock.packages.len(),
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}
