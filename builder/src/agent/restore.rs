//! `[restore]` on a db node with a blank data directory: before Patroni's
//! custom bootstrap runs `pgbackrest restore` (whose failures Patroni only
//! retries), the agent reads the old stanza once and logs, in words, why a
//! restore cannot work: no such stanza, no backup in it, or a repository
//! passphrase that is not the old cluster's.

use std::process::Command;

use serde_json::Value;

use crate::agent::backup::{failure_reason, pgbackrest_from};
use crate::agent::render::{BackupView, RestoreView};
use crate::agent::supervise::ProcessTable;

/// `pgbackrest info --output=json` of the old stanza, judged: what the
/// restore will start from, or why it cannot.
pub fn judge_info(
    json: &str,
    from: &str,
    repository: &str,
    target: Option<&str>,
) -> Result<String, String> {
    // pgBackRest quotes the garbage a wrong passphrase decrypts to, raw
    // control characters included, which JSON forbids in strings.
    let json: String = json
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let all: Value = serde_json::from_str(&json)
        .map_err(|e| format!("pgbackrest info did not print JSON: {e}"))?;
    let entry = all
        .as_array()
        .and_then(|list| list.iter().find(|s| s["name"] == from))
        .ok_or_else(|| format!("pgbackrest info lists no stanza {from:?}"))?;
    let code = entry["status"]["code"].as_i64().unwrap_or(99);
    // Per repository, the error pgBackRest met (a cipher error is there).
    // Its first line: the rest can quote the bytes it failed to decrypt.
    let said: Vec<String> = entry["repo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["status"]["message"].as_str())
        .chain(entry["status"]["message"].as_str())
        .filter(|m| *m != "ok" && *m != "other")
        .map(|m| m.lines().next().unwrap_or_default().to_string())
        .collect();
    let said = said.join("; ");
    // A wrong passphrase decrypts the info files into garbage, which
    // pgBackRest reports as a format error of an encrypted repository.
    let encrypted = entry["cipher"].as_str().is_some_and(|c| c != "none");
    match code {
        0 => {
            // pgBackRest restores to a time from the newest backup that
            // stopped before it, in whole seconds, and refuses without one.
            if let Some(text) = target
                && let Ok(epoch) = crate::cluster::restore::target_epoch(text)
            {
                let stops: Vec<i64> = entry["backup"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["timestamp"]["stop"].as_i64())
                    .collect();
                if !stops.iter().any(|stop| *stop < epoch) {
                    let first = stops
                        .iter()
                        .min()
                        .map_or("no backup ended yet".to_string(), |s| {
                            format!("the first backup ended at Unix time {s}")
                        });
                    return Err(format!(
                        "no backup of stanza {from} ended before target_time {text} ({first}): a restore to a time starts from a backup that ended at least a second before it; choose a later target_time"
                    ));
                }
            }
            let backups = entry["backup"].as_array().map_or(0, |b| b.len());
            let newest = entry["archive"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["max"].as_str())
                .max()
                .unwrap_or("none");
            Ok(format!(
                "stanza {from} in {repository}: {backups} backup(s), WAL archived up to {newest}"
            ))
        }
        1 | 3 => Err(format!(
            "the repository {repository} has no stanza {from:?} ({said}): [restore] from must be the old cluster's cluster.name, and [backup] the old cluster's repository"
        )),
        2 => Err(format!(
            "stanza {from} in {repository} has no backup to restore ({said}): take one on the old cluster (`nodeimg backup now --type full` on its primary)"
        )),
        _ if said.contains("CryptoError")
            || encrypted
                && said.contains("FormatError")
                && said.contains("unable to load info file") =>
        {
            Err(cipher_mismatch(&said))
        }
        _ => Err(format!(
            "pgBackRest cannot read stanza {from} in {repository}: {said}"
        )),
    }
}

/// The passphrase is the repository's, not a cluster's.
fn cipher_mismatch(said: &str) -> String {
    format!(
        "the repository cannot be decrypted with this cluster's backup_cipher_password (pgBackRest: {said}): the passphrase belongs to the repository, so the new cluster needs the old cluster's: copy backup_cipher_password from the old cluster's secrets into the new cluster's (`nodeimg secrets init --backup-cipher-from OLD.secrets.toml`), or set NODEIMG_BACKUP_CIPHER_PASSWORD on the nodes"
    )
}

/// Reads the old stanza in the background and logs the verdict.
pub fn check_source(
    backup: &BackupView,
    restore: &RestoreView,
    postgres: (u32, u32),
    table: ProcessTable,
) {
    let command_line = format!(
        "/usr/bin/pgbackrest --config={} --stanza={}",
        backup.config, restore.from
    );
    let (from, repository) = (restore.from.clone(), backup.repo_path.clone());
    let target_time = restore.target_time.clone();
    let target = target_time
        .clone()
        .map_or("the latest point".to_string(), |t| format!("time {t}"));
    std::thread::spawn(move || {
        let command: Command = pgbackrest_from(&command_line, &["info", "--output=json"], postgres);
        let verdict = match table.run(command) {
            Err(err) => Err(format!("cannot run pgbackrest: {err}")),
            Ok(output) if output.code != 0 => {
                let reason = failure_reason(&output);
                if reason.contains("CryptoError") {
                    Err(cipher_mismatch(&reason))
                } else {
                    Err(format!("pgbackrest info exited {}: {reason}", output.code))
                }
            }
            Ok(output) => judge_info(&output.stdout, &from, &repository, target_time.as_deref()),
        };
        match verdict {
            Ok(what) => tracing::info!(
                "restore: a new cluster starts from {what}, recovered to {target} (unless the cluster was already initialized)"
            ),
            Err(why) => tracing::error!(
                "restore: this new cluster cannot be restored from stanza {from}: {why}"
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_stanza_is_judged_in_words() {
        let ok = r#"[{"name":"old","status":{"code":0,"message":"ok"},
            "repo":[{"key":1,"status":{"code":0,"message":"ok"}}],
            "archive":[{"id":"17-1","min":"000000010000000000000001","max":"000000010000000000000007"}],
            "backup":[{"label":"20261201-100000F"}]}]"#;
        let said = judge_info(ok, "old", "/repo", None).unwrap();
        assert!(said.contains("1 backup(s)"), "{said}");
        assert!(said.contains("000000010000000000000007"), "{said}");

        let missing =
            r#"[{"name":"gone","status":{"code":1,"message":"missing stanza path"},"repo":[]}]"#;
        let why = judge_info(missing, "gone", "/repo", None).unwrap_err();
        assert!(why.contains("has no stanza \"gone\""), "{why}");

        let empty = r#"[{"name":"old","status":{"code":2,"message":"no valid backups"}}]"#;
        assert!(
            judge_info(empty, "old", "/repo", None)
                .unwrap_err()
                .contains("nodeimg backup now")
        );

        // What pgBackRest 2.55 prints for an encrypted stanza read with
        // another passphrase.
        let cipher = r#"[{"name":"old","cipher":"aes-256-cbc","status":{"code":99,"message":"other"},
            "repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":99,"message":"[FormatError] unable to load info file '/repo/backup/old/backup.info' or '/repo/backup/old/backup.info.copy':\nFormatError: key/value found outside of section at line 1: JdGARBAGE\nHINT: has a stanza-create been performed?"}}]}]"#;
        let cipher = cipher.replace("GARBAGE", "\u{1}\u{7f}");
        let why = judge_info(&cipher, "old", "/repo", None).unwrap_err();
        assert!(why.contains("unable to load info file"), "{why}");
        assert!(!why.contains("Jd"), "{why}");
        assert!(why.contains("NODEIMG_BACKUP_CIPHER_PASSWORD"), "{why}");
        let unencrypted = cipher.replace("aes-256-cbc", "none");
        assert!(
            !judge_info(&unencrypted, "old", "/repo", None)
                .unwrap_err()
                .contains("NODEIMG_BACKUP_CIPHER_PASSWORD")
        );
        assert!(judge_info("[]", "old", "/repo", None).is_err());
    }

    #[test]
    fn a_target_time_needs_a_backup_that_ended_a_second_before_it() {
        // One backup, stopped at 2026-12-01 21:00:00 UTC.
        let one = r#"[{"name":"old","status":{"code":0,"message":"ok"},
            "backup":[{"label":"20261201-205900F","timestamp":{"start":1796158740,"stop":1796158800}}]}]"#;
        let why = judge_info(one, "old", "/repo", Some("2026-12-01 21:00:00.5+00")).unwrap_err();
        assert!(
            why.contains("no backup of stanza old ended before"),
            "{why}"
        );
        assert!(why.contains("1796158800"), "{why}");
        assert!(judge_info(one, "old", "/repo", Some("2026-12-01 21:00:01+00")).is_ok());
        assert!(judge_info(one, "old", "/repo", None).is_ok());
    }
}
