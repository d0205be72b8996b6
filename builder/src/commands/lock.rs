//! `nodeimg lock`: resolve a recipe against its signed sources and write
//! (or check) its lock.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::debian::fetch::Fetcher;
use crate::lock::Lock;
use crate::lock::index::IndexCache;
use crate::lock::recipe;
use crate::lock::resolve;

pub struct LockOptions {
    pub recipe: PathBuf,
    pub params: Vec<(String, String)>,
    pub output: Option<PathBuf>,
    pub check: bool,
    pub offline: bool,
    pub cache_dir: PathBuf,
    pub fetcher: Fetcher,
}

pub fn run(options: &LockOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let recipe = recipe::load(&options.recipe, &options.params)?;
    let lock_path = options
        .output
        .clone()
        .unwrap_or_else(|| recipe.default_lock_path());
    let cache = IndexCache::new(
        options.cache_dir.clone(),
        options.offline,
        options.fetcher.clone(),
    );
    let universe = cache.load_universe(&recipe)?;
    let exclude = &recipe.recipe.packages.exclude;
    let resolution = resolve::resolve(&universe, &recipe.wanted, exclude)
        .with_context(|| format!("{}: cannot resolve the packages", recipe.path.display()))?;
    let lock = Lock::from_resolution(&recipe, &universe.sources, &resolution);
    let text = lock.to_toml();
    let download: u64 = lock.packages.iter().map(|p| p.size).sum();
    let summary = format!(
        "{} packages, {:.1} MB to download, {} excluded dependencies",
        lock.packages.len(),
        download as f64 / 1e6,
        lock.excluded.len()
    );

    if options.check {
        let existing = Lock::read(&lock_path)?;
        let current = std::fs::read_to_string(&lock_path).unwrap_or_default();
        if current == text {
            eprintln!("{} is up to date ({summary})", lock_path.display());
            return Ok(());
        }
        let mut changes = existing.diff(&lock);
        if changes.is_empty() {
            changes.push("formatting differs from what nodeimg writes".into());
        }
        bail!(
            "{} is stale:\n  {}\nrun `nodeimg lock {}` and commit the result",
            lock_path.display(),
            changes.join("\n  "),
            recipe.path.display()
        );
    }

    keep_inrelease_files(&lock, &cache, &lock_path)?;
    let unchanged = std::fs::read_to_string(&lock_path).is_ok_and(|current| current == text);
    // What a re-lock changes, package by package, before it is written.
    let changes = match Lock::read(&lock_path) {
        Ok(previous) if !unchanged => previous.diff(&lock),
        _ => Vec::new(),
    };
    if !unchanged {
        crate::util::fsutil::write_atomic(&lock_path, text.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
    }
    eprintln!(
        "{} {} ({summary}) in {:.2}s",
        if unchanged { "unchanged" } else { "wrote" },
        lock_path.display(),
        started.elapsed().as_secs_f64()
    );
    if !changes.is_empty() {
        eprintln!(
            "{} change(s) (- removed, + added, ~ changed):\n  {}",
            changes.len(),
            changes.join("\n  ")
        );
    }
    if !unchanged {
        eprintln!(
            "review with `git diff {}`, then commit it with {}/ (or `git checkout` it to keep the old lock)",
            lock_path.display(),
            lock_path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(crate::lock::index_store::DIR)
                .display()
        );
    }
    Ok(())
}

/// Copies the InRelease files the lock was made from next to it
/// (`inrelease/<sha256>`), so `nodeimg verify` and bundles can re-check
/// their signatures without a network.
fn keep_inrelease_files(
    lock: &Lock,
    cache: &IndexCache,
    lock_path: &std::path::Path,
) -> anyhow::Result<()> {
    let dir = lock_path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(crate::lock::index_store::DIR);
    for source in &lock.sources {
        let cached = cache.inrelease_dir().join(&source.inrelease_sha256);
        let bytes = std::fs::read(&cached).with_context(|| {
            format!(
                "source `{}`: the verified InRelease {} is not in the cache",
                source.name,
                cached.display()
            )
        })?;
        crate::lock::index_store::keep(&dir, &bytes)?;
    }
    Ok(())
}
