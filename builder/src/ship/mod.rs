//! Shipping and deployment: registry push, air-gapped bundles, verification
//! of what is shipped, cloud-init user-data for Hetzner servers, the Hetzner
//! plan, and what a host install does.

pub mod bundle;
pub mod bundle_assembly;
pub mod cloud_init;
pub mod demo;
pub mod hetzner_plan;
pub mod host_install;
pub mod host_runtime;
pub mod registry;
pub mod verify;
