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
use crate::agent::backup_drill::{self, DrillSetup};
use crate::agent::backup_schedule::LastRun;
use crate::agent::etcd::Etcd;
use crate::agent::https::ClientTls;
use crate::agent::supervise::RunOutput;

/// What the commands need to know of the node, from its pgbackrest.conf.
struct NodeBackup {
    command_line: String,
    stanza: String,
    port: String,
    socket: String,
    postgres: (u32, u32),
}

/// The stanza's section of a pgbackrest.conf: not [global] nor a
/// command's section ([global:restore], [global:server], [<stanza>:<command>]).
fn stanza_of(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .find(|name| *name != "global" && !name.contains(':'))
}

fn locate(config: &Path) -> anyhow::Result<NodeBackup> {
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "cannot read {}: run this inside a db node of a cluster whose spec has a [backup] section (e.g. `docker exec <db container> nodeimg backup status`)",
            config.display()
        )
    })?;
    let stanza = stanza_of(&text)
        .with_context(|| format!("{} names no stanza", config.display()))?
        .to_string();
    let value = |key: &str| crate::agent::backup::conf_value(&text, key);
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
    format!("{}/psql", crate::agent::node::postgres_bin_dir())
}

/// The cluster's etcd as this node's Patroni reaches it (its rendered
/// configuration names the hosts, the CA and the client certificate), the
/// cluster's prefix there (`/nodeimg/<cluster>/`) and this node's name.
fn dcs(patroni_yml: &Path) -> anyhow::Result<(Etcd, String, String)> {
    let text = std::fs::read_to_string(patroni_yml)
        .with_context(|| format!("cannot read {}", patroni_yml.display()))?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", patroni_yml.display()))?;
    let text_of = |v: &serde_yaml_ng::Value| v.as_str().map(str::to_string);
    let etcd3 = &yaml["etcd3"];
    let host = etcd3["hosts"]
        .as_sequence()
        .and_then(|h| h.first())
        .and_then(text_of)
        .with_context(|| {
            format!(
                "{} has no etcd3 hosts (dcs = raft keeps no backup schedule)",
                patroni_yml.display()
            )
        })?;
    let tls = ClientTls {
        ca: text_of(&etcd3["cacert"]).unwrap_or_default(),
        cert: text_of(&etcd3["cert"]).unwrap_or_default(),
        key: text_of(&etcd3["key"]).unwrap_or_default(),
    };
    let prefix = format!(
        "{}{}/",
        text_of(&yaml["namespace"]).unwrap_or_else(|| "/nodeimg/".into()),
        text_of(&yaml["scope"]).unwrap_or_default()
    );
    let etcd = Etcd::new(&format!("https://{host}"), &tls).map_err(anyhow::Error::msg)?;
    Ok((etcd, prefix, text_of(&yaml["name"]).unwrap_or_default()))
}

/// Under the cluster's prefix: the schedule's last result of each kind.
const LAST_RUNS: &str = "nodeimg-backup/last/";

fn last_runs(patroni_yml: &Path) -> anyhow::Result<Vec<LastRun>> {
    let (etcd, prefix, _) = dcs(patroni_yml)?;
    Ok(etcd
        .entries_under(&format!("{prefix}{LAST_RUNS}"))
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_str(&value).ok())
        .collect())
}

#[derive(Serialize)]
struct Status {
    ok: bool,
    node_role: &'static str,
    repository: RepositoryInfo,
    /// PostgreSQL's archiver on the primary (a replica archives nothing).
    archive: Option<Archiver>,
    /// The last scheduled full, diff and drill, whichever node ran them.
    last_runs: Vec<LastRun>,
    problems: Vec<String>,
}

