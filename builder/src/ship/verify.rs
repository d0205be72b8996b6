//! Verification of what is shipped (`nodeimg verify images/<role>` or
//! `nodeimg verify <bundle>`): re-checks
//! an OCI image layout, or a bundle (SHA256SUMS, then its layout), the way
//! a careful receiver would. Every blob's SHA-256 and size against the
//! descriptor naming it (index → manifest → config and layers), each
//! layer's uncompressed digest against the config's diff_ids, and the SBOM
//! beside the layout against the lock embedded in the image.

use crate::image::oci::blob_path;
use crate::util::json::read_json;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub struct VerifyOptions {
    pub path: PathBuf,
    /// The project's recipes folder: its `inrelease/` and `keys/` re-check
    /// an image layout's signatures (a bundle carries its own).
    pub recipes: PathBuf,
    /// The cache whose `packages/` holds the signed Packages indexes an
    /// image layout's lock was made from (a bundle carries its own).
    pub cache_dir: PathBuf,
}

/// Where the InRelease files, Packages indexes and keys that re-check a
/// lock's whole chain are.
enum SignatureCheck {
    With {
        inrelease: PathBuf,
        packages: Vec<PathBuf>,
        keys: Vec<PathBuf>,
        /// What to do when an index is missing.
        hint: String,
    },
    Skip(String),
}

impl SignatureCheck {
    /// `dir`'s `inrelease/` and `keys/`, and the indexes in `packages`.
    fn from(dir: &Path, packages: Vec<PathBuf>, hint: &str) -> SignatureCheck {
        SignatureCheck::With {
            inrelease: dir.join(crate::lock::index_store::DIR),
            packages,
            keys: crate::lock::index_store::key_files(&dir.join("keys")),
            hint: hint.to_string(),
        }
    }
}

/// Hashes a blob as it streams; errors name the blob.
fn check_blob(layout: &Path, descriptor: &Value, what: &str) -> anyhow::Result<PathBuf> {
    let digest = descriptor["digest"]
        .as_str()
        .with_context(|| format!("{what}: descriptor without a digest"))?;
    let size = descriptor["size"].as_u64();
    let path = blob_path(layout, digest);
    let mut file = std::fs::File::open(&path)
        .with_context(|| format!("{what} blob {digest} is missing ({})", path.display()))?;
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut file, &mut hasher)?;
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        bail!("{what} blob {digest} is damaged: its content hashes to {actual}");
    }
    if size.is_some_and(|s| s != copied) {
        bail!(
            "{what} blob {digest} has {copied} bytes where its descriptor says {}",
            size.unwrap_or(0)
        );
    }
    Ok(path)
}

/// SHA-256 of a gzip layer's uncompressed tar, and the lock the image
/// carries if this layer holds it.
fn unpack_layer(path: &Path) -> anyhow::Result<(String, Option<String>)> {
    let file = std::fs::File::open(path)?;
    let mut decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut tar = Vec::new();
    decoder.read_to_end(&mut tar)?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let mut lock = None;
    for entry in tar::Archive::new(tar.as_slice()).entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == crate::ship::bundle::LOCK_PATH {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            lock = Some(text);
        }
    }
    Ok((diff_id, lock))
}

/// Verifies an image layout or a bundle; progress and results on stdout
/// and stderr, the first failure as the error.
pub fn verify(options: &VerifyOptions) -> anyhow::Result<()> {
    let path = &options.path;
    if path.is_file() {
        let unpacked = tempfile::tempdir().context("cannot make a temporary folder")?;
        let root = unpack_bundle(path, unpacked.path())?;
        return verify_bundle(&root, &path.display().to_string());
    }
    if path.join("SHA256SUMS").is_file() {
        return verify_bundle(path, &path.display().to_string());
    }
    if !path.join("oci-layout").is_file() {
        bail!(
            "{} is neither an OCI image layout (no oci-layout file) nor a nodeimg bundle (no SHA256SUMS): pass images/<role>, a bundle .tar or its unpacked folder",
            path.display()
        );
    }
    let role = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sbom = path.with_file_name(format!("{role}.spdx.json"));
    let signatures = if options.recipes.join(crate::lock::index_store::DIR).is_dir() {
        SignatureCheck::from(
            &options.recipes,
            vec![
                crate::lock::index_store::packages_dir(&options.recipes),
                crate::lock::index_store::packages_dir(&options.cache_dir),
            ],
            "run `nodeimg fetch recipes/<role>.toml` (it downloads the signed indexes the lock was made from), or pass the cache that has them with --cache-dir",
        )
    } else {
        SignatureCheck::Skip(format!(
            "signatures not re-checked: no {}/{} here (run from the project folder or pass --recipes)",
            options.recipes.display(),
            crate::lock::index_store::DIR
        ))
    };
    // A layout copied without its SBOM is still checked, blob by blob.
    let checked = verify_layout(path, |_| sbom.is_file().then(|| sbom.clone()), &signatures)?;
    println!("{}: {checked} blobs verified", path.display());
    Ok(())
}

