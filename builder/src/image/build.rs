//! The build stage (`nodeimg build`): from a recipe's lock to an OCI image layout under
//! `images/<role>/` and a `docker load` tarball `images/<role>.tar`.
//!
//! Work happens in three passes so that `--all` shares it between roles:
//! plan every image's layers, build the package layers missing from the
//! layer cache (once each, on every core, biggest first), then assemble
//! each image and write it unless it is already there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::Digest;

use crate::debian::fetch::Fetcher;
use crate::image::layer::{self, Layer};
use crate::image::layer_cache::{self, LayerCache, LayerRecord, LayerSettings};
use crate::image::layer_plan::{self, PackageLayer};
use crate::image::oci;
use crate::image::rootfs::Rootfs;
use crate::image::system_files;
use crate::lock::Lock;
use crate::lock::package_cache::PackageCache;
use crate::lock::recipe::{self, LoadedRecipe};
use crate::util::progress::Progress;

pub struct BuildOptions {
    pub recipes: Vec<PathBuf>,
    pub params: Vec<(String, String)>,
    pub offline: bool,
    pub output: PathBuf,
    pub cache_dir: PathBuf,
    pub fetcher: Fetcher,
    /// The agent binary for recipes that ask for one; the running nodeimg
    /// when unset.
    pub agent: Option<PathBuf>,
}

/// What one image's build gave.
pub struct BuiltImage {
    pub role: String,
    pub manifest_digest: String,
    /// The `docker load` tag (`nodeimg/<role>:<digest prefix>`).
    pub reference: String,
    /// Nothing was written: the outputs already held these bytes.
    pub up_to_date: bool,
    pub packages: usize,
    pub layers: usize,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    /// Since the build started (all images share the package-layer pass).
    pub seconds: f64,
}

/// One image to build: its recipe, lock and layer plan with cache keys.
struct Planned {
    recipe: LoadedRecipe,
    lock: Lock,
    epoch: u64,
    role: String,
    settings: LayerSettings,
    layers: Vec<(PackageLayer, String)>,
}

