//! `#cloud-config` user-data from `cloud-init/node.yaml.j2`: one file per
//! node (it carries that node's own TLS key, which no other node gets), with
//! the cluster spec and the node's secrets inside, the image pinned by
//! digest, a host firewall for the cluster's ports, and within Hetzner's
//! 32 KiB limit. Bundles render it per role, without secrets.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::cluster::backup::RepositoryKind;
use crate::cluster::secrets::Secrets;
use crate::cluster::{ClusterSpec, Dcs, Member, Role};
use crate::ship::host_runtime::HostRuntime;

/// Hetzner's limit on `user_data`, after any encoding.
pub const USER_DATA_LIMIT: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CloudInitError {
    #[error(
        "the {role} image was never built ({path} is missing): run `nodeimg build recipes/{role}.toml` first"
    )]
    NotBuilt { role: String, path: String },
    #[error(
        "[images] {role} is not set in the cluster spec: name the registry repository the {role} nodes pull from (e.g. registry.example.com/nodeimg/{role})"
    )]
    NoRepository { role: String },
    #[error(transparent)]
    Secrets(#[from] crate::cluster::secrets::SecretsError),
    #[error(transparent)]
    HostRuntime(#[from] crate::ship::host_runtime::HostRuntimeError),
    #[error("template {path}: {err}")]
    Template { path: String, err: String },
    #[error(
        "the {role} user-data is {size} bytes even compressed, over Hetzner's 32 KiB limit; biggest parts: {parts}"
    )]
    TooBig {
        role: String,
        size: usize,
        parts: String,
    },
}

/// Where a node gets its image from.
pub enum ImageSource<'a> {
    /// Pulled by digest from the spec's `[images]` repository.
    Registry { digest: &'a str },
    /// Loaded from a bundle unpacked on the host at `dir`: by its
    /// install.sh, or by the unit itself when the image is missing. The
    /// unit runs the loaded reference and refuses to start unless its image
    /// ID is one of `ids` (the config digest on Docker's classic store, the
    /// manifest digest on containerd's).
    Bundle {
        reference: &'a str,
        ids: [&'a str; 2],
        dir: &'a str,
    },
}

#[derive(Serialize)]
struct Context<'a> {
    role: &'a str,
    /// The node the file is for; None for a bundle's per-role file.
    node: Option<&'a str>,
    cidr: &'a str,
    /// The cluster's ports on this role's hosts, admitted by the host
    /// firewall only from `cidr` (and loopback).
    firewall_ports: Vec<u16>,
    cluster: &'a str,
    image: String,
    /// Set for bundle installs: the image IDs the unit accepts.
    bundle_image_ids: Option<[&'a str; 2]>,
    /// Set for bundle installs: where the bundle is unpacked on the host.
    bundle_dir: Option<&'a str>,
    /// What apt installs on the host, pinned (`ship::host_runtime`).
    runtime: &'a HostRuntime,
    data_dir: &'a str,
    /// A db node's posix backup repository: a shared filesystem the host
    /// mounts at this path, bind-mounted into the container.
    posix_repository: Option<&'a str>,
    allow_root_disk: bool,
    cluster_toml_gz: String,
    /// None when the secrets reach the node another way (a bundle made
    /// without --with-secrets): the unit then waits for the file.
    secrets_gz: Option<String>,
}

/// One-line base64 of gzip, as cloud-init's `gz+b64` encoding reads it.
pub fn gzip_base64(bytes: &[u8]) -> String {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    STANDARD.encode(encoder.finish().expect("writing to memory"))
}

/// The manifest digest of a built image layout (`images/<role>`).
pub fn built_digest(images: &Path, role: &str) -> Result<String, CloudInitError> {
    let index = images.join(role).join("index.json");
    let not_built = || CloudInitError::NotBuilt {
        role: role.to_string(),
        path: index.display().to_string(),
    };
    let bytes = std::fs::read(&index).map_err(|_| not_built())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| not_built())?;
    value["manifests"][0]["digest"]
        .as_str()
        .filter(|d| d.starts_with("sha256:") && d.len() == 71)
        .map(str::to_string)
        .ok_or_else(not_built)
}

/// Which user-data to write.
pub enum Target<'a> {
    /// One node's, with its secrets inside.
    Node(&'a Member),
    /// Every node of a role (bundles): no secrets inside, they reach each
    /// node as its own file (they are still checked to be complete).
    Role(Role),
}

/// The cluster's ports a role's hosts listen on (the firewall's list).
fn role_ports(spec: &ClusterSpec, role: Role) -> Vec<u16> {
    let p = &spec.ports;
    match role {
        Role::Db => {
            let mut ports = vec![p.postgres, p.patroni, p.etcd_client, p.etcd_peer];
            if spec.cluster.dcs == Dcs::Raft {
                ports.push(p.raft);
            }
            if spec.backup.is_some() {
                ports.push(p.pgbackrest);
            }
            ports
        }
        Role::Haproxy => vec![
            p.haproxy_primary,
            p.haproxy_replicas,
            p.haproxy_stats,
            p.pgbouncer,
        ],
    }
}

