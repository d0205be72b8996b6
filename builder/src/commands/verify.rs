//! `nodeimg verify images/<role>`: re-checks an OCI image layout the way a
//! careful receiver would. Every blob's SHA-256 and size against the
//! descriptor naming it (index → manifest → config and layers), each
//! layer's uncompressed digest against the config's diff_ids, and the SBOM
//! beside the layout against the lock embedded in the image.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub struct VerifyOptions {
    pub path: PathBuf,
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
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

fn read_json(path: &Path) -> anyhow::Result<Value> {
    serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("{} is not valid JSON", path.display()))
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
        if entry.path()?.to_string_lossy() == "usr/share/nodeimg/recipe.lock" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            lock = Some(text);
        }
    }
    Ok((diff_id, lock))
}

pub fn run(options: &VerifyOptions) -> anyhow::Result<()> {
    let layout = &options.path;
    if !layout.join("oci-layout").is_file() {
        bail!(
            "{} is not an OCI image layout (no oci-layout file)",
            layout.display()
        );
    }
    let index = read_json(&layout.join("index.json"))?;
    let mut checked = 0;
    let mut embedded_lock = None;
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
    }
    let role = layout
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sbom_path = layout.with_file_name(format!("{role}.spdx.json"));
    if sbom_path.is_file() {
        let lock_text = embedded_lock.context(
            "the image carries no /usr/share/nodeimg/recipe.lock to check the SBOM against",
        )?;
        check_sbom(&sbom_path, &lock_text)?;
        eprintln!(
            "{}: agrees with the lock inside the image",
            sbom_path.display()
        );
    }
    println!("{}: {checked} blobs verified", layout.display());
    Ok(())
}

/// Every locked package is in the SBOM with its version and .deb SHA-256,
/// and the SBOM names no Debian package the lock does not.
fn check_sbom(sbom_path: &Path, lock_text: &str) -> anyhow::Result<()> {
    let lock: crate::lock::Lock =
        toml::from_str(lock_text).context("the lock inside the image does not parse")?;
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