/// Builds every recipe's image; returns what was built, in recipe order.
pub fn build(options: &BuildOptions) -> anyhow::Result<Vec<BuiltImage>> {
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
    let started = Instant::now();
    let mut images = Vec::new();
    for path in &options.recipes {
        let recipe = recipe::load(path, &options.params)?;
        if recipe.recipe.recipe.kind == recipe::RecipeKind::Image {
            images.push(path);
        } else if options.recipes.len() == 1 {
            bail!(
                "{}: kind = \"host-packages\": packages a host installs, not an image (`nodeimg cloud-init` pins them from its lock)",
                path.display()
            );
        } else {
            eprintln!(
                "{}: packages for hosts, not an image: skipped",
                path.display()
            );
        }
    }
    let planned = images
        .into_iter()
        .map(|path| plan(options, path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let layer_cache = LayerCache::new(&options.cache_dir);
    let packages = PackageCache::new(&options.cache_dir, options.offline, options.fetcher.clone());
    build_missing_layers(&planned, &layer_cache, &packages)?;
    for image in &planned {
        keep_signed_indexes(options, image);
    }
    planned
        .iter()
        .map(|image| write_image(options, image, &layer_cache, started))
        .collect()
}

/// The signed Packages indexes of the image's lock, into the cache (when
/// online), so `verify` and `bundle` can re-check the lock offline later.
/// The image does not need them: a failure is a warning.
fn keep_signed_indexes(options: &BuildOptions, image: &Planned) {
    let lock_path = image.recipe.default_lock_path();
    if let Err(err) = crate::lock::index_fetch::ensure_for_recipe(
        &image.recipe,
        &lock_path,
        &image.lock,
        &options.cache_dir,
        &options.fetcher,
        options.offline,
    ) {
        tracing::warn!(
            "{}: {err}; `nodeimg verify` and `nodeimg bundle` need the signed indexes (`nodeimg fetch {}` gets them)",
            image.role,
            image.recipe.path.display()
        );
    }
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

fn plan(options: &BuildOptions, recipe_path: &Path) -> anyhow::Result<Planned> {
    let recipe = recipe::load(recipe_path, &options.params)?;
    let lock_path = recipe.default_lock_path();
    let lock = Lock::read(&lock_path)?;
    lock.ensure_matches(&lock_path, &recipe)?;
    let epoch = source_date_epoch(&lock)?;
    let role = recipe.recipe.recipe.name.clone();
    let prune = &recipe.recipe.prune;
    let settings = LayerSettings {
        epoch,
        prune: globs(&prune.paths, "prune.paths")?,
        keep: globs(&prune.keep, "prune.keep")?,
        prune_patterns: prune.paths.clone(),
        keep_patterns: prune.keep.clone(),
    };
    let layers_config = &recipe.recipe.layers;
    let base = layers_config.base.clone().unwrap_or_else(|| {
        layer_plan::DEFAULT_BASE
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let budget = layers_config.budget.unwrap_or(layer_plan::DEFAULT_BUDGET);
    if budget < 3 {
        bail!(
            "{}: [layers] budget = {budget} is too small: an image needs at least 3 layers (base, packages, generated files)",
            recipe_path.display()
        );
    }
    let layers = layer_plan::plan(&lock, &base, budget)
        .into_iter()
        .map(|spec| {
            let key = LayerCache::key(&spec, &settings);
            (spec, key)
        })
        .collect();
    Ok(Planned {
        recipe,
        lock,
        epoch,
        role,
        settings,
        layers,
    })
}

/// Builds every package layer the cache lacks, each once even when two
/// images need it, on as many threads as there are cores.
fn build_missing_layers(
    planned: &[Planned],
    cache: &LayerCache,
    packages: &PackageCache,
) -> anyhow::Result<()> {
    let mut jobs: BTreeMap<&str, (&Planned, &PackageLayer)> = BTreeMap::new();
    for image in planned {
        for (spec, key) in &image.layers {
            if cache.load(key).is_none() {
                jobs.entry(key).or_insert((image, spec));
            }
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    // Downloads first (they mostly wait on the network), only for the
    // packages of layers that must be built.
    for image in planned {
        let needed: Vec<_> = jobs
            .values()
            .filter(|(owner, _)| std::ptr::eq(*owner, image))
            .flat_map(|(_, spec)| spec.packages.iter())
            .collect();
        let downloaded = packages.fill_packages(&image.lock, &needed)?;
        if downloaded > 0 {
            eprintln!("{}: downloaded {downloaded} packages", image.role);
        }
    }
    let mut queue: Vec<(&str, &Planned, &PackageLayer)> = jobs
        .into_iter()
        .map(|(key, (image, spec))| (key, image, spec))
        .collect();
    // Biggest first, so the long layers start at once and the small ones
    // fill the gaps.
    queue.sort_by_key(|(_, _, spec)| std::cmp::Reverse(spec.deb_bytes()));
    let progress = Progress::new(queue.len() as u64, "building layers");
    let queue = Mutex::new(queue.into_iter());
    let first_error = Mutex::new(None);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    if first_error.lock().unwrap().is_some() {
                        break;
                    }
                    let Some((key, image, spec)) = queue.lock().unwrap().next() else {
                        break;
                    };
                    progress.working_on(&format!("{} {}", image.role, spec.name));
                    let started = Instant::now();
                    match cache.build(key, spec, &image.settings, &image.lock, packages) {
                        Ok(record) => {
                            tracing::info!(
                                "{}: layer {} ({} packages): {:.1} MB → {:.1} MB in {:.2}s",
                                image.role,
                                spec.name,
                                spec.packages.len(),
                                record.layer.uncompressed_size as f64 / 1e6,
                                record.layer.size as f64 / 1e6,
                                started.elapsed().as_secs_f64()
                            );
                            progress.done_one();
                        }
                        Err(err) => {
                            first_error.lock().unwrap().get_or_insert(
                                anyhow::Error::new(err).context(format!(
                                    "{}: cannot build layer {}",
                                    image.role, spec.name
                                )),
                            );
                        }
                    }
                }
            });
        }
    });
    progress.finish();
    match first_error.into_inner().unwrap() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn write_image(
    options: &BuildOptions,
    image: &Planned,
    cache: &LayerCache,
    started: Instant,
) -> anyhow::Result<BuiltImage> {
    let role = &image.role;
    let records = image
        .layers
        .iter()
        .map(|(spec, key)| {
            cache.load(key).with_context(|| {
                format!(
                    "{role}: layer {} vanished from the cache {} while building: run the build again",
                    spec.name,
                    options.cache_dir.display()
                )
            })
        })
        .collect::<anyhow::Result<Vec<LayerRecord>>>()?;
    let all: Vec<&LayerRecord> = records.iter().collect();
    layer_cache::check_conflicts(&all).with_context(|| format!("{role}: cannot build"))?;
    check_identities(&image.lock, &records).with_context(|| format!("{role}: cannot build"))?;

    let staging = tempfile::Builder::new()
        .prefix(&format!(".{role}-"))
        .tempdir_in(&options.output)
        .with_context(|| format!("cannot write to {}", options.output.display()))?;
    let generated = generated_layer(image, &records, staging.path())?;
    let mut layers: Vec<Layer> = records.into_iter().map(|r| r.layer).collect();
    layers.push(generated);
    let mut extras = Vec::new();
    if let Some(target) = &image.recipe.recipe.image.agent {
        let (layer, extra) = agent_layer(options, image, cache, target)?;
        layers.push(layer);
        extras.push(extra);
    }
    if !image.recipe.recipe.overlays.dirs.is_empty() {
        let (layer, extra) = overlay_layer(image, staging.path())?;
        layers.push(layer);
        extras.push(extra);
    }

    let short = &image.lock.content_sha256[..12];
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        format!("nodeimg-{role}"),
    );
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        short.to_string(),
    );
    let description = &image.recipe.recipe.recipe.description;
    if !description.is_empty() {
        annotations.insert(
            "org.opencontainers.image.description".to_string(),
            description.clone(),
        );
    }
    let mut assembled = oci::assemble(
        &image.recipe.recipe.image,
        &image.recipe.recipe.recipe.architecture,
        image.epoch as i64,
        layers,
        annotations,
        String::new(),
    );
    // Tagged by the manifest digest: a rebuild with another agent or
    // overlay gets another tag instead of taking over the old one.
    assembled.reference = format!("nodeimg/{role}:{}", &assembled.manifest_digest[7..19]);
    let sbom = crate::image::sbom::spdx(
        role,
        &image.lock,
        &extras,
        &assembled.manifest_digest,
        image.epoch as i64,
    );
    let up_to_date = assembled.is_written_at(&options.output.join(role))
        && std::fs::read(options.output.join(format!("{role}.spdx.json"))).ok()
            == Some(sbom.clone())
        && options.output.join(format!("{role}.tar")).is_file();
    if !up_to_date {
        write_outputs(
            &assembled,
            &sbom,
            &options.output,
            role,
            image.epoch,
            staging,
        )?;
    }
    Ok(BuiltImage {
        role: role.clone(),
        manifest_digest: assembled.manifest_digest.clone(),
        reference: assembled.reference.clone(),
        up_to_date,
        packages: image.lock.packages.len(),
        layers: assembled.layers.len(),
        compressed_bytes: assembled.layers.iter().map(|l| l.size).sum(),
        uncompressed_bytes: assembled.layers.iter().map(|l| l.uncompressed_size).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every package's control file, as the layer records it (a cached layer
/// is found by the packages' SHA-256s alone), against its lock entry: a
/// lock whose versions were edited and checksums recomputed would reuse a
/// cached layer and stamp its own words into the SBOM.
fn check_identities(
    lock: &Lock,
    records: &[LayerRecord],
) -> Result<(), crate::lock::package_identity::IdentityError> {
    for (name, control) in records.iter().flat_map(|r| r.controls.iter()) {
        if let Some(package) = lock.packages.iter().find(|p| &p.name == name) {
            crate::lock::package_identity::check(package, control)?;
        }
    }
    Ok(())
}

/// The layer of files nodeimg writes itself: accounts, /tmp, the dpkg
/// database of every package, and the recipe and lock. Small, so it is
/// made on every build rather than cached.
fn generated_layer(image: &Planned, records: &[LayerRecord], dir: &Path) -> anyhow::Result<Layer> {
    let epoch = image.epoch;
    let mut rootfs = Rootfs::default();
    system_files::add_accounts(&mut rootfs, &image.recipe.recipe.accounts, epoch)?;
    let controls: BTreeMap<&str, &str> = records
        .iter()
        .flat_map(|r| r.controls.iter())
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let ordered: Vec<String> = image
        .lock
        .packages
        .iter()
        .filter_map(|p| controls.get(p.name.as_str()).map(|c| c.to_string()))
        .collect();
    system_files::add_dpkg_status(&mut rootfs, &ordered, epoch);
    let mut certificates: Vec<&(String, String)> = records
        .iter()
        .flat_map(|r| r.ca_certificates.iter())
        .collect();
    certificates.sort();
    system_files::add_ca_bundle(&mut rootfs, &certificates, epoch);
    let recipe_bytes = std::fs::read(&image.recipe.path)?;
    let lock_bytes = std::fs::read(image.recipe.default_lock_path())?;
    system_files::add_provenance(&mut rootfs, &recipe_bytes, &lock_bytes, epoch);
    rootfs.add_missing_parents(epoch);
    rootfs.clamp_mtimes(epoch);
    layer::write_layer(
        rootfs.entries.iter(),
        dir,
        "nodeimg: accounts, dpkg database, recipe and lock".into(),
    )
    .context("cannot write the generated layer")
}

/// Agent binaries above this size are almost surely debug builds.
const AGENT_SIZE_WARNING: u64 = 64 << 20;

/// The nodeimg agent at `target` in the image, in a layer of its own,
/// cached by the binary's SHA-256 (it changes more often than packages).
fn agent_layer(
    options: &BuildOptions,
    image: &Planned,
    cache: &LayerCache,
    target: &str,
) -> anyhow::Result<(Layer, crate::image::sbom::ExtraPackage)> {
    let source = match &options.agent {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the running nodeimg binary")?,
    };
    let bytes = std::fs::read(&source).with_context(|| {
        format!(
            "cannot read the agent binary {}: give one with --agent",
            source.display()
        )
    })?;
    if bytes.len() as u64 > AGENT_SIZE_WARNING {
        tracing::warn!(
            "the agent binary {} is {:.0} MB: a debug build? `cargo build --release` makes a stripped one",
            source.display(),
            bytes.len() as f64 / 1e6
        );
    }
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let path = crate::image::rootfs::normalize(target)
        .with_context(|| format!("[image] agent = {target:?} is not a file path"))?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("agent-1\0{path}\0{}\0{sha256}", image.epoch));
    let key = hex::encode(hasher.finalize());
    let label = format!("agent: /{path} (nodeimg {sha256:.12})");
    let epoch = image.epoch;
    let layer = cache.cached_layer(&key, &label, || {
        let mut rootfs = Rootfs::default();
        rootfs.entries.insert(
            path.clone(),
            crate::image::rootfs::Entry::file(bytes, 0o755, epoch),
        );
        rootfs.add_missing_parents(epoch);
        Ok(rootfs)
    })?;
    let extra = crate::image::sbom::ExtraPackage {
        name: "nodeimg".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        sha256,
        description: format!("the nodeimg agent, /{path}"),
    };
    Ok((layer, extra))
}

/// The recipe's overlay folders, on top of everything else.
fn overlay_layer(
    image: &Planned,
    dir: &Path,
) -> anyhow::Result<(Layer, crate::image::sbom::ExtraPackage)> {
    let dirs: Vec<PathBuf> = image
        .recipe
        .recipe
        .overlays
        .dirs
        .iter()
        .map(|d| image.recipe.dir().join(d))
        .collect();
    let overlay = crate::image::overlay::load(&dirs, image.epoch)?;
    let label = format!("overlays: {}", image.recipe.recipe.overlays.dirs.join(", "));
    let layer = layer::write_layer(overlay.rootfs.entries.iter(), dir, label)
        .context("cannot write the overlay layer")?;
    let extra = crate::image::sbom::ExtraPackage {
        name: format!("nodeimg-overlays-{}", image.role),
        version: format!("sha256:{}", &overlay.sha256[..12]),
        sha256: overlay.sha256,
        description: format!(
            "files from {}",
            image.recipe.recipe.overlays.dirs.join(", ")
        ),
    };
    Ok((layer, extra))
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
    staging: tempfile::TempDir,
) -> anyhow::Result<()> {
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
