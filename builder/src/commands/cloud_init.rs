//! `nodeimg cloud-init`: writes `<out>/<role>.yaml` for each role of the
//! cluster, and optionally NoCloud seed folders per node. Everything is
//! checked before the first file is written.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cluster::secrets::Secrets;
use crate::cluster::{ClusterSpec, Role};
use crate::ship::cloud_init;

pub struct CloudInitOptions {
    pub cluster: PathBuf,
    pub secrets: PathBuf,
    pub images: PathBuf,
    pub template: PathBuf,
    pub output: PathBuf,
    pub nocloud: Option<PathBuf>,
}

pub fn run(options: &CloudInitOptions) -> anyhow::Result<()> {
    let spec_text = std::fs::read_to_string(&options.cluster)
        .with_context(|| format!("cannot read {}", options.cluster.display()))?;
    let spec = ClusterSpec::parse(&spec_text, &options.cluster)?;
    let secrets = Secrets::read(&options.secrets)?;
    let mut rendered = Vec::new();
    for (role, members) in [
        (Role::Db, &spec.db_members),
        (Role::Haproxy, &spec.haproxy_members),
    ] {
        if members.is_empty() {
            continue;
        }
        let digest = cloud_init::built_digest(&options.images, role.as_str())?;
        let text = cloud_init::render(
            &spec,
            &spec_text,
            role,
            &secrets,
            &cloud_init::ImageSource::Registry { digest: &digest },
            true,
            &options.template,
        )?;
        rendered.push((role, text));
    }
    std::fs::create_dir_all(&options.output)
        .with_context(|| format!("cannot create {}", options.output.display()))?;
    for (role, text) in &rendered {
        let path = options.output.join(format!("{}.yaml", role.as_str()));
        // It carries the role's secrets.
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
    rendered: &[(Role, String)],
) -> anyhow::Result<()> {
    for (role, member) in spec.members() {
        let Some((_, text)) = rendered.iter().find(|(r, _)| *r == role) else {
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
