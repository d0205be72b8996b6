//! What the backup tests share: the repository volume, `nodeimg backup`
//! inside a node, its logs, SQL as the superuser.

use std::process::Command;
use std::time::Duration;

use super::cluster::{
    Network, container_of, healthy, psql, roles, start_proxy_node, wait_proxy, wait_until,
};
use super::images::run;

/// A Docker volume shared by the db nodes, removed on drop.
pub struct Volume(pub String);

impl Drop for Volume {
    fn drop(&mut self) {
        if std::env::var_os("NODEIMG_E2E_KEEP").is_none() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &self.0])
                .output();
        }
    }
}

/// `nodeimg backup ARGS` inside `node`: (exit code, stdout, stderr).
pub fn backup(network: &Network, node: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("docker")
        .args(["exec", &container_of(network, node), "nodeimg", "backup"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn status_json(network: &Network, node: &str) -> Option<serde_json::Value> {
    let (_, stdout, _) = backup(network, node, &["status", "--json"]);
    serde_json::from_str(&stdout).ok()
}

pub fn logs(network: &Network, node: &str) -> String {
    let output = run(Command::new("docker").args(["logs", &container_of(network, node)]));
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// SQL as postgres over the node's socket (superuser functions), in appdb.
pub fn superuser_sql(network: &Network, node: &str, sql: &str) -> String {
    superuser_sql_in(network, node, "appdb", sql)
}

/// SQL as postgres over the node's socket (peer authentication) in
/// `database`; fails on the first error.
pub fn superuser_sql_in(network: &Network, node: &str, database: &str, sql: &str) -> String {
    let output = run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &container_of(network, node),
        "psql",
        "-X",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "/run/postgresql",
        "-d",
        database,
        "-c",
        sql,
    ]));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Each tick of the schedule's `kind` (full, diff, drill) seen done in the
/// db nodes' logs, with the nodes that ran it.
pub fn scheduled_ticks(
    network: &Network,
    kind: &str,
) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut ticks: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let marker = format!("backup: scheduled {kind} (tick ");
    for node in ["db-1", "db-2", "db-3"] {
        let Ok(output) = Command::new("docker")
            .args(["logs", &container_of(network, node)])
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        for line in text.lines() {
            if let Some(rest) = line.split(&marker).nth(1)
                && line.contains(") done on this node")
                && let Some(tick) = rest.split(')').next().and_then(|t| t.parse().ok())
            {
                ticks.entry(tick).or_default().push(node.to_string());
            }
        }
    }
    ticks
}

/// Waits for the schedule's first full backup, and checks it ran once, on
/// a replica (not `leader`), as a backup from that standby: the DCS's
/// record of it says so. Returns the replica that took it.
pub fn wait_first_scheduled_full(network: &Network, leader: &str, limit: Duration) -> String {
    wait_until("the first scheduled full backup", limit, || {
        !scheduled_ticks(network, "full").is_empty()
    });
    let ticks = scheduled_ticks(network, "full");
    let (tick, nodes) = ticks.iter().next().unwrap();
    assert_eq!(nodes.len(), 1, "full backup tick {tick} ran on {nodes:?}");
    assert_ne!(
        &nodes[0], leader,
        "the scheduled full backup ran on the primary"
    );
    let status = status_json(network, leader).expect("backup status prints JSON");
    let record = status["last_runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["kind"] == "full"))
        .unwrap_or_else(|| panic!("no full backup in the DCS: {status:#}"));
    assert_eq!(record["node"], nodes[0].as_str(), "{record:#}");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("from this standby (primary {leader})"))),
        "{record:#}"
    );
    nodes[0].clone()
}

/// The schedule of a benchmark's cluster: nothing runs by itself.
pub const BENCH_SCHEDULE: &str =
    "full_every = \"off\"\ndiff_every = \"off\"\ndrill_every = \"off\"\nretention_full = 4\n";

