//! The services a node's agent supervises (db: etcd, Patroni and with
//! `[backup]` pgBackRest's TLS server; haproxy: HAProxy and PgBouncer), the
//! files and folders they need, and the agent's own background tasks
//! (fencing, the leader's bootstrap SQL, backups).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::agent::node::Node;
use crate::agent::render::{RUN_DIR, RenderedFile};
use crate::agent::supervise::{ProcessTable, Reload, ServiceSpec};
use crate::cluster::{Dcs, Role};

/// uid/gid of the accounts services run as, from the image's /etc/passwd.
pub struct Accounts {
    postgres: (u32, u32),
    etcd: Option<(u32, u32)>,
    haproxy: Option<(u32, u32)>,
}

impl Accounts {
    pub fn read() -> anyhow::Result<Accounts> {
        let lookup = |name: &str| -> Option<(u32, u32)> {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
        };
        Ok(Accounts {
            postgres: lookup("postgres")
                .context("the image has no postgres account (recipe [accounts])")?,
            etcd: lookup("etcd"),
            haproxy: lookup("haproxy"),
        })
    }
}

/// Which account reads each rendered file. HAProxy reads its files as
/// root, before it drops to its own account.
fn file_owner(name: &str, accounts: &Accounts) -> (u32, u32) {
    match name {
        "etcd.yml" | "tls/etcd.key" => accounts.etcd.unwrap_or((0, 0)),
        "haproxy.cfg" => (0, 0),
        _ => accounts.postgres,
    }
}

/// Writes the rendered files with their modes (0600 for all that hold a
/// secret), each through a temporary name, owned by the account that reads
/// it; returns the names whose content changed.
pub fn write_files(
    dir: &Path,
    files: &[RenderedFile],
    accounts: Option<&Accounts>,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for file in files {
        let path = dir.join(&file.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if std::fs::read(&path).is_ok_and(|old| old == file.text.as_bytes()) {
            continue;
        }
        let owner = accounts.map(|a| file_owner(&file.name, a));
        crate::util::fsutil::write_atomic_owned(&path, file.text.as_bytes(), file.mode, owner)
            .with_context(|| format!("cannot write {}", path.display()))?;
        changed.push(file.name.clone());
    }
    Ok(changed)
}

/// `docker exec <db> patronictl list` works with no arguments: patronictl
/// reads ~/.config/patroni/patronictl.yaml by default, which points at the
/// node's rendered Patroni configuration (CA, client certificate, REST API
/// credentials, etcd over TLS).
pub fn link_patronictl_config() -> anyhow::Result<()> {
    let home = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_else(|| "/root".into());
    let dir = home.join(".config/patroni");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let link = dir.join("patronictl.yaml");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("{RUN_DIR}/patroni.yml"), &link)
        .with_context(|| format!("cannot link {}", link.display()))
}

/// A folder owned by `owner`, created if missing (volumes may come in
/// owned by root).
fn owned_dir(path: &str, owner: (u32, u32), mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {path}"))?;
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
        .with_context(|| format!("cannot chown {path}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {path}"))?;
    Ok(())
}

fn service_env(home: &str, path: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), path.into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), home.into()),
    ]
}

