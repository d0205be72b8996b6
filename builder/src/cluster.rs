//! The cluster spec (`cluster.toml`): members, DCS, PostgreSQL and Patroni settings, users and pools; validated when loaded.