/// The backup benchmark (scripts/bench-backup.sh), on a started 3-db
/// cluster: a `pgbench -i -s $NODEIMG_BENCH_SCALE` database (default 100,
/// about 1.5 GB), then hyperfine times full backups on the primary, full
/// backups from a standby (what the schedule takes) and drills (restore of
/// the latest backup, recovery, check) on a replica. Results as hyperfine
/// JSON in target/bench/backup-{full,full-standby,drill}-`kind`.json.
pub fn bench_backup_and_drill(network: &Network, kind: &str) {
    let scale: u32 = std::env::var("NODEIMG_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let runs = std::env::var("NODEIMG_BENCH_RUNS").unwrap_or_else(|_| "3".into());
    // No proxy here: the db nodes' agreed view is enough.
    wait_until(
        "a leader and two replicas",
        Duration::from_secs(180),
        || roles(network).is_some_and(|(_, replicas)| replicas.len() == 2),
    );
    let (leader, replicas) = roles(network).unwrap();
    wait_until("the stanza", Duration::from_secs(120), || {
        logs(network, &leader).contains("backup: stanza e2e ready")
    });
    let started = std::time::Instant::now();
    run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &container_of(network, &leader),
        "/usr/lib/postgresql/17/bin/pgbench",
        "-h",
        "/run/postgresql",
        "-i",
        "-q",
        "-s",
        &scale.to_string(),
        "appdb",
    ]));
    let size = superuser_sql(
        network,
        &leader,
        "select pg_size_pretty(pg_database_size('appdb')) || ' (' || pg_database_size('appdb') || ' bytes)'",
    );
    eprintln!(
        "pgbench -i -s {scale}: {size} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // The replicas catch up before anything is timed.
    wait_until("replicas caught up", Duration::from_secs(600), || {
        superuser_sql(
            network,
            &leader,
            "select count(*) from pg_stat_replication where replay_lsn = pg_current_wal_lsn()",
        ) == "2"
    });
    let out = super::images::repo().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let hyperfine = |name: &str, node: &str, args: &str| {
        let command = format!(
            "docker exec {} nodeimg backup {args}",
            container_of(network, node)
        );
        run(Command::new("hyperfine")
            .args(["--runs", &runs, "--export-json"])
            .arg(out.join(format!("backup-{name}.json")))
            .arg(&command));
    };
    // What each way of backing up costs the primary: CPU seconds its
    // container used per backup, less what it uses idle in as long.
    let runs_n: f64 = runs.parse().unwrap_or(3.0);
    let idle_started = std::time::Instant::now();
    let idle_before = cpu_seconds(network, &leader);
    std::thread::sleep(Duration::from_secs(20));
    let idle_rate =
        (cpu_seconds(network, &leader) - idle_before) / idle_started.elapsed().as_secs_f64();
    let mut cost = serde_json::Map::new();
    for (name, node) in [
        (format!("full-{kind}"), &leader),
        (format!("full-standby-{kind}"), &replicas[0]),
    ] {
        let started = std::time::Instant::now();
        let (primary, runner) = (cpu_seconds(network, &leader), cpu_seconds(network, node));
        hyperfine(&name, node, "now --type full");
        let seconds = started.elapsed().as_secs_f64();
        let per_run = |used: f64| ((used - idle_rate * seconds) / runs_n * 10.0).round() / 10.0;
        cost.insert(
            name,
            serde_json::json!({
                "primary_cpu_seconds_per_backup": per_run(cpu_seconds(network, &leader) - primary),
                "runner_cpu_seconds_per_backup": per_run(cpu_seconds(network, node) - runner),
                "primary_idle_cpu_per_second": (idle_rate * 1000.0).round() / 1000.0,
            }),
        );
    }
    eprintln!("CPU per backup: {cost:#?}");
    std::fs::write(
        out.join(format!("backup-cpu-{kind}.json")),
        serde_json::to_string_pretty(&cost).unwrap(),
    )
    .unwrap();
    hyperfine(&format!("drill-{kind}"), &replicas[0], "drill");
    let (_, list, _) = backup(network, &leader, &["list", "--json"]);
    std::fs::write(out.join(format!("backup-list-{kind}.json")), &list).unwrap();
    eprintln!("database: {size}\nbackups: {list}");
}

