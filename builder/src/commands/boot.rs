//! `nodeimg boot`: the image's entrypoint and PID 1. Finds out who this
//! node is, finds it in the cluster spec, renders its configuration, and
//! supervises the role's services (db: etcd then Patroni; haproxy:
//! HAProxy and PgBouncer).

use std::path::{Path, PathBuf};

use crate::agent::etcd_quorum::PendingRemovals;
use crate::agent::identity::MetadataSource;
use crate::agent::node::{self, NodeSources};
use crate::agent::render::RUN_DIR;
use crate::agent::services::{self, Accounts};
use crate::agent::supervise::{self, ProcessTable};
use crate::cluster::Role;

pub struct BootOptions {
    pub cluster: PathBuf,
    pub secrets: Option<PathBuf>,
    pub metadata: MetadataSource,
    pub role: Option<String>,
    pub templates: PathBuf,
    pub render_only: Option<PathBuf>,
}

pub fn run(options: &BootOptions) -> anyhow::Result<i32> {
    let sources = NodeSources {
        cluster: options.cluster.clone(),
        secrets: options.secrets.clone(),
        metadata: options.metadata.clone(),
        role: options.role.clone(),
        templates: options.templates.clone(),
        render_only: options.render_only.is_some(),
    };
    let mut node = node::prepare(&sources)?;
    if let Some(dir) = &options.render_only {
        services::write_files(dir, &node.files, None)?;
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
    services::write_files(Path::new(RUN_DIR), &node.files, Some(&accounts))?;
    if node.role == Role::Db {
        services::link_patronictl_config()?;
        if node.spec.cluster.dcs == crate::cluster::Dcs::Etcd {
            services::prepare_etcd(&mut node, &options.templates, &accounts)?;
        }
    }
    let services = services::for_node(&node, &accounts)?;
    let table = ProcessTable::default();
    services::start_background_tasks(&node, &accounts, &table);
    let removals = PendingRemovals::default();
    // SIGHUP (`systemctl reload`, `docker kill -s HUP`): a new spec or new
    // secrets.
    let mut reload = || match node::reload(&mut node, &sources).and_then(|reloaded| {
        let changed = services::write_files(Path::new(RUN_DIR), &reloaded.files, Some(&accounts))?;
        Ok((changed, reloaded.removed_db))
    }) {
        Ok((changed, removed_db)) => {
            tracing::info!(
                "reload: changed {}",
                if changed.is_empty() {
                    "nothing".to_string()
                } else {
                    changed.join(", ")
                }
            );
            services::remove_dropped_members(&node, &removed_db, &removals);
            services::reload_plan(node.role, &changed)
        }
        Err(err) => {
            tracing::error!("reload refused, the running files are kept: {err:#}");
            Vec::new()
        }
    };
    supervise::run(services, &table, &mut reload)
}