/// Unpacks a bundle archive into `into` and returns its top folder.
fn unpack_bundle(archive: &Path, into: &Path) -> anyhow::Result<PathBuf> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    tar::Archive::new(std::io::BufReader::new(file))
        .unpack(into)
        .with_context(|| format!("{} is not a readable tar archive", archive.display()))?;
    let tops: Vec<PathBuf> = std::fs::read_dir(into)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    match tops.as_slice() {
        [top] if top.join("SHA256SUMS").is_file() => Ok(top.clone()),
        _ => bail!(
            "{} is not a nodeimg bundle: expected one folder holding SHA256SUMS",
            archive.display()
        ),
    }
}

/// Every file against SHA256SUMS (none missing, none unlisted), then every
/// image of `images/` against its digests and its role's SBOM.
fn verify_bundle(root: &Path, shown: &str) -> anyhow::Result<()> {
    let sums_text = std::fs::read_to_string(root.join("SHA256SUMS"))
        .with_context(|| format!("{shown}: cannot read SHA256SUMS"))?;
    let mut listed = BTreeSet::new();
    for (number, line) in sums_text.lines().enumerate() {
        let (sum, name) = line.split_once("  ").with_context(|| {
            format!(
                "{shown}: SHA256SUMS line {} is not `<sha256>  <path>`",
                number + 1
            )
        })?;
        let mut file = std::fs::File::open(root.join(name))
            .with_context(|| format!("{shown}: {name} is listed in SHA256SUMS but missing"))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        let actual = hex::encode(hasher.finalize());
        if actual != sum {
            bail!(
                "{shown}: {name} is damaged: its SHA-256 is {actual}, SHA256SUMS says {sum}; copy the bundle again"
            );
        }
        listed.insert(name.to_string());
    }
    for file in files_under(root)? {
        if file != "SHA256SUMS" && !listed.contains(&file) {
            bail!(
                "{shown}: {file} is not listed in SHA256SUMS: the bundle was changed after it was made"
            );
        }
    }
    eprintln!("{shown}: {} files match SHA256SUMS", listed.len());

    let sboms = root.join("sboms");
    // Every image of a bundle has a role, and every role its SBOM.
    let checked = verify_layout(
        &root.join("images"),
        |descriptor| {
            let role = descriptor["annotations"][crate::ship::bundle::ROLE_ANNOTATION]
                .as_str()
                .unwrap_or("unnamed");
            Some(sboms.join(format!("{role}.spdx.json")))
        },
        &SignatureCheck::from(
            &root.join("signatures"),
            vec![crate::lock::index_store::packages_dir(
                &root.join("signatures"),
            )],
            "the bundle does not carry it (made by an older nodeimg?): make the bundle again",
        ),
    )?;
    println!(
        "{shown}: {} files and {checked} blobs verified; SHA256SUMS sha256:{}",
        listed.len(),
        hex::encode(Sha256::digest(sums_text.as_bytes()))
    );
    Ok(())
}

/// Regular files below `root`, as `/`-separated relative paths.
fn files_under(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    Ok(found)
}

