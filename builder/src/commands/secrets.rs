//! `nodeimg secrets`: writes a cluster's secrets file (random passwords,
//! SCRAM verifiers for the spec's users, the cluster CA and node
//! certificates), the per-node files nodes receive, rotates certificates
//! and shows their expiry.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::cluster::ClusterSpec;
use crate::cluster::pki::{self, TlsSecrets};
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

pub fn init(
    cluster: &Path,
    output: &Path,
    force: bool,
    backup_cipher_from: Option<&Path>,
    ca_days: u32,
    node_days: u32,
) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(cluster)?;
    let mut secrets = Secrets::generate_with(&spec, ca_days, node_days)?;
    if let Some(old) = backup_cipher_from {
        if !spec.backup.as_ref().is_some_and(|b| b.encrypt) {
            bail!(
                "--backup-cipher-from: {} has no encrypted [backup] repository to use the passphrase for",
                cluster.display()
            );
        }
        let Some(passphrase) = Secrets::read(old)?.backup_cipher_password else {
            bail!(
                "--backup-cipher-from: {} holds no backup_cipher_password (was its cluster's repository encrypted?)",
                old.display()
            );
        };
        secrets.backup_cipher_password = Some(passphrase);
    }
    take_s3_credentials(&spec, &mut secrets)?;
    write_private(output, &secrets.to_toml(), force)?;
    eprintln!(
        "wrote {} (0600): Patroni's passwords, {} application user(s), the cluster CA (its key too) and {} node certificates; keep it out of git, and give each node only its own part (`nodeimg secrets for-node`)",
        output.display(),
        secrets.users.len(),
        spec.members().count()
    );
    Ok(())
}

/// An s3 repository's access key is made by the provider, not by nodeimg:
/// taken from NODEIMG_BACKUP_S3_KEY and NODEIMG_BACKUP_S3_KEY_SECRET when
/// set (replacing the file's), and required before any file is written.
/// Returns the names it set.
fn take_s3_credentials(spec: &ClusterSpec, secrets: &mut Secrets) -> anyhow::Result<Vec<String>> {
    use crate::cluster::secrets::{ENV_BACKUP_S3_KEY, ENV_BACKUP_S3_KEY_SECRET};
    if spec.backup.as_ref().is_none_or(|b| b.s3.is_none()) {
        return Ok(Vec::new());
    }
    let before = (
        secrets.backup_s3_key.clone(),
        secrets.backup_s3_key_secret.clone(),
    );
    secrets.merge_env(
        std::env::vars()
            .filter(|(name, _)| name == ENV_BACKUP_S3_KEY || name == ENV_BACKUP_S3_KEY_SECRET),
    );
    secrets.s3_credentials()?;
    let mut set = Vec::new();
    if secrets.backup_s3_key != before.0 {
        set.push("backup_s3_key".to_string());
    }
    if secrets.backup_s3_key_secret != before.1 {
        set.push("backup_s3_key_secret".to_string());
    }
    Ok(set)
}

/// Writes one node's secrets (`name`), or with `name` None every node's
/// into `output` as `<node>.secrets.toml`.
pub fn for_node(
    cluster: &Path,
    secrets: &Path,
    name: Option<&str>,
    output: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(cluster)?;
    let all = Secrets::read(secrets)?;
    let nodes: Vec<String> = match name {
        Some(name) => vec![name.to_string()],
        None => spec.members().map(|(_, m)| m.name.clone()).collect(),
    };
    for node in &nodes {
        let path = match name {
            Some(_) => output.to_path_buf(),
            None => {
                std::fs::create_dir_all(output)
                    .with_context(|| format!("cannot create {}", output.display()))?;
                output.join(format!("{node}.secrets.toml"))
            }
        };
        let mine = all.for_node(&spec, node)?;
        write_private(&path, &mine.to_toml(), force)?;
        eprintln!(
            "wrote {} (0600) for {node}: its own key and certificate, the CA certificate, its role's passwords",
            path.display()
        );
    }
    Ok(())
}

pub struct RotateOptions<'a> {
    pub cluster: &'a Path,
    pub secrets: &'a Path,
    /// Also a new CA (the old one stays trusted until `finish_ca`).
    pub ca: bool,
    /// End a CA rotation: stop trusting the previous CA.
    pub finish_ca: bool,
    pub ca_days: u32,
    pub node_days: u32,
}

