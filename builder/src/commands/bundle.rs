//! `nodeimg bundle` (`ship::bundle_assembly`).

pub use crate::ship::bundle_assembly::BundleOptions;

pub fn run(options: &BundleOptions) -> anyhow::Result<()> {
    crate::ship::bundle_assembly::write_bundle(options)
}
