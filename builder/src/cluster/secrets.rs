//! Cluster secrets: never in an image, never in the cluster spec. They
//! reach a node at boot as a mounted file (TOML, mode 0600) or as
//! environment variables, and the agent writes what services need 0600
//! under /run.
//!
//! Application users are given as SCRAM-SHA-256 verifiers, not passwords:
//! PostgreSQL and PgBouncer then hold the identical verifier (which SCRAM
//! pass-through needs), and proxy nodes never see a plaintext password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rand::Rng;

use crate::cluster::ClusterSpec;
use crate::cluster::pki::{PkiError, TlsSecrets};
use crate::cluster::scram::Verifier;

/// Environment variables that may carry secrets instead of a file.
pub const ENV_SUPERUSER: &str = "NODEIMG_SUPERUSER_PASSWORD";
pub const ENV_REPLICATION: &str = "NODEIMG_REPLICATION_PASSWORD";
pub const ENV_REWIND: &str = "NODEIMG_REWIND_PASSWORD";
pub const ENV_REST_API: &str = "NODEIMG_REST_API_PASSWORD";
pub const ENV_BACKUP_CIPHER: &str = "NODEIMG_BACKUP_CIPHER_PASSWORD";
pub const ENV_BACKUP_S3_KEY: &str = "NODEIMG_BACKUP_S3_KEY";
pub const ENV_BACKUP_S3_KEY_SECRET: &str = "NODEIMG_BACKUP_S3_KEY_SECRET";
/// `NODEIMG_USER_<NAME>_SCRAM`, the name upper-cased with `-` as `_`.
pub const ENV_USER_PREFIX: &str = "NODEIMG_USER_";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// PostgreSQL superuser (`postgres`); Patroni connects with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<String>,
    /// Streaming replication user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_password: Option<String>,
    /// The user pg_rewind connects as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind_password: Option<String>,
    /// Patroni's REST API user (`patroni`): every unsafe endpoint
    /// (PATCH /config, POST /restart, /failover, ...) asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_password: Option<String>,
    /// The passphrase pgBackRest encrypts the backup repository with
    /// (`[backup] encrypt`). Lost, every backup is unreadable: keep a copy
    /// outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_cipher_password: Option<String>,
    /// The key db nodes log in to an sftp repository with (OpenSSH's
    /// private key format, Ed25519); its public half goes into the
    /// server's authorized_keys (`nodeimg secrets show --sftp-public-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sftp_key: Option<String>,
    /// The access key of an s3 repository's bucket and its secret (made
    /// in the provider's console: Hetzner Cloud Console → Object Storage →
    /// S3 credentials); nodeimg cannot make them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_s3_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_s3_key_secret: Option<String>,
    /// Application users by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, UserSecret>,
    /// The cluster's CA and node certificates (`nodeimg secrets init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSecrets>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSecret {
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<String>,
    /// Only in the operator's own copy (to hand to the application);
    /// nodes do not need it and proxy nodes should not get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("secrets file {path}: {err}")]
    Parse { path: PathBuf, err: String },
    #[error(
        "missing secret `{name}` (needed by the {role} role): add it to the secrets file or set {env}; `nodeimg secrets init` writes a complete file"
    )]
    Missing {
        name: String,
        role: String,
        env: String,
    },
    #[error(
        "users.{user}.scram: {err}; it must be a SCRAM-SHA-256 verifier as PostgreSQL stores it (`nodeimg secrets init` computes one)"
    )]
    BadVerifier { user: String, err: String },
    #[error(
        "secret `{0}` is empty or too short (fewer than 12 characters): use a long random password"
    )]
    Weak(String),
    #[error(
        "the secrets hold no TLS material ([tls]): every connection of the cluster is TLS; run `nodeimg secrets rotate` on the full secrets file (it adds the CA and node certificates), then give each node its file (`nodeimg secrets for-node`)"
    )]
    NoTls,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot generate the secrets: {0}")]
    Generate(String),
    #[error(
        "missing secret `backup_sftp_key` (the db nodes' login to the sftp backup repository): run `nodeimg secrets update` on the full secrets file, add its public key to the server (`nodeimg secrets show --sftp-public-key`) and deliver the node files again"
    )]
    MissingSftpKey,
    #[error(
        "backup_sftp_key is not an OpenSSH private key ({0}): remove it and run `nodeimg secrets update` to make a new one"
    )]
    BadSftpKey(String),
    #[error(
        "missing secret `{0}` (the db nodes' access key to the s3 backup bucket, made in the provider's console): set {ENV_BACKUP_S3_KEY} and {ENV_BACKUP_S3_KEY_SECRET} and run `nodeimg secrets update` on the full secrets file (or add backup_s3_key and backup_s3_key_secret to it), then deliver the node files again"
    )]
    MissingS3Key(String),
    #[error(
        "{node} is not a member of the cluster spec: a node's secrets are made for a [[db]] or [[haproxy]] member"
    )]
    UnknownNode { node: String },
}

