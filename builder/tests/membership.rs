//! Growing the db members from 3 to 5 and back to 3 by editing the spec,
//! as the README tells an operator to: `nodeimg secrets update`, the new
//! spec delivered to every running node and a reload (SIGHUP), the new
//! nodes started with their own files; later the removed nodes stopped and
//! the others reloaded. etcd and Patroni membership follow, one etcd
//! member at a time; a removal that would lose quorum is refused with a
//! message naming it; a writer through PgBouncer and one through HAProxy
//! lose no acknowledged write.

mod support {
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod images;
}

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::*;
use support::images::{loaded_images, run};

const PREFIX: &str = "172.31.246";

fn nodeimg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
}

fn start_db(network: &Network, image: &str, node: &str) {
    start_db_node(network, image, node, &[]);
}

/// The test spec with db-1 .. db-`count`.
fn spec(count: u8) -> String {
    let three = test_spec(PREFIX, true);
    let extra: String = (4..=count)
        .map(|i| {
            format!(
                "[[db]]\nname = \"db-{i}\"\nip = \"{PREFIX}.{}\"\n\n",
                10 + i
            )
        })
        .collect();
    three.replacen("[[haproxy]]", &format!("{extra}[[haproxy]]"), 1)
}

/// What an operator does after editing the spec: the full secrets file
/// updated, the spec delivered to the nodes (the mounted file rewritten in
/// place) and the running ones reloaded.
fn deliver(network: &Network, spec_text: &str, reload: &[&str]) {
    let dir = network.dir.path();
    std::fs::write(dir.join("cluster.toml"), spec_text).unwrap();
    let update = run(nodeimg()
        .args(["secrets", "update", "--cluster"])
        .arg(dir.join("cluster.toml"))
        .arg("--secrets")
        .arg(dir.join("cluster.secrets.toml")));
    eprintln!("{}", String::from_utf8_lossy(&update.stderr).trim());
    for node in reload {
        run(Command::new("docker").args(["kill", "--signal", "HUP", &container_of(network, node)]));
    }
}

/// `nodeimg secrets for-node`, as the operator gives a new node its file.
fn node_file(network: &Network, node: &str) {
    let dir = network.dir.path();
    run(nodeimg()
        .args(["secrets", "for-node", node, "--force", "--cluster"])
        .arg(dir.join("cluster.toml"))
        .arg("--secrets")
        .arg(dir.join("cluster.secrets.toml"))
        .arg("-o")
        .arg(dir.join(format!("{node}.secrets.toml"))));
}

/// `etcdctl` inside `node`, with its client certificate.
fn etcdctl_command(network: &Network, node: &str, args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command
        .args(["exec", &container_of(network, node), "etcdctl"])
        .args(["--endpoints", "https://127.0.0.1:2379"])
        .args(["--cacert", "/run/nodeimg/tls/ca.crt"])
        .args(["--cert", "/run/nodeimg/tls/node.crt"])
        .args(["--key", "/run/nodeimg/tls/etcd.key"])
        .args(args);
    command
}

fn etcdctl(network: &Network, node: &str, args: &[&str]) {
    run(&mut etcdctl_command(network, node, args));
}

/// etcd's members as `node` sees them: (name, started).
fn etcd_members(network: &Network, node: &str) -> Option<Vec<(String, bool)>> {
    let output = etcdctl_command(network, node, &["member", "list", "-w", "json"])
        .output()
        .ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let mut members: Vec<(String, bool)> = answer["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_string();
            let started = !name.is_empty();
            (name, started)
        })
        .collect();
    members.sort();
    Some(members)
}

fn etcd_names(network: &Network, node: &str) -> Vec<String> {
    etcd_members(network, node)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, started)| *started)
        .map(|(name, _)| name)
        .collect()
}

/// (leader, members streaming with lag 0) as db-1's Patroni sees them.
fn patroni_view(network: &Network, via: &str) -> Option<(String, Vec<String>, usize)> {
    let cluster = patroni_cluster(&network.ip(db_host(via)))?;
    let members = cluster["members"].as_array()?;
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader" && m["state"] == "running")?["name"]
        .as_str()?
        .to_string();
    let streaming = members
        .iter()
        .filter(|m| m["state"] == "streaming" && m["lag"].as_u64() == Some(0))
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    Some((leader, streaming, members.len()))
}

