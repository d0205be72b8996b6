//! Who this node is and what it runs: its role, its member entry in the
//! cluster spec, its secrets and its rendered configuration, all decided
//! before any service starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::agent::identity::{self, HttpPolicy, Identity, MetadataSource};
use crate::agent::render::{self, NodeView, RenderedFile};
use crate::cluster::secrets::Secrets;
use crate::cluster::{ClusterSpec, Dcs, Member, Role};

pub const ROLE_FILE: &str = "/usr/share/nodeimg/role";
pub const DEFAULT_SECRETS: &str = "/run/secrets/nodeimg.toml";

/// Where a node's inputs come from.
pub struct NodeSources {
    pub cluster: PathBuf,
    pub secrets: Option<PathBuf>,
    pub metadata: MetadataSource,
    pub role: Option<String>,
    pub templates: PathBuf,
    /// Only rendering (no service starts): skips checks of the running image.
    pub render_only: bool,
}

/// Everything decided before any service starts.
pub struct Node {
    pub role: Role,
    pub me: Member,
    pub spec: ClusterSpec,
    pub view: NodeView,
    pub files: Vec<RenderedFile>,
}

pub fn prepare(options: &NodeSources) -> anyhow::Result<Node> {
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
    warn_if_expiring(&secrets, &me.name);
    let (view, files) = render_all(&spec, role, &me, &secrets, &options.templates)?;
    if role == Role::Db
        && spec.cluster.dcs == Dcs::Raft
        && !options.render_only
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

fn render_all(
    spec: &ClusterSpec,
    role: Role,
    me: &Member,
    secrets: &Secrets,
    templates: &Path,
) -> anyhow::Result<(NodeView, Vec<RenderedFile>)> {
    let view = NodeView::build(spec, role, me, secrets, &postgres_bin_dir())?;
    let mut files = render::render(&view, templates)?;
    files.extend(render::tls_files(secrets, &me.name)?);
    if role == Role::Db {
        files.extend(render::sftp_files(spec, secrets)?);
        files.extend(render::s3_files(spec));
    }
    Ok((view, files))
}

/// What a reload found: the node's new files, and the db members the
/// re-read spec no longer lists.
pub struct Reloaded {
    pub files: Vec<RenderedFile>,
    pub removed_db: Vec<Member>,
}

/// Re-reads the cluster spec and the secrets (a rotation, members added
/// or removed) and renders the node's files again; the node keeps the
/// name and address it booted with. Nothing is changed when it fails.
pub fn reload(node: &mut Node, options: &NodeSources) -> anyhow::Result<Reloaded> {
    let spec = ClusterSpec::load(&options.cluster)?;
    let name = &node.me.name;
    let Some((role, me)) = spec.member_by_name(name) else {
        bail!(
            "this node ({name}) is no longer in the cluster spec {}: it keeps running as it was; stop it and delete the server (the db nodes the spec keeps remove it from etcd when they reload)",
            options.cluster.display()
        );
    };
    if role != node.role || me.ip != node.me.ip {
        bail!(
            "the cluster spec {} now makes {name} a {} member at {}, but it runs the {} image at {}: a node keeps its role and address; replace the server instead",
            options.cluster.display(),
            role.as_str(),
            me.ip,
            node.role.as_str(),
            node.me.ip
        );
    }
    let me = me.clone();
    let secrets = load_secrets(options.secrets.as_deref(), node.role)?;
    warn_if_expiring(&secrets, name);
    let (view, files) = render_all(&spec, node.role, &me, &secrets, &options.templates)?;
    let removed_db = node
        .spec
        .db_members
        .iter()
        .filter(|old| spec.db_members.iter().all(|new| new.name != old.name))
        .cloned()
        .collect();
    node.spec = spec;
    node.me = me;
    node.view = view;
    Ok(Reloaded { files, removed_db })
}

/// A certificate with less than a third of its life left is logged at
/// every boot and reload.
fn warn_if_expiring(secrets: &Secrets, node: &str) {
    let Some(tls) = &secrets.tls else { return };
    let now = time::OffsetDateTime::now_utc();
    let mine = tls.nodes.get(node).map(|n| (node, &n.cert));
    for (name, pem) in std::iter::once(("the cluster CA", &tls.ca_cert)).chain(mine) {
        if let Ok(info) = crate::cluster::pki::inspect(name, pem, now)
            && info.status != "ok"
        {
            tracing::warn!(
                "{name}'s certificate {} ({} days left, until {}): run `nodeimg secrets rotate` and deliver the new files",
                if info.status == "expired" {
                    "has expired"
                } else {
                    "is due for renewal"
                },
                info.seconds_left / 86400,
                info.not_after
            );
        }
    }
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
pub fn postgres_bin_dir() -> String {
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
