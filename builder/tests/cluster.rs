//! A real cluster on Docker: 3 db and 2 haproxy containers from the images
//! nodeimg builds, each finding its identity through a metadata source
//! (the Hetzner stand-in over HTTP, a NoCloud file, the environment), then
//! SCRAM through PgBouncer, pgvector, primary/replica routing, a graceful
//! and a hard failover, and a rejoin with pg_rewind.
//!
//! Set NODEIMG_E2E_REPORT=FILE to append the measured timings as JSON,
//! and NODEIMG_E2E_NO_FENCING=1 to run the cluster with
//! `fence_dead_leader = false` (the benchmark's A/B comparison).

mod support {
    // Shared with tests/security.rs.
    #[allow(dead_code)]
    pub mod cluster;
    // Shared with tests/identity.rs, which uses all of it.
    #[allow(dead_code)]
    pub mod hetzner_metadata;
    // Shared with tests/cloud_init.rs.
    #[allow(dead_code)]
    pub mod images;
}

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nodeimg::cluster::scram::Verifier;

use support::cluster::*;
use support::hetzner_metadata::{HetznerStandIn, ServerDoc};
use support::images::{loaded_images, run};

/// The benchmark's A/B switch: fencing of a dead leader off.
fn fencing_off() -> bool {
    std::env::var_os("NODEIMG_E2E_NO_FENCING").is_some()
}

fn spec(prefix: &str) -> String {
    test_spec(prefix, !fencing_off())
}

