//! `nodeimg backup status|list|now`: run inside a db node of a cluster
//! whose spec has `[backup]` (`docker exec <db> nodeimg backup status`, or
//! on a Hetzner host `docker exec nodeimg nodeimg backup status`). They
//! read the node's rendered pgBackRest configuration, so they see the
//! repository exactly as the node's archiving does.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::agent::backup::{self, Archiver, RepositoryInfo};

/// What the commands need to know of the node, from its pgbackrest.conf.
struct NodeBackup {
    command_line: String,
    stanza: String,
    port: String,
    socket: String,
    postgres: (u32, u32),
}

fn locate(config: &Path) -> anyhow::Result<NodeBackup> {
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "cannot read {}: run this inside a db node of a cluster whose spec has a [backup] section (e.g. `docker exec <db container> nodeimg backup status`)",
            config.display()
        )
    })?;
    let stanza = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .find(|name| *name != "global")
        .with_context(|| format!("{} names no stanza", config.display()))?
        .to_string();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    let postgres = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
        .context("this system has no postgres account: run this inside a db node")?;
    Ok(NodeBackup {
        command_line: format!(
            "/usr/bin/pgbackrest --config={} --stanza={stanza}",
            config.display()
        ),
        stanza,
        port: value("pg1-port").unwrap_or_else(|| "5432".into()),
        socket: value("pg1-socket-path").unwrap_or_else(|| "/run/postgresql".into()),
        postgres,
    })
}

impl NodeBackup {
    fn pgbackrest(&self, args: &[&str]) -> Command {
        backup::pgbackrest_from(&self.command_line, args, self.postgres)
    }

    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let mut command = Command::new(psql_path());
        command
            .args(["-X", "-tAF|", "-h", &self.socket, "-p", &self.port])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .env_clear()
            .env("LANG", "C.UTF-8")
            .gid(self.postgres.1)
            .uid(self.postgres.0);
        let output = command.output().context("cannot run psql")?;
        if !output.status.success() {
            bail!(
                "PostgreSQL on this node does not answer: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn is_primary(&self) -> anyhow::Result<bool> {
        Ok(self.psql("select pg_is_in_recovery()")? == "f")
    }

    fn info(&self) -> anyhow::Result<RepositoryInfo> {
        let output = self
            .pgbackrest(&["--output=json", "info"])
            .output()
            .context("cannot run pgbackrest")?;
        if !output.status.success() {
            bail!(
                "pgbackrest info failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        backup::parse_info(&String::from_utf8_lossy(&output.stdout), &self.stanza)
            .map_err(anyhow::Error::msg)
    }
}

fn psql_path() -> String {
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    majors.sort();
    format!(
        "/usr/lib/postgresql/{}/bin/psql",
        majors.last().copied().unwrap_or(17)
    )
}

#[derive(Serialize)]
struct Status {
    ok: bool,
    node_role: &'static str,
    repository: RepositoryInfo,
    /// PostgreSQL's archiver on the primary (a replica archives nothing).
    archive: Option<Archiver>,
    problems: Vec<String>,
}

/// Prints the repository's state and, on the primary, WAL archiving's;
/// exits 1 when either is unhealthy, so a monitor can run it.
pub fn status(config: &Path, json: bool) -> anyhow::Result<i32> {
    let node = locate(config)?;
    let primary = node.is_primary()?;
    let mut problems = Vec::new();
    let repository = match node.info() {
        Ok(info) => info,
        Err(err) => {
            problems.push(format!("the repository does not answer: {err:#}"));
            RepositoryInfo {
                stanza: node.stanza.clone(),
                status_code: 99,
                status: format!("{err:#}"),
                cipher: "unknown".into(),
                backups: Vec::new(),
                wal_min: None,
                wal_max: None,
            }
        }
    };
    if repository.status_code != 0 && problems.is_empty() {
        problems.push(format!("the repository reports: {}", repository.status));
    }
    let archive = if primary {
        let line = node.psql(backup::ARCHIVER_SQL)?;
        let archiver = backup::parse_archiver(&line)
            .with_context(|| format!("unexpected pg_stat_archiver line {line:?}"))?;
        if archiver.failing {
            problems.push(format!(
                "archive_command is failing: WAL {} not archived since {}",
                archiver.last_failed_wal.as_deref().unwrap_or("?"),
                archiver.last_archived_at.as_deref().unwrap_or("ever")
            ));
        }
        Some(archiver)
    } else {
        None
    };
    let status = Status {
        ok: problems.is_empty(),
        node_role: if primary { "primary" } else { "replica" },
        repository,
        archive,
        problems,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "stanza {} ({} repository, cipher {}): {}",
            status.repository.stanza,
            config.display(),
            status.repository.cipher,
            status.repository.status
        );
        match status.repository.backups.last() {
            Some(last) => println!(
                "backups: {} (latest {} {}, {} bytes stored)",
                status.repository.backups.len(),
                last.kind,
                last.label,
                last.repository_size
            ),
            None => println!("backups: none yet (`nodeimg backup now` on the primary)"),
        }
        match &status.archive {
            Some(a) => println!(
                "WAL archive: {} archived, last {} at {}; {} failures",
                a.archived_count,
                a.last_archived_wal.as_deref().unwrap_or("none"),
                a.last_archived_at.as_deref().unwrap_or("never"),
                a.failed_count
            ),
            None => println!("WAL archive: this node is a replica; the primary archives"),
        }
        for problem in &status.problems {
            println!("PROBLEM: {problem}");
        }
    }
    Ok(if status.ok { 0 } else { 1 })
}

/// Lists the repository's backups, oldest first.
pub fn list(config: &Path, json: bool) -> anyhow::Result<i32> {
    let node = locate(config)?;
    let info = node.info()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info.backups)?);
        return Ok(0);
    }
    if info.backups.is_empty() {
        println!("no backups in stanza {} ({})", info.stanza, info.status);
    }
    for b in &info.backups {
        println!(
            "{}  {:<4}  {} s  {} bytes, {} stored  WAL {}..{}",
            b.label,
            b.kind,
            b.stopped_at - b.started_at,
            b.size,
            b.repository_size,
            b.wal_start,
            b.wal_stop
        );
    }
    Ok(0)
}

/// Takes a backup now, on this node, which must be the primary.
pub fn now(config: &Path, kind: &str) -> anyhow::Result<i32> {
    let node = locate(config)?;
    if !node.is_primary()? {
        bail!(
            "this node is a replica: run `nodeimg backup now` on the primary (`patronictl list` names it)"
        );
    }
    eprintln!("backup: a {kind} backup of stanza {} starting", node.stanza);
    let status = node
        .pgbackrest(&[&format!("--type={kind}"), "backup"])
        .status()
        .context("cannot run pgbackrest")?;
    if !status.success() {
        bail!("pgbackrest backup failed ({status}); its messages are above");
    }
    let info = node.info()?;
    if let Some(last) = info.backups.last() {
        eprintln!(
            "backup: {} done in {} s ({} bytes, {} stored)",
            last.label,
            last.stopped_at - last.started_at,
            last.size,
            last.repository_size
        );
    }
    Ok(0)
}
