//! pgBackRest on a db node: the stanza the primary creates and checks
//! after every promotion, loud logs when WAL archiving fails, and what
//! `nodeimg backup` reads (the repository's info, PostgreSQL's archiver).
//!
//! WAL archiving itself is PostgreSQL's `archive_command` (rendered into
//! Patroni's configuration), so it follows whichever node is primary.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::agent::render::BackupView;
use crate::agent::supervise::{ProcessTable, RunOutput};

/// A pgBackRest command of this node, run as postgres.
pub fn pgbackrest(view: &BackupView, args: &[&str], postgres: (u32, u32)) -> Command {
    pgbackrest_from(&view.command, args, postgres)
}

/// The same from `pgbackrest --config=… --stanza=…` as text.
pub fn pgbackrest_from(command_line: &str, args: &[&str], postgres: (u32, u32)) -> Command {
    let mut words = command_line.split_whitespace();
    let mut command = Command::new(words.next().unwrap_or("/usr/bin/pgbackrest"));
    command.args(words).args(args);
    command
        .env_clear()
        .env("LANG", "C.UTF-8")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .gid(postgres.1)
        .uid(postgres.0);
    command
}

/// The first `key=value` of a rendered pgbackrest.conf (every key it
/// renders appears once).
pub fn conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// PostgreSQL's view of WAL archiving (`pg_stat_archiver`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Archiver {
    pub archived_count: u64,
    pub last_archived_wal: Option<String>,
    pub last_archived_at: Option<String>,
    pub failed_count: u64,
    pub last_failed_wal: Option<String>,
    pub last_failed_at: Option<String>,
    /// The last attempt failed (a failure newer than the last success).
    pub failing: bool,
}

/// One line, `|`-separated, as `psql -tAF'|'` prints it.
pub const ARCHIVER_SQL: &str = "select archived_count, coalesce(last_archived_wal, ''), coalesce(to_char(last_archived_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), failed_count, coalesce(last_failed_wal, ''), coalesce(to_char(last_failed_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) from pg_stat_archiver";

pub fn parse_archiver(line: &str) -> Option<Archiver> {
    let fields: Vec<&str> = line.trim().split('|').collect();
    if fields.len() != 7 {
        return None;
    }
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Archiver {
        archived_count: fields[0].parse().ok()?,
        last_archived_wal: text(fields[1]),
        last_archived_at: text(fields[2]),
        failed_count: fields[3].parse().ok()?,
        last_failed_wal: text(fields[4]),
        last_failed_at: text(fields[5]),
        failing: fields[6] == "t",
    })
}

/// One backup of the repository, from `pgbackrest info --output=json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    pub label: String,
    /// full, diff or incr.
    pub kind: String,
    pub started_at: i64,
    pub stopped_at: i64,
    /// Bytes of the database at backup time, and stored in the repository.
    pub size: u64,
    pub repository_size: u64,
    /// The WAL range a restore of it needs.
    pub wal_start: String,
    pub wal_stop: String,
}

/// The stanza as the repository reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryInfo {
    pub stanza: String,
    /// pgBackRest's status: 0 ok, 1 missing stanza path, 2 no valid
    /// backups, 3 missing stanza data, 4 different cipher, 99 other.
    pub status_code: i64,
    pub status: String,
    pub cipher: String,
    pub backups: Vec<BackupEntry>,
    /// The oldest and newest WAL segment archived.
    pub wal_min: Option<String>,
    pub wal_max: Option<String>,
}

