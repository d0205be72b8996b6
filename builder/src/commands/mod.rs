//! The subcommands of the `nodeimg` binary, one module each.

pub mod backup;
pub mod boot;
pub mod build;
pub mod bundle;
pub mod cloud_init;
pub mod demo;
pub mod fetch;
pub mod inspect;
pub mod lock;
pub mod outdated;
pub mod plan;
pub mod push;
pub mod secrets;
pub mod verify;
