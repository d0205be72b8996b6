//! A backup taken on a replica (pgBackRest's `backup-standby`): the files
//! are copied from this node, and only `pg_backup_start`/`pg_backup_stop`
//! and a few small files come from the primary, through its pgBackRest
//! TLS server. The primary carries no copy load.
//!
//! The primary moves with every failover, so it is named at run time from
//! the DCS (Patroni's leader key and that member's connection URL), not in
//! pgbackrest.conf; the file says only how to reach it (TLS, certificates).

use std::path::Path;

use crate::agent::backup::conf_value;
use crate::agent::etcd::Etcd;
use crate::agent::render::BACKUP_CLIENT_CERT;

/// The primary as the DCS names it: (member name, address).
pub fn primary_of(etcd: &Etcd, prefix: &str) -> Result<(String, String), String> {
    let leader = etcd
        .get(&format!("{prefix}leader"))?
        .ok_or("the DCS has no leader key: no primary to back up from")?
        .value;
    let member = etcd
        .get(&format!("{prefix}members/{leader}"))?
        .ok_or_else(|| format!("the leader {leader} has no member key in the DCS"))?
        .value;
    let host = host_of_member(&member)
        .ok_or_else(|| format!("the leader {leader}'s member key has no conn_url: {member}"))?;
    Ok((leader, host))
}

/// The host of a Patroni member key's `conn_url`
/// (`postgres://10.0.0.120:5432/postgres`).
pub fn host_of_member(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let url = value["conn_url"].as_str()?.strip_prefix("postgres://")?;
    let authority = url.split('/').next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// The arguments that make a `pgbackrest backup` on this node a backup
/// from this standby: the primary as pg2, reached through its TLS server
/// with this node's client certificate, with the same paths and port as
/// this node's pg1 and server (every db node is laid out alike). Read from
/// the node's pgbackrest.conf; none when the node has no client
/// certificate (its secrets predate it), so the caller leaves the backup
/// to the primary.
pub fn standby_args(conf: &str, primary_host: &str) -> Option<Vec<String>> {
    let value = |key: &str| conf_value(conf, key);
    let key = value("tls-server-key-file")?;
    let client_cert = Path::new(&key).with_file_name(BACKUP_CLIENT_CERT);
    if !client_cert.exists() {
        return None;
    }
    let mut args = vec![
        format!("--pg2-host={primary_host}"),
        "--pg2-host-type=tls".to_string(),
        format!("--pg2-host-port={}", value("tls-server-port")?),
        format!("--pg2-host-cert-file={}", client_cert.display()),
        format!("--pg2-host-key-file={key}"),
        format!("--pg2-host-ca-file={}", value("tls-server-ca-file")?),
    ];
    for key in ["path", "port", "socket-path", "user"] {
        if let Some(v) = value(&format!("pg1-{key}")) {
            args.push(format!("--pg2-{key}={v}"));
        }
    }
    args.push("--backup-standby=y".into());
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_address_is_read_from_its_member_key() {
        let key = r#"{"conn_url":"postgres://10.0.0.120:5432/postgres","api_url":"https://10.0.0.120:8008/patroni","state":"running","role":"primary"}"#;
        assert_eq!(host_of_member(key).as_deref(), Some("10.0.0.120"));
        assert_eq!(host_of_member(r#"{"state":"running"}"#), None);
        assert_eq!(host_of_member("not json"), None);
    }

    #[test]
    fn standby_arguments_name_the_primary_with_this_nodes_paths() {
        let tls = tempfile::tempdir().unwrap();
        let dir = tls.path().display();
        let conf = format!(
            "[global]\nrepo1-type=posix\n[e2e]\npg1-path=/var/lib/postgresql/17/data\npg1-port=5432\npg1-socket-path=/run/postgresql\npg1-user=postgres\n[global:server]\ntls-server-port=8432\ntls-server-cert-file={dir}/node.crt\ntls-server-key-file={dir}/node.key\ntls-server-ca-file={dir}/ca.crt\n"
        );
        // Without a client certificate the primary cannot be reached.
        assert_eq!(standby_args(&conf, "10.0.0.121"), None);
        std::fs::write(tls.path().join(BACKUP_CLIENT_CERT), "pem").unwrap();
        assert_eq!(
            standby_args(&conf, "10.0.0.121").unwrap(),
            [
                "--pg2-host=10.0.0.121".to_string(),
                "--pg2-host-type=tls".into(),
                "--pg2-host-port=8432".into(),
                format!("--pg2-host-cert-file={dir}/backup-client.crt"),
                format!("--pg2-host-key-file={dir}/node.key"),
                format!("--pg2-host-ca-file={dir}/ca.crt"),
                "--pg2-path=/var/lib/postgresql/17/data".into(),
                "--pg2-port=5432".into(),
                "--pg2-socket-path=/run/postgresql".into(),
                "--pg2-user=postgres".into(),
                "--backup-standby=y".into(),
            ]
        );
    }
}
