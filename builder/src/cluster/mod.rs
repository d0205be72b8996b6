//! The cluster spec (`cluster.toml`): members, DCS, PostgreSQL and Patroni
//! settings, databases, users and pools. Validated when loaded, so a node
//! never starts from a spec that cannot work; each refusal names its rule.

// The cluster model: its spec (here) and its secrets.

pub mod backup;
pub mod backup_s3;
pub mod pki;
pub mod restore;
pub mod scram;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub cluster: ClusterInfo,
    /// Database nodes: PostgreSQL + Patroni (+ etcd). Optional for serde
    /// so that a spec without any is refused by the rule that names it.
    #[serde(default, rename = "db")]
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
    #[serde(default)]
    pub hetzner: HetznerSettings,
    /// pgBackRest: WAL archive and backups (none without this section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<backup::BackupSettings>,
    /// A new cluster's first start restores another cluster's backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<restore::RestoreSettings>,
}

/// What `nodeimg plan` creates on Hetzner Cloud.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HetznerSettings {
    pub location: String,
    pub network_zone: String,
    pub image: String,
    pub db_server_type: String,
    pub haproxy_server_type: String,
    pub db_volume_gb: u32,
    /// Public addresses SSH (22) is admitted from by the cluster's Hetzner
    /// Firewall (CIDRs). Empty: nothing on the public side is admitted.
    pub ssh_source_ips: Vec<String>,
    /// Give the servers a public IPv4 (Hetzner's default). With false they
    /// keep only IPv6 (the firewall still admits nothing but `ssh_source_ips`).
    pub public_ipv4: bool,
    /// The load balancer at `cluster.load_balancer` in front of the proxies.
    pub load_balancer_type: String,
    /// Also give it a public interface (default: private network only).
    pub load_balancer_public: bool,
    /// Also forward HAProxy's 5000/5001, not only PgBouncer.
    pub load_balancer_haproxy_ports: bool,
}

impl Default for HetznerSettings {
    fn default() -> HetznerSettings {
        HetznerSettings {
            location: "fsn1".into(),
            network_zone: "eu-central".into(),
            image: "debian-13".into(),
            db_server_type: "cpx31".into(),
            haproxy_server_type: "cpx11".into(),
            db_volume_gb: 50,
            ssh_source_ips: Vec::new(),
            public_ipv4: true,
            load_balancer_type: "lb11".into(),
            load_balancer_public: false,
            load_balancer_haproxy_ports: false,
        }
    }
}

/// How the servers themselves are prepared (cloud-init).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSettings {
    /// Kept for specs written before recipes/host-runtime.lock pinned the
    /// host's packages: when set, it must be the version that lock pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// Where the data volume is mounted on the host.
    pub data_dir: String,
    /// Let a db node without a volume keep its data on the root disk.
    pub allow_root_disk: bool,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            docker_version: None,
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
    /// loses an acknowledged write (at some cost in write latency). On by
    /// default.
    #[serde(default = "default_synchronous_mode")]
    pub synchronous_mode: bool,
    /// With synchronous mode: when no replica can confirm, commits wait
    /// instead of being acknowledged by the primary alone (Patroni's
    /// `synchronous_mode_strict`), so every acknowledged write is on two
    /// nodes. Off, a primary left without replicas keeps accepting writes
    /// that its own disk alone holds. On by default; a cluster of one db
    /// member has no replica to wait for and runs without it.
    #[serde(default = "default_synchronous_mode")]
    pub synchronous_mode_strict: bool,
    /// With etcd: when a majority of the db nodes see the leader's lease
    /// unrenewed for loop_wait + retry_timeout + 2 s, they revoke it, so a
    /// hard-killed leader is replaced before its TTL runs out (fencing.rs).
    #[serde(default = "default_fence_dead_leader")]
    pub fence_dead_leader: bool,
}

fn default_fence_dead_leader() -> bool {
    true
}

fn default_synchronous_mode() -> bool {
    true
}

// The defaults the fault matrix (tests/faults.rs, BENCHMARKS.md) measured:
// a hard-killed leader replaced in well under 20 s through PgBouncer, a
// leader renewing its lease every 5 s.
fn default_ttl() -> u32 {
    20
}
fn default_loop_wait() -> u32 {
    5
}
fn default_retry_timeout() -> u32 {
    5
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
            synchronous_mode: default_synchronous_mode(),
            synchronous_mode_strict: default_synchronous_mode(),
            fence_dead_leader: default_fence_dead_leader(),
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
    /// pgBackRest's TLS server on db nodes with `[backup]`: a replica
    /// backing up reaches the primary's PostgreSQL through it.
    pub pgbackrest: u16,
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
            pgbackrest: 8432,
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
    /// Not TOML, or not the spec's shape (unknown or missing field, wrong
    /// type); `line` is where the TOML parser put it.
    #[error("cluster spec {}: {err}", location(.path, *.line))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        err: String,
    },
    /// Well-formed, but breaks a rule; `field` is a path into the spec
    /// (`db[2].ip`), `line` where that field is written, if it is.
    #[error("cluster spec {}: {field}: {rule}", location(.path, *.line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        field: String,
        rule: String,
    },
}

