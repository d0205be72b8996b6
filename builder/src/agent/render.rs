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
    pub pgbackrest: u16,
}

/// HAProxy's view of Patroni's REST API.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    /// OPTIONS, not GET: Patroni answers it with the status line only,
    /// so HAProxy's reset after reading the status cannot land while
    /// Patroni is still writing a body (each such reset logs a traceback).
    pub method: &'static str,
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
            method: "OPTIONS",
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
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
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
    /// `db-1=https://10.0.0.120:2380,…`
    pub initial_cluster: String,
    /// `new` (a first start: the spec's members) or `existing` (joining
    /// the cluster that exists, `initial_cluster` its membership).
    pub state: String,
}

/// Passwords a db node's Patroni needs; empty on proxy nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbSecrets {
    pub superuser: String,
    pub replication: String,
    pub rewind: String,
    /// Basic auth of Patroni's unsafe REST endpoints (user `patroni`).
    pub rest_api: String,
}

/// Where a node's TLS files are (written by [`tls_files`]); every
/// listener and every client of the node uses them.
#[derive(Debug, Clone, Serialize)]
pub struct TlsView {
    /// The trusted CA certificates (the cluster's, and during a CA
    /// rotation the previous one).
    pub ca: String,
    pub cert: String,
    /// The node key, readable by the postgres account (PostgreSQL,
    /// Patroni, PgBouncer).
    pub key: String,
    /// The same key for the etcd account.
    pub etcd_key: String,
    /// PostgreSQL's `ssl_min_protocol_version` and PgBouncer's protocols.
    pub min_version: &'static str,
}

impl Default for TlsView {
    fn default() -> TlsView {
        TlsView {
            ca: format!("{RUN_DIR}/tls/ca.crt"),
            cert: format!("{RUN_DIR}/tls/node.crt"),
            key: format!("{RUN_DIR}/tls/node.key"),
            etcd_key: format!("{RUN_DIR}/tls/etcd.key"),
            min_version: "TLSv1.2",
        }
    }
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

/// pgBackRest as a db node runs it (`[backup]`); none without the section.
#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    /// The stanza: the cluster's name.
    pub stanza: String,
    /// The rendered pgbackrest.conf every pgBackRest command is given.
    pub config: String,
    pub repo_type: String,
    pub repo_path: String,
    /// The repository passphrase; none when `encrypt = false`.
    pub cipher_password: Option<String>,
    pub retention_full: u32,
    pub retention_diff: u32,
    pub archive_timeout: u32,
    pub restore_processes: u32,
    /// `/usr/bin/pgbackrest --config=… --stanza=…`: what every pgBackRest
    /// command of the node starts with.
    pub command: String,
    pub sftp: Option<SftpView>,
    pub s3: Option<S3View>,
    /// pgBackRest's TLS server on this node (any db node may be primary).
    pub server: BackupServerView,
}

/// What pgBackRest's TLS server listens on and whom it answers: db nodes
/// of the cluster, each by its client certificate's common name.
#[derive(Debug, Clone, Serialize)]
pub struct BackupServerView {
    pub address: String,
    pub port: u16,
    pub clients: Vec<String>,
}

/// An s3 repository's bucket and the key the node signs requests with.
#[derive(Debug, Clone, Serialize)]
pub struct S3View {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub uri_style: String,
    pub port: u16,
    pub key: String,
    pub key_secret: String,
    /// The spec's private CA for the endpoint; none: the image's public CAs.
    pub ca_file: Option<String>,
}

