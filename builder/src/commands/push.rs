//! `nodeimg push images/<role> HOST/REPO:TAG`: the image exactly as built
//! (every blob checked against its digest first, the manifest's own bytes)
//! to an OCI distribution registry.

use crate::image::oci::blob_path;
use crate::util::json::read_json;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::ship::registry::{self, Client, Credentials, PushReport, Reference, Sent};

pub struct PushOptions {
    pub layout: PathBuf,
    pub target: String,
    pub username: Option<String>,
    pub password_stdin: bool,
    pub insecure_http: bool,
    pub chunk_size: Option<usize>,
    pub mount_from: Option<String>,
    pub json: bool,
}

fn credentials(options: &PushOptions) -> anyhow::Result<Option<Credentials>> {
    let username = options
        .username
        .clone()
        .or_else(|| std::env::var("NODEIMG_REGISTRY_USERNAME").ok());
    let Some(username) = username else {
        if options.password_stdin {
            bail!(
                "--password-stdin needs a user name: pass --username or set NODEIMG_REGISTRY_USERNAME"
            );
        }
        return Ok(None);
    };
    let password = if options.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        std::env::var("NODEIMG_REGISTRY_PASSWORD").with_context(|| {
            format!("a username ({username}) but no password: pass --password-stdin or set NODEIMG_REGISTRY_PASSWORD")
        })?
    };
    Ok(Some(Credentials { username, password }))
}

/// A descriptor's digest, refused unless it is `sha256:` and 64 hex digits
/// (it becomes a file path and a URL).
fn descriptor_digest(descriptor: &Value, whose: &str) -> anyhow::Result<String> {
    let digest = descriptor["digest"].as_str().unwrap_or_default();
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("{whose}: {digest:?} is not a sha256 digest: rebuild the image");
    }
    Ok(digest.to_string())
}

/// The blobs to push (config, then layers) as (digest, path, size), each
/// checked against its digest and its descriptor's size before anything
/// is sent; the manifest itself is checked too.
fn checked_blobs(
    layout: &Path,
    manifest_digest: &str,
    manifest: &Value,
) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let manifest_path = blob_path(layout, manifest_digest);
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let mut blobs = Vec::new();
    for descriptor in &descriptors {
        let digest = descriptor_digest(descriptor, &manifest_path.display().to_string())?;
        let path = blob_path(layout, &digest);
        let size = std::fs::metadata(&path)
            .with_context(|| {
                format!(
                    "blob {digest} is missing ({}): rebuild the image; nothing was pushed",
                    path.display()
                )
            })?
            .len();
        if descriptor["size"].as_u64() != Some(size) {
            bail!(
                "blob {digest} is {size} bytes but the manifest says {}: rebuild the image; nothing was pushed",
                descriptor["size"]
            );
        }
        blobs.push((digest, path, size));
    }
    let mut all = vec![(manifest_digest.to_string(), manifest_path)];
    all.extend(blobs.iter().map(|(d, p, _)| (d.clone(), p.clone())));
    for (digest, path) in all {
        let actual = registry::file_digest(&path)?;
        if actual != digest {
            return Err(registry::RegistryError::DamagedBlob {
                digest,
                path: path.display().to_string(),
                actual,
            }
            .into());
        }
    }
    Ok(blobs)
}

pub fn run(options: &PushOptions) -> anyhow::Result<()> {
    // The target first: a typo is reported before any blob is hashed.
    let reference = Reference::parse(&options.target)?;
    if let Some(from) = &options.mount_from
        && (!registry::repository_ok(from) || *from == reference.repository)
    {
        bail!(
            "--mount-from {from:?}: name another repository of the same registry, without host or tag (e.g. pg/db)"
        );
    }
    let layout = &options.layout;
    let role = layout
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let index = read_json(&layout.join("index.json")).with_context(|| {
        format!(
            "{} is not a built image layout: run `nodeimg build recipes/{role}.toml` first",
            layout.display()
        )
    })?;
    let descriptor = match index["manifests"].as_array().map(Vec::as_slice) {
        Some([one]) => one.clone(),
        _ => bail!(
            "{}: index.json must name exactly one manifest",
            layout.display()
        ),
    };
    let index_path = layout.join("index.json").display().to_string();
    let manifest_digest = descriptor_digest(&descriptor, &index_path)?;
    let manifest_path = blob_path(layout, &manifest_digest);
    let manifest_bytes = std::fs::read(&manifest_path)
        .with_context(|| format!("cannot read the manifest {}", manifest_path.display()))?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("{} is not valid JSON", manifest_path.display()))?;
    // The registry stores the manifest under the type it is sent as.
    let media_type = descriptor["mediaType"]
        .as_str()
        .or(manifest["mediaType"].as_str())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let blobs = checked_blobs(layout, &manifest_digest, &manifest)?;

    let plain_http = options.insecure_http || reference.is_loopback();
    if options.insecure_http && !reference.is_loopback() {
        eprintln!(
            "warning: pushing to {} over plain HTTP (--insecure-http): anyone on the path can read and change what is sent",
            reference.registry
        );
    }
    let mut client = Client::new(reference.clone(), plain_http, credentials(options)?);
    if let Some(size) = options.chunk_size {
        client.chunk_size = size.max(1);
    }
    client.mount_from = options.mount_from.clone();
    let mut report = PushReport {
        reference: format!(
            "{}/{}@{manifest_digest}",
            reference.registry, reference.repository
        ),
        digest: manifest_digest.clone(),
        ..PushReport::default()
    };
    for (digest, path, size) in &blobs {
        if client.blob_exists(digest)? {
            eprintln!("{digest}: already there ({size} bytes)");
            report.blobs_skipped += 1;
            continue;
        }
        eprintln!("{digest}: sending {size} bytes...");
        match client.upload_blob(digest, path, *size)? {
            Sent::Mounted => {
                let from = options.mount_from.as_deref().unwrap_or_default();
                eprintln!("{digest}: mounted from {from}, nothing sent");
                report.blobs_mounted += 1;
                continue;
            }
            Sent::Uploaded { chunks } if chunks > 0 => eprintln!(
                "{digest}: sent in {chunks} chunks of up to {} bytes",
                client.chunk_size
            ),
            Sent::Uploaded { .. } => {}
        }
        report.blobs_uploaded += 1;
        report.bytes_uploaded += size;
    }
    let stored = client.put_manifest(&manifest_bytes, &media_type)?;
    if stored != manifest_digest {
        return Err(registry::RegistryError::DigestChanged {
            expected: manifest_digest,
            actual: stored,
        }
        .into());
    }
    eprintln!(
        "pushed {} as {}:{} ({} blobs uploaded, {} mounted, {} already there, {} bytes)",
        layout.display(),
        reference.repository,
        reference.tag,
        report.blobs_uploaded,
        report.blobs_mounted,
        report.blobs_skipped,
        report.bytes_uploaded
    );
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.reference);
    }
    Ok(())
}
