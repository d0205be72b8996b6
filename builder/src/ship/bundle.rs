//! An air-gapped cluster bundle: every role image in one OCI layout (a blob
//! two images share is stored once), the SBOMs, the user-data, the files
//! and setup script each role's host gets, `install.sh` and `SHA256SUMS`.
//! Everything is a pure function of the built images, the spec, the
//! secrets and the templates, so the same inputs give the same archive.

use crate::image::oci::blob_path;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::image::oci::{INDEX_TYPE, canonical_json};
use crate::image::tarball::{Source, TarFile};

/// The installer every bundle carries; it needs only sh, coreutils, tar
/// and the container runtime.
pub const INSTALLER: &str = include_str!("install.sh");

/// The annotation that names the role of each image in the bundle's index.
pub const ROLE_ANNOTATION: &str = "dev.nodeimg.role";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "{path} is not a built image layout ({reason}): run `nodeimg build recipes/{role}.toml` first"
    )]
    NotBuilt {
        role: String,
        path: String,
        reason: String,
    },
    #[error(
        "{layout}: blob {digest} is damaged (its content hashes to {actual}); rebuild the image, then bundle again"
    )]
    DamagedBlob {
        layout: String,
        digest: String,
        actual: String,
    },
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(
        "image {reference} carries no readable /{LOCK_PATH} ({reason}): rebuild it with this nodeimg"
    )]
    NoLock { reference: String, reason: String },
}

/// Where every image keeps the lock it was built from.
pub const LOCK_PATH: &str = "usr/share/nodeimg/recipe.lock";

/// One built role image, as `nodeimg build` left it in `images/<role>/`.
pub struct RoleImage {
    pub role: String,
    pub layout: PathBuf,
    /// The index.json entry, annotations included.
    pub descriptor: Value,
    pub manifest_digest: String,
    pub config_digest: String,
    /// The name `docker load` gives it (`nodeimg/db:<tag>`).
    pub reference: String,
    /// Manifest, config and layers, in that order.
    pub blobs: Vec<String>,
    /// The manifest's `org.opencontainers.image.created`, as Unix seconds.
    pub created: Option<i64>,
    docker_manifest: Vec<Value>,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|err| format!("{}: {err}", path.display()))
}

impl RoleImage {
    pub fn read(images: &Path, role: &str) -> Result<RoleImage, BundleError> {
        let layout = images.join(role);
        let not_built = |reason: String| BundleError::NotBuilt {
            role: role.to_string(),
            path: layout.display().to_string(),
            reason,
        };
        let index = read_json(&layout.join("index.json")).map_err(not_built)?;
        let descriptor = match index["manifests"].as_array().map(Vec::as_slice) {
            Some([one]) => one.clone(),
            _ => {
                return Err(not_built(
                    "its index.json must name exactly one manifest".into(),
                ));
            }
        };
        let text = |value: &Value, what: &str| {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| not_built(format!("no {what}")))
        };
        let manifest_digest = text(&descriptor["digest"], "manifest digest")?;
        let reference = text(
            &descriptor["annotations"]["io.containerd.image.name"],
            "image name annotation",
        )?;
        let manifest = read_json(&blob_path(&layout, &manifest_digest)).map_err(not_built)?;
        let config_digest = text(&manifest["config"]["digest"], "config digest")?;
        let created = manifest["annotations"]["org.opencontainers.image.created"]
            .as_str()
            .and_then(crate::image::oci::parse_rfc3339);
        let mut blobs = vec![manifest_digest.clone(), config_digest.clone()];
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            blobs.push(text(&layer["digest"], "layer digest")?);
        }
        let docker_manifest = read_json(&layout.join("manifest.json"))
            .map_err(not_built)?
            .as_array()
            .cloned()
            .ok_or_else(|| not_built("manifest.json is not a list".into()))?;
        Ok(RoleImage {
            role: role.to_string(),
            layout,
            descriptor,
            manifest_digest,
            config_digest,
            reference,
            blobs,
            created,
            docker_manifest,
        })
    }

    /// The lock inside the image, looked for from the top layer down (it
    /// sits in one of the small top layers).
    pub fn embedded_lock(&self) -> Result<crate::lock::Lock, BundleError> {
        let no_lock = |reason: String| BundleError::NoLock {
            reference: self.reference.clone(),
            reason,
        };
        for layer in self.blobs[2..].iter().rev() {
            let file = std::fs::File::open(blob_path(&self.layout, layer))
                .map_err(|e| no_lock(e.to_string()))?;
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
            let mut archive = tar::Archive::new(gz);
            for entry in archive.entries().map_err(|e| no_lock(e.to_string()))? {
                let mut entry = entry.map_err(|e| no_lock(e.to_string()))?;
                if entry.path().is_ok_and(|p| p.as_os_str() == LOCK_PATH) {
                    let mut text = String::new();
                    entry
                        .read_to_string(&mut text)
                        .map_err(|e| no_lock(e.to_string()))?;
                    return toml::from_str(&text).map_err(|e| no_lock(e.to_string()));
                }
            }
        }
        Err(no_lock("no layer holds it".into()))
    }
}

