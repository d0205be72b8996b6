//! `nodeimg cloud-init`: writes `<out>/<node>.yaml` for each node of the
//! cluster (each holds that node's own secrets), and optionally NoCloud
//! seed folders per node. Everything is
//! checked before the first file is written.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cluster::ClusterSpec;
use crate::cluster::secrets::Secrets;
use crate::ship::cloud_init;
use crate::ship::host_runtime::HostRuntime;

pub struct CloudInitOptions {
    pub cluster: PathBuf,
    pub secrets: PathBuf,
    pub images: PathBuf,
    pub template: PathBuf,
    pub output: PathBuf,
    pub nocloud: Option<PathBuf>,
    /// The host runtime recipe (`recipes/host-runtime.toml`): its lock pins
    /// what apt installs on the hosts.
    pub runtime: PathBuf,
    /// Where snapshot archives are: the hosts' apt sources point there.
    pub snapshot_url: String,
}

pub fn run(options: &CloudInitOptions) -> anyhow::Result<()> {
    let spec_text = std::fs::read_to_string(&options.cluster)
        .with_context(|| format!("cannot read {}", options.cluster.display()))?;
    let spec = ClusterSpec::parse(&spec_text, &options.cluster)?;
    let secrets = Secrets::read(&options.secrets)?;
    let runtime = HostRuntime::load(&options.runtime, &options.snapshot_url)?;
    let mut rendered = Vec::new();
    for (role, member) in spec.members() {
        let digest = cloud_init::built_digest(&options.images, role.as_str())?;
        let text = cloud_init::render(
            &spec,
            &spec_text,
            cloud_init::Target::Node(member),
            &secrets,
            &cloud_init::ImageSource::Registry { digest: &digest },
            &runtime,
            &options.template,
        )?;
        rendered.push((member.name.clone(), text));
    }
    std::fs::create_dir_all(&options.output)
        .with_context(|| format!("cannot create {}", options.output.display()))?;
    for (node, text) in &rendered {
        let path = options.output.join(format!("{node}.yaml"));
        // It carries the node's secrets and TLS key.
        crate::util::fsutil::write_atomic(&path, text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "wrote {} ({} bytes of {} allowed)",
            path.display(),
            text.len(),
            cloud_init::USER_DATA_LIMIT
        );
    }
    if let Some(dir) = &options.nocloud {
        write_nocloud(dir, &spec, &rendered)?;
    }
    Ok(())
}

fn write_nocloud(
    dir: &Path,
    spec: &ClusterSpec,
    rendered: &[(String, String)],
) -> anyhow::Result<()> {
    for (_, member) in spec.members() {
        let Some((_, text)) = rendered.iter().find(|(n, _)| *n == member.name) else {
            continue;
        };
        let seed = dir.join(&member.name);
        std::fs::create_dir_all(&seed)
            .with_context(|| format!("cannot create {}", seed.display()))?;
        crate::util::fsutil::write_atomic(
            &seed.join("meta-data"),
            cloud_init::nocloud_meta_data(&member.name, member.ip).as_bytes(),
            0o644,
        )?;
        crate::util::fsutil::write_atomic(&seed.join("user-data"), text.as_bytes(), 0o600)?;
    }
    eprintln!("wrote NoCloud seeds under {}", dir.display());
    Ok(())
}
