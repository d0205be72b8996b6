//! New clusters bootstrapped from another cluster's backups (spec
//! `[restore]`, Patroni's custom bootstrap running `pgbackrest restore`),
//! on real containers with a posix repository on a shared Docker volume:
//! an old cluster takes a full backup and writes rows; its leader is
//! killed, and on the new primary's timeline it writes rows, notes a time
//! T from the database's clock, writes more and drops a table. A new
//! cluster restored to T (across the timeline switch) has exactly the rows
//! up to T and the table; another restored to the latest point has every
//! row and not the table. Each new cluster runs
//! with its own passwords (Patroni resets its roles after the restore),
//! refuses in words a passphrase that is not the repository's, and
//! archives into a stanza of its own.
//!
//! The old cluster has three db nodes (a failover needs a replica), the
//! restored-to-T one a single node, the latest-point one three, so its
//! replicas join a restored leader.

mod support {
    #[allow(dead_code)]
    pub mod backup;
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod images;
}

use std::process::Command;
use std::time::Duration;

use nodeimg::cluster::secrets::Secrets;
use support::backup::{Volume, logs, superuser_sql_in};
use support::cluster::*;
use support::images::{loaded_images, run};

/// Every cluster of this file in turn (one at a time: one /24).
const PREFIX: &str = "172.31.248";

/// A cluster `name` of `dbs` db nodes (db-N at .1N), tight Patroni
/// timings, the posix repository, no scheduled backups or drills (the test
/// takes the backup it needs), and `extra` appended.
fn spec(name: &str, dbs: u8, extra: &str) -> String {
    let mut text = format!("[cluster]\nname = \"{name}\"\ncidr = \"{PREFIX}.0/24\"\n");
    for n in 1..=dbs {
        text += &format!("\n[[db]]\nname = \"db-{n}\"\nip = \"{PREFIX}.1{n}\"\n");
    }
    text + r#"
[patroni]
ttl = 20
loop_wait = 1
retry_timeout = 5

[[database]]
name = "appdb"
owner = "app"

[[user]]
name = "app"
databases = ["appdb"]

[backup]
repository = "posix"
path = "/var/lib/pgbackrest"
archive_timeout = 5
full_every = "off"
diff_every = "off"
drill_every = "off"
"# + extra
}

fn start_db(network: &Network, image: &str, node: &str, repository: &Volume, env: &[String]) {
    let mut extra = vec![
        "-v".to_string(),
        format!("{}:/var/lib/pgbackrest", repository.0),
    ];
    for variable in env {
        extra.extend(["-e".to_string(), variable.clone()]);
    }
    start_db_node(network, image, node, &extra);
}

