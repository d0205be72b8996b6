//! `nodeimg outdated`: which locked packages have newer versions in their
//! recipe's sources now (signed indexes, as `lock` reads them), security
//! updates marked; non-zero when there is one, so CI or a timer can alert.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::debian::fetch::Fetcher;
use crate::lock::Lock;
use crate::lock::index::IndexCache;
use crate::lock::outdated::{Newer, newer_versions};
use crate::lock::recipe;

pub struct OutdatedOptions {
    pub recipes: Vec<PathBuf>,
    pub params: Vec<(String, String)>,
    pub offline: bool,
    pub json: bool,
    pub cache_dir: PathBuf,
    pub fetcher: Fetcher,
}

#[derive(Serialize)]
struct LockReport {
    recipe: String,
    lock: String,
    packages: usize,
    /// The lock was made from another version of the recipe.
    stale: bool,
    newer: Vec<Newer>,
}

#[derive(Serialize)]
struct Report {
    locks: Vec<LockReport>,
    /// Locked packages with a newer version, over all locks.
    outdated: usize,
    /// Of those, the ones whose newer version is a security update.
    security: usize,
}

pub fn run(options: &OutdatedOptions) -> anyhow::Result<()> {
    if options.recipes.is_empty() {
        bail!("no recipe given: name one (nodeimg outdated recipes/db.toml) or use --all");
    }
    let cache = IndexCache::new(
        options.cache_dir.clone(),
        options.offline,
        options.fetcher.clone(),
    );
    let mut locks = Vec::new();
    for path in &options.recipes {
        let recipe = recipe::load(path, &options.params)?;
        let lock_path = recipe.default_lock_path();
        let lock = Lock::read(&lock_path)?;
        let stale = lock.ensure_matches(&lock_path, &recipe).is_err();
        let universe = cache
            .load_universe(&recipe)
            .with_context(|| format!("{}: cannot read its sources", path.display()))?;
        locks.push(LockReport {
            recipe: path.display().to_string(),
            lock: lock_path.display().to_string(),
            packages: lock.packages.len(),
            stale,
            newer: newer_versions(&lock, &universe),
        });
    }
    let outdated: usize = locks.iter().map(|l| l.newer.len()).sum();
    let security: usize = locks
        .iter()
        .flat_map(|l| &l.newer)
        .filter(|n| n.security)
        .count();
    let report = Report {
        locks,
        outdated,
        security,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    if outdated > 0 {
        let stale: Vec<&str> = report
            .locks
            .iter()
            .filter(|l| !l.newer.is_empty())
            .map(|l| l.recipe.as_str())
            .collect();
        bail!(
            "{outdated} locked package(s) have newer versions ({security} security update(s)): re-lock with `nodeimg lock {}` (or scripts/relock.sh), review the change and commit it",
            stale.join("` and `nodeimg lock ")
        );
    }
    Ok(())
}

fn print_text(report: &Report) {
    for lock in &report.locks {
        if lock.stale {
            println!(
                "{}: made from another version of {}: re-lock it",
                lock.lock, lock.recipe
            );
        }
        if lock.newer.is_empty() {
            println!(
                "{}: all {} packages are the newest their sources have",
                lock.lock, lock.packages
            );
            continue;
        }
        let security = lock.newer.iter().filter(|n| n.security).count();
        println!(
            "{}: {} of {} packages have newer versions ({security} from a security suite):",
            lock.lock,
            lock.newer.len(),
            lock.packages
        );
        let width = lock.newer.iter().map(|n| n.name.len()).max().unwrap_or(0);
        for newer in &lock.newer {
            println!(
                "  {:<width$}  {} → {}  {} ({}){}{}",
                newer.name,
                newer.locked,
                newer.newest,
                newer.source,
                newer.suite,
                if newer.security { "  SECURITY" } else { "" },
                if newer.locked_still_served {
                    ""
                } else {
                    "  (the locked version is no longer served: builds take it from the snapshot)"
                },
            );
        }
    }
}