fn db_services(node: &Node, accounts: &Accounts) -> anyhow::Result<Vec<ServiceSpec>> {
    let postgres = accounts.postgres;
    let data_dir = Path::new(&node.view.postgresql.data_dir);
    if let Some(parent) = data_dir.parent() {
        owned_dir(&parent.to_string_lossy(), postgres, 0o755)?;
    }
    owned_dir(&node.view.paths.socket_dir, postgres, 0o2775)?;
    // A posix repository is a mounted path pgBackRest writes as postgres.
    if let Some(backup) = node.view.backup.as_ref().filter(|b| b.repo_type == "posix") {
        owned_dir(&backup.repo_path, postgres, 0o750)?;
    }
    let path = format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        node.view.postgresql.bin_dir
    );
    let mut services = Vec::new();
    if node.spec.cluster.dcs == Dcs::Etcd {
        let etcd = accounts
            .etcd
            .context("the image has no etcd account (recipe [accounts])")?;
        let etcd_dir = Path::new(&node.view.paths.etcd_dir);
        if let Some(parent) = etcd_dir.parent() {
            owned_dir(&parent.to_string_lossy(), etcd, 0o700)?;
        }
        services.push(ServiceSpec {
            name: "etcd".into(),
            program: "/usr/bin/etcd".into(),
            args: vec!["--config-file".into(), format!("{RUN_DIR}/etcd.yml")],
            env: service_env("/var/lib/etcd", &path),
            uid: Some(etcd.0),
            gid: Some(etcd.1),
            workdir: Some("/var/lib/etcd".into()),
            stop_timeout: Duration::from_secs(10),
        });
    }
    services.push(ServiceSpec {
        name: "patroni".into(),
        program: "/usr/bin/patroni".into(),
        args: vec![format!("{RUN_DIR}/patroni.yml")],
        env: service_env("/var/lib/postgresql", &path),
        uid: Some(postgres.0),
        gid: Some(postgres.1),
        workdir: Some("/var/lib/postgresql".into()),
        // A primary's clean shutdown plus releasing the leader key.
        stop_timeout: Duration::from_secs(25),
    });
    // With [backup]: pgBackRest's TLS server, on the node's private address
    // only, for a replica's backup when this node is primary.
    if let Some(backup) = &node.view.backup {
        services.push(ServiceSpec {
            name: PGBACKREST_SERVER.into(),
            program: "/usr/bin/pgbackrest".into(),
            args: vec![format!("--config={}", backup.config), "server".into()],
            env: service_env("/var/lib/postgresql", &path),
            uid: Some(postgres.0),
            gid: Some(postgres.1),
            workdir: Some("/var/lib/postgresql".into()),
            stop_timeout: Duration::from_secs(5),
        });
    }
    Ok(services)
}

const PGBACKREST_SERVER: &str = "pgbackrest-server";

/// A replica further behind than this leaves scheduled backups to another
/// (a backup from a standby waits for it to replay the primary's start
/// point).
const REPLICA_LAG: &str = "64MB";

fn haproxy_services(accounts: &Accounts) -> anyhow::Result<Vec<ServiceSpec>> {
    let path = "/usr/sbin:/usr/bin:/sbin:/bin";
    if accounts.haproxy.is_none() {
        bail!("the image has no haproxy account (recipe [accounts])");
    }
    Ok(vec![
        ServiceSpec {
            name: "haproxy".into(),
            program: "/usr/sbin/haproxy".into(),
            // Foreground, master-worker; it drops to the haproxy user.
            args: vec![
                "-W".into(),
                "-db".into(),
                "-f".into(),
                format!("{RUN_DIR}/haproxy.cfg"),
            ],
            env: service_env("/var/lib/haproxy", path),
            uid: None,
            gid: None,
            workdir: None,
            stop_timeout: Duration::from_secs(5),
        },
        ServiceSpec {
            name: "pgbouncer".into(),
            program: "/usr/sbin/pgbouncer".into(),
            args: vec![format!("{RUN_DIR}/pgbouncer.ini")],
            env: service_env("/var/lib/postgresql", path),
            uid: Some(accounts.postgres.0),
            gid: Some(accounts.postgres.1),
            workdir: Some("/tmp".into()),
            stop_timeout: Duration::from_secs(5),
        },
    ])
}

/// The node's TLS files, as the agent's own HTTPS clients use them.
fn client_tls(node: &Node) -> crate::agent::https::ClientTls {
    let tls = &node.view.tls;
    crate::agent::https::ClientTls {
        ca: tls.ca.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    }
}

