//! Image assembly (`nodeimg build`): a lock's verified packages unpacked
//! into a root filesystem model, cut into deterministic layers, written as
//! an OCI image layout, a `docker load` tarball and an SPDX SBOM.

pub mod build;
pub mod layer;
pub mod layer_cache;
pub mod layer_plan;
pub mod oci;
pub mod overlay;
pub mod rootfs;
pub mod sbom;
pub mod system_files;
pub mod tarball;
