//! nodeimg: compiles per-role recipes into pinned locks, reproducible OCI
//! images and cloud-init bundles. Each module is one stage of the pipeline
//! described in DESIGN.md.

pub mod bootstrap_sql;
pub mod bundle;
pub mod cloud_init;
pub mod cluster;
pub mod commands;
pub mod deb;
pub mod deb822;
pub mod fencing;
pub mod fetch;
pub mod fsutil;
pub mod host_install;
pub mod identity;
pub mod index;
pub mod layer;
pub mod layer_cache;
pub mod layer_plan;
pub mod lock;
pub mod oci;
pub mod overlay;
pub mod package_cache;
pub mod progress;
pub mod recipe;
pub mod registry;
pub mod relation;
pub mod release;
pub mod render;
pub mod resolve;
pub mod rootfs;
pub mod sbom;
pub mod scram;
pub mod secrets;
pub mod signature;
pub mod signed_sources;
pub mod supervise;
pub mod system_files;
pub mod tarball;
pub mod version;