fn fence_config(node: &Node) -> crate::agent::fencing::FenceConfig {
    let ports = &node.view.ports;
    let timings = &node.spec.patroni;
    crate::agent::fencing::FenceConfig {
        etcd: format!("https://127.0.0.1:{}", ports.etcd_client),
        tls: client_tls(node),
        // Patroni's namespace (patroni.yml.j2) and scope.
        prefix: format!("/nodeimg/{}/", node.spec.cluster.name),
        me: node.me.name.clone(),
        grace: crate::agent::fencing::FenceConfig::grace_for(
            timings.loop_wait,
            timings.retry_timeout,
        ),
    }
}

/// On the leader, creates the spec's users and databases (Patroni 4 no
/// longer does), again after every promotion; everything is idempotent.
fn start_leader_tasks(node: &Node, accounts: &Accounts, table: ProcessTable) {
    let url = format!("https://{}:{}/primary", node.me.ip, node.view.ports.patroni);
    let tls = client_tls(node);
    let sql = crate::agent::bootstrap_sql::script(&node.spec, &node.view.users);
    let psql = format!("{}/psql", node.view.postgresql.bin_dir);
    let socket_dir = node.view.paths.socket_dir.clone();
    let port = node.view.ports.postgres;
    let postgres = accounts.postgres;
    std::thread::spawn(move || {
        // A status other than 200 is an error: not the leader.
        let agent = tls.agent_when_ready("leader tasks");
        let script_path = format!("{RUN_DIR}/bootstrap.sql");
        let mut applied = false;
        loop {
            std::thread::sleep(Duration::from_secs(2));
            let leader = agent
                .get(&url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200);
            if !leader {
                applied = false;
                continue;
            }
            if applied {
                continue;
            }
            if let Err(err) =
                crate::util::fsutil::write_atomic(Path::new(&script_path), sql.as_bytes(), 0o600)
                    .and_then(|()| {
                        std::os::unix::fs::chown(&script_path, Some(postgres.0), Some(postgres.1))
                    })
            {
                tracing::error!("cannot write {script_path}: {err}");
                continue;
            }
            let mut command = std::process::Command::new(&psql);
            std::os::unix::process::CommandExt::uid(&mut command, postgres.0);
            std::os::unix::process::CommandExt::gid(&mut command, postgres.1);
            command
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &socket_dir])
                .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-f", &script_path])
                .env_clear()
                .env("LANG", "C.UTF-8")
                .env("PGAPPNAME", "nodeimg");
            match table.run(command) {
                Ok(output) if output.code == 0 => {
                    tracing::info!("leader: application users and databases are in place");
                    applied = true;
                }
                Ok(output) => tracing::warn!(
                    "leader: creating users and databases failed ({}): {}; retrying",
                    output.code,
                    output.stderr.trim()
                ),
                Err(err) => tracing::warn!("leader: cannot run {psql}: {err}; retrying"),
            }
        }
    });
}

/// The role's services, in start order.
pub fn for_node(node: &Node, accounts: &Accounts) -> anyhow::Result<Vec<ServiceSpec>> {
    match node.role {
        Role::Db => db_services(node, accounts),
        Role::Haproxy => haproxy_services(accounts),
    }
}