/// Checks every image the layout's index names; `sbom_for` says where the
/// SBOM of the image a descriptor names must be, or None to skip it.
/// Returns how many blobs were checked.
fn verify_layout(
    layout: &Path,
    sbom_for: impl Fn(&Value) -> Option<PathBuf>,
    signatures: &SignatureCheck,
) -> anyhow::Result<usize> {
    let index = read_json(&layout.join("index.json"))?;
    let mut checked = 0;
    let memo = crate::lock::signed_packages::IndexMemo::default();
    if let SignatureCheck::Skip(why) = signatures {
        eprintln!("{}: {why}", layout.display());
    }
    for manifest_descriptor in index["manifests"].as_array().into_iter().flatten() {
        let manifest_path = check_blob(layout, manifest_descriptor, "manifest")?;
        let manifest = read_json(&manifest_path)?;
        let config_path = check_blob(layout, &manifest["config"], "config")?;
        let config = read_json(&config_path)?;
        let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() {
            bail!(
                "the manifest lists {} layers but the config {} diff_ids",
                layers.len(),
                diff_ids.len()
            );
        }
        let mut embedded_lock = None;
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let path = check_blob(layout, layer, "layer")?;
            let (actual, lock) = unpack_layer(&path)?;
            if actual != diff_id {
                bail!(
                    "layer blob {} unpacks to {actual}, but the config says {diff_id}",
                    layer["digest"].as_str().unwrap_or("?")
                );
            }
            if lock.is_some() {
                embedded_lock = lock;
            }
            checked += 1;
        }
        checked += 2;
        let digest = manifest_descriptor["digest"].as_str().unwrap_or("?");
        let lock = match embedded_lock {
            Some(text) => Some(
                toml::from_str::<crate::lock::Lock>(&text)
                    .with_context(|| format!("image {digest}: its recipe.lock does not parse"))?,
            ),
            None => None,
        };
        let needs_lock = |what: String| {
            lock.as_ref().with_context(|| {
                format!("image {digest} carries no /usr/share/nodeimg/recipe.lock to check {what} against")
            })
        };
        if let Some(sbom_path) = sbom_for(manifest_descriptor) {
            check_sbom(&sbom_path, needs_lock(sbom_path.display().to_string())?)?;
            eprintln!(
                "{}: agrees with the lock inside the image",
                short(&sbom_path)
            );
        }
        if let SignatureCheck::With {
            inrelease,
            packages,
            keys,
            hint,
        } = signatures
        {
            let lock = needs_lock("its signatures".into())?;
            // The InRelease signatures first (one line per source, as
            // before), then the indexes they sign and every package.
            for line in
                crate::lock::signed_sources::recheck(lock, inrelease, keys).with_context(|| {
                    format!("image {digest}: a signature recorded at lock time does not check")
                })?
            {
                eprintln!("{}: {line}", lock.recipe);
            }
            let store = crate::lock::signed_packages::Store {
                inrelease,
                packages,
                keys,
                hint,
                memo: &memo,
            };
            for line in crate::lock::signed_packages::recheck(lock, &store).with_context(|| {
                format!("image {digest}: its lock does not match the signed indexes it names")
            })? {
                eprintln!("{}: {line}", lock.recipe);
            }
        }
    }
    Ok(checked)
}

/// The last two parts of a path (`sboms/db.spdx.json`): bundles are
/// checked in a temporary folder whose name means nothing to the reader.
fn short(path: &Path) -> String {
    let parts: Vec<_> = path.iter().map(|p| p.to_string_lossy()).collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

/// Every locked package is in the SBOM with its version and .deb SHA-256,
/// and the SBOM names no Debian package the lock does not.
fn check_sbom(sbom_path: &Path, lock: &crate::lock::Lock) -> anyhow::Result<()> {
    let sbom = read_json(sbom_path)?;
    let listed: BTreeSet<(String, String, String)> = sbom["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["supplier"] == "Organization: Debian")
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["versionInfo"].as_str().unwrap_or("").to_string(),
                p["checksums"][0]["checksumValue"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let locked: BTreeSet<(String, String, String)> = lock
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.sha256.clone()))
        .collect();
    if let Some((name, version, _)) = locked.difference(&listed).next() {
        bail!(
            "{}: {name} {version} is in the image's lock but not in the SBOM (or with another version or SHA-256)",
            sbom_path.display()
        );
    }
    if let Some((name, version, _)) = listed.difference(&locked).next() {
        bail!(
            "{}: {name} {version} is in the SBOM but not in the image's lock",
            sbom_path.display()
        );
    }
    Ok(())
}