pub fn render(
    spec: &ClusterSpec,
    spec_text: &str,
    target: Target,
    secrets: &Secrets,
    image: &ImageSource,
    runtime: &HostRuntime,
    template: &Path,
) -> Result<String, CloudInitError> {
    runtime.check_docker_version(spec.hosts.docker_version.as_deref())?;
    let (role, node) = match &target {
        Target::Node(member) => {
            let (role, _) = spec
                .member_by_name(&member.name)
                .expect("the member is the spec's own");
            (role, Some(*member))
        }
        Target::Role(role) => (*role, None),
    };
    let name = role.as_str();
    // The same checks a node makes at boot, so nothing incomplete ships.
    let view_member = node.or(match role {
        Role::Db => spec.db_members.first(),
        Role::Haproxy => spec.haproxy_members.first(),
    });
    if let Some(member) = view_member {
        crate::agent::render::NodeView::build(
            spec,
            role,
            member,
            secrets,
            "/usr/lib/postgresql/17/bin",
        )?;
    }
    let (image, bundle_image_ids, bundle_dir) = match image {
        ImageSource::Registry { digest } => {
            let repository = spec
                .images
                .get(name)
                .ok_or_else(|| CloudInitError::NoRepository {
                    role: name.to_string(),
                })?;
            (format!("{repository}@{digest}"), None, None)
        }
        ImageSource::Bundle {
            reference,
            ids,
            dir,
        } => (reference.to_string(), Some(*ids), Some(*dir)),
    };
    let node_secrets = match node {
        Some(member) => Some(secrets.for_node(spec, &member.name)?.to_toml()),
        None => None,
    };
    let context = Context {
        role: name,
        node: node.map(|m| m.name.as_str()),
        cidr: &spec.cluster.cidr,
        firewall_ports: role_ports(spec, role),
        cluster: &spec.cluster.name,
        image,
        bundle_image_ids,
        bundle_dir,
        runtime,
        data_dir: &spec.hosts.data_dir,
        posix_repository: spec
            .backup
            .as_ref()
            .filter(|b| role == Role::Db && b.repository == RepositoryKind::Posix)
            .map(|b| b.path.as_str()),
        allow_root_disk: spec.hosts.allow_root_disk,
        cluster_toml_gz: gzip_base64(spec_text.as_bytes()),
        secrets_gz: node_secrets.map(|text| gzip_base64(text.as_bytes())),
    };
    let source = std::fs::read_to_string(template).map_err(|err| CloudInitError::Template {
        path: template.display().to_string(),
        err: err.to_string(),
    })?;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_debug(false);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let text = env
        .render_str(&source, &context)
        .map_err(|err| CloudInitError::Template {
            path: template.display().to_string(),
            err: err.to_string(),
        })?;
    fit(node.map_or(name, |m| m.name.as_str()), text, &context)
}

/// As is when it fits; else gzip + base64 on one line (cloud-init on
/// Hetzner decodes both); else an error naming the biggest parts.
fn fit(role: &str, text: String, context: &Context) -> Result<String, CloudInitError> {
    if text.len() <= USER_DATA_LIMIT {
        return Ok(text);
    }
    let packed = gzip_base64(text.as_bytes());
    if packed.len() <= USER_DATA_LIMIT {
        return Ok(packed);
    }
    let secrets_len = context.secrets_gz.as_ref().map_or(0, String::len);
    let mut parts = [
        ("cluster spec", context.cluster_toml_gz.len()),
        ("secrets", secrets_len),
        (
            "the rest of the template",
            text.len()
                .saturating_sub(context.cluster_toml_gz.len() + secrets_len),
        ),
    ];
    parts.sort_by_key(|part| std::cmp::Reverse(part.1));
    Err(CloudInitError::TooBig {
        role: role.to_string(),
        size: packed.len(),
        parts: parts
            .iter()
            .map(|(name, size)| format!("{name} {size} bytes"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A NoCloud `meta-data` for one member, for local VM or container tests.
pub fn nocloud_meta_data(name: &str, ip: std::net::Ipv4Addr) -> String {
    format!("instance-id: {name}\nlocal-hostname: {name}\nprivate-ip: {ip}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(secrets: usize) -> Context<'static> {
        Context {
            role: "db",
            node: None,
            cidr: "10.0.0.0/16",
            firewall_ports: vec![5432],
            cluster: "t",
            image: "r/db@sha256:x".into(),
            bundle_image_ids: None,
            bundle_dir: None,
            runtime: Box::leak(Box::new(HostRuntime {
                lock: "l".into(),
                sources: vec![],
                packages: vec![],
            })),
            data_dir: "/d",
            posix_repository: None,
            allow_root_disk: false,
            cluster_toml_gz: "c".repeat(100),
            secrets_gz: Some("s".repeat(secrets)),
        }
    }

    #[test]
    fn small_user_data_stays_text_big_is_gzipped_too_big_names_the_parts() {
        assert_eq!(
            fit("db", "#cloud-config\n".into(), &context(1)).unwrap(),
            "#cloud-config\n"
        );
        // Compressible text over the limit is sent as one line of base64.
        let big = format!("#cloud-config\n# {}\n", "x".repeat(40_000));
        let packed = fit("db", big, &context(1)).unwrap();
        assert!(packed.len() <= USER_DATA_LIMIT && !packed.contains('\n'));
        // Random bytes do not compress: refused, biggest part first.
        use rand::{Rng, SeedableRng};
        let noise: String = rand::rngs::StdRng::seed_from_u64(7)
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(40_000)
            .map(char::from)
            .collect();
        let text = format!("#cloud-config\n{noise}");
        let err = fit("db", text, &context(60_000)).unwrap_err().to_string();
        assert!(err.contains("over Hetzner's 32 KiB limit"), "{err}");
        assert!(err.contains("biggest parts: secrets 60000 bytes"), "{err}");
    }
}
