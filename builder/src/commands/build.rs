//! `nodeimg build`: from a recipe's lock to an OCI image layout under
//! `images/<role>/` and a `docker load` tarball `images/<role>.tar`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::deb::Deb;
use crate::fetch::Fetcher;
use crate::layer;
use crate::lock::Lock;
use crate::oci;
use crate::package_cache::PackageCache;
use crate::recipe::{self, LoadedRecipe};
use crate::rootfs::Rootfs;
use crate::system_files;

pub struct BuildOptions {
    pub recipes: Vec<PathBuf>,
    pub params: Vec<(String, String)>,
    pub offline: bool,
    pub output: PathBuf,
    pub cache_dir: PathBuf,
    pub fetcher: Fetcher,
}

pub fn run(options: &BuildOptions) -> anyhow::Result<()> {
    if options.recipes.is_empty() {
        bail!("no recipe given: name one (nodeimg build recipes/db.toml) or use --all");
    }
    // Fail on an unusable output path before any download or unpacking.
    std::fs::create_dir_all(&options.output).with_context(|| {
        format!(
            "cannot create the output folder {}: choose another with --output",
            options.output.display()
        )
    })?;
    for path in &options.recipes {
        build_one(options, path)?;
    }
    Ok(())
}

/// SOURCE_DATE_EPOCH from the environment wins (a malformed one is an
/// error, per the spec); otherwise the lock's.
fn source_date_epoch(lock: &Lock) -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds")
        }),
        Err(_) => Ok(lock.source_date_epoch.max(0) as u64),
    }
}

fn globs(patterns: &[String], what: &str) -> anyhow::Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob =
            Glob::new(pattern).with_context(|| format!("recipe {what}: bad glob {pattern:?}"))?;
        set.add(glob);
    }
    Ok(set.build()?)
}

fn build_one(options: &BuildOptions, recipe_path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let recipe = recipe::load(recipe_path, &options.params)?;
    let lock_path = recipe.default_lock_path();
    let lock = Lock::read(&lock_path)?;
    lock.ensure_matches(&lock_path, &recipe)?;
    let epoch = source_date_epoch(&lock)?;
    let role = recipe.recipe.recipe.name.clone();

    let cache = PackageCache::new(&options.cache_dir, options.offline, options.fetcher.clone());
    let downloaded = cache.fill(&lock)?;
    if downloaded > 0 {
        eprintln!("{role}: downloaded {downloaded} packages");
    }

    let rootfs = assemble_rootfs(&recipe, &lock, &cache, epoch)?;
    let layer = layer::write_rootfs_layer(&rootfs).context("cannot write the layer")?;
    let short = &lock.content_sha256[..12];
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        format!("nodeimg-{role}"),
    );
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        short.to_string(),
    );
    if !recipe.recipe.recipe.description.is_empty() {
        annotations.insert(
            "org.opencontainers.image.description".to_string(),
            recipe.recipe.recipe.description.clone(),
        );
    }
    let image = oci::assemble(
        &recipe.recipe.image,
        &recipe.recipe.recipe.architecture,
        epoch as i64,
        vec![layer],
        annotations,
        format!("nodeimg/{role}:{short}"),
    );
    let sbom = crate::sbom::spdx(&role, &lock, &image.manifest_digest, epoch as i64);
    write_outputs(&image, &sbom, &options.output, &role, epoch)?;
    let compressed: usize = image.layers.iter().map(|l| l.gzip.len()).sum();
    eprintln!(
        "{role}: {} ({}) — {} packages, {:.1} MB uncompressed, {:.1} MB compressed, in {:.2}s",
        image.manifest_digest,
        image.reference,
        lock.packages.len(),
        rootfs.size() as f64 / 1e6,
        compressed as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!("{role} {}", image.manifest_digest);
    Ok(())
}

fn assemble_rootfs(
    recipe: &LoadedRecipe,
    lock: &Lock,
    cache: &PackageCache,
    epoch: u64,
) -> anyhow::Result<Rootfs> {
    let mut rootfs = Rootfs::default();
    let mut controls = Vec::new();
    for package in &lock.packages {
        let bytes = cache.get(lock, package)?;
        rootfs.add_deb(&package.name, &bytes)?;
        let control = Deb::parse(&bytes)
            .and_then(|deb| deb.control_text())
            .with_context(|| format!("package {}: cannot read its control file", package.name))?;
        controls.push(control);
    }
    system_files::add_accounts(&mut rootfs, &recipe.recipe.accounts, epoch)?;
    system_files::add_dpkg_status(&mut rootfs, &controls, epoch);
    let recipe_bytes = std::fs::read(&recipe.path)?;
    let lock_bytes = std::fs::read(recipe.default_lock_path())?;
    system_files::add_provenance(&mut rootfs, &recipe_bytes, &lock_bytes, epoch);
    let prune = globs(&recipe.recipe.prune.paths, "prune.paths")?;
    let keep = globs(&recipe.recipe.prune.keep, "prune.keep")?;
    let (files, bytes) = rootfs.prune(&prune, &keep);
    tracing::info!("pruned {files} files ({:.1} MB)", bytes as f64 / 1e6);
    rootfs.add_merged_usr_links(epoch)?;
    rootfs.add_missing_parents(epoch);
    rootfs.clamp_mtimes(epoch);
    Ok(rootfs)
}

/// Writes `images/<role>/` and `images/<role>.tar` through temporary names
/// and renames, so a failure (a full disk) leaves the previous image, never
/// half of a new one.
fn write_outputs(
    image: &oci::Image,
    sbom: &[u8],
    output: &Path,
    role: &str,
    epoch: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{role}-"))
        .tempdir_in(output)
        .with_context(|| format!("cannot write to {}", output.display()))?;
    let layout = staging.path().join("layout");
    image
        .write_layout(&layout)
        .with_context(|| format!("cannot write the image layout under {}", output.display()))?;
    let tarball = staging.path().join("image.tar");
    let file = std::fs::File::create(&tarball)?;
    image
        .write_tarball(std::io::BufWriter::new(file), epoch)
        .with_context(|| format!("cannot write {}", tarball.display()))?;
    let sbom_path = staging.path().join("sbom.spdx.json");
    std::fs::write(&sbom_path, sbom)
        .with_context(|| format!("cannot write {}", sbom_path.display()))?;
    let final_layout = output.join(role);
    if final_layout.exists() {
        std::fs::remove_dir_all(&final_layout)?;
    }
    std::fs::rename(&layout, &final_layout)?;
    std::fs::rename(&tarball, output.join(format!("{role}.tar")))?;
    std::fs::rename(&sbom_path, output.join(format!("{role}.spdx.json")))?;
    Ok(())
}