/// New node certificates (and with `ca`, a new CA), written back into the
/// secrets file; adds whatever the file lacks (an older file without TLS
/// gets its CA here).
pub fn rotate(options: &RotateOptions) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(options.cluster)?;
    let mut secrets = Secrets::read(options.secrets)?;
    let mut added = secrets.fill_missing(&spec)?;
    // A bucket key the provider rotated rides along with the certificates.
    added.extend(take_s3_credentials(&spec, &mut secrets)?);
    let what = match secrets.tls.as_mut() {
        None => {
            secrets.tls = Some(TlsSecrets::generate(
                &spec,
                options.ca_days,
                options.node_days,
            )?);
            "a new CA and node certificates (the file had none)".to_string()
        }
        Some(tls) if options.finish_ca => {
            let dropped = tls.finish_ca_rotation();
            format!("{dropped} previous CA certificate(s) no longer trusted")
        }
        Some(tls) if options.ca => {
            tls.rotate_ca(&spec, options.ca_days, options.node_days)?;
            "a new CA (the previous one stays trusted until `secrets rotate --finish-ca`) and new node certificates".to_string()
        }
        Some(tls) => {
            tls.issue_all(&spec, options.node_days)?;
            "new node certificates from the current CA".to_string()
        }
    };
    write_private(options.secrets, &secrets.to_toml(), true)?;
    eprintln!("{}: {what}", options.secrets.display());
    if !added.is_empty() {
        eprintln!("also added what it lacked: {}", added.join(", "));
    }
    eprintln!(
        "deliver each node its new file (`nodeimg secrets for-node --all -o DIR`), then reload the node (the README says how); nothing restarts"
    );
    Ok(())
}

/// After members were added to or removed from the spec: certificates for
/// the new ones, the removed ones' dropped, everything else kept.
pub fn update(cluster: &Path, secrets_path: &Path, node_days: u32) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(cluster)?;
    let mut secrets = Secrets::read(secrets_path)?;
    let mut added = secrets.fill_missing(&spec)?;
    added.extend(take_s3_credentials(&spec, &mut secrets)?);
    let Some(tls) = secrets.tls.as_mut() else {
        anyhow::bail!(
            "{} has no TLS material: run `nodeimg secrets rotate` once to give it a CA and node certificates",
            secrets_path.display()
        );
    };
    let (issued, dropped) = tls.sync_members(&spec, node_days)?;
    if issued.is_empty() && dropped.is_empty() && added.is_empty() {
        eprintln!(
            "{}: already matches {} (nothing changed)",
            secrets_path.display(),
            cluster.display()
        );
        return Ok(());
    }
    write_private(secrets_path, &secrets.to_toml(), true)?;
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    eprintln!(
        "{}: certificates issued for {}; dropped for {}{}",
        secrets_path.display(),
        list(&issued),
        list(&dropped),
        if added.is_empty() {
            String::new()
        } else {
            format!("; also added {}", added.join(", "))
        }
    );
    eprintln!(
        "give each new node its file (`nodeimg secrets for-node NAME -o FILE`) and every other node the edited spec, then reload them (the README says how)"
    );
    Ok(())
}

/// Lists every certificate with its expiry; warns about those with less
/// than a third of their lifetime left.
/// The sftp login key's public half: what the backup server's
/// authorized_keys must hold.
pub fn show_sftp_public_key(path: &Path) -> anyhow::Result<()> {
    match Secrets::read(path)?.sftp_public_key()? {
        Some(line) => {
            println!("{line}");
            Ok(())
        }
        None => anyhow::bail!(
            "{} holds no backup_sftp_key: give the cluster spec a [backup] with repository = \"sftp\" and run `nodeimg secrets update`",
            path.display()
        ),
    }
}

pub fn show(secrets: &Path, json: bool, ca_only: bool) -> anyhow::Result<()> {
    let secrets = Secrets::read(secrets)?;
    let tls = secrets.tls()?;
    if ca_only {
        print!("{}", tls.trusted_bundle());
        return Ok(());
    }
    let certs = pki::inventory(tls, time::OffsetDateTime::now_utc())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
    } else {
        println!(
            "{:<20} {:<8} {:<34} {:>6}  serial",
            "certificate", "status", "expires", "days"
        );
        for cert in &certs {
            println!(
                "{:<20} {:<8} {:<34} {:>6}  {}",
                cert.name,
                cert.status,
                cert.not_after,
                cert.seconds_left / 86400,
                cert.serial
            );
        }
    }
    for cert in certs.iter().filter(|c| c.status != "ok") {
        eprintln!(
            "warning: {} {} ({} days left of its lifetime): run `nodeimg secrets rotate`{}",
            cert.name,
            if cert.status == "expired" {
                "has expired"
            } else {
                "is due for renewal"
            },
            cert.seconds_left / 86400,
            if cert.name.ends_with("ca") {
                " --ca"
            } else {
                ""
            }
        );
    }
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
