//! OCI image documents (config, manifest, index) in canonical JSON, written
//! as an OCI image layout and as a tarball `docker load` accepts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::Digest;

use crate::image::layer::{Layer, sha256_digest};
use crate::lock::recipe::ImageConfig;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where a layout keeps the blob of `digest` (`sha256:<hex>`).
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// JSON with object keys sorted and no insignificant whitespace, whatever
/// serde_json's map ordering: the bytes hashed are the bytes written.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push(b'{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(key).expect("string serializes"));
                    out.push(b':');
                    write(value, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            scalar => out.extend(serde_json::to_vec(scalar).expect("scalar serializes")),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// RFC 3339 UTC time for an epoch, as OCI wants for `created`.
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Unix seconds of an RFC 3339 UTC time as `rfc3339` writes it
/// (`YYYY-MM-DDTHH:MM:SSZ`); None for any other form.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 20 || bytes[19] != b'Z' || bytes[10] != b'T' {
        return None;
    }
    let field = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of rfc3339.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A finished image: its blobs and the documents that name them.
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    /// `nodeimg/db:<tag>`.
    pub reference: String,
}

pub fn assemble(
    config: &ImageConfig,
    architecture: &str,
    created: i64,
    layers: Vec<Layer>,
    annotations: BTreeMap<String, String>,
    reference: String,
) -> Image {
    let created = rfc3339(created);
    let mut env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    let mut runtime = serde_json::Map::new();
    runtime.insert("Env".into(), json!(env));
    if !config.entrypoint.is_empty() {
        runtime.insert("Entrypoint".into(), json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        runtime.insert("Cmd".into(), json!(config.cmd));
    }
    if let Some(user) = &config.user {
        runtime.insert("User".into(), json!(user));
    }
    if let Some(workdir) = &config.workdir {
        runtime.insert("WorkingDir".into(), json!(workdir));
    }
    if let Some(signal) = &config.stop_signal {
        runtime.insert("StopSignal".into(), json!(signal));
    }
    if !config.ports.is_empty() {
        let ports: serde_json::Map<String, Value> = config
            .ports
            .iter()
            .map(|p| {
                (
                    if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    },
                    json!({}),
                )
            })
            .collect();
        runtime.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !config.volumes.is_empty() {
        let volumes: serde_json::Map<String, Value> = config
            .volumes
            .iter()
            .map(|v| (v.clone(), json!({})))
            .collect();
        runtime.insert("Volumes".into(), Value::Object(volumes));
    }
    if !config.labels.is_empty() {
        runtime.insert("Labels".into(), json!(config.labels));
    }
    let config_doc = json!({
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": Value::Object(runtime),
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|l| json!({"created": created, "created_by": format!("nodeimg build: {}", l.label)})).collect::<Vec<_>>(),
    });
    let config_bytes = canonical_json(&config_doc);
    let mut annotations = annotations;
    annotations.insert("org.opencontainers.image.created".into(), created);
    let manifest_doc = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": sha256_digest(&config_bytes),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": LAYER_TYPE,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
        "annotations": annotations,
    });
    let manifest = canonical_json(&manifest_doc);
    Image {
        manifest_digest: sha256_digest(&manifest),
        layers,
        config: config_bytes,
        manifest,
        reference,
    }
}

impl Image {
    fn index(&self) -> Vec<u8> {
        let tag = self
            .reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("");
        canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [{
                "mediaType": MANIFEST_TYPE,
                "digest": self.manifest_digest,
                "size": self.manifest.len(),
                "annotations": {
                    "org.opencontainers.image.ref.name": tag,
                    "io.containerd.image.name": self.reference,
                },
            }],
        }))
    }

    /// The files of an OCI image layout, plus Docker's `manifest.json` so
    /// that older `docker load` versions accept the same tree.
    pub fn files(&self) -> Vec<(String, Payload)> {
        let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        let config_path = blob(&sha256_digest(&self.config));
        let docker_manifest = canonical_json(&json!([{
            "Config": config_path,
            "RepoTags": [self.reference],
            "Layers": self.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
        }]));
        let mut files = vec![
            (
                "oci-layout".to_string(),
                Payload::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ),
            ("index.json".to_string(), Payload::Bytes(self.index())),
            ("manifest.json".to_string(), Payload::Bytes(docker_manifest)),
            (
                blob(&self.manifest_digest),
                Payload::Bytes(self.manifest.clone()),
            ),
            (config_path, Payload::Bytes(self.config.clone())),
        ];
        for layer in &self.layers {
            files.push((blob(&layer.digest), Payload::Blob(layer.clone())));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        files
    }

    /// True when `dir` already holds this exact image: same index and
    /// every file present with its size. A no-op build then writes nothing.
    pub fn is_written_at(&self, dir: &Path) -> bool {
        if std::fs::read(dir.join("index.json")).ok() != Some(self.index()) {
            return false;
        }
        self.files().iter().all(|(path, payload)| {
            std::fs::metadata(dir.join(path)).is_ok_and(|m| m.len() == payload.size())
        })
    }

    /// Writes the layout to `dir` (which must not exist yet).
    pub fn write_layout(&self, dir: &Path) -> std::io::Result<()> {
        for (path, payload) in self.files() {
            let target = dir.join(path);
            std::fs::create_dir_all(target.parent().expect("blob paths have a parent"))?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&target)?);
            payload.copy_to(&mut out)?;
            out.flush()?;
        }
        Ok(())
    }

    /// A reproducible tarball of the layout (sorted, fixed headers).
    pub fn write_tarball(&self, out: impl Write, mtime: u64) -> std::io::Result<()> {
        let mut files = Vec::new();
        for (path, payload) in self.files() {
            let bytes = match payload {
                Payload::Bytes(bytes) => bytes,
                // Read through copy_to so that a damaged blob is refused.
                Payload::Blob(_) => {
                    let mut bytes = Vec::with_capacity(payload.size() as usize);
                    payload.copy_to(&mut bytes)?;
                    bytes
                }
            };
            files.push(crate::image::tarball::TarFile::bytes(path, 0o644, bytes));
        }
        crate::image::tarball::write(out, mtime, files)
    }
}

/// A file of the layout: small documents in memory, layer blobs on disk.
pub enum Payload {
    Bytes(Vec<u8>),
    Blob(Layer),
}

impl Payload {
    pub fn size(&self) -> u64 {
        match self {
            Payload::Bytes(bytes) => bytes.len() as u64,
            Payload::Blob(layer) => layer.size,
        }
    }

    /// Copies the payload, checking a blob against its digest on the way:
    /// a damaged cache must not become a damaged image.
    pub fn copy_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Payload::Bytes(bytes) => out.write_all(bytes),
            Payload::Blob(layer) => {
                let mut file = std::fs::File::open(&layer.path)?;
                let mut hasher = sha2::Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                }
                let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
                if actual != layer.digest {
                    // Removed so that the next build makes it again.
                    let _ = std::fs::remove_file(&layer.path);
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "layer blob {} was damaged (its SHA-256 is {actual}, expected {}) and has been removed: run the build again to rebuild it",
                            layer.path.display(),
                            layer.digest
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "c": "é"}});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":{"c":"é","z":[{"x":1,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_789_199_741), "2026-09-12T07:55:41Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for epoch in [0, 951_782_400, 1_789_199_741, 1_795_227_046, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(epoch)), Some(epoch));
        }
        assert_eq!(parse_rfc3339("2026-09-12 07:55:41"), None);
    }
}