/// The end of a node's log without etcd's JSON lines (they drown what
/// Patroni and pgBackRest said).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// Runs the custom bootstrap's command as Patroni would (its command and
/// `--key=value` arguments from patroni.yml), for a failure's report.
fn bootstrap_by_hand(network: &Network, node: &str) -> String {
    let script = r#"
import subprocess, yaml
method = yaml.safe_load(open('/run/nodeimg/patroni.yml'))['bootstrap']['nodeimg_restore']
reserved = {'command', 'no_params', 'keep_existing_recovery_conf', 'recovery_conf'}
args = method['command'].split() + ['--%s=%s' % (k, v) for k, v in method.items() if k not in reserved]
print(args)
done = subprocess.run(args, capture_output=True, text=True, user='postgres')
print('exit', done.returncode)
print(done.stdout[-3000:])
print(done.stderr[-3000:])
"#;
    let output = Command::new("docker")
        .args([
            "exec",
            &container_of(network, node),
            "python3",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The node's Patroni says it leads and PostgreSQL runs, and the app user
/// reaches appdb over TLS (the leader's bootstrap SQL has run).
fn leading(network: &Network, host: u8) -> bool {
    patroni_get(&network.ip(host), "/patroni")
        .is_some_and(|p| p["role"] == "primary" && p["state"] == "running")
        && psql(&network.ip(host), 5432, "appdb", "select 1").is_ok()
}

/// A login over TLS as postgres with `password`: Ok or psql's message.
fn superuser_login(network: &Network, host: u8, password: &str) -> Result<String, String> {
    psql_as(
        &network.ip(host),
        5432,
        "postgres",
        "postgres",
        password,
        "select 1",
    )
}

/// Gives every node's secrets file of `network` the repository's
/// passphrase (what copying it from the old cluster's secrets does).
fn share_passphrase(network: &Network, dbs: u8, passphrase: &str) {
    for n in 1..=dbs {
        let path = network.dir.path().join(format!("db-{n}.secrets.toml"));
        let mut secrets = Secrets::read(&path).unwrap();
        secrets.backup_cipher_password = Some(passphrase.to_string());
        std::fs::write(&path, secrets.to_toml()).unwrap();
    }
}

fn secrets_of(network: &Network) -> Secrets {
    Secrets::read(&network.dir.path().join("cluster.secrets.toml")).unwrap()
}

/// What a restored cluster must show: its own superuser password (the old
/// one refused), the app user's verifier from its own secrets (the agent
/// updated the role the backup brought), and WAL archived into a stanza
/// named after itself.
fn check_own_identity(network: &Network, leader: &str, name: &str, old: &Secrets) {
    let host = db_host(leader);
    let mine = secrets_of(network);
    let new_password = mine.superuser_password.as_deref().unwrap();
    assert_eq!(
        superuser_login(network, host, new_password).as_deref(),
        Ok("1")
    );
    let refused = superuser_login(network, host, old.superuser_password.as_deref().unwrap());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("password authentication failed")),
        "the old cluster's superuser password still works: {refused:?}"
    );
    let verifier = mine.users["app"].scram.clone().unwrap();
    wait_until(
        "the app role given this cluster's verifier",
        Duration::from_secs(30),
        || {
            superuser_sql_in(
                network,
                leader,
                "postgres",
                "select rolpassword from pg_authid where rolname = 'app'",
            ) == verifier
        },
    );
    wait_until(
        "the restored cluster's own stanza",
        Duration::from_secs(120),
        || logs(network, leader).contains(&format!("backup: stanza {name} ready")),
    );
}

#[test]
fn new_clusters_restore_an_old_clusters_backups_to_a_time_and_to_the_latest_point() {
    let images = loaded_images();
    let repository = Volume(format!("nodeimg-restore-repo-{}", std::process::id()));
    run(Command::new("docker").args(["volume", "create", &repository.0]));

    // The old cluster: a full backup and rows on timeline 1; its leader
    // killed, so the rest is written on the new primary's timeline 2:
    // rows on both sides of T, a table dropped.
    let old = Network::create("nodeimg-restore-old", PREFIX);
    write_inputs(&old, &spec("old", 3, ""));
    let old_secrets = secrets_of(&old);
    let passphrase = old_secrets.backup_cipher_password.clone().unwrap();
    for node in ["db-1", "db-2", "db-3"] {
        start_db(&old, &images.db, node, &repository, &[]);
    }
    wait_until(
        "the old cluster's leader and two replicas",
        Duration::from_secs(180),
        || roles(&old).is_some_and(|(_, replicas)| replicas.len() == 2),
    );
    let (first, _) = roles(&old).unwrap();
    wait_until("the old stanza", Duration::from_secs(120), || {
        logs(&old, &first).contains("backup: stanza old ready")
    });
    let backup = Command::new("docker")
        .args(["exec", &container_of(&old, &first)])
        .args(["nodeimg", "backup", "now", "--type", "full"])
        .output()
        .unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let sql_on = |node: &str, sql: &str| psql(&old.ip(db_host(node)), 5432, "appdb", sql).unwrap();
    sql_on(
        &first,
        "create table rows (id int primary key); insert into rows select generate_series(1, 100)",
    );
    sql_on(
        &first,
        "create table doomed (note text); insert into doomed values ('kept at T')",
    );
    run(Command::new("docker").args(["kill", &container_of(&old, &first)]));
    wait_until("a new leader", Duration::from_secs(120), || {
        roles(&old).is_some_and(|(leader, _)| leader != first)
    });
    let (second, _) = roles(&old).unwrap();
    wait_until(
        "the new primary archiving",
        Duration::from_secs(120),
        || logs(&old, &second).contains("backup: stanza old ready"),
    );
    assert_eq!(
        superuser_sql_in(
            &old,
            &second,
            "postgres",
            "select timeline_id from pg_control_checkpoint()"
        ),
        "2"
    );
    // pgBackRest picks the backup to restore to T among those whose stop
    // time, in whole seconds, is before T (long past here: the failover
    // took longer than a second).
    let app = |sql: &str| sql_on(&second, sql);
    app("insert into rows select generate_series(101, 150)");
    // T, from the database's clock, with its offset.
    let t = app("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    eprintln!("T = {t} (timeline 2)");
    app("insert into rows select generate_series(151, 200)");
    app("drop table doomed");
    let segment = superuser_sql_in(
        &old,
        &second,
        "postgres",
        "select pg_walfile_name(pg_switch_wal())",
    );
    wait_until("the last WAL archived", Duration::from_secs(60), || {
        superuser_sql_in(
            &old,
            &second,
            "postgres",
            "select coalesce(last_archived_wal, '') from pg_stat_archiver",
        ) >= segment
    });
    drop(old);

    // Restored to T, first with the new cluster's own passphrase: refused
    // in words; then with the repository's, from the environment.
    let restore_to_t = format!("\n[restore]\nfrom = \"old\"\ntarget_time = \"{t}\"\n");
    let pit = Network::create("nodeimg-restore-pit", PREFIX);
    write_inputs(&pit, &spec("pit", 1, &restore_to_t));
    start_db(&pit, &images.db, "db-1", &repository, &[]);
    wait_until(
        "the passphrase refused in words",
        Duration::from_secs(60),
        || {
            logs(&pit, "db-1")
                .contains("restore: this new cluster cannot be restored from stanza old")
        },
    );
    let log = logs(&pit, "db-1");
    let refusal = log
        .lines()
        .find(|l| l.contains("restore: this new cluster cannot be restored"))
        .unwrap();
    eprintln!("{refusal}");
    assert!(
        refusal.contains("NODEIMG_BACKUP_CIPHER_PASSWORD"),
        "{refusal}"
    );
    run(Command::new("docker").args(["rm", "-f", "-v", &container_of(&pit, "db-1")]));
    start_db(
        &pit,
        &images.db,
        "db-1",
        &repository,
        &[format!("NODEIMG_BACKUP_CIPHER_PASSWORD={passphrase}")],
    );
    let mut waited = || {
        wait_until(
            "the cluster restored to T",
            Duration::from_secs(150),
            || leading(&pit, 11),
        )
    };
    let took =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut waited)).unwrap_or_else(|_| {
            panic!(
                "not restored:\n{}\n--- the bootstrap command run by hand:\n{}",
                tail(&logs(&pit, "db-1")),
                bootstrap_by_hand(&pit, "db-1")
            )
        });
    eprintln!("restored to T in {took:?}");
    let at_t = |sql: &str| psql(&pit.ip(11), 5432, "appdb", sql).unwrap();
    assert_eq!(at_t("select count(*), max(id) from rows"), "150|150");
    assert_eq!(at_t("select note from doomed"), "kept at T");
    // Replayed across the old cluster's failover (timeline 1, then 2),
    // then promoted onto a timeline of its own.
    let timeline = superuser_sql_in(
        &pit,
        "db-1",
        "postgres",
        "select timeline_id from pg_control_checkpoint()",
    );
    assert!(timeline.parse::<u32>().unwrap() >= 3, "timeline {timeline}");
    check_own_identity(&pit, "db-1", "pit", &old_secrets);
    drop(pit);

    // Restored to the latest point, three nodes, the passphrase copied
    // into the new secrets files.
    let latest = Network::create("nodeimg-restore-latest", PREFIX);
    write_inputs(&latest, &spec("latest", 3, "\n[restore]\nfrom = \"old\"\n"));
    share_passphrase(&latest, 3, &passphrase);
    for node in ["db-1", "db-2", "db-3"] {
        start_db(&latest, &images.db, node, &repository, &[]);
    }
    let mut waited = || {
        wait_until(
            "the latest-point cluster with two replicas streaming",
            Duration::from_secs(180),
            || roles(&latest).is_some_and(|(_, replicas)| replicas.len() == 2),
        )
    };
    let took =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut waited)).unwrap_or_else(|_| {
            let all: String = ["db-1", "db-2", "db-3"]
                .iter()
                .map(|n| format!("--- {n}\n{}", tail(&logs(&latest, n))))
                .collect();
            panic!("not restored:\n{all}")
        });
    eprintln!("restored to the latest point in {took:?}");
    let (leader, _) = roles(&latest).unwrap();
    let host = db_host(&leader);
    let now = |sql: &str| psql(&latest.ip(host), 5432, "appdb", sql).unwrap();
    assert_eq!(now("select count(*), max(id) from rows"), "200|200");
    assert_eq!(now("select to_regclass('doomed') is null"), "t");
    let restored_on = ["db-1", "db-2", "db-3"]
        .iter()
        .filter(|n| logs(&latest, n).contains("Running custom bootstrap script"))
        .count();
    assert_eq!(restored_on, 1, "one node restores, the others replicate it");
    check_own_identity(&latest, &leader, "latest", &old_secrets);
}