fn logs(network: &Network, node: &str) -> String {
    let output = run(Command::new("docker").args(["logs", &container_of(network, node)]));
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn db_members_grow_from_three_to_five_and_shrink_back_by_editing_the_spec() {
    let images = loaded_images();
    let network = Network::create("nodeimg-members", PREFIX);
    write_inputs(&network, &spec(3));
    for node in ["db-1", "db-2", "db-3"] {
        start_db(&network, &images.db, node);
    }
    start_proxy_node(&network, &images.haproxy, "proxy-1", 21);
    wait_until("a healthy 3-node cluster", Duration::from_secs(180), || {
        healthy(&network)
    });
    psql(
        &network.ip(21),
        6432,
        "appdb",
        "create table writes (id bigserial primary key, at timestamptz default now())",
    )
    .unwrap();
    let through_6432 = Writer::start(network.ip(21), 6432);
    let through_5000 = Writer::start(network.ip(21), 5000);
    let began = Instant::now();

    // 3 -> 5: certificates for the two new members, the new spec to every
    // running node. db-4's join is interrupted after etcd added it (as if
    // its server died right then): db-5 must wait for it, since two
    // members added and not started could cost the quorum.
    deliver(&network, &spec(5), &["db-1", "db-2", "db-3", "proxy-1"]);
    node_file(&network, "db-4");
    node_file(&network, "db-5");
    let grow = Instant::now();
    etcdctl(
        &network,
        "db-1",
        &[
            "member",
            "add",
            "db-4",
            &format!("--peer-urls=https://{}:2380", network.ip(14)),
        ],
    );
    start_db(&network, &images.db, "db-5");
    wait_until("db-5 waiting for db-4", Duration::from_secs(60), || {
        logs(&network, "db-5").contains("members join one at a time")
    });
    assert_eq!(
        etcd_members(&network, "db-1").map(|m| m.len()),
        Some(4),
        "db-5 was added while db-4 had not started"
    );
    start_db(&network, &images.db, "db-4");
    let grown = wait_until(
        "etcd and Patroni with five members, four streaming",
        Duration::from_secs(240),
        || {
            etcd_names(&network, "db-1").len() == 5
                && patroni_view(&network, "db-1")
                    .is_some_and(|(_, streaming, count)| streaming.len() == 4 && count == 5)
        },
    );
    eprintln!("grown to 5 members in {:.0} s", grown.as_secs_f64());
    assert_eq!(
        etcd_names(&network, "db-1"),
        names(&["db-1", "db-2", "db-3", "db-4", "db-5"])
    );
    for node in ["db-4", "db-5"] {
        assert!(
            logs(&network, node).contains("etcd: joining the running cluster"),
            "{node} did not join the running etcd cluster"
        );
    }
    // The proxy routes reads to the new members too (its configuration
    // reloaded): HAProxy's replica port balances round-robin.
    let mut readers = BTreeSet::new();
    wait_until(
        "reads through 5001 reaching db-4 and db-5",
        Duration::from_secs(30),
        || {
            if let Ok(server) = psql(
                &network.ip(21),
                5001,
                "appdb",
                "select host(inet_server_addr())",
            ) {
                readers.insert(server.trim().to_string());
            }
            readers.contains(&network.ip(14)) && readers.contains(&network.ip(15))
        },
    );

    // The shrink refused while it would lose quorum: db-2 and db-3 down,
    // removing db-4 would leave four voters with only two answering.
    let (leader, ..) = patroni_view(&network, "db-1").unwrap();
    if leader != "db-1" {
        // In synchronous mode Patroni switches over only to a synchronous
        // standby (412 otherwise, and patronictl still exits 0): every
        // replica made one for the switchover, then one again.
        let patronictl = |args: &[&str]| {
            let output = run(Command::new("docker")
                .args(["exec", &container_of(&network, "db-1"), "patronictl"])
                .args(args));
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(!text.contains("failed"), "patronictl {args:?}: {text}");
        };
        patronictl(&[
            "edit-config",
            "--force",
            "--set",
            "synchronous_node_count=4",
        ]);
        wait_until(
            "db-1 a synchronous standby",
            Duration::from_secs(60),
            || {
                patroni_cluster(&network.ip(11)).is_some_and(|c| {
                    c["members"].as_array().is_some_and(|members| {
                        members
                            .iter()
                            .any(|m| m["name"] == "db-1" && m["role"] == "sync_standby")
                    })
                })
            },
        );
        eprintln!("switching over from {leader} to db-1");
        patronictl(&["switchover", "--force", "--candidate", "db-1"]);
        wait_until("db-1 leading", Duration::from_secs(60), || {
            patroni_view(&network, "db-1").is_some_and(|(l, ..)| l == "db-1")
        });
        patronictl(&[
            "edit-config",
            "--force",
            "--set",
            "synchronous_node_count=1",
        ]);
    }
    for node in ["db-2", "db-3"] {
        run(Command::new("docker").args(["stop", "-t", "30", &container_of(&network, node)]));
    }
    deliver(&network, &spec(3), &["db-1"]);
    wait_until("db-1 refusing the removal", Duration::from_secs(60), || {
        logs(&network, "db-1").contains("etcd membership change refused")
    });
    let log = logs(&network, "db-1");
    let refusal = log
        .lines()
        .find(|l| l.contains("etcd membership change refused"))
        .unwrap()
        .to_string();
    eprintln!("{refusal}");
    assert!(
        refusal.contains("refusing to remove db-4") && refusal.contains("need 3 answering"),
        "{refusal}"
    );
    assert_eq!(
        etcd_names(&network, "db-1").len(),
        5,
        "a refused change changed the membership"
    );

    // Back to 3: db-2 and db-3 return; the removed nodes are stopped, the
    // others reloaded: db-4 and db-5 leave etcd one at a time, and Patroni.
    for node in ["db-2", "db-3"] {
        run(Command::new("docker").args(["start", &container_of(&network, node)]));
    }
    wait_until(
        "db-2 and db-3 streaming again",
        Duration::from_secs(120),
        || patroni_view(&network, "db-1").is_some_and(|(_, s, _)| s.len() == 4),
    );
    for node in ["db-4", "db-5"] {
        run(Command::new("docker").args(["stop", "-t", "30", &container_of(&network, node)]));
    }
    for node in ["db-1", "db-2", "db-3", "proxy-1"] {
        run(Command::new("docker").args([
            "kill",
            "--signal",
            "HUP",
            &container_of(&network, node),
        ]));
    }
    let shrunk = wait_until(
        "etcd and Patroni back to three members",
        Duration::from_secs(120),
        || {
            etcd_members(&network, "db-1").is_some_and(|m| m.len() == 3)
                && etcd_names(&network, "db-1") == names(&["db-1", "db-2", "db-3"])
                && patroni_view(&network, "db-1")
                    .is_some_and(|(_, s, count)| s.len() == 2 && count == 3)
        },
    );
    eprintln!("shrunk to 3 members in {:.0} s", shrunk.as_secs_f64());
    assert!(
        ["db-1", "db-2", "db-3"]
            .iter()
            .any(|n| logs(&network, n).contains("etcd: removed db-4")),
        "no node logged db-4's removal"
    );
    wait_until(
        "a healthy 3-node cluster again",
        Duration::from_secs(120),
        || healthy(&network),
    );
    // Writes go on through both paths after the change.
    let after = Instant::now();
    wait_until("writes after the shrink", Duration::from_secs(30), || {
        through_6432.written_after(after) && through_5000.written_after(after)
    });

    let outage_6432 = through_6432.outage_after(began);
    let outage_5000 = through_5000.outage_after(began);
    let mut acknowledged: BTreeSet<i64> = through_6432.stop().into_iter().collect();
    acknowledged.extend(through_5000.stop());
    let stored = stored_ids(&network);
    let lost: Vec<&i64> = acknowledged.difference(&stored).collect();
    eprintln!(
        "{} acknowledged writes, {} stored, {} lost; longest gap {:.1} s through 6432, {:.1} s through 5000 (the stops included); {:.0} s from the first spec change to the end",
        acknowledged.len(),
        stored.len(),
        lost.len(),
        outage_6432.as_secs_f64(),
        outage_5000.as_secs_f64(),
        grow.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(acknowledged.len() > 100, "too few writes to judge");
}