/// The merged layout under `prefix` (e.g. `images/`): one index naming
/// every image with its role, one Docker manifest.json listing them all,
/// and each blob once.
pub fn merged_layout(prefix: &str, images: &[RoleImage]) -> Vec<TarFile> {
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut descriptor = image.descriptor.clone();
            descriptor["annotations"][ROLE_ANNOTATION] = json!(image.role);
            descriptor
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests});
    let docker: Vec<Value> = images
        .iter()
        .flat_map(|i| i.docker_manifest.clone())
        .collect();
    let mut files = vec![
        TarFile::bytes(
            format!("{prefix}oci-layout"),
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        TarFile::bytes(format!("{prefix}index.json"), 0o644, canonical_json(&index)),
        TarFile::bytes(
            format!("{prefix}manifest.json"),
            0o644,
            canonical_json(&Value::Array(docker)),
        ),
    ];
    let mut blobs = BTreeMap::new();
    for image in images {
        for digest in &image.blobs {
            blobs
                .entry(digest.clone())
                .or_insert_with(|| blob_path(&image.layout, digest));
        }
    }
    for (digest, path) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        files.push(TarFile::file(
            format!("{prefix}blobs/sha256/{hex}"),
            0o644,
            path,
        ));
    }
    files
}

/// How many distinct blobs the images reference together.
pub fn stored_blob_count(images: &[RoleImage]) -> usize {
    images
        .iter()
        .flat_map(|i| &i.blobs)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

fn sha256_of(source: &Source) -> Result<String, BundleError> {
    match source {
        Source::Bytes(bytes) => Ok(hex::encode(Sha256::digest(bytes))),
        Source::File(path) => {
            let io = |err| BundleError::Io {
                path: path.display().to_string(),
                err,
            };
            let mut file = std::fs::File::open(path).map_err(io)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(hex::encode(hasher.finalize()))
        }
    }
}

/// `sha256sum`'s format for every file, sorted by path. A blob whose bytes
/// do not match its name is refused here, so a damaged build never ships.
pub fn sha256sums(files: &[TarFile]) -> Result<String, BundleError> {
    let mut lines = BTreeMap::new();
    for file in files {
        let sum = sha256_of(&file.source)?;
        if let (Some((_, name)), Source::File(path)) =
            (file.path.split_once("blobs/sha256/"), &file.source)
            && name != sum
        {
            return Err(BundleError::DamagedBlob {
                layout: path
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::parent)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                digest: format!("sha256:{name}"),
                actual: format!("sha256:{sum}"),
            });
        }
        lines.insert(file.path.clone(), sum);
    }
    Ok(lines
        .into_iter()
        .map(|(path, sum)| format!("{sum}  {path}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path, role: &str, blobs: &[&[u8]]) {
        let root = dir.join(role);
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        let mut digests = Vec::new();
        for blob in blobs {
            let hex = hex::encode(Sha256::digest(blob));
            std::fs::write(root.join("blobs/sha256").join(&hex), blob).unwrap();
            digests.push(format!("sha256:{hex}"));
        }
        let manifest = canonical_json(&json!({
            "config": {"digest": digests[0]},
            "layers": digests[1..].iter().map(|d| json!({"digest": d})).collect::<Vec<_>>(),
        }));
        let manifest_hex = hex::encode(Sha256::digest(&manifest));
        std::fs::write(root.join("blobs/sha256").join(&manifest_hex), &manifest).unwrap();
        std::fs::write(
            root.join("index.json"),
            canonical_json(&json!({"manifests": [{
                "digest": format!("sha256:{manifest_hex}"),
                "annotations": {"io.containerd.image.name": format!("nodeimg/{role}:t")},
            }]})),
        )
        .unwrap();
        std::fs::write(
            root.join("manifest.json"),
            format!(r#"[{{"RepoTags":["nodeimg/{role}:t"]}}]"#),
        )
        .unwrap();
    }

    #[test]
    fn a_blob_two_images_share_is_stored_once_and_each_image_keeps_its_role() {
        let dir = tempfile::tempdir().unwrap();
        layout(
            dir.path(),
            "db",
            &[b"db config", b"base layer", b"postgres layer"],
        );
        layout(dir.path(), "haproxy", &[b"proxy config", b"base layer"]);
        let images = [
            RoleImage::read(dir.path(), "db").unwrap(),
            RoleImage::read(dir.path(), "haproxy").unwrap(),
        ];
        let files = merged_layout("images/", &images);
        let blobs = files
            .iter()
            .filter(|f| f.path.starts_with("images/blobs/"))
            .count();
        // 2 manifests + 2 configs + 2 distinct layers (the base once).
        assert_eq!(blobs, 6);
        assert_eq!(stored_blob_count(&images), 6);
        let Source::Bytes(index) = &files[1].source else {
            panic!("index in memory")
        };
        let index: Value = serde_json::from_slice(index).unwrap();
        assert_eq!(
            index["manifests"][1]["annotations"][ROLE_ANNOTATION],
            "haproxy"
        );
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "nodeimg/db:t"
        );
        let Source::Bytes(docker) = &files[2].source else {
            panic!("manifest.json in memory")
        };
        assert_eq!(
            String::from_utf8_lossy(docker),
            r#"[{"RepoTags":["nodeimg/db:t"]},{"RepoTags":["nodeimg/haproxy:t"]}]"#
        );
        let sums = sha256sums(&files).unwrap();
        assert_eq!(sums.lines().count(), files.len());
    }

    #[test]
    fn a_damaged_blob_is_named_and_a_missing_layout_says_to_build() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path(), "db", &[b"db config", b"base layer"]);
        let base = hex::encode(Sha256::digest(b"base layer"));
        std::fs::write(
            dir.path().join("db/blobs/sha256").join(&base),
            b"base layeR",
        )
        .unwrap();
        let images = [RoleImage::read(dir.path(), "db").unwrap()];
        let err = sha256sums(&merged_layout("images/", &images))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("blob sha256:{base} is damaged")),
            "{err}"
        );
        let err = RoleImage::read(dir.path(), "haproxy")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nodeimg build recipes/haproxy.toml"), "{err}");
    }
}