/// An sftp repository's server, and the files the node logs in with.
#[derive(Debug, Clone, Serialize)]
pub struct SftpView {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The login key (0600, the postgres account's).
    pub key_file: String,
    pub public_key_file: String,
    /// The pinned host keys: the only ones pgBackRest accepts.
    pub known_hosts_file: String,
}

/// The sftp repository's login key and pinned host keys, for a db node
/// whose spec has one.
pub fn sftp_files(
    spec: &crate::cluster::ClusterSpec,
    secrets: &crate::cluster::secrets::Secrets,
) -> Result<Vec<RenderedFile>, crate::cluster::secrets::SecretsError> {
    use crate::cluster::secrets::SecretsError;
    let Some(known_hosts) = spec.backup.as_ref().and_then(|b| b.known_hosts()) else {
        return Ok(Vec::new());
    };
    let key = secrets
        .backup_sftp_key
        .clone()
        .ok_or(SecretsError::MissingSftpKey)?;
    let public = secrets
        .sftp_public_key()?
        .ok_or(SecretsError::MissingSftpKey)?;
    let file = |name: &str, text: String, mode: u32| RenderedFile {
        name: name.to_string(),
        text,
        mode,
    };
    Ok(vec![
        file("backup-sftp.key", key, 0o600),
        file("backup-sftp.key.pub", format!("{public}\n"), 0o644),
        file("backup-sftp.known_hosts", known_hosts, 0o644),
    ])
}

/// The CA an s3 repository's endpoint is verified with, when the spec
/// names a private one.
pub fn s3_files(spec: &crate::cluster::ClusterSpec) -> Vec<RenderedFile> {
    spec.backup
        .as_ref()
        .and_then(|b| b.s3.as_ref())
        .and_then(|bucket| bucket.ca.clone())
        .map(|ca| RenderedFile {
            name: "backup-s3-ca.pem".into(),
            text: ca,
            mode: 0o644,
        })
        .into_iter()
        .collect()
}

/// `[restore]` on a db node: Patroni's custom bootstrap method.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreView {
    /// The old cluster's stanza.
    pub from: String,
    /// `pgbackrest … --stanza=<from> … restore`; the data directory and
    /// the recovery target come as Patroni's extra `--name=value`
    /// arguments (one argument each: a space needs no quoting).
    pub command: String,
    pub target_time: Option<String>,
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
    pub tls: TlsView,
    pub users: Vec<UserView>,
    pub pools: Vec<PoolView>,
    pub pgbouncer: PgbouncerView,
    pub backup: Option<BackupView>,
    pub restore: Option<RestoreView>,
}

/// A rendered file: its name under the run folder, its text, its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub name: String,
    pub text: String,
    /// 0600 for everything that holds a secret; 0644 for certificates.
    pub mode: u32,
}

/// The node's certificate files, from its secrets: the trusted CAs and its
/// certificate (0644, public), its key twice (0600, one copy per account
/// that reads it: the agent hands `tls/etcd.key` to etcd).
pub fn tls_files(
    secrets: &crate::cluster::secrets::Secrets,
    node: &str,
) -> Result<Vec<RenderedFile>, crate::cluster::secrets::SecretsError> {
    let tls = secrets.tls()?;
    let own = tls
        .nodes
        .get(node)
        .ok_or_else(|| crate::cluster::pki::PkiError::NoNodeCert(node.to_string()))?;
    let file = |name: &str, text: &str, mode: u32| RenderedFile {
        name: format!("tls/{name}"),
        text: text.to_string(),
        mode,
    };
    let mut files = vec![
        file("ca.crt", &tls.trusted_bundle(), 0o644),
        file("node.crt", &own.cert, 0o644),
        file("node.key", &own.key, 0o600),
        file("etcd.key", &own.key, 0o600),
    ];
    if let Some(pem) = &own.backup_client_cert {
        files.push(file(BACKUP_CLIENT_CERT, pem, 0o644));
    }
    Ok(files)
}

/// A db node's pgBackRest client certificate, under `tls/`.
pub const BACKUP_CLIENT_CERT: &str = "backup-client.crt";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    /// Plain display: minijinja's detailed form prints the variables in
    /// scope, which can be passwords.
    #[error("template {name}: {err}")]
    Template { name: String, err: minijinja::Error },
}

/// The templates each role renders, and the file each becomes.
pub fn templates_for(role: &str) -> &'static [(&'static str, &'static str)] {
    match role {
        "db" => &[
            ("patroni.yml.j2", "patroni.yml"),
            ("etcd.yml.j2", "etcd.yml"),
            ("pgbackrest.conf.j2", "pgbackrest.conf"),
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
    env.set_debug(false);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    let mut out = Vec::new();
    for (template, file) in templates_for(&view.role) {
        if view.dcs != "etcd" && *file == "etcd.yml" {
            continue;
        }
        if view.backup.is_none() && *file == "pgbackrest.conf" {
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
            mode: 0o600,
        });
    }
    Ok(out)
}

