//! Scheduled backups and drills, once per cluster per tick.
//!
//! A tick is the wall-clock time divided by the interval (`full_every`,
//! `diff_every`, `drill_every`). Every db node's agent sees the same tick
//! numbers; the one that creates the tick's claim key in etcd (a
//! transaction that succeeds only while the key does not exist) runs it,
//! so each tick runs once however many nodes try and whichever of them is
//! primary. Backups are taken on a streaming replica (a backup from the
//! standby, `backup_standby`), so the primary carries none of the copying;
//! the primary takes the tick itself only when no replica has claimed it
//! within [`PRIMARY_GRACE`] (no healthy replica, or its backups fail), or
//! in a one-member cluster. A drill runs on a replica too (on the only node
//! of a one-member cluster), once the repository holds a backup. A run
//! that fails gives its claim back after a minute, so it is retried
//! (loudly) rather than lost until the next tick. The last result of each kind is kept under
//! `<namespace><scope>/nodeimg-backup/last/<kind>` for `nodeimg backup
//! status`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::backup::{self, pgbackrest_from};
use crate::agent::backup_drill::{self, DrillSetup};
use crate::agent::backup_standby;
use crate::agent::etcd::Etcd;
use crate::agent::https::ClientTls;
use crate::agent::supervise::ProcessTable;

/// What the scheduler needs.
pub struct Schedule {
    pub me: String,
    pub prefix: String,
    pub etcd: String,
    pub tls: ClientTls,
    pub primary_url: String,
    /// Patroni's `/replica` check with a lag bound: a replica that fails it
    /// leaves backups to another one, or to the primary.
    pub replica_url: String,
    /// The node's pgbackrest.conf (how a standby reaches the primary).
    pub config: String,
    pub full_every: Option<u64>,
    pub diff_every: Option<u64>,
    pub drill_every: Option<u64>,
    pub drill: DrillSetup,
    /// The spec has more than one db member: drills are left to replicas.
    pub has_replicas: bool,
}

/// The last run of one kind, as kept in the DCS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub kind: String,
    pub node: String,
    pub tick: u64,
    pub started_at: i64,
    pub seconds: u64,
    pub ok: bool,
    pub detail: String,
}

/// The tick `now` falls in, and how far into it (both in seconds).
pub fn tick(now: u64, every: u64) -> (u64, u64) {
    (now / every, now % every)
}

/// Which kinds are due at `now`, given the tick each last ran in; a full
/// backup due in the same tick as a differential replaces it.
pub fn due(
    now: u64,
    schedule: &[(&'static str, Option<u64>)],
    done: &std::collections::BTreeMap<&'static str, u64>,
) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, u64)> = schedule
        .iter()
        .filter_map(|(kind, every)| {
            let (t, _) = tick(now, (*every)?);
            (done.get(kind) != Some(&t)).then_some((*kind, t))
        })
        .collect();
    if out.iter().any(|(k, _)| *k == "full") {
        out.retain(|(k, _)| *k != "diff");
    }
    out
}

