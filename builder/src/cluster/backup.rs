//! The spec's `[backup]` section: where pgBackRest keeps the cluster's
//! backups and WAL archive, and how long. The repository's passphrase (and
//! any credential) lives in the secrets, never here.

use serde::{Deserialize, Serialize};

pub use crate::cluster::backup_s3::{S3Bucket, UriStyle};

/// The repository kinds pgBackRest offers that nodeimg configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryKind {
    /// A path mounted on every db node (an NFS share, a Hetzner Volume
    /// shared by other means, or a test's shared Docker volume).
    Posix,
    /// A Hetzner Storage Box or any SSH server (port 23 on a Storage Box).
    Sftp,
    /// Hetzner Object Storage or any S3 API.
    S3,
}

impl RepositoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepositoryKind::Posix => "posix",
            RepositoryKind::Sftp => "sftp",
            RepositoryKind::S3 => "s3",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    pub repository: RepositoryKind,
    /// The repository's path: on every db node for posix.
    #[serde(default = "default_path")]
    pub path: String,
    /// Encrypt the repository (aes-256-cbc, passphrase from the secrets).
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// Full backups kept (older ones and the WAL only they need expire).
    #[serde(default = "two")]
    pub retention_full: u32,
    /// Differential backups kept.
    #[serde(default = "seven")]
    pub retention_diff: u32,
    /// Seconds after which a WAL segment is archived even if not full: the
    /// bound on the seconds of writes a restore from the repository loses
    /// when every copy of the data is gone (with replicas, losing the
    /// primary alone loses nothing).
    #[serde(default = "sixty")]
    pub archive_timeout: u32,
    /// pgBackRest processes of a restore (a drill, a replica rebuilt from
    /// the repository, a cluster restored): files come one request each,
    /// so a restore waits on the repository's latency more than on the
    /// CPU (BENCHMARKS.md: a drill over s3 2.9× faster with 4 than 1).
    /// Backups keep one process, not to load the primary.
    #[serde(default = "four")]
    pub restore_processes: u32,
    /// How often a full backup runs, once for the whole cluster: `7d`,
    /// `12h`, `30m`, `90s`, or `off`.
    #[serde(default = "weekly")]
    pub full_every: String,
    /// How often a differential backup runs (skipped when a full one is
    /// due in the same tick).
    #[serde(default = "daily")]
    pub diff_every: String,
    /// How often one node restores the latest backup into a scratch
    /// directory and checks it (a restore drill).
    #[serde(default = "daily")]
    pub drill_every: String,
    /// The SSH server of an `sftp` repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<SftpServer>,
    /// The bucket of an `s3` repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Bucket>,
}

/// An SSH server holding the repository (`[backup.sftp]`). Its host keys
/// are pinned here: a server showing any other key is refused. The key
/// nodeimg logs in with is in the secrets (`backup_sftp_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpServer {
    pub host: String,
    /// 23 on a Hetzner Storage Box.
    #[serde(default = "ssh_port")]
    pub port: u16,
    pub user: String,
    /// The server's public host keys, one `<type> <base64>` each, as
    /// `ssh-keyscan` prints them after the host name. Check them against
    /// what the provider publishes before pasting them here.
    pub host_keys: Vec<String>,
}

fn ssh_port() -> u16 {
    22
}

/// `90s`, `30m`, `12h`, `7d` as seconds; `off` as None.
pub fn parse_interval(text: &str) -> Result<Option<u64>, String> {
    if text == "off" {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not an interval like 90s, 30m, 12h, 7d or off");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    let value: u64 = number.parse().map_err(|_| bad())?;
    if value == 0 {
        return Err(format!("{text:?} is zero: use off to turn it off"));
    }
    Ok(Some(value * factor))
}

fn default_path() -> String {
    "/var/lib/pgbackrest".into()
}
fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}
fn seven() -> u32 {
    7
}
fn sixty() -> u32 {
    60
}
fn four() -> u32 {
    4
}
fn weekly() -> String {
    "7d".into()
}
fn daily() -> String {
    "1d".into()
}

