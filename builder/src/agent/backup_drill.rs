//! A restore drill: the latest backup restored into a scratch directory on
//! this node's data volume, PostgreSQL started on it with no TCP listener
//! (a Unix socket of its own), recovered to the backup's consistent point
//! and promoted, a check query run, everything stopped and removed. A
//! backup that has not been restored is not trusted; this is how it is.

use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::backup::pgbackrest_from;
use crate::agent::supervise::RunOutput;

/// Where and how a drill runs on this node.
pub struct DrillSetup {
    /// `pgbackrest --config=… --stanza=…`.
    pub pgbackrest: String,
    /// PostgreSQL's binaries.
    pub bin_dir: String,
    /// The scratch data directory (removed before and after).
    pub scratch: String,
    pub postgres: (u32, u32),
}

/// What a drill found, as recorded in the DCS and shown by `backup status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillResult {
    pub node: String,
    /// Unix seconds when it started.
    pub started_at: i64,
    pub seconds: u64,
    /// The backup restored.
    pub backup: Option<String>,
    pub ok: bool,
    /// What the check query saw, or what failed.
    pub detail: String,
}

const SOCKET_DIR: &str = "/tmp/nodeimg-drill";
const PORT: &str = "5439";

/// Runs one drill. `run` executes a command to completion (the agent's
/// process table, or plain `output()` from the command line).
pub fn drill(
    setup: &DrillSetup,
    node: &str,
    latest_backup: Option<String>,
    run: &dyn Fn(Command) -> std::io::Result<RunOutput>,
) -> DrillResult {
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let outcome = restore_and_check(setup, latest_backup.as_deref(), run);
    // Stopped and removed whatever happened.
    let _ = run(as_postgres(
        Command::new(format!("{}/pg_ctl", setup.bin_dir)).args([
            "-D",
            &setup.scratch,
            "-m",
            "immediate",
            "-w",
            "stop",
        ]),
        setup.postgres,
    ));
    let _ = std::fs::remove_dir_all(&setup.scratch);
    let _ = std::fs::remove_dir_all(SOCKET_DIR);
    let (ok, detail) = match outcome {
        Ok(seen) => (true, seen),
        Err(err) => (false, err),
    };
    DrillResult {
        node: node.to_string(),
        started_at,
        seconds: started.elapsed().as_secs(),
        backup: latest_backup,
        ok,
        detail,
    }
}

fn as_postgres(command: &mut Command, postgres: (u32, u32)) -> Command {
    use std::os::unix::process::CommandExt;
    let mut owned = std::mem::replace(command, Command::new("true"));
    owned
        .env_clear()
        .env("LANG", "C.UTF-8")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .gid(postgres.1)
        .uid(postgres.0);
    owned
}

fn checked(what: &str, output: std::io::Result<RunOutput>) -> Result<RunOutput, String> {
    let output = output.map_err(|e| format!("{what}: cannot run: {e}"))?;
    if output.code != 0 {
        return Err(format!(
            "{what} exited {}: {}",
            output.code,
            crate::agent::backup::failure_reason(&output)
        ));
    }
    Ok(output)
}

fn restore_and_check(
    setup: &DrillSetup,
    backup: Option<&str>,
    run: &dyn Fn(Command) -> std::io::Result<RunOutput>,
) -> Result<String, String> {
    let Some(backup) = backup else {
        return Err("the repository holds no backup to restore".into());
    };
    let _ = std::fs::remove_dir_all(&setup.scratch);
    for dir in [setup.scratch.as_str(), SOCKET_DIR] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
        std::os::unix::fs::chown(dir, Some(setup.postgres.0), Some(setup.postgres.1))
            .map_err(|e| format!("cannot chown {dir}: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod {dir}: {e}"))?;
    }
    // To the backup's consistent point, then promoted; its archive_mode
    // off, so the drill never writes into the repository.
    checked(
        "pgbackrest restore",
        run(pgbackrest_from(
            &setup.pgbackrest,
            &[
                &format!("--pg1-path={}", setup.scratch),
                &format!("--set={backup}"),
                "--type=immediate",
                "--target-action=promote",
                "--archive-mode=off",
                "restore",
            ],
            setup.postgres,
        )),
    )?;
    let options = format!(
        "-c port={PORT} -c listen_addresses='' -c unix_socket_directories={SOCKET_DIR} -c archive_mode=off -c synchronous_standby_names='' -c shared_buffers=64MB -c cluster_name=nodeimg-drill"
    );
    let log = format!("{}/drill.log", setup.scratch);
    checked(
        "pg_ctl start",
        run(as_postgres(
            Command::new(format!("{}/pg_ctl", setup.bin_dir)).args([
                "-D",
                &setup.scratch,
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "600",
                "start",
            ]),
            setup.postgres,
        )),
    )
    .map_err(|e| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        format!("{e} ({last})")
    })?;
    let psql = |sql: &str| {
        run(as_postgres(
            Command::new(format!("{}/psql", setup.bin_dir)).args([
                "-X", "-tA", "-h", SOCKET_DIR, "-p", PORT, "-U", "postgres", "-d", "postgres",
                "-c", sql,
            ]),
            setup.postgres,
        ))
    };
    // Promotion follows recovery; a read-write instance proves it ended.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let output = checked("psql", psql("select pg_is_in_recovery()"))?;
        if output.stdout.trim() == "f" {
            break;
        }
        if Instant::now() > deadline {
            return Err("the restored instance was still in recovery after 600 s".into());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let seen = checked(
        "the check query",
        psql(
            "select count(*) || ' databases, ' || pg_size_pretty(sum(pg_database_size(oid))) from pg_database where datallowconn",
        ),
    )?;
    Ok(format!(
        "restored {backup}, recovered and promoted: {}",
        seen.stdout.trim()
    ))
}
