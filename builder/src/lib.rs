//! nodeimg: compiles per-role recipes into pinned locks, reproducible OCI
//! images and cloud-init bundles. Each module is one stage of the pipeline
//! described in DESIGN.md.

pub mod relation;
pub mod signature;
pub mod version;