impl NodeView {
    /// The spec as `me` sees it. Db nodes need the Patroni passwords;
    /// every node needs each application user's verifier.
    pub fn build(
        spec: &crate::cluster::ClusterSpec,
        role: crate::cluster::Role,
        me: &crate::cluster::Member,
        secrets: &crate::cluster::secrets::Secrets,
        bin_dir: &str,
    ) -> Result<NodeView, crate::cluster::secrets::SecretsError> {
        use crate::cluster::secrets::{
            ENV_BACKUP_CIPHER, ENV_REPLICATION, ENV_REST_API, ENV_REWIND, ENV_SUPERUSER,
        };
        use crate::cluster::{Dcs, PoolTarget, Role};
        let member = |m: &crate::cluster::Member| MemberView {
            name: m.name.clone(),
            ip: m.ip.to_string(),
        };
        let ports = &spec.ports;
        let db_secrets = if role == Role::Db {
            DbSecrets {
                superuser: secrets
                    .required_password(
                        "superuser_password",
                        &secrets.superuser_password,
                        ENV_SUPERUSER,
                    )?
                    .to_string(),
                replication: secrets
                    .required_password(
                        "replication_password",
                        &secrets.replication_password,
                        ENV_REPLICATION,
                    )?
                    .to_string(),
                rewind: secrets
                    .required_password("rewind_password", &secrets.rewind_password, ENV_REWIND)?
                    .to_string(),
                rest_api: secrets
                    .required_password(
                        "rest_api_password",
                        &secrets.rest_api_password,
                        ENV_REST_API,
                    )?
                    .to_string(),
            }
        } else {
            DbSecrets::default()
        };
        let users = spec
            .users
            .iter()
            .map(|user| {
                Ok(UserView {
                    name: user.name.clone(),
                    scram: secrets.verifier(&user.name, role.as_str())?.to_string(),
                })
            })
            .collect::<Result<Vec<_>, crate::cluster::secrets::SecretsError>>()?;
        // Every node has its own certificate: checked here, so nothing
        // without one renders or ships.
        tls_files(secrets, &me.name)?;
        let backup = match (&spec.backup, role) {
            (Some(backup), Role::Db) => Some(BackupView {
                stanza: spec.cluster.name.clone(),
                config: format!("{RUN_DIR}/pgbackrest.conf"),
                repo_type: backup.repository.as_str().to_string(),
                repo_path: backup.path.clone(),
                cipher_password: if backup.encrypt {
                    Some(
                        secrets
                            .required_password(
                                "backup_cipher_password",
                                &secrets.backup_cipher_password,
                                ENV_BACKUP_CIPHER,
                            )?
                            .to_string(),
                    )
                } else {
                    None
                },
                retention_full: backup.retention_full,
                retention_diff: backup.retention_diff,
                archive_timeout: backup.archive_timeout,
                restore_processes: backup.restore_processes,
                command: format!(
                    "/usr/bin/pgbackrest --config={RUN_DIR}/pgbackrest.conf --stanza={}",
                    spec.cluster.name
                ),
                sftp: backup.sftp.as_ref().map(|server| SftpView {
                    host: server.host.clone(),
                    port: server.port,
                    user: server.user.clone(),
                    key_file: format!("{RUN_DIR}/backup-sftp.key"),
                    public_key_file: format!("{RUN_DIR}/backup-sftp.key.pub"),
                    known_hosts_file: format!("{RUN_DIR}/backup-sftp.known_hosts"),
                }),
                s3: match &backup.s3 {
                    Some(bucket) => {
                        let (key, key_secret) = secrets.s3_credentials()?;
                        Some(S3View {
                            endpoint: bucket.endpoint.clone(),
                            bucket: bucket.bucket.clone(),
                            region: bucket.region.clone(),
                            uri_style: bucket.uri_style.as_str().to_string(),
                            port: bucket.port,
                            key: key.to_string(),
                            key_secret: key_secret.to_string(),
                            ca_file: bucket
                                .ca
                                .as_ref()
                                .map(|_| format!("{RUN_DIR}/backup-s3-ca.pem")),
                        })
                    }
                    None => None,
                },
                server: BackupServerView {
                    address: me.ip.to_string(),
                    port: spec.ports.pgbackrest,
                    clients: spec.db_members.iter().map(|m| m.name.clone()).collect(),
                },
            }),
            _ => None,
        };
        // pgBackRest's own recovery settings (restore_command for the old
        // stanza, the target) are kept: Patroni's keep_existing_recovery_conf.
        let restore = match (&spec.restore, &backup) {
            (Some(restore), Some(_)) => Some(RestoreView {
                from: restore.from.clone(),
                command: format!(
                    "/usr/bin/pgbackrest --config={RUN_DIR}/pgbackrest.conf --stanza={} --delta restore",
                    restore.from
                ),
                target_time: restore.target_time.clone(),
            }),
            _ => None,
        };
        Ok(NodeView {
            cluster: ClusterInfo {
                name: spec.cluster.name.clone(),
                cidr: spec.cluster.cidr.clone(),
            },
            me: member(me),
            role: role.as_str().to_string(),
            db_members: spec.db_members.iter().map(member).collect(),
            haproxy_members: spec.haproxy_members.iter().map(member).collect(),
            dcs: match spec.cluster.dcs {
                Dcs::Etcd => "etcd".into(),
                Dcs::Raft => "raft".into(),
            },
            etcd: EtcdView {
                initial_cluster: spec
                    .db_members
                    .iter()
                    .map(|m| format!("{}=https://{}:{}", m.name, m.ip, ports.etcd_peer))
                    .collect::<Vec<_>>()
                    .join(","),
                state: "new".into(),
            },
            ports: Ports {
                postgres: ports.postgres,
                patroni: ports.patroni,
                etcd_client: ports.etcd_client,
                etcd_peer: ports.etcd_peer,
                raft: ports.raft,
                haproxy_primary: ports.haproxy_primary,
                haproxy_replicas: ports.haproxy_replicas,
                haproxy_stats: ports.haproxy_stats,
                pgbouncer: ports.pgbouncer,
                pgbackrest: ports.pgbackrest,
            },
            health: HealthCheck::default(),
            patroni: PatroniTimings {
                ttl: spec.patroni.ttl,
                loop_wait: spec.patroni.loop_wait,
                retry_timeout: spec.patroni.retry_timeout,
                maximum_lag_on_failover: spec.patroni.maximum_lag_on_failover,
                synchronous_mode: spec.patroni.synchronous_mode,
                // One db member has no replica to wait for: strict mode
                // would make every commit wait forever.
                synchronous_mode_strict: spec.patroni.synchronous_mode
                    && spec.patroni.synchronous_mode_strict
                    && spec.db_members.len() > 1,
            },
            postgresql: PostgresView {
                data_dir: spec.postgresql.data_dir.clone(),
                bin_dir: bin_dir.to_string(),
                parameters: spec.effective_parameters(),
            },
            paths: Paths {
                pgpass: "/run/postgresql/.pgpass".into(),
                socket_dir: "/run/postgresql".into(),
                etcd_dir: "/var/lib/etcd/data".into(),
                raft_dir: "/var/lib/postgresql/raft".into(),
                userlist: format!("{RUN_DIR}/userlist.txt"),
            },
            secrets: db_secrets,
            tls: TlsView::default(),
            users,
            pools: spec
                .pools
                .iter()
                .map(|pool| PoolView {
                    name: pool.name.clone(),
                    database: pool.database.clone(),
                    target: match pool.target {
                        PoolTarget::Primary => "primary".into(),
                        PoolTarget::Replicas => "replicas".into(),
                    },
                    pool_size: pool.size,
                })
                .collect(),
            pgbouncer: PgbouncerView {
                pool_mode: spec.pgbouncer.pool_mode.clone(),
                max_client_conn: spec.pgbouncer.max_client_conn,
                default_pool_size: spec.pgbouncer.default_pool_size,
            },
            backup,
            restore,
        })
    }
}