/// CPU seconds `node`'s container has used, from its cgroup (v2's
/// cpu.stat, or v1's cpuacct.usage).
fn cpu_seconds(network: &Network, node: &str) -> f64 {
    const SCRIPT: &str = "import os\nif os.path.exists('/sys/fs/cgroup/cpu.stat'):\n    print(int([l.split()[1] for l in open('/sys/fs/cgroup/cpu.stat') if l.startswith('usage_usec')][0]) / 1e6)\nelse:\n    print(int(open('/sys/fs/cgroup/cpuacct/cpuacct.usage').read()) / 1e9)";
    let output = run(Command::new("docker").args([
        "exec",
        &container_of(network, node),
        "python3",
        "-c",
        SCRIPT,
    ]));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()
        .expect("the container's CPU seconds")
}

/// proxy-1 (.21) in front of the started db nodes; once the cluster is
/// healthy, the schedule's first full backup, a table of 500 rows and its
/// WAL switched out; then a drill OK and WAL archived, as `backup status`
/// shows them. Returns (leader, that status).
pub fn serving_with_a_drilled_backup(
    network: &Network,
    haproxy_image: &str,
) -> (String, serde_json::Value) {
    start_proxy_node(network, haproxy_image, "proxy-1", 21);
    wait_until("a healthy cluster", Duration::from_secs(180), || {
        healthy(network)
    });
    wait_proxy(network, 21);
    let (leader, _) = roles(network).unwrap();
    wait_first_scheduled_full(network, &leader, Duration::from_secs(240));
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "create table rows (id int primary key); insert into rows select generate_series(1, 500)",
    )
    .unwrap();
    superuser_sql(network, &leader, "select pg_switch_wal()");
    let mut status = None;
    wait_until(
        "a drill of the backup and WAL archived",
        Duration::from_secs(150),
        || {
            status = status_json(network, &leader);
            status.as_ref().is_some_and(|s| {
                s["ok"] == true
                    && s["archive"]["archived_count"].as_u64().unwrap_or(0) > 0
                    && s["last_runs"].as_array().is_some_and(|runs| {
                        runs.iter().any(|r| r["kind"] == "drill" && r["ok"] == true)
                    })
            })
        },
    );
    let status = status.unwrap();
    assert_eq!(status["repository"]["cipher"], "aes-256-cbc", "{status:#}");
    (leader, status)
}

/// After the repository was broken (on a cluster from
/// serving_with_a_drilled_backup): one more row and its WAL; `backup
/// status` exits 1 and the agent's log names the archiving failure, both
/// with `reason`; the database keeps taking writes (502 rows).
pub fn repository_failure_is_loud_and_harmless(network: &Network, leader: &str, reason: &str) {
    let write = |sql: &str| psql(&network.ip(21), 5000, "appdb", sql).unwrap();
    write("insert into rows values (501)");
    superuser_sql(network, leader, "select pg_switch_wal()");
    let mut broken = String::new();
    wait_until(
        "backup status reporting a problem",
        Duration::from_secs(90),
        || {
            let (code, stdout, _) = backup(network, leader, &["status", "--json"]);
            broken = stdout;
            code == 1
        },
    );
    eprintln!("with the repository broken: {broken}");
    assert!(broken.contains(reason), "{reason:?} not in: {broken}");
    wait_until(
        "the agent's log naming the archiving failure",
        Duration::from_secs(150),
        || {
            logs(network, leader)
                .lines()
                .any(|l| l.contains("archive_command is failing") && l.contains(reason))
        },
    );
    write("insert into rows values (502)");
    assert_eq!(write("select count(*) from rows").trim(), "502");
}
