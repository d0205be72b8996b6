//! A node's configuration files, rendered with minijinja from the
//! templates in the image (`/usr/share/nodeimg/templates`, from
//! `overlays/<role>/`) and one [`NodeView`]: the cluster spec seen from
//! this node. Everything a template prints comes from that one model, so
//! HAProxy's health checks and Patroni's REST listener cannot disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where rendered files live on a running node (never in an image layer).
pub const RUN_DIR: &str = "/run/nodeimg";

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub name: String,
    pub ip: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ports {
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

/// HAProxy's view of Patroni's REST API.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub primary_path: &'static str,
    pub replica_path: &'static str,
    pub interval_ms: u64,
    pub fast_interval_ms: u64,
    pub fall: u32,
    pub rise: u32,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            // Patroni 4's names; `/master` is deprecated.
            primary_path: "/primary",
            replica_path: "/replica",
            interval_ms: 1000,
            fast_interval_ms: 500,
            fall: 2,
            rise: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PatroniTimings {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostgresView {
    pub data_dir: String,
    pub bin_dir: String,
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Paths {
    pub pgpass: String,
    pub socket_dir: String,
    pub etcd_dir: String,
    pub raft_dir: String,
    pub userlist: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdView {
    /// `db-1=http://10.0.0.120:2380,…`
    pub initial_cluster: String,
}

/// Passwords a db node's Patroni needs; empty on proxy nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbSecrets {
    pub superuser: String,
    pub replication: String,
    pub rewind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    /// The SCRAM-SHA-256 verifier, identical in PostgreSQL and PgBouncer.
    pub scram: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    /// The name clients connect to.
    pub name: String,
    pub database: String,
    /// `primary` or `replicas`.
    pub target: String,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PgbouncerView {
    pub pool_mode: String,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub cidr: String,
}

/// The cluster spec as one node sees it: what every template reads.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub cluster: ClusterInfo,
    pub me: MemberView,
    pub role: String,
    pub db_members: Vec<MemberView>,
    pub haproxy_members: Vec<MemberView>,
    /// `etcd` or `raft`.
    pub dcs: String,
    pub etcd: EtcdView,
    pub ports: Ports,
    pub health: HealthCheck,
    pub patroni: PatroniTimings,
    pub postgresql: PostgresView,
    pub paths: Paths,
    pub secrets: DbSecrets,
    pub users: Vec<UserView>,
    pub pools: Vec<PoolView>,
    pub pgbouncer: PgbouncerView,
}

/// A rendered file: its name under the run folder and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("template {name}: {err:#}")]
    Template { name: String, err: minijinja::Error },
}

/// The templates each role renders, and the file each becomes.
pub fn templates_for(role: &str) -> &'static [(&'static str, &'static str)] {
    match role {
        "db" => &[
            ("patroni.yml.j2", "patroni.yml"),
            ("etcd.yml.j2", "etcd.yml"),
        ],
        "haproxy" => &[
            ("haproxy.cfg.j2", "haproxy.cfg"),
            ("pgbouncer.ini.j2", "pgbouncer.ini"),
            ("userlist.txt.j2", "userlist.txt"),
        ],
        _ => &[],
    }
}

/// Renders the role's templates from `dir`. Undefined variables are
/// errors, so a template can never silently print an empty value.
pub fn render(view: &NodeView, dir: &Path) -> Result<Vec<RenderedFile>, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    let mut out = Vec::new();
    for (template, file) in templates_for(&view.role) {
        if view.dcs != "etcd" && *file == "etcd.yml" {
            continue;
        }
        let path = dir.join(template);
        let source = std::fs::read_to_string(&path).map_err(|err| RenderError::Read {
            path: path.clone(),
            err,
        })?;
        let text = env
            .render_str(&source, view)
            .map_err(|err| RenderError::Template {
                name: path.display().to_string(),
                err,
            })?;
        out.push(RenderedFile {
            name: file.to_string(),
            text,
        });
    }
    Ok(out)
}