/// The recovery point (scripts/bench-recovery-point.sh; ignored in CI):
/// how many seconds of acknowledged writes are lost when a cluster's only
/// copy of its data is lost (a one-node cluster's disk; with replicas, the
/// disks of every node). A one-db cluster takes a full backup, then one
/// client commits a timestamped row every 200 ms for a while; the node is
/// removed with its volume, and a new cluster restored to the latest point
/// shows the last row the repository kept. The loss is the last
/// acknowledged row's time minus that row's. `archive_timeout` is
/// NODEIMG_BENCH_ARCHIVE_TIMEOUT (default 60, the spec's default); one run
/// per entry of NODEIMG_BENCH_WRITE_SECONDS (default "37 61 83", writes of
/// unrelated length to the timeout). Results: target/bench/recovery-point.json.
#[test]
#[ignore]
fn bench_recovery_point() {
    let archive_timeout: u32 = std::env::var("NODEIMG_BENCH_ARCHIVE_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let lengths: Vec<u64> = std::env::var("NODEIMG_BENCH_WRITE_SECONDS")
        .unwrap_or_else(|_| "37 61 83".into())
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let images = loaded_images();
    let repository = Volume(format!("nodeimg-rpo-repo-{}", std::process::id()));
    run(Command::new("docker").args(["volume", "create", &repository.0]));
    let with_timeout = |text: String| {
        text.replace(
            "archive_timeout = 5\n",
            &format!("archive_timeout = {archive_timeout}\n"),
        )
    };
    let mut results = Vec::new();
    for (run_index, seconds) in lengths.iter().enumerate() {
        let name = format!("rpo{run_index}");
        let old = Network::create("nodeimg-rpo-old", PREFIX);
        write_inputs(&old, &with_timeout(spec(&name, 1, "")));
        let passphrase = secrets_of(&old).backup_cipher_password.unwrap();
        start_db(&old, &images.db, "db-1", &repository, &[]);
        wait_until("the leader", Duration::from_secs(120), || leading(&old, 11));
        wait_until("the stanza", Duration::from_secs(120), || {
            logs(&old, "db-1").contains(&format!("backup: stanza {name} ready"))
        });
        // The table in the backup: a restore shows it whatever the WAL.
        let app = |sql: &str| psql(&old.ip(11), 5432, "appdb", sql);
        app("create table ticks (at timestamptz primary key)").unwrap();
        run(Command::new("docker")
            .args(["exec", &container_of(&old, "db-1")])
            .args(["nodeimg", "backup", "now", "--type", "full"]));
        let started = std::time::Instant::now();
        let mut first_acknowledged = String::new();
        let mut last_acknowledged = String::new();
        let mut acknowledged = 0u64;
        while started.elapsed() < Duration::from_secs(*seconds) {
            if let Ok(at) = app(
                "insert into ticks values (clock_timestamp()) returning extract(epoch from at)::text",
            ) {
                last_acknowledged = at.trim().to_string();
                if acknowledged == 0 {
                    first_acknowledged = last_acknowledged.clone();
                }
                acknowledged += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The disk lost with the node.
        run(Command::new("docker").args(["rm", "-f", "-v", &container_of(&old, "db-1")]));
        drop(old);

        let new = Network::create("nodeimg-rpo-new", PREFIX);
        let restore = format!("\n[restore]\nfrom = \"{name}\"\n");
        write_inputs(
            &new,
            &with_timeout(spec(&format!("{name}new"), 1, &restore)),
        );
        share_passphrase(&new, 1, &passphrase);
        start_db(&new, &images.db, "db-1", &repository, &[]);
        wait_until("the restored cluster", Duration::from_secs(300), || {
            leading(&new, 11)
        });
        let kept = psql(
            &new.ip(11),
            5432,
            "appdb",
            "select count(*) || ' ' || coalesce(extract(epoch from max(at))::text, '0') from ticks",
        )
        .unwrap();
        let (count, last_kept) = kept.trim().split_once(' ').unwrap();
        let count: u64 = count.parse().unwrap();
        // No row kept: every second of writing is lost.
        let last_kept = if count == 0 {
            &first_acknowledged
        } else {
            last_kept
        };
        let lost_seconds: f64 =
            last_acknowledged.parse::<f64>().unwrap() - last_kept.parse::<f64>().unwrap();
        eprintln!(
            "archive_timeout {archive_timeout} s, writes for {seconds} s: {acknowledged} acknowledged, {count} restored, {lost_seconds:.1} s of writes lost"
        );
        results.push(serde_json::json!({
            "archive_timeout": archive_timeout,
            "write_seconds": seconds,
            "acknowledged": acknowledged,
            "restored": count,
            "lost_rows": acknowledged - count,
            "lost_seconds": lost_seconds,
        }));
        drop(new);
    }
    let out = support::images::repo().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("recovery-point.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
}
