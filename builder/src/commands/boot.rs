//! `nodeimg boot`: the image's entrypoint and PID 1. Finds out who this
//! node is, finds it in the cluster spec, renders its configuration, and
//! supervises the role's services (db: etcd then Patroni; haproxy:
//! HAProxy and PgBouncer).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::agent::identity::{self, HttpPolicy, Identity, MetadataSource};
use crate::agent::render::{self, NodeView, RUN_DIR, RenderedFile};
use crate::agent::supervise::{self, ProcessTable, ServiceSpec};
use crate::cluster::secrets::Secrets;
use crate::cluster::{ClusterSpec, Dcs, Member, Role};

pub const ROLE_FILE: &str = "/usr/share/nodeimg/role";
pub const DEFAULT_SECRETS: &str = "/run/secrets/nodeimg.toml";

pub struct BootOptions {
    pub cluster: PathBuf,
    pub secrets: Option<PathBuf>,
    pub metadata: MetadataSource,
    pub role: Option<String>,
    pub templates: PathBuf,
    pub render_only: Option<PathBuf>,
}

/// Everything decided before any service starts.
struct Node {
    role: Role,
    me: Member,
    spec: ClusterSpec,
    view: NodeView,
    files: Vec<RenderedFile>,
}

pub fn run(options: &BootOptions) -> anyhow::Result<i32> {
    let node = prepare(options)?;
    if let Some(dir) = &options.render_only {
        write_files(dir, &node.files, None)?;
        eprintln!(
            "rendered {} files for {} ({}) into {}",
            node.files.len(),
            node.me.name,
            node.role.as_str(),
            dir.display()
        );
        return Ok(0);
    }
    let accounts = Accounts::read()?;
    write_files(Path::new(RUN_DIR), &node.files, Some(&accounts))?;
    let services = match node.role {
        Role::Db => db_services(&node, &accounts)?,
        Role::Haproxy => haproxy_services(&accounts)?,
    };
    let table = ProcessTable::default();
    if node.role == Role::Db
        && node.spec.cluster.dcs == Dcs::Etcd
        && node.spec.patroni.fence_dead_leader
    {
        let config = fence_config(&node);
        std::thread::spawn(move || crate::agent::fencing::watch(config));
    }
    if node.role == Role::Db && (!node.spec.users.is_empty() || !node.spec.databases.is_empty()) {
        start_leader_tasks(&node, &accounts, table.clone());
    }
    supervise::run(services, &table)
}

fn prepare(options: &BootOptions) -> anyhow::Result<Node> {
    let role_name = match &options.role {
        Some(role) => role.clone(),
        None => std::fs::read_to_string(ROLE_FILE)
            .with_context(|| {
                format!(
                    "cannot read {ROLE_FILE}: is this a nodeimg image? Give the role with --role"
                )
            })?
            .trim()
            .to_string(),
    };
    let role = match role_name.as_str() {
        "db" => Role::Db,
        "haproxy" => Role::Haproxy,
        other => bail!("unknown role {other:?}: nodeimg images are db or haproxy"),
    };
    let spec = ClusterSpec::load(&options.cluster)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let identity = identity::detect(&options.metadata, &env, &HttpPolicy::default())
        .context("cannot find out who this node is")?;
    let (member_role, me) = find_self(&spec, &identity, &options.cluster)?;
    tracing::info!(
        "identity from {}: {} ({}, {}), cluster {}",
        identity.source,
        me.name,
        me.ip,
        member_role.as_str(),
        spec.cluster.name
    );
    if member_role != role {
        bail!(
            "{} is a {} member in {}, but this image is the {} image: run the {} image on it",
            me.name,
            member_role.as_str(),
            options.cluster.display(),
            role.as_str(),
            member_role.as_str()
        );
    }
    let secrets = load_secrets(options.secrets.as_deref(), role)?;
    let bin_dir = postgres_bin_dir();
    let view = NodeView::build(&spec, role, &me, &secrets, &bin_dir)?;
    let files = render::render(&view, &options.templates)?;
    if role == Role::Db
        && spec.cluster.dcs == Dcs::Raft
        && options.render_only.is_none()
        && !Path::new("/usr/lib/python3/dist-packages/pysyncobj").exists()
    {
        bail!(
            "the cluster spec asks for dcs = \"raft\", but this image has no pysyncobj (Patroni's Raft): add python3-pysyncobj to recipes/db.toml, or move the cluster to etcd"
        );
    }
    Ok(Node {
        role,
        me,
        spec,
        view,
        files,
    })
}

/// By private IP first (what the metadata service knows for sure), then
/// by name.
fn find_self(
    spec: &ClusterSpec,
    identity: &Identity,
    path: &Path,
) -> anyhow::Result<(Role, Member)> {
    for ip in &identity.private_ips {
        if let Some((role, member)) = spec.member_by_ip(*ip) {
            return Ok((role, member.clone()));
        }
    }
    if let Some(name) = &identity.name
        && let Some((role, member)) = spec.member_by_name(name)
    {
        if !identity.private_ips.is_empty() {
            bail!(
                "this node is named {name} but its private IPs ({}) are not {}'s {} in {}: fix the spec or the server",
                join(&identity.private_ips),
                name,
                member.ip,
                path.display()
            );
        }
        return Ok((role, member.clone()));
    }
    bail!(
        "this node (name {}, private IPs {}) is not in the cluster spec {}: add it as a [[db]] or [[haproxy]] member",
        identity.name.as_deref().unwrap_or("unknown"),
        if identity.private_ips.is_empty() {
            "none".to_string()
        } else {
            join(&identity.private_ips)
        },
        path.display()
    )
}

fn join(ips: &[std::net::Ipv4Addr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_secrets(path: Option<&Path>, role: Role) -> anyhow::Result<Secrets> {
    let default = Path::new(DEFAULT_SECRETS);
    let mut secrets = match path {
        Some(path) => Secrets::read(path)?,
        None if default.exists() => Secrets::read(default)?,
        None => Secrets::default(),
    };
    secrets.merge_env(std::env::vars());
    if role == Role::Haproxy && secrets.users.values().any(|u| u.password.is_some()) {
        tracing::warn!(
            "the secrets given to this proxy node hold plaintext application passwords; it needs only the SCRAM verifiers (`nodeimg secrets` writes per-role files)"
        );
    }
    Ok(secrets)
}

/// The newest PostgreSQL in the image.
fn postgres_bin_dir() -> String {
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    majors.sort();
    format!(
        "/usr/lib/postgresql/{}/bin",
        majors.last().copied().unwrap_or(17)
    )
}

/// uid/gid of the accounts services run as, from the image's /etc/passwd.
struct Accounts {
    postgres: (u32, u32),
    etcd: Option<(u32, u32)>,
    haproxy: Option<(u32, u32)>,
}

impl Accounts {
    fn read() -> anyhow::Result<Accounts> {
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
fn write_files(
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
