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

    // The schedule's first full backup: once, on a replica, from that
    // standby (the primary only starts and stops it).
    let standby = wait_first_scheduled_full(&network, &leader, Duration::from_secs(180));
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "create table rows (id int primary key, note text); insert into rows select g, 'before the backup' from generate_series(1, 1000) g",
    )
    .unwrap();

    eprintln!("the first scheduled full backup was taken on {standby}");
    pgbackrest_server_answers_only_db_nodes(&network, &images.db, &leader);

    // `backup now` on a replica is a backup from that standby; on the
    // primary, from the primary.
    let (_, replicas) = roles(&network).unwrap();
    let (code, _, stderr) = backup(&network, &replicas[0], &["now", "--type", "diff"]);
    assert_eq!(code, 0, "backup now on a replica failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("from this standby (primary {leader} at ")),
        "{stderr}"
    );
    let (code, _, stderr) = backup(&network, &leader, &["now", "--type", "full"]);
    assert_eq!(code, 0, "backup now failed:\n{stderr}");
    assert!(stderr.contains("starting on the primary"), "{stderr}");
    // Every node sees the same repository.
    let (code, stdout, stderr) = backup(&network, &replicas[0], &["list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["full", "diff", "full"], "{stdout}");
    // Drills run on replicas, once per tick, and report OK.
    wait_until("two drill ticks", Duration::from_secs(150), || {
        scheduled_ticks(&network, "drill").len() >= 2
    });
    let ticks = scheduled_ticks(&network, "drill");
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
    // HAProxy routes to the new primary once its health check says so.
    wait_until(
        "a write through the proxy after the failover",
        Duration::from_secs(60),
        || {
            psql(
                &network.ip(21),
                5000,
                "appdb",
                "insert into rows select g, 'after the failover' from generate_series(1501, 2000) g on conflict do nothing",
            )
            .is_ok()
        },
    );
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

/// A stranger inside cluster.cidr runs pgBackRest against the primary's
/// TLS server with a proxy's certificate (the cluster's CA, but no db
/// node's name) and with db-1's name from a CA of its own: both refused.
/// With db-1's real client certificate the same command works, so the
/// refusals are the server's, not the probe's. (pgBackRest's client will
/// not connect without a certificate; the server answers no command to
/// one without.)
fn pgbackrest_server_answers_only_db_nodes(network: &Network, image: &str, leader: &str) {
    let secrets = std::fs::read_to_string(network.dir.path().join("cluster.secrets.toml")).unwrap();
    let secrets: toml::Value = toml::from_str(&secrets).unwrap();
    let tls = &secrets["tls"];
    let node = |name: &str, field: &str| tls["nodes"][name][field].as_str().unwrap().to_string();
    // The forger's CA even has the cluster CA's name; only its key differs.
    let forged_key = rcgen::KeyPair::generate().unwrap();
    let mut forged_ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    forged_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    forged_ca
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "nodeimg");
    forged_ca
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nodeimg e2e CA");
    let issuer = rcgen::Issuer::new(forged_ca, &forged_key);
    let mut forged = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    forged
        .distinguished_name
        .push(rcgen::DnType::CommonName, "db-1");
    let forged = forged.signed_by(&forged_key, &issuer).unwrap();
    let probe = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("ca.crt", tls["ca_cert"].as_str().unwrap().to_string()),
        ("proxy.crt", node("proxy-1", "cert")),
        ("proxy.key", node("proxy-1", "key")),
        ("forged.crt", forged.pem()),
        ("forged.key", forged_key.serialize_pem()),
        ("db.crt", node("db-1", "backup_client_cert")),
        ("db.key", node("db-1", "key")),
    ] {
        std::fs::write(probe.path().join(file), text).unwrap();
    }
    run(Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(probe.path()));
    let script = format!(
        r#"
import json, os, shutil, subprocess
out = {{}}
# pgBackRest wants its keys 0600 and owned by the user running it.
os.makedirs("/tmp/probe")
for name in os.listdir("/probe"):
    shutil.copy("/probe/" + name, "/tmp/probe/" + name)
    os.chmod("/tmp/probe/" + name, 0o600)
base = ["pgbackrest", "--stanza=e2e", "--repo1-path=/tmp/repo", "--lock-path=/tmp/lock",
        "--log-level-console=warn", "--log-level-file=off", "--pg1-host={ip}",
        "--pg1-host-type=tls", "--pg1-host-port=8432", "--pg1-host-ca-file=/tmp/probe/ca.crt",
        "--pg1-path=/var/lib/postgresql/data", "--pg1-socket-path=/run/postgresql", "--pg1-user=postgres"]
for pair in ["proxy", "forged", "db"]:
    extra = ["--pg1-host-cert-file=/tmp/probe/%s.crt" % pair, "--pg1-host-key-file=/tmp/probe/%s.key" % pair]
    r = subprocess.run(base + extra + ["stanza-create"], capture_output=True, text=True, timeout=60)
    out[pair] = [r.returncode, (r.stdout + r.stderr).strip()[-400:]]
print(json.dumps(out))
"#,
        ip = network.ip(db_host(leader)),
    );
    let output = run(Command::new("docker")
        .args(["run", "--rm", "--network", &network.name])
        .args(["--ip", &network.ip(50), "-u", "postgres"])
        .arg("-v")
        .arg(format!("{}:/probe:ro", probe.path().display()))
        .args(["--entrypoint", "/usr/bin/python3", image, "-c", &script]));
    let answers: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the probe prints JSON");
    eprintln!("pgBackRest's server to a stranger: {answers:#}");
    for refused in ["proxy", "forged"] {
        let said = answers[refused][1].as_str().unwrap();
        assert_ne!(answers[refused][0], 0, "{refused}: {answers:#}");
        // Refused when reaching the server, not by the probe's own files.
        assert!(
            said.contains("unable to check pg1") && !said.contains("unable to load"),
            "{refused}: {said}"
        );
    }
    assert_eq!(answers["db"][0], 0, "db-1's certificate: {answers:#}");
}
