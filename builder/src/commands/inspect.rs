//! `nodeimg inspect`: what an image layout holds — digest, layers, and the
//! packages its dpkg database lists, largest first.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use crate::util::json::read_json;

use crate::debian::deb822;

pub struct InspectOptions {
    pub layout: PathBuf,
    pub json: bool,
    pub top: usize,
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// (package, version, installed size in KiB) from the dpkg status in a layer.
fn packages_in_layer(path: &Path) -> anyhow::Result<Vec<(String, String, u64)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy() == "var/lib/dpkg/status" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let mut packages = Vec::new();
            for paragraph in deb822::paragraphs(&text) {
                let paragraph = paragraph?;
                packages.push((
                    paragraph.get("Package").unwrap_or("?").to_string(),
                    paragraph.get("Version").unwrap_or("?").to_string(),
                    paragraph
                        .get("Installed-Size")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ));
            }
            return Ok(packages);
        }
    }
    Ok(Vec::new())
}

pub fn run(options: &InspectOptions) -> anyhow::Result<()> {
    let layout = &options.layout;
    if !layout.join("oci-layout").is_file() {
        bail!(
            "{} is not an OCI image layout (no oci-layout file): give images/<role> as written by `nodeimg build`",
            layout.display()
        );
    }
    let index = read_json(&layout.join("index.json"))?;
    let descriptor = &index["manifests"][0];
    let digest = descriptor["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    let manifest = read_json(&blob(layout, digest))?;
    let config = read_json(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap_or(""),
    ))?;
    let history: Vec<&str> = config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["created_by"].as_str().unwrap_or(""))
        .collect();
    let mut layers = Vec::new();
    for (i, layer) in manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let label = history.get(i).copied().unwrap_or("");
        layers.push(json!({
            "digest": layer["digest"],
            "size": layer["size"],
            "created_by": label.trim_start_matches("nodeimg build: "),
        }));
    }
    // The dpkg database sits in the top layer; read from the top down.
    let mut packages = Vec::new();
    for layer in layers.iter().rev() {
        packages = packages_in_layer(&blob(layout, layer["digest"].as_str().unwrap_or("")))?;
        if !packages.is_empty() {
            break;
        }
    }
    packages.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let compressed: u64 = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
    let installed: u64 = packages.iter().map(|p| p.2).sum();
    let reference = descriptor["annotations"]["io.containerd.image.name"]
        .as_str()
        .unwrap_or("");
    if options.json {
        let report = json!({
            "reference": reference,
            "digest": digest,
            "created": config["created"],
            "architecture": config["architecture"],
            "layers": layers,
            "compressed_size": compressed,
            "package_count": packages.len(),
            "installed_size_kib": installed,
            "packages": packages.iter().map(|(n, v, s)| json!({"name": n, "version": v, "installed_size_kib": s})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("image:     {reference}");
    println!("digest:    {digest}");
    println!("created:   {}", config["created"].as_str().unwrap_or("?"));
    println!(
        "layers:    {} ({:.1} MB compressed)",
        layers.len(),
        compressed as f64 / 1e6
    );
    for layer in &layers {
        let mut label = layer["created_by"].as_str().unwrap_or("").to_string();
        if label.chars().count() > 60 {
            label = format!("{}…", label.chars().take(59).collect::<String>());
        }
        println!(
            "  {}  {:>8.1} MB  {label}",
            &layer["digest"].as_str().unwrap_or("")
                [..19.min(layer["digest"].as_str().unwrap_or("").len())],
            layer["size"].as_u64().unwrap_or(0) as f64 / 1e6
        );
    }
    println!(
        "packages:  {} ({:.1} MB installed before pruning)",
        packages.len(),
        installed as f64 / 1024.0
    );
    for (name, version, size) in packages.iter().take(options.top) {
        println!("  {:>8.1} MB  {name} {version}", *size as f64 / 1024.0);
    }
    Ok(())
}