/// Records `kind` as done for its tick; a full backup also counts for the
/// differential's current tick (a diff right after a full is wasted).
pub fn mark_done(
    done: &mut std::collections::BTreeMap<&'static str, u64>,
    kind: &'static str,
    tick_no: u64,
    now: u64,
    schedule: &[(&'static str, Option<u64>)],
) {
    done.insert(kind, tick_no);
    if kind == "full"
        && let Some((_, Some(every))) = schedule.iter().find(|(k, _)| *k == "diff")
    {
        done.insert("diff", tick(now, *every).0);
    }
}

/// How long the primary leaves a due backup to the replicas before it
/// takes it itself: a replica claims within seconds when it can, and
/// retries a failed one after a minute.
pub const PRIMARY_GRACE: Duration = Duration::from_secs(150);

/// What this node does about a due backup.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupRole {
    /// Try to take it from this standby.
    Standby,
    /// Take it on this node, the primary.
    Primary,
    /// Leave it to another node.
    None,
}

/// A streaming replica takes a due backup; the primary only in a
/// one-member cluster, or once the replicas have left it unclaimed for
/// [`PRIMARY_GRACE`]; any other node (a replica lagging or not running)
/// leaves it.
pub fn backup_role(
    primary: bool,
    streaming_replica: bool,
    has_replicas: bool,
    due_for: Duration,
) -> BackupRole {
    match (primary, streaming_replica) {
        (true, _) if !has_replicas || due_for >= PRIMARY_GRACE => BackupRole::Primary,
        (false, true) => BackupRole::Standby,
        _ => BackupRole::None,
    }
}

/// Where a backup is taken from: this node as a standby of `primary`
/// (with the arguments that say so), or this node as the primary.
enum BackupFrom {
    Standby { primary: String, args: Vec<String> },
    Primary,
}

pub fn start(schedule: Schedule, table: ProcessTable) {
    std::thread::spawn(move || run(schedule, table));
}

fn run(schedule: Schedule, table: ProcessTable) {
    let agent = schedule.tls.agent_when_ready("backup schedule");
    let etcd = match Etcd::new(&schedule.etcd, &schedule.tls) {
        Ok(etcd) => etcd,
        Err(err) => {
            tracing::error!("backup schedule is off: {err}");
            return;
        }
    };
    let kinds = [
        ("full", schedule.full_every),
        ("diff", schedule.diff_every),
        ("drill", schedule.drill_every),
    ];
    let mut done = std::collections::BTreeMap::new();
    let mut retry_after = std::collections::BTreeMap::new();
    // When this node first saw each kind's tick due (the primary's grace).
    let mut due_since: std::collections::BTreeMap<&str, (u64, std::time::Instant)> =
        std::collections::BTreeMap::new();
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let answers = |url: &str| {
            agent
                .get(url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
        };
        let primary = answers(&schedule.primary_url);
        let streaming_replica = !primary && answers(&schedule.replica_url);
        for (kind, tick_no) in due(now, &kinds, &done) {
            let since = due_since
                .entry(kind)
                .and_modify(|seen| {
                    if seen.0 != tick_no {
                        *seen = (tick_no, std::time::Instant::now());
                    }
                })
                .or_insert((tick_no, std::time::Instant::now()))
                .1;
            if retry_after.get(kind).is_some_and(|at| now < *at) {
                continue;
            }
            let every = kinds
                .iter()
                .find(|(k, _)| *k == kind)
                .and_then(|(_, e)| *e)
                .unwrap_or(60);
            // Drills and backups on a replica, so the primary carries none
            // (a one-member cluster runs both on its only node); drills
            // once there is a backup to restore.
            let mut from = BackupFrom::Primary;
            let mine = match kind {
                "drill" => {
                    (!primary || !schedule.has_replicas)
                        && latest_backup(&schedule, &table).is_some()
                }
                _ => match backup_role(
                    primary,
                    streaming_replica,
                    schedule.has_replicas,
                    since.elapsed(),
                ) {
                    BackupRole::Primary => true,
                    BackupRole::Standby => match standby_source(&schedule, &etcd, &table) {
                        Ok(standby) => {
                            from = standby;
                            true
                        }
                        Err(why) => {
                            tracing::debug!("backup: not taking the {kind} backup here: {why}");
                            false
                        }
                    },
                    BackupRole::None => false,
                },
            };
            if !mine {
                continue;
            }
            let claim = format!("{}nodeimg-backup/claims/{kind}/{tick_no}", schedule.prefix);
            match etcd.claim(&claim, &schedule.me, every.saturating_mul(2)) {
                Ok(true) => {}
                Ok(false) => {
                    mark_done(&mut done, kind, tick_no, now, &kinds);
                    continue;
                }
                Err(_) => continue,
            }
            let result = run_one(&schedule, kind, tick_no, &from, &table);
            let text = serde_json::to_string(&result).unwrap_or_default();
            let _ = etcd.put(
                &format!("{}nodeimg-backup/last/{kind}", schedule.prefix),
                &text,
            );
            if result.ok {
                tracing::info!(
                    "backup: scheduled {kind} (tick {tick_no}) done on this node in {} s: {}",
                    result.seconds,
                    result.detail
                );
                mark_done(&mut done, kind, tick_no, now, &kinds);
            } else {
                tracing::error!(
                    "backup: scheduled {kind} (tick {tick_no}) failed on this node after {} s, retrying in 60 s (the database keeps serving): {}",
                    result.seconds,
                    result.detail
                );
                let _ = etcd.delete(&claim);
                retry_after.insert(kind, now + 60);
            }
        }
    }
}

/// On a streaming replica: whether a backup can be taken here, from this
/// standby. It needs the stanza in the repository (the primary creates
/// it), a client certificate, and the primary's address from the DCS.
fn standby_source(
    schedule: &Schedule,
    etcd: &Etcd,
    table: &ProcessTable,
) -> Result<BackupFrom, String> {
    if !repository_ready(schedule, table) {
        return Err("the repository has no stanza yet".into());
    }
    let conf = std::fs::read_to_string(&schedule.config)
        .map_err(|e| format!("cannot read {}: {e}", schedule.config))?;
    let (primary, host) = backup_standby::primary_of(etcd, &schedule.prefix)?;
    let args = backup_standby::standby_args(&conf, &host).ok_or(
        "this node has no pgBackRest client certificate (secrets from before it: `nodeimg secrets update` issues one)",
    )?;
    Ok(BackupFrom::Standby { primary, args })
}

fn run_one(
    schedule: &Schedule,
    kind: &str,
    tick_no: u64,
    from: &BackupFrom,
    table: &ProcessTable,
) -> LastRun {
    let started_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = std::time::Instant::now();
    let runner = |command| table.run(command);
    let (ok, detail) = if kind == "drill" {
        let latest = latest_backup(schedule, table);
        let result = backup_drill::drill(&schedule.drill, &schedule.me, latest, &runner);
        (result.ok, result.detail)
    } else {
        let kind_arg = format!("--type={kind}");
        let (mut args, source) = match from {
            BackupFrom::Standby { primary, args } => (
                args.iter().map(String::as_str).collect::<Vec<_>>(),
                format!("from this standby (primary {primary})"),
            ),
            BackupFrom::Primary => (Vec::new(), "on the primary".to_string()),
        };
        args.extend([kind_arg.as_str(), "backup"]);
        let command = pgbackrest_from(&schedule.drill.pgbackrest, &args, schedule.drill.postgres);
        match table.run(command) {
            Ok(output) if output.code == 0 => {
                let label = latest_backup(schedule, table).unwrap_or_default();
                (true, format!("backup {label} {source}"))
            }
            Ok(output) => {
                let reason = backup::failure_reason(&output);
                (
                    false,
                    format!(
                        "pgbackrest backup {source} exited {}: {reason}",
                        output.code
                    ),
                )
            }
            Err(err) => (false, format!("cannot run pgbackrest: {err}")),
        }
    };
    LastRun {
        kind: kind.to_string(),
        node: schedule.me.clone(),
        tick: tick_no,
        started_at,
        seconds: started.elapsed().as_secs(),
        ok,
        detail,
    }
}

/// The stanza as the repository reports it.
fn repository_info(schedule: &Schedule, table: &ProcessTable) -> Option<backup::RepositoryInfo> {
    let output = table
        .run(pgbackrest_from(
            &schedule.drill.pgbackrest,
            &["--output=json", "info"],
            schedule.drill.postgres,
        ))
        .ok()?;
    let stanza = schedule
        .drill
        .pgbackrest
        .rsplit("--stanza=")
        .next()?
        .split_whitespace()
        .next()?;
    backup::parse_info(&output.stdout, stanza).ok()
}

/// The newest backup's label, from the repository.
fn latest_backup(schedule: &Schedule, table: &ProcessTable) -> Option<String> {
    repository_info(schedule, table)?
        .backups
        .last()
        .map(|b| b.label.clone())
}

/// The stanza exists: pgBackRest's status ok (0) or no valid backup (2).
fn repository_ready(schedule: &Schedule, table: &ProcessTable) -> bool {
    repository_info(schedule, table).is_some_and(|info| [0, 2].contains(&info.status_code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn replicas_take_backups_and_the_primary_only_when_none_did() {
        let now = Duration::ZERO;
        let late = PRIMARY_GRACE;
        assert_eq!(backup_role(false, true, true, now), BackupRole::Standby);
        assert_eq!(backup_role(true, false, true, now), BackupRole::None);
        assert_eq!(backup_role(true, false, true, late), BackupRole::Primary);
        // A one-member cluster backs up on its only node at once.
        assert_eq!(backup_role(true, false, false, now), BackupRole::Primary);
        // A replica lagging (or stopped) leaves it to the others.
        assert_eq!(backup_role(false, false, true, late), BackupRole::None);
    }

    #[test]
    fn ticks_divide_the_clock_by_the_interval() {
        assert_eq!(tick(1_000_000, 60), (16_666, 40));
        assert_eq!(tick(59, 60), (0, 59));
    }

    #[test]
    fn each_kind_is_due_once_per_tick_and_a_full_backup_replaces_a_diff() {
        let schedule = [("full", Some(600)), ("diff", Some(60)), ("drill", None)];
        let mut done = BTreeMap::new();
        // First look: the full backup's tick and the diff's; full wins.
        assert_eq!(due(6000, &schedule, &done), vec![("full", 10)]);
        mark_done(&mut done, "full", 10, 6000, &schedule);
        // The full backup counts for the diff's tick too.
        assert!(due(6059, &schedule, &done).is_empty());
        assert_eq!(due(6060, &schedule, &done), vec![("diff", 101)]);
        mark_done(&mut done, "diff", 101, 6060, &schedule);
        assert!(due(6119, &schedule, &done).is_empty());
        assert_eq!(due(6600, &schedule, &done), vec![("full", 11)]);
    }
}