pub fn parse_info(json: &str, stanza: &str) -> Result<RepositoryInfo, String> {
    let all: Value = serde_json::from_str(json)
        .map_err(|e| format!("pgbackrest info did not print JSON: {e}"))?;
    let entry = all
        .as_array()
        .and_then(|list| list.iter().find(|s| s["name"] == stanza))
        .ok_or_else(|| format!("pgbackrest info lists no stanza {stanza:?}"))?;
    let number = |v: &Value| v.as_u64().unwrap_or(0);
    let backups = entry["backup"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| BackupEntry {
            label: b["label"].as_str().unwrap_or_default().to_string(),
            kind: b["type"].as_str().unwrap_or_default().to_string(),
            started_at: b["timestamp"]["start"].as_i64().unwrap_or(0),
            stopped_at: b["timestamp"]["stop"].as_i64().unwrap_or(0),
            size: number(&b["info"]["size"]),
            repository_size: number(&b["info"]["repository"]["size"]),
            wal_start: b["archive"]["start"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            wal_stop: b["archive"]["stop"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    let archives: Vec<&Value> = entry["archive"].as_array().into_iter().flatten().collect();
    let wal = |key: &str| {
        archives
            .iter()
            .filter_map(|a| a[key].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .reduce(|a, b| if key == "min" { a.min(b) } else { a.max(b) })
    };
    // A repository that cannot be read (refused host key, login, network)
    // makes the stanza "other"; the reason is in the repository's status.
    let mut status = entry["status"]["message"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    for repo in entry["repo"].as_array().into_iter().flatten() {
        if repo["status"]["code"].as_i64().unwrap_or(0) != 0
            && let Some(message) = repo["status"]["message"].as_str()
        {
            status = format!("{status}: {}", one_line(message));
        }
    }
    Ok(RepositoryInfo {
        stanza: stanza.to_string(),
        status_code: entry["status"]["code"].as_i64().unwrap_or(99),
        status,
        cipher: entry["cipher"].as_str().unwrap_or("none").to_string(),
        backups,
        wal_min: wal("min"),
        wal_max: wal("max"),
    })
}

/// On the primary: creates the stanza (idempotent) and checks that WAL
/// reaches the repository, after every promotion; every minute, logs an
/// error while `archive_command` fails. Failures are logged, never fatal:
/// the database keeps serving.
pub fn start_primary_tasks(
    view: BackupView,
    primary_url: String,
    tls: crate::agent::https::ClientTls,
    psql: Vec<String>,
    postgres: (u32, u32),
    table: ProcessTable,
) {
    std::thread::spawn(move || {
        let agent = tls.agent_when_ready("backup tasks");
        let mut stanza_ready = false;
        let mut next_try = std::time::Instant::now();
        let mut next_archiver_check = std::time::Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(2));
            let primary = agent
                .get(&primary_url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200);
            if !primary {
                stanza_ready = false;
                continue;
            }
            let now = std::time::Instant::now();
            if !stanza_ready && now >= next_try {
                match run_logged(&table, pgbackrest(&view, &["stanza-create"], postgres))
                    .and_then(|()| run_logged(&table, pgbackrest(&view, &["check"], postgres)))
                {
                    Ok(()) => {
                        tracing::info!(
                            "backup: stanza {} ready, WAL reaches the repository ({})",
                            view.stanza,
                            view.repo_path
                        );
                        stanza_ready = true;
                    }
                    Err(err) => {
                        tracing::error!(
                            "backup: the repository is not usable, retrying in 30 s (the database keeps serving): {err}"
                        );
                        next_try = now + Duration::from_secs(30);
                    }
                }
            }
            if now >= next_archiver_check {
                next_archiver_check = now + Duration::from_secs(60);
                let mut command = Command::new(&psql[0]);
                command.args(&psql[1..]).args(["-tAF|", "-c", ARCHIVER_SQL]);
                command.gid(postgres.1).uid(postgres.0);
                if let Ok(output) = table.run(command)
                    && let Some(archiver) = parse_archiver(&output.stdout)
                    && archiver.failing
                {
                    tracing::error!(
                        "backup: archive_command is failing: WAL {} not archived (last failure {}, {} failures; last success {}): {}; WAL piles up in pg_wal until it works",
                        archiver.last_failed_wal.as_deref().unwrap_or("?"),
                        archiver.last_failed_at.as_deref().unwrap_or("?"),
                        archiver.failed_count,
                        archiver.last_archived_at.as_deref().unwrap_or("never"),
                        repository_problem(&table, &view, postgres)
                            .unwrap_or_else(|| "see this node's PostgreSQL log".into())
                    );
                }
            }
        }
    });
}

/// Why the repository cannot be used, as `pgbackrest info` tells it (a
/// refused host key, a failed login, an unreachable server); none when it
/// reads fine.
fn repository_problem(
    table: &ProcessTable,
    view: &BackupView,
    postgres: (u32, u32),
) -> Option<String> {
    let output = table
        .run(pgbackrest(view, &["info", "--output=json"], postgres))
        .ok()?;
    match parse_info(&output.stdout, &view.stanza) {
        Ok(info) if info.status_code == 0 => None,
        Ok(info) => Some(format!("the repository reports {}", info.status)),
        Err(_) => Some(format!(
            "the repository cannot be read: {}",
            failure_reason(&output)
        )),
    }
}

/// What a failed pgBackRest or PostgreSQL command said: its last ERROR or
/// FATAL (with what follows it, on one line), else all it printed.
pub fn failure_reason(output: &RunOutput) -> String {
    let text = format!("{}{}", output.stdout, output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    match lines
        .iter()
        .rposition(|l| l.contains("ERROR") || l.contains("FATAL"))
    {
        Some(at) => {
            // The error's own continuation lines, not the log lines after.
            let continued = lines[at + 1..]
                .iter()
                .take_while(|l| !l.contains("P00") && !l.starts_with(|c: char| c.is_ascii_digit()))
                .count();
            one_line(&lines[at..=at + continued].join("\n"))
        }
        None => one_line(&text),
    }
}

/// A pgBackRest message on one line. An HTTP failure (S3) is many lines:
/// the request, its headers and the server's XML answer; what matters is
/// the first line, the request line and the S3 error code and message.
pub fn one_line(message: &str) -> String {
    let message = message.trim();
    let Some((first, rest)) = message.split_once('\n') else {
        return message.to_string();
    };
    let first = first.trim().trim_end_matches(':');
    let between = |open: &str, close: &str| {
        let start = rest.find(open)? + open.len();
        let end = rest[start..].find(close)? + start;
        Some(rest[start..end].trim().to_string()).filter(|s| !s.is_empty())
    };
    let request = rest
        .split_once("*** Path/Query ***:")
        .and_then(|(_, after)| after.lines().map(str::trim).find(|l| !l.is_empty()));
    let mut out = first.to_string();
    if let Some(code) = between("<Code>", "</Code>") {
        out += &format!(": {code}");
        if let Some(text) = between("<Message>", "</Message>") {
            out += &format!(" ({text})");
        }
    }
    match request {
        Some(request) => out + &format!(" [{request}]"),
        None if out == first => {
            // Not an HTTP failure: keep every line, joined (a line's own
            // closing ':' would read as ': /').
            message
                .lines()
                .map(|line| line.trim().trim_end_matches(':').trim_end())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" / ")
        }
        None => out,
    }
}

fn run_logged(table: &ProcessTable, command: Command) -> Result<(), String> {
    let shown = format!("{:?}", command.get_args().last().unwrap_or_default());
    let output = table
        .run(command)
        .map_err(|e| format!("cannot run pgbackrest: {e}"))?;
    if output.code == 0 {
        return Ok(());
    }
    let reason = failure_reason(&output);
    Err(format!(
        "pgbackrest {shown} exited {}: {reason}",
        output.code
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archiver_line_is_read_as_psql_prints_it() {
        let ok =
            parse_archiver("12|000000010000000000000005|2026-12-01T10:00:00Z|0|||f\n").unwrap();
        assert_eq!(ok.archived_count, 12);
        assert_eq!(
            ok.last_archived_wal.as_deref(),
            Some("000000010000000000000005")
        );
        assert!(!ok.failing && ok.last_failed_wal.is_none());
        let failing = parse_archiver(
            "12|000000010000000000000005|2026-12-01T10:00:00Z|3|000000010000000000000006|2026-12-01T10:01:00Z|t",
        )
        .unwrap();
        assert!(failing.failing);
        assert_eq!(failing.failed_count, 3);
        assert!(parse_archiver("garbage").is_none());
    }

    #[test]
    fn info_is_summarised_per_backup() {
        let json = r#"[{"name":"e2e","cipher":"aes-256-cbc",
            "status":{"code":0,"message":"ok"},
            "archive":[{"id":"17-1","min":"000000010000000000000003","max":"000000020000000000000009"}],
            "backup":[{"label":"20261201-100000F","type":"full",
                "timestamp":{"start":1764583200,"stop":1764583210},
                "info":{"size":31000000,"delta":31000000,"repository":{"size":4000000,"delta":4000000}},
                "archive":{"start":"000000010000000000000004","stop":"000000010000000000000004"}}]}]"#;
        let info = parse_info(json, "e2e").unwrap();
        assert_eq!(info.status_code, 0);
        assert_eq!(info.cipher, "aes-256-cbc");
        assert_eq!(info.backups.len(), 1);
        assert_eq!(info.backups[0].kind, "full");
        assert_eq!(info.backups[0].repository_size, 4000000);
        assert_eq!(info.wal_max.as_deref(), Some("000000020000000000000009"));
        assert!(parse_info(json, "other").is_err());
        // What pgBackRest 2.55 printed for an sftp server with another host key.
        let refused = r#"[{"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"e2e","repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":99,"message":"[ServiceError] known hosts failure: '172.31.249.30' mismatch in known hosts files: LIBSSH2_KNOWNHOST_CHECK_MISMATCH [1]: check type [strict]"}}],"status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}]"#;
        let info = parse_info(refused, "e2e").unwrap();
        assert_eq!(info.status_code, 99);
        assert!(
            info.status
                .starts_with("other: [ServiceError] known hosts failure"),
            "{}",
            info.status
        );
        assert!(parse_info("not json", "e2e").is_err());
    }

    #[test]
    fn an_s3_failure_is_told_in_one_line() {
        // What pgBackRest 2.55 printed with a revoked key (radosgw).
        let message = "[ProtocolError] HTTP request failed with 403 (Forbidden):\n*** Path/Query ***:\nGET /nodeimg-backups/?delimiter=%2F&list-type=2&prefix=repo%2Fbackup%2F\n*** Request Headers ***:\nauthorization: <redacted>\ncontent-length: 0\n*** Response Headers ***:\ncontent-type: application/xml\n*** Response Content ***:\n<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code><Message></Message><RequestId>tx0</RequestId></Error>";
        assert_eq!(
            one_line(message),
            "[ProtocolError] HTTP request failed with 403 (Forbidden): InvalidAccessKeyId [GET /nodeimg-backups/?delimiter=%2F&list-type=2&prefix=repo%2Fbackup%2F]"
        );
        let output = RunOutput {
            code: 56,
            stdout: format!(
                "P00   INFO: check command begin\nP00  ERROR: [056]: {message}\nP00   INFO: check command end: aborted with exception [056]\n"
            ),
            stderr: String::new(),
        };
        let reason = failure_reason(&output);
        assert!(reason.contains("ERROR: [056]: [ProtocolError]"), "{reason}");
        assert!(reason.contains("InvalidAccessKeyId"), "{reason}");
        assert!(
            !reason.contains('\n') && !reason.contains("command end"),
            "{reason}"
        );
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(one_line("two\nlines"), "two / lines");
        // What pgBackRest 2.55 said of a repository overwritten with garbage.
        let garbage = "[FormatError] unable to load info file '/repo/backup/old/backup.info':\nFormatError: key/value found outside of section at line 1: JdGARBAGE\nHINT: has a stanza-create been performed?";
        assert_eq!(
            one_line(garbage),
            "[FormatError] unable to load info file '/repo/backup/old/backup.info' / FormatError: key/value found outside of section at line 1: JdGARBAGE / HINT: has a stanza-create been performed?"
        );
    }
}
