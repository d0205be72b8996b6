//! The services a node's agent supervises (db: etcd then Patroni; haproxy:
//! HAProxy and PgBouncer), the files and folders they need, and the
//! agent's own background tasks (fencing, the leader's bootstrap SQL).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::agent::node::Node;
use crate::agent::render::{RUN_DIR, RenderedFile};
use crate::agent::supervise::{ProcessTable, ServiceSpec};
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

/// Which account reads each rendered file.
fn file_owner(name: &str, accounts: &Accounts) -> (u32, u32) {
    match name {
        "etcd.yml" => accounts.etcd.unwrap_or((0, 0)),
        "haproxy.cfg" => (0, 0),
        _ => accounts.postgres,
    }
}

/// Writes the rendered files 0600 (they hold passwords or verifiers), each
/// through a temporary name.
pub fn write_files(
    dir: &Path,
    files: &[RenderedFile],
    accounts: Option<&Accounts>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for file in files {
        let path = dir.join(&file.name);
        crate::util::fsutil::write_atomic(&path, file.text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(accounts) = accounts {
            let (uid, gid) = file_owner(&file.name, accounts);
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .with_context(|| format!("cannot hand {} to uid {uid}", path.display()))?;
        }
    }
    Ok(())
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
    Ok(services)
}

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

fn fence_config(node: &Node) -> crate::agent::fencing::FenceConfig {
    let ports = &node.view.ports;
    let timings = &node.spec.patroni;
    crate::agent::fencing::FenceConfig {
        etcd: format!("http://127.0.0.1:{}", ports.etcd_client),
        // Patroni's namespace (patroni.yml.j2) and scope.
        prefix: format!("/nodeimg/{}/", node.spec.cluster.name),
        me: node.me.name.clone(),
        members: node
            .spec
            .db_members
            .iter()
            .map(|m| (m.name.clone(), m.ip))
            .collect(),
        patroni_port: ports.patroni,
        etcd_port: ports.etcd_client,
        grace: crate::agent::fencing::FenceConfig::grace_for(
            timings.loop_wait,
            timings.retry_timeout,
        ),
    }
}

/// On the leader, creates the spec's users and databases (Patroni 4 no
/// longer does), again after every promotion; everything is idempotent.
fn start_leader_tasks(node: &Node, accounts: &Accounts, table: ProcessTable) {
    let url = format!("http://{}:{}/primary", node.me.ip, node.view.ports.patroni);
    let sql = crate::agent::bootstrap_sql::script(&node.spec, &node.view.users);
    let psql = format!("{}/psql", node.view.postgresql.bin_dir);
    let socket_dir = node.view.paths.socket_dir.clone();
    let port = node.view.ports.postgres;
    let postgres = accounts.postgres;
    std::thread::spawn(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .new_agent();
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
/// leader (etcd only, when the spec keeps it on) and, when the spec has
/// users or databases, the leader's bootstrap SQL.
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
}
