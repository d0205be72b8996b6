//! The Debian archive's formats and transport: deb822 control data, versions
//! and relations, signed Release files, `.deb` archives, and the HTTP/file
//! fetcher. Knows nothing of recipes, locks or images.

pub mod deb;
pub mod deb822;
pub mod fetch;
pub mod relation;
pub mod release;
pub mod signature;
pub mod snapshot;
pub mod version;
