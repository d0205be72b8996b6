//! `nodeimg fetch`: download every `.deb` a lock names into the cache and
//! verify it, so a later build (or an air-gapped one) needs no network.

use std::path::PathBuf;
use std::time::Instant;

use crate::fetch::Fetcher;
use crate::lock::Lock;
use crate::package_cache::PackageCache;
use crate::recipe;

pub struct FetchOptions {
    pub recipe: PathBuf,
    pub params: Vec<(String, String)>,
    pub lock: Option<PathBuf>,
    pub offline: bool,
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
    let cache = PackageCache::new(&options.cache_dir, options.offline, options.fetcher.clone());
    let downloaded = cache.fill(&lock)?;
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