/// What the agent runs beside the services on a db node: fencing of a dead
/// leader (etcd only, when the spec keeps it on), when the spec has users
/// or databases the leader's bootstrap SQL, and with `[backup]` the
/// primary's stanza and archiving checks.
pub fn start_background_tasks(node: &Node, accounts: &Accounts, table: &ProcessTable) {
    if node.role != Role::Db {
        return;
    }
    if node.spec.cluster.dcs == Dcs::Etcd && node.spec.patroni.fence_dead_leader {
        let config = fence_config(node);
        std::thread::spawn(move || crate::agent::fencing::watch(config));
    }
    if !node.spec.users.is_empty() || !node.spec.databases.is_empty() {
        start_leader_tasks(node, accounts, table.clone());
    }
    // A blank data directory may be the restore's: say early whether the
    // old stanza can be read (Patroni only logs the failed command, and
    // retries it forever).
    if let (Some(backup), Some(restore)) = (&node.view.backup, &node.view.restore)
        && !Path::new(&node.view.postgresql.data_dir)
            .join("PG_VERSION")
            .exists()
    {
        crate::agent::restore::check_source(backup, restore, accounts.postgres, table.clone());
    }
    if let Some(backup) = &node.view.backup {
        let psql = vec![
            format!("{}/psql", node.view.postgresql.bin_dir),
            "-X".into(),
            "-h".into(),
            node.view.paths.socket_dir.clone(),
            "-p".into(),
            node.view.ports.postgres.to_string(),
            "-U".into(),
            "postgres".into(),
            "-d".into(),
            "postgres".into(),
        ];
        let (full_every, diff_every, drill_every) = node
            .spec
            .backup
            .as_ref()
            .map(|b| b.schedule())
            .unwrap_or_default();
        if node.spec.cluster.dcs == Dcs::Etcd {
            crate::agent::backup_schedule::start(
                crate::agent::backup_schedule::Schedule {
                    me: node.me.name.clone(),
                    prefix: format!("/nodeimg/{}/", node.spec.cluster.name),
                    etcd: format!("https://127.0.0.1:{}", node.view.ports.etcd_client),
                    tls: client_tls(node),
                    primary_url: format!(
                        "https://{}:{}/primary",
                        node.me.ip, node.view.ports.patroni
                    ),
                    replica_url: format!(
                        "https://{}:{}/replica?lag={REPLICA_LAG}",
                        node.me.ip, node.view.ports.patroni
                    ),
                    config: backup.config.clone(),
                    full_every,
                    diff_every,
                    drill_every,
                    drill: crate::agent::backup_drill::DrillSetup {
                        pgbackrest: backup.command.clone(),
                        bin_dir: node.view.postgresql.bin_dir.clone(),
                        scratch: "/var/lib/postgresql/nodeimg-drill".into(),
                        postgres: accounts.postgres,
                    },
                    has_replicas: node.spec.db_members.len() > 1,
                },
                table.clone(),
            );
        }
        crate::agent::backup::start_primary_tasks(
            backup.clone(),
            format!("https://{}:{}/primary", node.me.ip, node.view.ports.patroni),
            client_tls(node),
            psql,
            accounts.postgres,
            table.clone(),
        );
    }
}

/// What each service needs once `changed` files (names under the run
/// folder) were rewritten by a secrets rotation:
/// - Patroni re-reads its configuration on SIGHUP, loads a REST API
///   certificate whose serial changed and reloads PostgreSQL, which re-reads
///   its SSL files: no connection drops.
/// - etcd loads its certificate and key on every new TLS handshake, but its
///   trusted CAs only at start: restarted only when the CA bundle changed
///   (a CA rotation; one node at a time keeps quorum).
/// - HAProxy (master-worker) reloads on SIGUSR2 without dropping
///   connections; only its CA file and configuration concern it.
/// - PgBouncer re-reads its configuration and TLS files on SIGHUP.
pub fn reload_plan(role: Role, changed: &[String]) -> Vec<(String, Reload)> {
    use nix::sys::signal::Signal;
    let any = |names: &[&str]| changed.iter().any(|c| names.contains(&c.as_str()));
    let mut plan = Vec::new();
    match role {
        Role::Db => {
            if any(&["tls/ca.crt"]) {
                plan.push(("etcd".to_string(), Reload::Restart));
            }
            if any(&["patroni.yml", "tls/ca.crt", "tls/node.crt", "tls/node.key"]) {
                plan.push(("patroni".to_string(), Reload::Signal(Signal::SIGHUP)));
            }
            // It reads its certificates and its clients' names at start; a
            // backup it serves then fails and is retried a minute later.
            if any(&[
                "pgbackrest.conf",
                "tls/ca.crt",
                "tls/node.crt",
                "tls/node.key",
            ]) {
                plan.push((PGBACKREST_SERVER.to_string(), Reload::Restart));
            }
        }
        Role::Haproxy => {
            if any(&["haproxy.cfg", "tls/ca.crt"]) {
                plan.push(("haproxy".to_string(), Reload::Signal(Signal::SIGUSR2)));
            }
            if any(&[
                "pgbouncer.ini",
                "userlist.txt",
                "tls/ca.crt",
                "tls/node.crt",
                "tls/node.key",
            ]) {
                plan.push(("pgbouncer".to_string(), Reload::Signal(Signal::SIGHUP)));
            }
        }
    }
    plan
}

