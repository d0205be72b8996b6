//! nodeimg: compiles per-role recipes into pinned locks, reproducible OCI
//! images and cloud-init bundles. One folder per stage of the pipeline
//! described in docs/architecture.md, in the order data flows:
//!
//! - `debian`: the archive's formats and transport;
//! - `lock`: recipe → signed indexes → resolution → lock → package cache;
//! - `image`: lock → root filesystem → layers → OCI layout, tarball, SBOM;
//! - `cluster`: the cluster spec and its secrets;
//! - `ship`: registry push, bundles, cloud-init user-data;
//! - `agent`: `nodeimg boot` on the node.
//!
//! `commands` holds one thin module per subcommand.

pub mod agent;
pub mod cluster;
pub mod commands;
pub mod debian;
pub mod image;
pub mod lock;
pub mod ship;
pub mod util;
