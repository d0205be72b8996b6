//! Backups on a real cluster (spec `[backup]`, a posix repository on a
//! Docker volume every db node mounts): the primary creates the stanza,
//! `nodeimg backup now` takes an encrypted full backup, WAL archiving
//! follows the new primary after a hard kill of the leader (a new
//! timeline), and the dead leader, rebuilt with a blank volume, is
//! restored from the repository (backup plus archived WAL) instead of from
//! the primary, then streams with every row.

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

use support::backup::*;
use support::cluster::*;
use support::images::{loaded_images, run};

const PREFIX: &str = "172.31.247";

fn start_db(network: &Network, image: &str, node: &str, repository: &Volume) {
    start_db_node(
        network,
        image,
        node,
        &["-v".into(), format!("{}:/var/lib/pgbackrest", repository.0)],
    );
}

#[test]
fn backups_follow_failover_and_rebuild_a_blank_node_from_the_repository() {
    let images = loaded_images();
    let network = Network::create("nodeimg-backup", PREFIX);
    let repository = Volume(format!("nodeimg-backup-repo-{}", std::process::id()));
    run(Command::new("docker").args(["volume", "create", &repository.0]));
    // A full backup at the first tick (at once), then daily; a drill every
    // 30 s so the test sees several ticks.
    let spec = test_spec(PREFIX, true)
        + "\n[backup]\nrepository = \"posix\"\npath = \"/var/lib/pgbackrest\"\narchive_timeout = 10\nfull_every = \"1d\"\ndiff_every = \"off\"\ndrill_every = \"30s\"\n";
    write_inputs(&network, &spec);
    for node in ["db-1", "db-2", "db-3"] {
        start_db(&network, &images.db, node, &repository);
    }
    start_proxy_node(&network, &images.haproxy, "proxy-1", 21);
    wait_until("a healthy cluster", Duration::from_secs(180), || {
        healthy(&network)
    });
    wait_proxy(&network, 21);
    let (leader, _) = roles(&network).unwrap();
    wait_until(
        "the stanza on the primary",
        Duration::from_secs(120),
        || logs(&network, &leader).contains("backup: stanza e2e ready"),
    );

    // The schedule's first full backup, on the primary, once.
    wait_first_scheduled_full(&network, &leader, Duration::from_secs(180));
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "create table rows (id int primary key, note text); insert into rows select g, 'before the backup' from generate_series(1, 1000) g",
    )
    .unwrap();

    // A backup on a replica is refused with the way to do it.
    let (_, replicas) = roles(&network).unwrap();
    let (code, _, stderr) = backup(&network, &replicas[0], &["now"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("run `nodeimg backup now` on the primary"),
        "{stderr}"
    );
    let (code, _, stderr) = backup(&network, &leader, &["now", "--type", "full"]);
    assert_eq!(code, 0, "backup now failed:\n{stderr}");
    // Every node sees the same repository.
    let (code, stdout, stderr) = backup(&network, &replicas[0], &["list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list.as_array().map(|l| l.len()), Some(2), "{stdout}");
    assert!(list.as_array().unwrap().iter().all(|b| b["kind"] == "full"));
    // Drills run on replicas, once per tick, and report OK.
    wait_until("two drill ticks", Duration::from_secs(150), || {
        drill_ticks(&network).len() >= 2
    });
    let ticks = drill_ticks(&network);
    for (tick, nodes) in &ticks {
        assert_eq!(nodes.len(), 1, "drill tick {tick} ran on {nodes:?}");
        assert_ne!(nodes[0], leader, "a drill ran on the primary");
    }
    let mut status = None;
    wait_until("status ok with a drill", Duration::from_secs(60), || {
        status = status_json(&network, &leader);
        status.as_ref().is_some_and(|s| s["ok"] == true)
    });
    let status = status.unwrap();
    let drill = status["last_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "drill")
        .unwrap();
    assert!(
        drill["detail"]
            .as_str()
            .unwrap()
            .contains("recovered and promoted"),
        "{drill:#}"
    );
    assert_eq!(status["node_role"], "primary");
    assert_eq!(status["repository"]["cipher"], "aes-256-cbc");
    assert!(
        status["archive"]["archived_count"].as_u64().unwrap() > 0,
        "{status:#}"
    );

    // Rows after the backup live only in the archived WAL (and on the
    // replicas); then the leader dies.
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "insert into rows select g, 'after the backup' from generate_series(1001, 1500) g",
    )
    .unwrap();
    run(Command::new("docker").args(["kill", &container_of(&network, &leader)]));
    let mut new_leader = String::new();
    wait_until("a new leader", Duration::from_secs(90), || {
        roles(&network).is_some_and(|(l, _)| {
            new_leader = l;
            new_leader != leader
        })
    });
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "insert into rows select g, 'after the failover' from generate_series(1501, 2000) g",
    )
    .unwrap();
    superuser_sql(&network, &new_leader, "select pg_switch_wal()");
    // The new primary archives on its own timeline.
    wait_until(
        "WAL of the new timeline archived",
        Duration::from_secs(90),
        || {
            status_json(&network, &new_leader).is_some_and(|s| {
                s["archive"]["failing"] == false
                    && s["repository"]["status_code"] == 0
                    && s["archive"]["last_archived_wal"]
                        .as_str()
                        .is_some_and(|wal| !wal.starts_with("00000001"))
            })
        },
    );

    // The dead leader rebuilt blank: restored from the repository.
    run(Command::new("docker").args(["rm", "-f", "-v", &container_of(&network, &leader)]));
    start_db(&network, &images.db, &leader, &repository);
    wait_until(
        "the rebuilt node streaming",
        Duration::from_secs(180),
        || roles(&network).is_some_and(|(_, r)| r.contains(&leader)),
    );
    let log = logs(&network, &leader);
    assert!(
        log.contains("replica has been created using pgbackrest"),
        "the rebuilt node was not restored from the repository:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert_eq!(
        superuser_sql(&network, &leader, "select count(*) from rows"),
        "2000",
        "the restored replica lacks rows"
    );

    // The repository unwritable: loud in `backup status`, harmless to
    // writes; back, and archiving catches up.
    chmod_repository(&network, &new_leader, 0o000);
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "insert into rows values (2001, 'repository down')",
    )
    .unwrap();
    superuser_sql(&network, &new_leader, "select pg_switch_wal()");
    let mut broken = None;
    wait_until(
        "backup status reporting the failure",
        Duration::from_secs(60),
        || {
            let (code, stdout, _) = backup(&network, &new_leader, &["status", "--json"]);
            broken = serde_json::from_str::<serde_json::Value>(&stdout).ok();
            code == 1
                && broken
                    .as_ref()
                    .is_some_and(|s| s["archive"]["failing"] == true)
        },
    );
    eprintln!("while down: {}", broken.unwrap()["problems"]);
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "insert into rows values (2002, 'still serving')",
    )
    .unwrap();
    chmod_repository(&network, &new_leader, 0o750);
    wait_until("archiving caught up", Duration::from_secs(90), || {
        status_json(&network, &new_leader).is_some_and(|s| s["archive"]["failing"] == false)
    });
}

/// The image has no chmod; Patroni's Python does it (as root).
fn chmod_repository(network: &Network, node: &str, mode: u32) {
    run(Command::new("docker").args([
        "exec",
        &container_of(network, node),
        "python3",
        "-c",
        &format!("import os; os.chmod('/var/lib/pgbackrest', {mode})"),
    ]));
}

/// Each drill tick seen in the logs, with the nodes that ran it.
fn drill_ticks(network: &Network) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut ticks: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
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
            if let Some(rest) = line.split("backup: scheduled drill (tick ").nth(1)
                && line.contains(") done on this node")
                && let Some(tick) = rest.split(')').next().and_then(|t| t.parse().ok())
            {
                ticks.entry(tick).or_default().push(node.to_string());
            }
        }
    }
    ticks
}