/// Before etcd starts on a db node: how it starts (from its data, the
/// cluster's first bootstrap, or joining the running cluster), and when it
/// joins, etcd.yml rendered again with the cluster's membership.
pub fn prepare_etcd(node: &mut Node, templates: &Path, accounts: &Accounts) -> anyhow::Result<()> {
    use crate::agent::etcd_membership::{self, Peer, Start};
    let ports = &node.view.ports;
    let peer = |m: &crate::agent::render::MemberView| Peer {
        name: m.name.clone(),
        client_url: format!("https://{}:{}", m.ip, ports.etcd_client),
        peer_url: format!("https://{}:{}", m.ip, ports.etcd_peer),
    };
    let me = peer(&node.view.me);
    let peers: Vec<Peer> = node.view.db_members.iter().map(peer).collect();
    let start = etcd_membership::prepare(
        &me,
        &peers,
        Path::new(&node.view.paths.etcd_dir),
        &client_tls(node),
        Duration::from_secs(300),
    )
    .map_err(|err| anyhow::anyhow!("etcd cannot join the cluster: {err}"))?;
    // A blank PostgreSQL data directory: this node is new or rebuilt. If
    // the leader key still names it, that is its dead former self's.
    let data_dir = Path::new(&node.view.postgresql.data_dir);
    if !data_dir.join("PG_VERSION").exists() {
        let leader_key = format!("/nodeimg/{}/leader", node.spec.cluster.name);
        match etcd_membership::end_former_leadership(&me, &peers, &leader_key, &client_tls(node)) {
            Ok(true) => tracing::warn!(
                "patroni: the leader key still named {} (this node before it was rebuilt blank): revoked its lease so the synchronous standby takes over before this node starts",
                me.name
            ),
            Ok(false) => {}
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot check whether the leader key names this rebuilt node: {err}; refusing to start Patroni on an empty data directory until etcd answers"
                ));
            }
        }
    }
    if let Start::Join { initial_cluster } = start {
        tracing::info!("etcd: joining the running cluster as {initial_cluster}");
        node.view.etcd.initial_cluster = initial_cluster;
        node.view.etcd.state = "existing".into();
        let etcd_yml: Vec<RenderedFile> = crate::agent::render::render(&node.view, templates)?
            .into_iter()
            .filter(|f| f.name == "etcd.yml")
            .collect();
        write_files(Path::new(RUN_DIR), &etcd_yml, Some(accounts))?;
    }
    Ok(())
}

/// After a reload whose spec dropped db members: they leave etcd, one at a
/// time and only while the rest keeps a quorum (in the background; the
/// outcome is logged).
pub fn remove_dropped_members(
    node: &Node,
    dropped: &[crate::cluster::Member],
    pending: &crate::agent::etcd_quorum::PendingRemovals,
) {
    if node.role != Role::Db || node.spec.cluster.dcs != Dcs::Etcd {
        return;
    }
    let ports = &node.view.ports;
    let peers = dropped
        .iter()
        .map(|m| crate::agent::etcd_membership::Peer {
            name: m.name.clone(),
            client_url: format!("https://{}:{}", m.ip, ports.etcd_client),
            peer_url: format!("https://{}:{}", m.ip, ports.etcd_peer),
        })
        .collect();
    pending.request(
        peers,
        format!("https://127.0.0.1:{}", ports.etcd_client),
        client_tls(node),
        format!("/nodeimg/{}/leader", node.spec.cluster.name),
    );
}