/// 32 characters from 62 symbols: about 190 bits.
/// A new Ed25519 login key in OpenSSH's format, named after the cluster.
fn new_sftp_key(cluster: &str) -> Result<String, SecretsError> {
    let mut key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| SecretsError::Generate(e.to_string()))?;
    key.set_comment(format!("nodeimg-{cluster}"));
    Ok(key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| SecretsError::Generate(e.to_string()))?
        .to_string())
}

fn random_password() -> String {
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

impl Secrets {
    /// A fresh secrets file for the spec: passwords, a verifier for every
    /// user, a CA and a certificate for every node (default lifetimes).
    pub fn generate(spec: &ClusterSpec) -> Result<Secrets, SecretsError> {
        Secrets::generate_with(
            spec,
            crate::cluster::pki::CA_DAYS,
            crate::cluster::pki::NODE_DAYS,
        )
    }

    pub fn generate_with(
        spec: &ClusterSpec,
        ca_days: u32,
        node_days: u32,
    ) -> Result<Secrets, SecretsError> {
        let mut secrets = Secrets {
            tls: Some(TlsSecrets::generate(spec, ca_days, node_days)?),
            ..Secrets::default()
        };
        secrets.fill_missing(spec)?;
        Ok(secrets)
    }

    /// Adds what the spec needs and the secrets lack (passwords, users'
    /// verifiers), keeping everything already there. Returns what it added.
    pub fn fill_missing(&mut self, spec: &ClusterSpec) -> Result<Vec<String>, SecretsError> {
        let mut added = Vec::new();
        for (name, slot) in [
            ("superuser_password", &mut self.superuser_password),
            ("replication_password", &mut self.replication_password),
            ("rewind_password", &mut self.rewind_password),
            ("rest_api_password", &mut self.rest_api_password),
        ] {
            if slot.is_none() {
                *slot = Some(random_password());
                added.push(name.to_string());
            }
        }
        if spec.backup.as_ref().is_some_and(|b| b.encrypt) && self.backup_cipher_password.is_none()
        {
            self.backup_cipher_password = Some(random_password());
            added.push("backup_cipher_password".to_string());
        }
        if spec.backup.as_ref().is_some_and(|b| b.sftp.is_some()) && self.backup_sftp_key.is_none()
        {
            self.backup_sftp_key = Some(new_sftp_key(&spec.cluster.name)?);
            added.push("backup_sftp_key".to_string());
        }
        for user in &spec.users {
            if self
                .users
                .get(&user.name)
                .is_some_and(|u| u.scram.is_some())
            {
                continue;
            }
            let password = random_password();
            let scram = Verifier::generate(&password)
                .map_err(|e| SecretsError::Generate(e.to_string()))?
                .to_string();
            self.users.insert(
                user.name.clone(),
                UserSecret {
                    scram: Some(scram),
                    password: Some(password),
                },
            );
            added.push(format!("users.{}", user.name));
        }
        Ok(added)
    }

    /// The sftp login key's public half, as an authorized_keys line.
    pub fn sftp_public_key(&self) -> Result<Option<String>, SecretsError> {
        let Some(text) = &self.backup_sftp_key else {
            return Ok(None);
        };
        let key = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|e| SecretsError::BadSftpKey(e.to_string()))?;
        key.public_key()
            .to_openssh()
            .map(Some)
            .map_err(|e| SecretsError::BadSftpKey(e.to_string()))
    }

    /// The s3 bucket's access key and secret, both present and not blank.
    pub fn s3_credentials(&self) -> Result<(&str, &str), SecretsError> {
        fn non_blank<'a>(name: &str, value: &'a Option<String>) -> Result<&'a str, SecretsError> {
            value
                .as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .ok_or_else(|| SecretsError::MissingS3Key(name.to_string()))
        }
        Ok((
            non_blank("backup_s3_key", &self.backup_s3_key)?,
            non_blank("backup_s3_key_secret", &self.backup_s3_key_secret)?,
        ))
    }

    /// The TLS material, or what to do when there is none.
    pub fn tls(&self) -> Result<&TlsSecrets, SecretsError> {
        self.tls.as_ref().ok_or(SecretsError::NoTls)
    }

    /// Reads a secrets file.
    pub fn read(path: &Path) -> Result<Secrets, SecretsError> {
        // Refused unless private (0600): it holds passwords and keys.
        let text =
            crate::util::private_file::read_to_string(path).map_err(|err| SecretsError::Read {
                path: path.to_path_buf(),
                err,
            })?;
        toml::from_str(&text).map_err(|err| SecretsError::Parse {
            path: path.to_path_buf(),
            err: err.to_string(),
        })
    }

    /// Fills what the file left out from `NODEIMG_*` variables.
    pub fn merge_env(&mut self, env: impl Iterator<Item = (String, String)>) {
        for (name, value) in env {
            match name.as_str() {
                ENV_SUPERUSER => self.superuser_password = Some(value),
                ENV_REPLICATION => self.replication_password = Some(value),
                ENV_REWIND => self.rewind_password = Some(value),
                ENV_REST_API => self.rest_api_password = Some(value),
                ENV_BACKUP_CIPHER => self.backup_cipher_password = Some(value),
                ENV_BACKUP_S3_KEY => self.backup_s3_key = Some(value),
                ENV_BACKUP_S3_KEY_SECRET => self.backup_s3_key_secret = Some(value),
                _ => {
                    if let Some(user) = name
                        .strip_prefix(ENV_USER_PREFIX)
                        .and_then(|rest| rest.strip_suffix("_SCRAM"))
                    {
                        let user = user.to_ascii_lowercase().replace('_', "-");
                        self.users.entry(user).or_default().scram = Some(value);
                    }
                }
            }
        }
    }

    /// Whether an environment variable carries a secret (so the agent can
    /// keep it away from the services it starts).
    pub fn is_secret_env(name: &str) -> bool {
        matches!(
            name,
            ENV_SUPERUSER
                | ENV_REPLICATION
                | ENV_REWIND
                | ENV_REST_API
                | ENV_BACKUP_CIPHER
                | ENV_BACKUP_S3_KEY
                | ENV_BACKUP_S3_KEY_SECRET
        ) || name.starts_with(ENV_USER_PREFIX)
    }

    /// The verifier of an application user, checked.
    pub fn verifier(&self, user: &str, role: &str) -> Result<Verifier, SecretsError> {
        let text = self
            .users
            .get(user)
            .and_then(|u| u.scram.as_deref())
            .ok_or_else(|| SecretsError::Missing {
                name: format!("users.{user}.scram"),
                role: role.to_string(),
                env: format!(
                    "{ENV_USER_PREFIX}{}_SCRAM",
                    user.to_ascii_uppercase().replace('-', "_")
                ),
            })?;
        text.parse().map_err(
            |err: crate::cluster::scram::ScramError| SecretsError::BadVerifier {
                user: user.to_string(),
                err: err.to_string(),
            },
        )
    }

    /// A password the db role needs, checked for presence and length.
    pub fn required_password<'a>(
        &'a self,
        name: &str,
        value: &'a Option<String>,
        env: &str,
    ) -> Result<&'a str, SecretsError> {
        let value = value.as_deref().ok_or_else(|| SecretsError::Missing {
            name: name.to_string(),
            role: "db".into(),
            env: env.to_string(),
        })?;
        if value.chars().count() < 12 {
            return Err(SecretsError::Weak(name.to_string()));
        }
        Ok(value)
    }

    /// What one node receives: its role's part (`for_role`) and its own
    /// TLS key and certificate with the trusted CAs, never the CA key or
    /// another node's key.
    pub fn for_node(&self, spec: &ClusterSpec, node: &str) -> Result<Secrets, SecretsError> {
        let (role, _) = spec
            .member_by_name(node)
            .ok_or_else(|| SecretsError::UnknownNode {
                node: node.to_string(),
            })?;
        Ok(Secrets {
            tls: Some(self.tls()?.for_node(node)?),
            ..self.for_role(role.as_str())
        })
    }

    /// The passwords and verifiers a role's nodes need (no TLS material):
    /// proxy nodes get verifiers only.
    pub fn for_role(&self, role: &str) -> Secrets {
        let users = self
            .users
            .iter()
            .map(|(name, secret)| {
                (
                    name.clone(),
                    UserSecret {
                        scram: secret.scram.clone(),
                        password: None,
                    },
                )
            })
            .collect();
        if role == "db" {
            Secrets {
                users,
                tls: None,
                ..self.clone()
            }
        } else {
            Secrets {
                users,
                ..Secrets::default()
            }
        }
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# nodeimg cluster secrets: keep this file 0600, out of git and out of images.\n{}",
            toml::to_string(self).expect("secrets serialize")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_fills_gaps_and_names_are_normalized() {
        let mut secrets = Secrets::default();
        secrets.merge_env(
            [
                (ENV_SUPERUSER.to_string(), "s".repeat(20)),
                ("NODEIMG_USER_APP_RO_SCRAM".to_string(), "x".into()),
                ("PATH".to_string(), "/bin".into()),
            ]
            .into_iter(),
        );
        assert_eq!(
            secrets.superuser_password.as_deref(),
            Some(&*"s".repeat(20))
        );
        assert_eq!(secrets.users["app-ro"].scram.as_deref(), Some("x"));
        assert!(Secrets::is_secret_env("NODEIMG_USER_APP_SCRAM"));
        assert!(!Secrets::is_secret_env("PATH"));
    }

    #[test]
    fn missing_and_weak_secrets_name_what_to_do() {
        let secrets = Secrets {
            replication_password: Some("short".into()),
            ..Secrets::default()
        };
        let missing = secrets
            .required_password(
                "superuser_password",
                &secrets.superuser_password,
                ENV_SUPERUSER,
            )
            .unwrap_err()
            .to_string();
        assert!(missing.contains("NODEIMG_SUPERUSER_PASSWORD"), "{missing}");
        assert!(missing.contains("nodeimg secrets init"), "{missing}");
        let weak = secrets
            .required_password(
                "replication_password",
                &secrets.replication_password,
                ENV_REPLICATION,
            )
            .unwrap_err()
            .to_string();
        assert!(weak.contains("too short"), "{weak}");
        let no_user = secrets.verifier("app", "haproxy").unwrap_err().to_string();
        assert!(no_user.contains("NODEIMG_USER_APP_SCRAM"), "{no_user}");
    }

    #[test]
    fn proxy_nodes_get_verifiers_only() {
        let mut users = BTreeMap::new();
        users.insert(
            "app".to_string(),
            UserSecret {
                scram: Some("v".into()),
                password: Some("plain".into()),
            },
        );
        let secrets = Secrets {
            superuser_password: Some("p".repeat(16)),
            users,
            ..Secrets::default()
        };
        let proxy = secrets.for_role("haproxy");
        assert_eq!(proxy.superuser_password, None);
        assert_eq!(proxy.users["app"].password, None);
        assert_eq!(proxy.users["app"].scram.as_deref(), Some("v"));
        let db = secrets.for_role("db");
        assert_eq!(db.superuser_password, secrets.superuser_password);
        assert_eq!(db.users["app"].password, None);
        let round: Secrets = toml::from_str(&secrets.to_toml()).unwrap();
        assert_eq!(round, secrets);
    }
}
