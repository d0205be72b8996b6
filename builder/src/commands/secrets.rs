//! `nodeimg secrets`: writes a cluster's secrets file (random passwords,
//! SCRAM verifiers for the spec's users), and the per-role subsets nodes
//! receive (proxy nodes get verifiers only).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::cluster::ClusterSpec;
use crate::cluster::secrets::Secrets;

/// Writes `text` to `path` with mode 0600 from the first byte; an existing
/// file is kept unless `force`.
pub fn write_private(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists: it may hold the only copy of this cluster's passwords; use --force to replace it",
            path.display()
        );
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".secrets-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

pub fn init(cluster: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(cluster)?;
    let secrets = Secrets::generate(&spec)?;
    write_private(output, &secrets.to_toml(), force)?;
    eprintln!(
        "wrote {} (0600): Patroni's three passwords and {} application user(s); keep it out of git",
        output.display(),
        secrets.users.len()
    );
    Ok(())
}

pub fn for_role(secrets: &Path, role: &str, output: &Path, force: bool) -> anyhow::Result<()> {
    if role != "db" && role != "haproxy" {
        bail!("unknown role {role:?}: db or haproxy");
    }
    let all = Secrets::read(secrets)?;
    write_private(output, &all.for_role(role).to_toml(), force)?;
    eprintln!("wrote {} (0600) for the {role} nodes", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::scram::Verifier;

    #[test]
    fn generated_secrets_verify_and_are_private() {
        let spec = ClusterSpec::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml"),
        )
        .unwrap();
        let secrets = Secrets::generate(&spec).unwrap();
        let user = &secrets.users["keybuzz_app"];
        let verifier: Verifier = user.scram.as_ref().unwrap().parse().unwrap();
        assert!(verifier.verify_password(user.password.as_ref().unwrap()));
        assert_ne!(secrets.superuser_password, secrets.replication_password);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.secrets.toml");
        write_private(&path, &secrets.to_toml(), false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let again = write_private(&path, "x", false).unwrap_err().to_string();
        assert!(again.contains("--force"), "{again}");
        assert_eq!(Secrets::read(&path).unwrap(), secrets);
    }
}