/// `path:line`, as editors and compilers write a place in a file.
fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

/// The 1-based line of the byte at `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line where `field` (`db[2].ip`, `patroni.ttl`) is written in the
/// spec text, or its nearest written ancestor; None when not even the
/// top-level key is (a rule broken by the defaults).
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let document = DeTable::parse(text).ok()?;
    let mut table: &DeTable = document.get_ref();
    let mut found = None;
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((written_key, mut value)) = table.iter().find(|(k, _)| k.get_ref() == key) else {
            break;
        };
        found = Some(written_key.span().start);
        if let Some(index) = index {
            let DeValue::Array(items) = value.get_ref() else {
                break;
            };
            let Some(item) = items.get(index) else {
                break;
            };
            found = Some(item.span().start);
            value = item;
        }
        let DeValue::Table(inner) = value.get_ref() else {
            break;
        };
        table = inner;
    }
    found.map(|offset| line_at(text, offset))
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
            line: err.span().map(|span| line_at(text, span.start)),
            err: err.message().trim_end().to_string(),
        })?;
        spec.validate()
            .map_err(|(field, rule)| ClusterError::Invalid {
                path: path.to_path_buf(),
                line: line_of_field(text, &field),
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
        for source in &self.hetzner.ssh_source_ips {
            let valid = source.split_once('/').is_some_and(|(addr, bits)| {
                addr.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                    bits.parse::<u8>()
                        .is_ok_and(|b| b <= if ip.is_ipv4() { 32 } else { 128 })
                })
            });
            if !valid {
                return fail(
                    "hetzner.ssh_source_ips",
                    format!(
                        "{source:?} is not a CIDR (e.g. \"203.0.113.0/24\" or \"2001:db8::/48\"): the Hetzner Firewall admits SSH only from these ranges"
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
        if !self.postgresql.data_dir.starts_with('/') {
            return fail(
                "postgresql.data_dir",
                format!(
                    "{:?} must be an absolute path (Patroni and initdb resolve it from different directories)",
                    self.postgresql.data_dir
                ),
            );
        }
        for (name, value) in &self.postgresql.parameters {
            if matches!(
                value,
                toml::Value::Array(_) | toml::Value::Table(_) | toml::Value::Datetime(_)
            ) {
                return fail(
                    &format!("postgresql.parameters.{name}"),
                    "a server parameter is one string, number or boolean (write lists as \"a,b\")"
                        .into(),
                );
            }
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
            ports.pgbackrest,
        ];
        if all.iter().collect::<BTreeSet<_>>().len() != all.len() || all.contains(&0) {
            return fail("ports", "every port must be set and different".into());
        }
        for (role, repository) in &self.images {
            if ![Role::Db, Role::Haproxy].iter().any(|r| r.as_str() == role) {
                return fail(
                    &format!("images.{role}"),
                    format!("{role:?} is not a role: the roles are db and haproxy"),
                );
            }
            if repository.is_empty()
                || repository.contains(char::is_whitespace)
                || repository.contains("://")
            {
                return fail(
                    &format!("images.{role}"),
                    format!(
                        "{repository:?} is not a repository reference like registry.example.com/nodeimg/{role}"
                    ),
                );
            }
            if repository.contains('@') {
                return fail(
                    &format!("images.{role}"),
                    format!(
                        "{repository:?} carries a digest: name only the repository, the digest is taken from the image `nodeimg build` made"
                    ),
                );
            }
        }
        if let Some(backup) = &self.backup {
            backup.validate()?;
            if let Some(name) = [
                "archive_mode",
                "archive_command",
                "archive_timeout",
                "restore_command",
            ]
            .iter()
            .find(|name| self.postgresql.parameters.contains_key(**name))
            {
                return fail(
                    &format!("postgresql.parameters.{name}"),
                    "is set by [backup] (pgBackRest archives the WAL): remove it here, or remove [backup]".into(),
                );
            }
        }
        if let Some(restore) = &self.restore {
            restore.validate(&self.cluster.name, self.backup.is_some())?;
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

    const SMALL: &str = r#"[cluster]
name = "small"
cidr = "10.1.0.0/24"

[[db]]
name = "db-1"
ip = "10.1.0.5"

[[haproxy]]
name = "proxy-1"
ip = "10.1.0.9"
"#;

    fn parse(text: &str) -> Result<ClusterSpec, ClusterError> {
        ClusterSpec::parse(text, Path::new("small.toml"))
    }

    #[test]
    fn a_minimal_spec_gets_the_recommended_defaults() {
        let spec = parse(SMALL).unwrap();
        assert_eq!(spec.cluster.dcs, Dcs::Etcd);
        let parameters = spec.effective_parameters();
        for (name, value) in [
            ("jit", "off"),
            ("password_encryption", "scram-sha-256"),
            ("wal_level", "replica"),
            ("hot_standby", "on"),
            ("max_wal_senders", "10"),
        ] {
            assert_eq!(parameters[name], value, "{name}");
        }
        let patroni = &spec.patroni;
        assert_eq!(
            (patroni.ttl, patroni.loop_wait, patroni.retry_timeout),
            (20, 5, 5)
        );
        assert!(patroni.synchronous_mode && patroni.fence_dead_leader);
        let ports = &spec.ports;
        assert_eq!(
            [
                ports.postgres,
                ports.patroni,
                ports.etcd_client,
                ports.etcd_peer
            ],
            [5432, 8008, 2379, 2380]
        );
        assert_eq!(
            [
                ports.haproxy_primary,
                ports.haproxy_replicas,
                ports.haproxy_stats,
                ports.pgbouncer
            ],
            [5000, 5001, 7000, 6432]
        );
    }

    #[test]
    fn members_are_found_by_address_and_name_with_their_role() {
        let spec = parse(SMALL).unwrap();
        let (role, member) = spec.member_by_ip("10.1.0.9".parse().unwrap()).unwrap();
        assert_eq!((role, member.name.as_str()), (Role::Haproxy, "proxy-1"));
        let (role, member) = spec.member_by_name("db-1").unwrap();
        assert_eq!((role, member.ip), (Role::Db, "10.1.0.5".parse().unwrap()));
        assert!(spec.member_by_ip("10.1.0.6".parse().unwrap()).is_none());
        assert!(spec.member_by_name("db-2").is_none());
    }

    #[test]
    fn refusals_name_the_file_line_and_field() {
        let err = parse(&SMALL.replace("10.1.0.9", "10.2.0.9")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cluster spec small.toml:11: haproxy[0].ip: 10.2.0.9 is outside"),
            "{err}"
        );
        // A rule broken by a table as a whole points at its header.
        let err = parse(&format!("{SMALL}\n[patroni]\nloop_wait = 12\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cluster spec small.toml:13: patroni: "),
            "{err}"
        );
        let err = parse(&format!("{SMALL}\n[ports]\npatroni = 5432\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cluster spec small.toml:13: ports: "),
            "{err}"
        );
        // A rule about what is not written at all: no line to show.
        let err =
            parse(&SMALL.replace("[[db]]\nname = \"db-1\"\nip = \"10.1.0.5\"\n", "")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cluster spec small.toml: db: a cluster needs at least one db member"),
            "{err}"
        );
        let err = parse(&SMALL.replace("ip = \"10.1.0.5\"", "ip = \"10.1.0.5\"\nport = 5432"))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cluster spec small.toml:8: unknown field `port`"),
            "{err}"
        );
    }

    #[test]
    fn image_references_name_a_role_and_a_repository_only() {
        let with_images = |images: &str| parse(&format!("{SMALL}\n[images]\n{images}\n"));
        assert!(with_images("db = \"registry.example.com/nodeimg/db\"").is_ok());
        for (images, rule) in [
            (
                "proxy = \"r.example.com/p\"",
                "the roles are db and haproxy",
            ),
            ("db = \"r.example.com/db@sha256:00\"", "carries a digest"),
            (
                "db = \"https://r.example.com/db\"",
                "not a repository reference",
            ),
            ("db = \"\"", "not a repository reference"),
        ] {
            let err = with_images(images).unwrap_err().to_string();
            assert!(err.contains(rule), "{images}: {err}");
        }
    }

    #[test]
    fn server_parameters_are_scalars_and_the_pinned_ones_stay_pinned() {
        let with = |line: &str| parse(&format!("{SMALL}\n[postgresql.parameters]\n{line}\n"));
        let spec = with("work_mem = \"64MB\"\nmax_connections = 300\nfsync = true").unwrap();
        let parameters = spec.effective_parameters();
        assert_eq!(parameters["max_connections"], "300");
        assert_eq!(parameters["fsync"], "on");
        let err = with("shared_preload_libraries = [\"a\", \"b\"]").unwrap_err();
        assert!(
            err.to_string().contains("one string, number or boolean"),
            "{err}"
        );
        let err = with("jit = true").unwrap_err();
        assert!(
            err.to_string()
                .contains("postgresql.parameters.jit: must be off"),
            "{err}"
        );
    }
}