#[test]
fn a_three_node_cluster_boots_serves_and_fails_over() {
    let images = loaded_images();
    let network = Network::create("nodeimg-e2e", "172.31.240");
    write_inputs(&network, &spec(&network.prefix));
    // The Hetzner stand-in listens on the network's gateway (the host side
    // of the bridge) and answers db-1 about itself.
    let standin = HetznerStandIn::start(network.ip(1).parse().unwrap());
    standin.add_server(
        network.ip(11).parse().unwrap(),
        ServerDoc {
            hostname: "db-1".into(),
            instance_id: 11,
            private_networks: vec![(network.ip(11), format!("{}.0/24", network.prefix))],
        },
    );
    let meta_data = network.dir.path().join("db-2.meta-data");
    std::fs::write(
        &meta_data,
        format!(
            "instance-id: 12\nlocal-hostname: db-2\nprivate-ip: {}\n",
            network.ip(12)
        ),
    )
    .unwrap();
    let secrets_mount = |path: &str| {
        vec![
            "-v".to_string(),
            format!("{path}:/run/secrets/nodeimg.toml:ro"),
        ]
    };

    let started = Instant::now();
    let mut db1 = secrets_mount(&node_secrets(&network, 11));
    db1.extend([
        "-e".into(),
        format!("NODEIMG_METADATA=hetzner:{}", standin.url()),
    ]);
    network.start("db-1", &images.db, 11, &db1);
    let mut db2 = secrets_mount(&node_secrets(&network, 12));
    db2.extend([
        "-v".into(),
        format!("{}:/etc/nodeimg/meta-data:ro", meta_data.display()),
    ]);
    network.start("db-2", &images.db, 12, &db2);
    let mut db3 = secrets_mount(&node_secrets(&network, 13));
    db3.extend([
        "-e".into(),
        format!("NODEIMG_PRIVATE_IP={}", network.ip(13)),
    ]);
    network.start("db-3", &images.db, 13, &db3);
    for (name, host) in [("proxy-1", 21), ("proxy-2", 22)] {
        let mut args = secrets_mount(&node_secrets(&network, host));
        args.extend([
            "-e".into(),
            format!("NODEIMG_PRIVATE_IP={}", network.ip(host)),
        ]);
        network.start(name, &images.haproxy, host, &args);
    }
    let to_healthy = wait_until(
        "a leader, two streaming replicas and PgBouncer",
        Duration::from_secs(120),
        || healthy(&network),
    );
    let to_healthy = started.elapsed().max(to_healthy);
    eprintln!(
        "healthy cluster {:.1}s after the first docker run",
        to_healthy.as_secs_f64()
    );

    // Each node said where its identity came from.
    let logs = |member: &str| {
        let output = run(Command::new("docker").args(["logs", &container_of(&network, member)]));
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout)
    };
    assert!(
        logs("db-1").contains("identity from Hetzner metadata service at http://"),
        "{}",
        logs("db-1")
    );
    assert!(logs("db-2").contains("identity from NoCloud meta-data /etc/nodeimg/meta-data"));
    assert!(logs("db-3").contains("identity from environment"));
    assert!(standin.requests.load(Ordering::SeqCst) >= 3);

    // SCRAM through PgBouncer as the application user; pgvector works.
    let proxy = network.ip(21);
    psql(
        &proxy,
        6432,
        "appdb",
        "create extension if not exists vector",
    )
    .unwrap();
    psql(&proxy, 6432, "appdb", "create table items (id int primary key, embedding vector(3)); create table writes (id bigserial primary key, at timestamptz default now())").unwrap();
    psql(
        &proxy,
        6432,
        "appdb",
        "insert into items values (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]')",
    )
    .unwrap();
    assert_eq!(
        psql(
            &proxy,
            6432,
            "appdb",
            "select id from items order by embedding <-> '[0.1,0.9,0]' limit 1"
        )
        .unwrap(),
        "2"
    );
    assert!(psql(&proxy, 6432, "appdb", "select 1").is_ok());
    let wrong = Command::new("psql")
        .arg(format!(
            "host={proxy} port=6432 dbname=appdb user=app connect_timeout=2"
        ))
        .args(["-X", "-tAc", "select 1"])
        .env("PGPASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password must be refused");
    // 5000 is the primary, 5001 a replica, on both proxies.
    for proxy in [network.ip(21), network.ip(22)] {
        assert_eq!(
            psql(&proxy, 5000, "appdb", "select pg_is_in_recovery()").unwrap(),
            "f"
        );
        assert_eq!(
            psql(&proxy, 5001, "appdb", "select pg_is_in_recovery()").unwrap(),
            "t"
        );
    }
    assert_eq!(
        psql(
            &network.ip(22),
            6432,
            "appdb_ro",
            "select pg_is_in_recovery()"
        )
        .unwrap(),
        "t"
    );

    // nodeimg's SCRAM verifiers are PostgreSQL's: recompute one that the
    // server itself made, from its salt and iteration count.
    // Replicas show a lag for a moment after writes: wait for both at 0.
    let mut current = None;
    wait_until("two replicas with no lag", Duration::from_secs(30), || {
        current = roles(&network).filter(|(_, replicas)| replicas.len() == 2);
        current.is_some()
    });
    let (leader, replicas) = current.unwrap();
    let db = container_of(&network, &leader);
    let made_by_postgres = run(Command::new("docker").args([
        "exec", "-u", "postgres", &db, "psql", "-h", "/run/postgresql", "-U", "postgres", "-XtAq", "-c",
        "set password_encryption = 'scram-sha-256'; create role scram_check password 'Tr0ub4dor&3 with spaces'; select rolpassword from pg_authid where rolname = 'scram_check'; drop role scram_check",
    ]));
    let made_by_postgres = String::from_utf8_lossy(&made_by_postgres.stdout)
        .trim()
        .to_string();
    let parsed: Verifier = made_by_postgres.parse().unwrap();
    assert_eq!(
        Verifier::compute("Tr0ub4dor&3 with spaces", &parsed.salt, parsed.iterations)
            .unwrap()
            .to_string(),
        made_by_postgres
    );
    // And PostgreSQL holds exactly the verifier the secrets file gave.
    let stored = run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &db,
        "psql",
        "-h",
        "/run/postgresql",
        "-U",
        "postgres",
        "-XtAq",
        "-c",
        "select rolpassword from pg_authid where rolname = 'app'",
    ]));
    let secrets_text = std::fs::read_to_string(node_secrets(&network, 21)).unwrap();
    assert!(secrets_text.contains(String::from_utf8_lossy(&stored.stdout).trim()));
    assert!(
        !secrets_text.contains(APP_PASSWORD),
        "no plaintext password for the proxies"
    );

    // A crashed service is restarted by the agent.
    let replica = container_of(&network, &replicas[0]);
    let top = run(Command::new("docker").args(["top", &replica, "-o", "pid,args"]));
    let patroni_pid = String::from_utf8_lossy(&top.stdout)
        .lines()
        .find(|l| l.contains("bin/patroni"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap();
    run(Command::new("kill").args(["-9", &patroni_pid]));
    wait_until(
        "the agent to restart Patroni",
        Duration::from_secs(30),
        || logs(&replicas[0]).contains("patroni exited with signal SIGKILL; restarting"),
    );
    wait_until(
        "the replica to stream again",
        Duration::from_secs(60),
        || healthy(&network),
    );

    // Graceful failover: docker stop the leader.
    psql(
        &network.ip(21),
        5000,
        "appdb",
        "insert into writes default values returning id",
    )
    .expect("a write through HAProxy's primary port");
    let writer = Writer::start(network.ip(21), 5000);
    wait_until(
        "writes before the failover",
        Duration::from_secs(10),
        || writer.written_after(Instant::now() - Duration::from_millis(500)),
    );
    let stop_at = Instant::now();
    run(Command::new("docker").args(["stop", "-t", "30", &container_of(&network, &leader)]));
    wait_until(
        "a new leader",
        Duration::from_secs(60),
        || matches!(roles(&network), Some((new, _)) if new != leader),
    );
    let elected = Instant::now();
    wait_until(
        "writes after the graceful failover",
        Duration::from_secs(60),
        || writer.written_after(elected),
    );
    std::thread::sleep(Duration::from_secs(2));
    let graceful = writer.outage_after(stop_at);
    eprintln!(
        "graceful failover: writes unavailable for {:.1}s",
        graceful.as_secs_f64()
    );
    run(Command::new("docker").args(["start", &container_of(&network, &leader)]));
    wait_until(
        "the stopped leader to rejoin as a replica",
        Duration::from_secs(120),
        || healthy(&network),
    );

    // Hard failover: docker kill the new leader.
    let (second_leader, _) = roles(&network).unwrap();
    let kill_at = Instant::now();
    run(Command::new("docker").args(["kill", &container_of(&network, &second_leader)]));
    wait_until(
        "a leader after the kill",
        Duration::from_secs(90),
        || matches!(roles(&network), Some((new, _)) if new != second_leader),
    );
    let elected = Instant::now();
    wait_until(
        "writes after the hard failover",
        Duration::from_secs(60),
        || writer.written_after(elected),
    );
    std::thread::sleep(Duration::from_secs(2));
    let hard = writer.outage_after(kill_at);
    eprintln!(
        "hard failover: writes unavailable for {:.1}s",
        hard.as_secs_f64()
    );
    // The survivors fenced the dead leader (its lease seen unrenewed by a
    // majority, then revoked) rather than wait for its TTL (and, with
    // fencing off, left it to the TTL).
    let fenced = format!("saw leader {second_leader}'s lease unrenewed for");
    let survivors: Vec<String> = ["db-1", "db-2", "db-3"]
        .iter()
        .filter(|m| **m != second_leader)
        .map(|m| logs(m))
        .collect();
    assert_eq!(
        survivors.iter().any(|l| l.contains(&fenced)),
        !fencing_off(),
        "fencing {} but the survivors' logs say otherwise about {second_leader}:\n{}",
        if fencing_off() { "off" } else { "on" },
        survivors.join("\n---\n")
    );
    run(Command::new("docker").args(["start", &container_of(&network, &second_leader)]));
    let rejoin = wait_until(
        "the killed leader to rejoin as a streaming replica",
        Duration::from_secs(120),
        || healthy(&network),
    );
    let acknowledged = writer.stop();

    // Every acknowledged write survived both failovers, on the primary and
    // on the replicas.
    assert!(
        acknowledged.len() > 20,
        "only {} writes",
        acknowledged.len()
    );
    let count = |port| {
        psql(
            &network.ip(22),
            port,
            "appdb",
            &format!(
                "select count(*) from writes where id in ({})",
                acknowledged
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        )
        .unwrap()
    };
    assert_eq!(count(5000), acknowledged.len().to_string());
    wait_until(
        "replicas to have every write",
        Duration::from_secs(30),
        || count(5001) == acknowledged.len().to_string(),
    );
    eprintln!(
        "the killed leader rejoined in {:.1}s{}",
        rejoin.as_secs_f64(),
        if logs(&second_leader).contains("running pg_rewind") {
            " (pg_rewind ran)"
        } else {
            " (no rewind needed)"
        }
    );

    // HAProxy checks every member each second and closes each check with
    // a reset; with OPTIONS checks Patroni has nothing left to write by
    // then, so its REST server logs no traceback for them. (This test's
    // own polls, from the network's gateway, may give up on a slow answer
    // under load: those are not HAProxy's.)
    let marker = "Exception happened during processing of request from ";
    let test_host = format!("{}:", network.ip(1));
    for member in ["db-1", "db-2", "db-3"] {
        let log = logs(member);
        for (at, _) in log.match_indices(marker) {
            let from = &log[at + marker.len()..];
            if from.starts_with(&test_host) {
                continue;
            }
            let excerpt: String = log[at..].chars().take(2000).collect();
            panic!("{member}'s Patroni REST API logged an exception:\n{excerpt}");
        }
    }

    if let Ok(path) = std::env::var("NODEIMG_E2E_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(
            file,
            "{}",
            serde_json::json!({
                "healthy_s": to_healthy.as_secs_f64(),
                "graceful_failover_s": graceful.as_secs_f64(),
                "hard_failover_s": hard.as_secs_f64(),
                "rejoin_s": rejoin.as_secs_f64(),
                "writes": acknowledged.len(),
            })
        )
        .unwrap();
    }
}

#[test]
fn rendered_configurations_pass_patroni_haproxy_and_pgbouncer_checks() {
    let images = loaded_images();
    let network = Network::create("nodeimg-render", "172.31.241");
    write_inputs(&network, &spec(&network.prefix));

    // Patroni's check wants the DCS reachable and its own ports free: run
    // only etcd on the three db members, then validate on each.
    let mut etcd_nodes = Vec::new();
    for host in 11..=13u8 {
        let container = format!("{}-etcd-{host}", network.name);
        run(Command::new("docker")
            .args(["run", "-d", "--name", &container, "--network", &network.name])
            .args(["--ip", &network.ip(host)])
            .arg("-v")
            .arg(format!(
                "{}:/etc/nodeimg/cluster.toml:ro",
                network.dir.path().join("cluster.toml").display()
            ))
            .arg("-v")
            .arg(format!("{}:/run/secrets/nodeimg.toml:ro", node_secrets(&network, host)))
            .args(["-e", &format!("NODEIMG_PRIVATE_IP={}", network.ip(host))])
            .args(["--entrypoint", "/bin/sh", &images.db, "-c"])
            .arg("/usr/bin/nodeimg boot --render-only /run/nodeimg && exec etcd --config-file /run/nodeimg/etcd.yml"));
        network.containers.lock().unwrap().push(container.clone());
        etcd_nodes.push(container);
    }
    for container in &etcd_nodes {
        let mut last = String::new();
        let valid = (0..40).any(|_| {
            let output = Command::new("docker")
                .args([
                    "exec",
                    container,
                    "patroni",
                    "--validate-config",
                    "/run/nodeimg/patroni.yml",
                ])
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            output.status.success() || {
                std::thread::sleep(Duration::from_millis(500));
                false
            }
        });
        assert!(valid, "patroni --validate-config in {container}: {last}");
    }

    let haproxy = in_node(
        &network,
        &images.haproxy,
        21,
        &node_secrets(&network, 21),
        "haproxy -c -f /run/nodeimg/haproxy.cfg",
    );
    let text = String::from_utf8_lossy(&haproxy.stdout).to_string()
        + &String::from_utf8_lossy(&haproxy.stderr);
    assert!(haproxy.status.success(), "haproxy -c: {text}");

    // PgBouncer has no check mode: start it on the rendered files (as
    // postgres, as the agent does); a client that passes SCRAM against
    // the userlist then hears that no server is up behind it.
    let container = format!("{}-pgbouncer", network.name);
    run(Command::new("docker")
        .args(["run", "-d", "--name", &container, "--network", &network.name])
        .args(["--ip", &network.ip(22)])
        .arg("-v")
        .arg(format!(
            "{}:/etc/nodeimg/cluster.toml:ro",
            network.dir.path().join("cluster.toml").display()
        ))
        .arg("-v")
        .arg(format!("{}:/run/secrets/nodeimg.toml:ro", node_secrets(&network, 22)))
        .args(["-e", &format!("NODEIMG_PRIVATE_IP={}", network.ip(22))])
        .args(["--entrypoint", "/bin/sh", &images.haproxy, "-c"])
        .arg("/usr/bin/nodeimg boot --render-only /run/nodeimg && exec pgbouncer -u postgres /run/nodeimg/pgbouncer.ini"));
    network.containers.lock().unwrap().push(container);
    let proxy = network.ip(22);
    let mut answer = String::new();
    wait_until("PgBouncer to answer", Duration::from_secs(20), || {
        answer = psql(&proxy, 6432, "appdb", "select 1").unwrap_err();
        !answer.contains("Connection refused")
    });
    assert!(
        !answer.contains("authentication failed"),
        "SCRAM against the userlist: {answer}"
    );
    let wrong = Command::new("psql")
        .arg(format!(
            "host={proxy} port=6432 dbname=appdb user=app connect_timeout=2"
        ))
        .args(["-X", "-tAc", "select 1"])
        .env("PGPASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("authentication failed"),
        "{wrong:?}"
    );
}
