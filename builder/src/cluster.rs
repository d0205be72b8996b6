//! The cluster spec (`cluster.toml`): members, DCS, PostgreSQL and Patroni
//! settings, databases, users and pools. Validated when loaded, so a node
//! never starts from a spec that cannot work; each refusal names its rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub cluster: ClusterInfo,
    /// Database nodes: PostgreSQL + Patroni (+ etcd).
    #[serde(rename = "db")]
    pub db_members: Vec<Member>,
    /// Proxy nodes: HAProxy + PgBouncer.
    #[serde(default, rename = "haproxy")]
    pub haproxy_members: Vec<Member>,
    #[serde(default)]
    pub patroni: PatroniSettings,
    #[serde(default)]
    pub postgresql: PostgresSettings,
    #[serde(default)]
    pub ports: PortSettings,
    #[serde(default, rename = "database")]
    pub databases: Vec<Database>,
    #[serde(default, rename = "user")]
    pub users: Vec<AppUser>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub pgbouncer: PgbouncerSettings,
    /// Registry repository per role (`registry.example.com/nodeimg/db`);
    /// the digest comes from the built image, so nodes run exactly it.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    #[serde(default)]
    pub hosts: HostSettings,
}

/// How the servers themselves are prepared (cloud-init).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSettings {
    /// Debian's docker.io, pinned.
    pub docker_version: String,
    /// Where the data volume is mounted on the host.
    pub data_dir: String,
    /// Let a db node without a volume keep its data on the root disk.
    pub allow_root_disk: bool,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            docker_version: "26.1.5+dfsg1-9+deb13u1".into(),
            data_dir: "/var/lib/nodeimg".into(),
            allow_root_disk: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    /// Patroni scope and etcd cluster token.
    pub name: String,
    /// The private network every member is in: `10.0.0.0/16`.
    pub cidr: String,
    #[serde(default)]
    pub dcs: Dcs,
    /// The load balancer in front of the proxy nodes, if any: clients use
    /// it, PgBouncer never does (that would loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dcs {
    /// etcd v3 on the db nodes (the default).
    #[default]
    Etcd,
    /// Patroni's built-in Raft, deprecated since Patroni 3.0; kept for
    /// existing clusters.
    Raft,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniSettings {
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default = "default_loop_wait")]
    pub loop_wait: u32,
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout: u32,
    /// Bytes a replica may lag and still be promoted.
    #[serde(default = "default_max_lag")]
    pub maximum_lag_on_failover: u64,
    /// Commits wait for one synchronous replica, so a failover never
    /// loses an acknowledged write (at some cost in write latency).
    #[serde(default)]
    pub synchronous_mode: bool,
}

fn default_ttl() -> u32 {
    30
}
fn default_loop_wait() -> u32 {
    10
}
fn default_retry_timeout() -> u32 {
    10
}
fn default_max_lag() -> u64 {
    1_048_576
}

