//! Shipping and deployment: registry push, air-gapped bundles, cloud-init
//! user-data for Hetzner servers, and what a host install does.

pub mod bundle;
pub mod cloud_init;
pub mod host_install;
pub mod registry;
