//! Reading JSON documents (OCI index, manifests, configs, SBOMs).

use anyhow::Context;

/// A JSON file, with errors that name it.
pub fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}
