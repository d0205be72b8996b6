//! `nodeimg push images/<role> HOST/REPO:TAG`: the image exactly as built
//! (every blob checked against its digest first, the manifest's own bytes)
//! to an OCI distribution registry.

use super::read_json;
use crate::oci::blob_path;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::registry::{self, Client, Credentials, PushReport, Reference};

pub struct PushOptions {
    pub layout: PathBuf,
    pub target: String,
    pub username: Option<String>,
    pub password_stdin: bool,
    pub insecure_http: bool,
    pub chunk_size: Option<usize>,
    pub json: bool,
}

fn credentials(options: &PushOptions) -> anyhow::Result<Option<Credentials>> {
    let username = options
        .username
        .clone()
        .or_else(|| std::env::var("NODEIMG_REGISTRY_USERNAME").ok());
    let Some(username) = username else {
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

pub fn run(options: &PushOptions) -> anyhow::Result<()> {
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
    let manifest_digest = descriptor["digest"]
        .as_str()
        .context("index.json: the manifest descriptor has no digest")?
        .to_string();
    let media_type = descriptor["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let manifest_path = blob_path(layout, &manifest_digest);
    let manifest_bytes = std::fs::read(&manifest_path)
        .with_context(|| format!("cannot read the manifest {}", manifest_path.display()))?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("{} is not valid JSON", manifest_path.display()))?;

    // Every blob must be what its name says before anything is sent.
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let mut checked = vec![(manifest_digest.clone(), manifest_path.clone())];
    for blob in &blobs {
        let digest = blob["digest"]
            .as_str()
            .context("a descriptor has no digest")?;
        checked.push((digest.to_string(), blob_path(layout, digest)));
    }
    for (digest, path) in &checked {
        let actual = registry::file_digest(path)?;
        if actual != *digest {
            return Err(registry::RegistryError::DamagedBlob {
                digest: digest.clone(),
                path: path.display().to_string(),
                actual,
            }
            .into());
        }
    }

    let reference = Reference::parse(&options.target)?;
    let plain_http = options.insecure_http || reference.is_loopback();
    if options.insecure_http && !reference.is_loopback() {
        eprintln!(
            "warning: pushing to {} over plain HTTP (--insecure-http)",
            reference.registry
        );
    }
    let mut client = Client::new(reference.clone(), plain_http, credentials(options)?);
    if let Some(size) = options.chunk_size {
        client.chunk_size = size.max(1);
    }
    let mut report = PushReport {
        reference: format!(
            "{}/{}@{manifest_digest}",
            reference.registry, reference.repository
        ),
        digest: manifest_digest.clone(),
        ..PushReport::default()
    };
    for blob in &blobs {
        let digest = blob["digest"].as_str().unwrap_or_default();
        let path = blob_path(layout, digest);
        let size = std::fs::metadata(&path)?.len();
        if client.blob_exists(digest)? {
            eprintln!("{digest}: already there ({size} bytes)");
            report.blobs_skipped += 1;
            continue;
        }
        eprintln!("{digest}: uploading {size} bytes...");
        client.upload_blob(digest, &path, size)?;
        report.blobs_uploaded += 1;
        report.bytes_uploaded += size;
    }
    let stored = client.put_manifest(&manifest_bytes, &media_type)?;
    if let Some(actual) = stored
        && actual != manifest_digest
    {
        return Err(registry::RegistryError::DigestChanged {
            expected: manifest_digest,
            actual,
        }
        .into());
    }
    eprintln!(
        "pushed {} as {}:{} ({} blobs uploaded, {} already there, {} bytes)",
        layout.display(),
        reference.repository,
        reference.tag,
        report.blobs_uploaded,
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
