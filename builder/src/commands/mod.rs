//! The subcommands of the `nodeimg` binary, one module each.

pub mod boot;
pub mod build;
pub mod bundle;
pub mod cloud_init;
pub mod fetch;
pub mod inspect;
pub mod lock;
pub mod plan;
pub mod push;
pub mod secrets;
pub mod verify;

/// A JSON file, with errors that name it.
pub(crate) fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}