/// Prints the repository's state and, on the primary, WAL archiving's;
/// exits 1 when either is unhealthy, so a monitor can run it.
pub fn status(config: &Path, patroni_yml: &Path, json: bool) -> anyhow::Result<i32> {
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
        problems.push(format!(
            "the repository reports {:?} (pgBackRest status {}): `{} info` on this node says more",
            repository.status, repository.status_code, node.command_line
        ));
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
    let last_runs = match last_runs(patroni_yml) {
        Ok(runs) => runs,
        Err(err) => {
            problems.push(format!(
                "cannot read the schedule's results from etcd: {err:#}"
            ));
            Vec::new()
        }
    };
    for run in last_runs.iter().filter(|r| !r.ok) {
        problems.push(format!(
            "the last {} failed on {}: {}",
            run.kind, run.node, run.detail
        ));
    }
    if !last_runs.iter().any(|r| r.kind == "drill" && r.ok) {
        problems.push(
            "no restore drill has succeeded yet: a backup that was never restored is not trusted (`nodeimg backup drill` runs one now)".into(),
        );
    }
    let status = Status {
        ok: problems.is_empty(),
        node_role: if primary { "primary" } else { "replica" },
        repository,
        archive,
        last_runs,
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
            None => println!("backups: none yet (`nodeimg backup now` takes one)"),
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
        for run in &status.last_runs {
            println!(
                "last {}: {} on {} (tick {}, {} s): {}",
                run.kind,
                if run.ok { "ok" } else { "FAILED" },
                run.node,
                run.tick,
                run.seconds,
                run.detail
            );
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

/// Takes a backup now, on this node: on a replica, a backup from this
/// standby (the files copied from here, the primary named by the DCS);
/// on the primary, from the primary.
pub fn now(config: &Path, patroni_yml: &Path, kind: &str) -> anyhow::Result<i32> {
    let node = locate(config)?;
    let mut args = Vec::new();
    if node.is_primary()? {
        eprintln!(
            "backup: a {kind} backup of stanza {} starting on the primary",
            node.stanza
        );
    } else {
        let (etcd, prefix, _) = dcs(patroni_yml)?;
        let (primary, host) = crate::agent::backup_standby::primary_of(&etcd, &prefix)
            .map_err(|e| anyhow::anyhow!("cannot back up from this replica: {e}"))?;
        let conf = std::fs::read_to_string(config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        args = crate::agent::backup_standby::standby_args(&conf, &host).context(
            "this replica has no pgBackRest client certificate (its secrets predate it): run `nodeimg secrets update` and reload the node, or run this on the primary",
        )?;
        eprintln!(
            "backup: a {kind} backup of stanza {} starting from this standby (primary {primary} at {host})",
            node.stanza
        );
    }
    let kind_arg = format!("--type={kind}");
    args.extend([kind_arg, "backup".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = node
        .pgbackrest(&args)
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

/// Restores the latest backup into a scratch directory on this node,
/// checks it and removes it (what the schedule's drills do); records the
/// result where `backup status` shows it. Exits 1 when the drill failed.
pub fn drill(config: &Path, patroni_yml: &Path, json: bool) -> anyhow::Result<i32> {
    let node = locate(config)?;
    let info = node.info()?;
    let latest = info.backups.last().map(|b| b.label.clone());
    let dcs = dcs(patroni_yml);
    let name = dcs
        .as_ref()
        .map(|(_, _, name)| name.clone())
        .unwrap_or_else(|_| "this node".into());
    eprintln!(
        "drill: restoring {} into a scratch directory",
        latest.as_deref().unwrap_or("(no backup)")
    );
    let setup = DrillSetup {
        pgbackrest: node.command_line.clone(),
        bin_dir: crate::agent::node::postgres_bin_dir(),
        scratch: "/var/lib/postgresql/nodeimg-drill".into(),
        postgres: node.postgres,
    };
    let run = |mut command: Command| -> std::io::Result<RunOutput> {
        let output = command.output()?;
        Ok(RunOutput {
            code: output.status.code().unwrap_or(128),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    };
    let result = backup_drill::drill(&setup, &name, latest, &run);
    let record = LastRun {
        kind: "drill".into(),
        node: result.node.clone(),
        tick: 0,
        started_at: result.started_at,
        seconds: result.seconds,
        ok: result.ok,
        detail: result.detail.clone(),
    };
    if let Ok((etcd, prefix, _)) = &dcs {
        let _ = etcd.put(
            &format!("{prefix}{LAST_RUNS}drill"),
            &serde_json::to_string(&record).unwrap_or_default(),
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "drill {} in {} s: {}",
            if result.ok { "ok" } else { "FAILED" },
            result.seconds,
            result.detail
        );
    }
    Ok(if result.ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stanza_is_the_section_that_is_not_global() {
        let conf = "[global]\nrepo1-type=s3\n\n[global:restore]\nprocess-max=4\n\n[keybuzz]\npg1-path=/d\n";
        assert_eq!(super::stanza_of(conf), Some("keybuzz"));
        assert_eq!(super::stanza_of("[global]\n[global:restore]\n"), None);
        let conf = "[global]\n[keybuzz:backup]\npg2-host-type=tls\n[global:server]\n[keybuzz]\n";
        assert_eq!(super::stanza_of(conf), Some("keybuzz"));
    }
}