impl BackupSettings {
    /// Each refusal: (field, rule).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, rule: String| Err((format!("backup.{field}"), rule));
        let only_with = |table: &str, kind: &str| {
            fail(
                table,
                format!(
                    "[backup.{table}] is only read with repository = \"{kind}\": remove it or change the repository"
                ),
            )
        };
        match self.repository {
            RepositoryKind::Sftp => match &self.sftp {
                None => {
                    return fail(
                        "sftp",
                        "an sftp repository needs a [backup.sftp] table: host, port, user and host_keys".into(),
                    );
                }
                Some(server) => server.validate().or_else(|(f, r)| fail(&f, r))?,
            },
            RepositoryKind::S3 => match &self.s3 {
                None => {
                    return fail(
                        "s3",
                        "an s3 repository needs a [backup.s3] table: endpoint, bucket and region (the access key goes into the secrets)".into(),
                    );
                }
                Some(bucket) => bucket.validate().or_else(|(f, r)| fail(&f, r))?,
            },
            RepositoryKind::Posix => {}
        }
        if self.sftp.is_some() && self.repository != RepositoryKind::Sftp {
            return only_with("sftp", "sftp");
        }
        if self.s3.is_some() && self.repository != RepositoryKind::S3 {
            return only_with("s3", "s3");
        }
        if !self.path.starts_with('/') || self.path.contains("..") || self.path.len() < 2 {
            return fail(
                "path",
                format!(
                    "{:?} must be an absolute path without '..' (the repository on every db node)",
                    self.path
                ),
            );
        }
        if !self
            .path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        {
            return fail(
                "path",
                format!(
                    "{:?} may hold only letters, digits, '/', '.', '_' and '-' (it goes into pgBackRest's configuration, archive_command and the host's systemd unit)",
                    self.path
                ),
            );
        }
        if self.retention_full == 0 {
            return fail(
                "retention_full",
                "must be at least 1: with none kept, every backup would expire at once".into(),
            );
        }
        if !(1..=3600).contains(&self.archive_timeout) {
            return fail(
                "archive_timeout",
                format!(
                    "{} s must be 1 to 3600: it bounds how many seconds of writes are lost when every node's data is lost",
                    self.archive_timeout
                ),
            );
        }
        if !(1..=32).contains(&self.restore_processes) {
            return fail(
                "restore_processes",
                format!(
                    "{} must be 1 to 32 (pgBackRest processes of a restore; 4 by default)",
                    self.restore_processes
                ),
            );
        }
        for (field, value) in [
            ("full_every", &self.full_every),
            ("diff_every", &self.diff_every),
            ("drill_every", &self.drill_every),
        ] {
            match parse_interval(value) {
                Err(rule) => return fail(field, rule),
                Ok(Some(seconds)) if seconds < 30 => {
                    return fail(
                        field,
                        format!(
                            "{value:?} is shorter than 30 s: a backup or a drill needs longer than that"
                        ),
                    );
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// The pinned host keys as known_hosts lines for the server (the
    /// `[host]:port` form off port 22, as OpenSSH and libssh2 match it).
    pub fn known_hosts(&self) -> Option<String> {
        let server = self.sftp.as_ref()?;
        let name = if server.port == 22 {
            server.host.clone()
        } else {
            format!("[{}]:{}", server.host, server.port)
        };
        Some(
            server
                .host_keys
                .iter()
                .map(|key| format!("{name} {}\n", key.trim()))
                .collect(),
        )
    }

    /// Seconds between scheduled full backups, differentials and drills.
    pub fn schedule(&self) -> (Option<u64>, Option<u64>, Option<u64>) {
        let every = |text: &str| parse_interval(text).ok().flatten();
        (
            every(&self.full_every),
            every(&self.diff_every),
            every(&self.drill_every),
        )
    }
}

impl SftpServer {
    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, rule: String| Err((format!("sftp.{field}"), rule));
        let plain = |text: &str, extra: &[char]| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c) || extra.contains(&c))
        };
        if !plain(&self.host, &[':']) {
            return fail(
                "host",
                format!(
                    "{:?} must be a host name or address (letters, digits, '-', '.', ':')",
                    self.host
                ),
            );
        }
        if self.port == 0 {
            return fail("port", "0 is not a port (23 on a Storage Box)".into());
        }
        if !plain(&self.user, &[]) {
            return fail(
                "user",
                format!(
                    "{:?} must be a user name (letters, digits, '-', '.', '_')",
                    self.user
                ),
            );
        }
        if self.host_keys.is_empty() {
            return fail(
                "host_keys",
                format!(
                    "pin the server's host keys: `ssh-keyscan -p {} {}` prints them (check them against what the provider publishes)",
                    self.port, self.host
                ),
            );
        }
        for key in &self.host_keys {
            if let Err(err) = ssh_key::PublicKey::from_openssh(key.trim()) {
                return fail(
                    "host_keys",
                    format!(
                        "{key:?} is not a public key `<type> <base64>` as ssh-keyscan prints it: {err}"
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BackupSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_encrypt_and_keep_two_full_backups() {
        let backup = parse("repository = \"posix\"\n");
        assert_eq!(backup.path, "/var/lib/pgbackrest");
        assert!(backup.encrypt);
        assert_eq!((backup.retention_full, backup.retention_diff), (2, 7));
        assert_eq!(backup.archive_timeout, 60);
        assert_eq!(backup.restore_processes, 4);
        assert_eq!(backup.validate(), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let refused = |text: &str| parse(text).validate().unwrap_err();
        let (field, rule) = refused("repository = \"s3\"\n");
        assert_eq!(field, "backup.s3");
        assert!(rule.contains("endpoint, bucket and region"), "{rule}");
        let (field, _) = refused(
            "repository = \"s3\"\n[s3]\nendpoint = \"fsn1.your-objectstorage.com\"\nbucket = \"b_1\"\nregion = \"fsn1\"\n",
        );
        assert_eq!(field, "backup.s3.bucket");
        let (field, _) = refused(
            "repository = \"posix\"\n[s3]\nendpoint = \"fsn1.your-objectstorage.com\"\nbucket = \"b1\"\nregion = \"fsn1\"\n",
        );
        assert_eq!(field, "backup.s3");
        assert_eq!(refused("repository = \"sftp\"\n").0, "backup.sftp");
        assert_eq!(
            refused("repository = \"posix\"\npath = \"backups\"\n").0,
            "backup.path"
        );
        assert_eq!(
            refused("repository = \"posix\"\npath = \"/a b\"\n").0,
            "backup.path"
        );
        assert_eq!(
            refused("repository = \"posix\"\nretention_full = 0\n").0,
            "backup.retention_full"
        );
        assert_eq!(
            refused("repository = \"posix\"\narchive_timeout = 0\n").0,
            "backup.archive_timeout"
        );
        assert!(
            toml::from_str::<BackupSettings>("repository = \"posix\"\ncipher = \"x\"\n").is_err()
        );
        assert_eq!(
            refused("repository = \"posix\"\nrestore_processes = 0\n").0,
            "backup.restore_processes"
        );
        assert_eq!(
            refused("repository = \"posix\"\nfull_every = \"weekly\"\n").0,
            "backup.full_every"
        );
        assert_eq!(
            refused("repository = \"posix\"\ndrill_every = \"10s\"\n").0,
            "backup.drill_every"
        );
    }

    #[test]
    fn intervals_read_as_seconds() {
        assert_eq!(parse_interval("90s"), Ok(Some(90)));
        assert_eq!(parse_interval("30m"), Ok(Some(1800)));
        assert_eq!(parse_interval("12h"), Ok(Some(43200)));
        assert_eq!(parse_interval("7d"), Ok(Some(604800)));
        assert_eq!(parse_interval("off"), Ok(None));
        assert!(parse_interval("0d").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("5w").is_err());
        let backup: BackupSettings =
            toml::from_str("repository = \"posix\"\ndiff_every = \"off\"\n").unwrap();
        assert_eq!(backup.schedule(), (Some(604800), None, Some(86400)));
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn sftp(table: &str) -> BackupSettings {
        parse(&format!(
            "repository = \"sftp\"\npath = \"/home/backups\"\n[sftp]\n{table}"
        ))
    }

    #[test]
    fn sftp_servers_are_pinned_by_their_host_keys() {
        let backup = sftp(&format!(
            "host = \"u1.your-storagebox.de\"\nport = 23\nuser = \"u1\"\nhost_keys = [\"{KEY}\"]\n"
        ));
        assert_eq!(backup.validate(), Ok(()));
        assert_eq!(
            backup.known_hosts().unwrap(),
            format!("[u1.your-storagebox.de]:23 {KEY}\n")
        );
        let default_port = sftp(&format!(
            "host = \"10.0.0.9\"\nuser = \"u1\"\nhost_keys = [\"{KEY}\"]\n"
        ));
        assert_eq!(
            default_port.known_hosts().unwrap(),
            format!("10.0.0.9 {KEY}\n")
        );
        let refused = |table: &str| sftp(table).validate().unwrap_err();
        let (field, rule) = refused("host = \"h\"\nuser = \"u\"\nhost_keys = []\n");
        assert_eq!(field, "backup.sftp.host_keys");
        assert!(rule.contains("ssh-keyscan -p 22 h"), "{rule}");
        let (field, rule) =
            refused("host = \"h\"\nuser = \"u\"\nhost_keys = [\"ssh-ed25519 nonsense\"]\n");
        assert_eq!(field, "backup.sftp.host_keys");
        assert!(rule.contains("not a public key"), "{rule}");
        assert_eq!(
            refused(&format!(
                "host = \"a b\"\nuser = \"u\"\nhost_keys = [\"{KEY}\"]\n"
            ))
            .0,
            "backup.sftp.host"
        );
        assert_eq!(
            refused(&format!(
                "host = \"h\"\nuser = \"u;x\"\nhost_keys = [\"{KEY}\"]\n"
            ))
            .0,
            "backup.sftp.user"
        );
        let posix_with_sftp = parse(&format!(
            "repository = \"posix\"\n[sftp]\nhost = \"h\"\nuser = \"u\"\nhost_keys = [\"{KEY}\"]\n"
        ));
        assert_eq!(posix_with_sftp.validate().unwrap_err().0, "backup.sftp");
    }
}