impl Default for PatroniSettings {
    fn default() -> PatroniSettings {
        PatroniSettings {
            ttl: default_ttl(),
            loop_wait: default_loop_wait(),
            retry_timeout: default_retry_timeout(),
            maximum_lag_on_failover: default_max_lag(),
            synchronous_mode: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// The data directory, on the node's volume.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Server parameters; merged over nodeimg's defaults.
    #[serde(default)]
    pub parameters: BTreeMap<String, toml::Value>,
}

fn default_data_dir() -> String {
    "/var/lib/postgresql/data".into()
}

impl Default for PostgresSettings {
    fn default() -> PostgresSettings {
        PostgresSettings {
            data_dir: default_data_dir(),
            parameters: BTreeMap::new(),
        }
    }
}

/// Every port of the cluster in one place: listeners and health checks
/// are rendered from these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortSettings {
    pub postgres: u16,
    pub patroni: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub raft: u16,
    pub haproxy_primary: u16,
    pub haproxy_replicas: u16,
    pub haproxy_stats: u16,
    pub pgbouncer: u16,
}

impl Default for PortSettings {
    fn default() -> PortSettings {
        PortSettings {
            postgres: 5432,
            patroni: 8008,
            etcd_client: 2379,
            etcd_peer: 2380,
            raft: 2222,
            haproxy_primary: 5000,
            haproxy_replicas: 5001,
            haproxy_stats: 7000,
            pgbouncer: 6432,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppUser {
    pub name: String,
    /// Databases the user may connect to (granted CONNECT).
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolTarget {
    /// Through HAProxy's primary port: reads and writes.
    #[default]
    Primary,
    /// Through HAProxy's replica port: reads only.
    Replicas,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The database name clients ask PgBouncer for.
    pub name: String,
    pub database: String,
    #[serde(default)]
    pub target: PoolTarget,
    #[serde(default = "default_pool_size")]
    pub size: u32,
}

fn default_pool_size() -> u32 {
    20
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgbouncerSettings {
    pub pool_mode: String,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
}

impl Default for PgbouncerSettings {
    fn default() -> PgbouncerSettings {
        PgbouncerSettings {
            pool_mode: "transaction".into(),
            max_client_conn: 1000,
            default_pool_size: 20,
        }
    }
}

/// The role a member plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Db,
    Haproxy,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Db => "db",
            Role::Haproxy => "haproxy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster spec {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cluster spec {path}: {err}")]
    Parse { path: PathBuf, err: String },
    #[error("cluster spec {path}: {field}: {rule}")]
    Invalid {
        path: PathBuf,
        field: String,
        rule: String,
    },
}

/// Users nodeimg itself creates (Patroni's superuser, replication and
/// rewind users): application users cannot take these names.
pub const RESERVED_USERS: &[&str] = &["postgres", "replicator", "rewind_user"];

/// nodeimg's PostgreSQL defaults; the spec's parameters override them,
/// except the ones [`FIXED_PARAMETERS`] pins.
pub fn default_parameters() -> BTreeMap<String, String> {
    [
        ("password_encryption", "scram-sha-256"),
        // JIT's LLVM runtime is not in the image (over 100 MB).
        ("jit", "off"),
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "256MB"),
        ("max_connections", "200"),
        ("shared_buffers", "256MB"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Parameters a spec may not change, and why.
pub const FIXED_PARAMETERS: &[(&str, &str, &str)] = &[
    (
        "password_encryption",
        "scram-sha-256",
        "SCRAM everywhere: md5 verifiers cannot be shared with PgBouncer",
    ),
    (
        "jit",
        "off",
        "the image does not carry the LLVM JIT runtime (the db recipe excludes it)",
    ),
];

impl ClusterSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<ClusterSpec, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|err| ClusterError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        ClusterSpec::parse(&text, path)
    }

    /// Parses and validates spec text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterSpec, ClusterError> {
        let spec: ClusterSpec = toml::from_str(text).map_err(|err| ClusterError::Parse {
            path: path.to_path_buf(),
            err: err.to_string(),
        })?;
        spec.validate()
            .map_err(|(field, rule)| ClusterError::Invalid {
                path: path.to_path_buf(),
                field,
                rule,
            })?;
        Ok(spec)
    }

    /// The network and prefix length of `cluster.cidr`.
    pub fn network(&self) -> Result<(Ipv4Addr, u8), String> {
        parse_cidr(&self.cluster.cidr)
    }

    pub fn member_by_ip(&self, ip: Ipv4Addr) -> Option<(Role, &Member)> {
        self.members().find(|(_, m)| m.ip == ip)
    }

    pub fn member_by_name(&self, name: &str) -> Option<(Role, &Member)> {
        self.members().find(|(_, m)| m.name == name)
    }

    /// Every member with its role, db first.
    pub fn members(&self) -> impl Iterator<Item = (Role, &Member)> {
        self.db_members
            .iter()
            .map(|m| (Role::Db, m))
            .chain(self.haproxy_members.iter().map(|m| (Role::Haproxy, m)))
    }

    /// nodeimg's defaults with the spec's parameters over them, as text.
    pub fn effective_parameters(&self) -> BTreeMap<String, String> {
        let mut parameters = default_parameters();
        for (name, value) in &self.postgresql.parameters {
            parameters.insert(name.clone(), parameter_text(value));
        }
        parameters
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, rule: String| Err((field.to_string(), rule));
        if !is_name(&self.cluster.name) {
            return fail(
                "cluster.name",
                format!(
                    "{:?} must be 1-63 lowercase letters, digits or '-' (it becomes the Patroni scope and the etcd token)",
                    self.cluster.name
                ),
            );
        }
        let (network, prefix) = match self.network() {
            Ok(n) => n,
            Err(err) => return fail("cluster.cidr", err),
        };
        if self.db_members.is_empty() {
            return fail(
                "db",
                "a cluster needs at least one db member ([[db]] name and ip)".into(),
            );
        }
        if self.cluster.dcs == Dcs::Etcd && self.db_members.len().is_multiple_of(2) {
            return fail(
                "db",
                format!(
                    "etcd runs on the db members and needs an odd number of them: {} members tolerate no more failures than {} (quorum rule); add or remove one",
                    self.db_members.len(),
                    self.db_members.len() - 1
                ),
            );
        }
        let mut names = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for (i, (role, member)) in self.members().enumerate() {
            let index = if role == Role::Db {
                i
            } else {
                i - self.db_members.len()
            };
            let field = format!("{}[{index}]", role.as_str());
            if !is_name(&member.name) {
                return fail(
                    &format!("{field}.name"),
                    format!(
                        "{:?} must be 1-63 lowercase letters, digits or '-' (it names the Patroni and etcd member)",
                        member.name
                    ),
                );
            }
            if !names.insert(member.name.as_str()) {
                return fail(
                    &format!("{field}.name"),
                    format!(
                        "duplicate member name {:?}: two nodes would claim the same Patroni and etcd member",
                        member.name
                    ),
                );
            }
            if !ips.insert(member.ip) {
                return fail(
                    &format!("{field}.ip"),
                    format!(
                        "duplicate member address {}: each node finds itself by its private IP",
                        member.ip
                    ),
                );
            }
            if !in_network(member.ip, network, prefix) {
                return fail(
                    &format!("{field}.ip"),
                    format!(
                        "{} is outside the private network {} (cluster.cidr): pg_hba only admits that network",
                        member.ip, self.cluster.cidr
                    ),
                );
            }
        }
        if let Some(lb) = self.cluster.load_balancer
            && ips.contains(&lb)
        {
            return fail(
                "cluster.load_balancer",
                format!("{lb} is also a member's address"),
            );
        }
        let timings = &self.patroni;
        if timings.loop_wait + 2 * timings.retry_timeout > timings.ttl {
            return fail(
                "patroni",
                format!(
                    "Patroni's timing rule loop_wait + 2 * retry_timeout <= ttl is broken: {} + 2 * {} > {}; raise ttl or lower the others",
                    timings.loop_wait, timings.retry_timeout, timings.ttl
                ),
            );
        }
        if timings.ttl < 20 {
            return fail(
                "patroni.ttl",
                format!(
                    "{} is below Patroni's minimum of 20 seconds (Patroni would silently raise it, breaking loop_wait + 2 * retry_timeout <= ttl planning)",
                    timings.ttl
                ),
            );
        }
        if timings.loop_wait == 0 || timings.retry_timeout == 0 {
            return fail(
                "patroni",
                "loop_wait and retry_timeout must be at least 1 second".into(),
            );
        }
        for (name, value) in &self.postgresql.parameters {
            if let Some((_, fixed, why)) = FIXED_PARAMETERS.iter().find(|(n, _, _)| n == name)
                && parameter_text(value) != *fixed
            {
                return fail(
                    &format!("postgresql.parameters.{name}"),
                    format!("must be {fixed}: {why}"),
                );
            }
        }
        let mut user_names = BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if !is_identifier(&user.name) {
                return fail(
                    &format!("user[{i}].name"),
                    format!(
                        "{:?} must start with a letter and hold only lowercase letters, digits, '_' or '-'",
                        user.name
                    ),
                );
            }
            if RESERVED_USERS.contains(&user.name.as_str()) {
                return fail(
                    &format!("user[{i}].name"),
                    format!(
                        "{:?} is reserved for Patroni's own users ({})",
                        user.name,
                        RESERVED_USERS.join(", ")
                    ),
                );
            }
            if !user_names.insert(user.name.as_str()) {
                return fail(
                    &format!("user[{i}].name"),
                    format!("duplicate user {:?}", user.name),
                );
            }
        }
        let mut database_names = BTreeSet::new();
        for (i, database) in self.databases.iter().enumerate() {
            if !is_identifier(&database.name) {
                return fail(
                    &format!("database[{i}].name"),
                    format!(
                        "{:?} must start with a letter and hold only lowercase letters, digits, '_' or '-'",
                        database.name
                    ),
                );
            }
            if !database_names.insert(database.name.as_str()) {
                return fail(
                    &format!("database[{i}].name"),
                    format!("duplicate database {:?}", database.name),
                );
            }
            if database.owner != "postgres" && !user_names.contains(database.owner.as_str()) {
                return fail(
                    &format!("database[{i}].owner"),
                    format!(
                        "unknown user {:?}: declare it with [[user]] (or use postgres)",
                        database.owner
                    ),
                );
            }
            for extension in &database.extensions {
                if !is_identifier(extension) {
                    return fail(
                        &format!("database[{i}].extensions"),
                        format!("{extension:?} is not an extension name"),
                    );
                }
            }
        }
        for (i, user) in self.users.iter().enumerate() {
            for database in &user.databases {
                if !database_names.contains(database.as_str()) {
                    return fail(
                        &format!("user[{i}].databases"),
                        format!("unknown database {database:?}: declare it with [[database]]"),
                    );
                }
            }
        }
        let mut pool_names = BTreeSet::new();
        for (i, pool) in self.pools.iter().enumerate() {
            if !is_identifier(&pool.name) || !pool_names.insert(pool.name.as_str()) {
                return fail(
                    &format!("pool[{i}].name"),
                    format!("{:?} is not a valid, unique pool name", pool.name),
                );
            }
            if !database_names.contains(pool.database.as_str()) {
                return fail(
                    &format!("pool[{i}].database"),
                    format!(
                        "unknown database {:?}: declare it with [[database]]",
                        pool.database
                    ),
                );
            }
            if pool.size == 0 {
                return fail(&format!("pool[{i}].size"), "must be at least 1".into());
            }
        }
        if !self.pools.is_empty() && self.haproxy_members.is_empty() {
            return fail(
                "pool",
                "pools run on the haproxy members, and there are none ([[haproxy]])".into(),
            );
        }
        if !["session", "transaction", "statement"].contains(&self.pgbouncer.pool_mode.as_str()) {
            return fail(
                "pgbouncer.pool_mode",
                format!(
                    "{:?} must be session, transaction or statement",
                    self.pgbouncer.pool_mode
                ),
            );
        }
        let ports = &self.ports;
        let all = [
            ports.postgres,
            ports.patroni,
            ports.etcd_client,
            ports.etcd_peer,
            ports.raft,
            ports.haproxy_primary,
            ports.haproxy_replicas,
            ports.haproxy_stats,
            ports.pgbouncer,
        ];
        if all.iter().collect::<BTreeSet<_>>().len() != all.len() || all.contains(&0) {
            return fail("ports", "every port must be set and different".into());
        }
        Ok(())
    }
}

fn parameter_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "on" } else { "off" }.into(),
        other => other.to_string(),
    }
}

/// `10.0.0.0/16` → (10.0.0.0, 16); host bits must be zero.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("{text:?} is not an IPv4 network like 10.0.0.0/16");
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    if !in_network(address, address, prefix) || u32::from(address) & !mask(prefix) != 0 {
        return Err(format!(
            "{text:?} has host bits set: write the network address ({}/{prefix})",
            Ipv4Addr::from(u32::from(address) & mask(prefix))
        ));
    }
    Ok((address, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

pub fn in_network(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    u32::from(ip) & mask(prefix) == u32::from(network) & mask(prefix)
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_membership() {
        assert_eq!(
            parse_cidr("10.0.0.0/16").unwrap(),
            ("10.0.0.0".parse().unwrap(), 16)
        );
        assert!(parse_cidr("10.0.0.1/16").unwrap_err().contains("host bits"));
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        let (net, prefix) = parse_cidr("10.0.0.0/24").unwrap();
        assert!(in_network("10.0.0.120".parse().unwrap(), net, prefix));
        assert!(!in_network("10.0.1.1".parse().unwrap(), net, prefix));
    }
}
