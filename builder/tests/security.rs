//! A cluster as an attacker on the customer's private network sees it, and
//! as an operator rotating its certificates does: a container inside
//! `cluster.cidr` that is not in the spec gets nothing without a
//! credential or a certificate from the cluster CA (Patroni's unsafe REST
//! endpoints, etcd, plaintext PostgreSQL on every port, HAProxy's stats);
//! clients holding the CA verify every listener; nothing answers on a
//! second, "public" network the nodes are also attached to; no node holds
//! the CA key; and `nodeimg secrets rotate` delivered as documented puts new
//! certificates on every listener while a client keeps writing through
//! PgBouncer.

mod support {
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod images;
}

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::cluster::*;
use support::images::{loaded_images, run};

const PREFIX: &str = "172.31.242";
const PUBLIC: &str = "172.31.243";

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

fn nodeimg(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Each node's secrets in a folder of its own, mounted whole, so a file
/// replaced there (the documented delivery) is what the node reads.
fn node_dir(network: &Network, node: &str) -> std::path::PathBuf {
    network.dir.path().join("nodes").join(node)
}

fn start_node(network: &Network, node: &str, image: &str, host: u8) {
    let dir = node_dir(network, node);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secrets.toml");
    std::fs::copy(node_secrets(network, host), &file).unwrap();
    network.start(
        node,
        image,
        host,
        &[
            "-v".into(),
            format!("{}:/etc/nodeimg/secrets:ro", dir.display()),
            "-e".into(),
            "NODEIMG_SECRETS=/etc/nodeimg/secrets/secrets.toml".into(),
            "-e".into(),
            format!("NODEIMG_PRIVATE_IP={}", network.ip(host)),
        ],
    );
}

/// The serial of the certificate `ip:port` serves (`starttls` for the
/// PostgreSQL protocol), verified against the CA; None when it does not
/// answer or does not verify.
fn served_serial(ca: &str, ip: &str, port: u16, starttls: bool) -> Option<String> {
    let script = format!(
        "echo | openssl s_client -connect {ip}:{port} -CAfile {ca} -verify_return_error {} 2>/dev/null | openssl x509 -noout -serial",
        if starttls { "-starttls postgres" } else { "" }
    );
    let output = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let serial = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !serial.starts_with("serial=") {
        eprintln!("{ip}:{port} did not verify (yet): {}", text(&output).trim());
        return None;
    }
    Some(serial)
}

/// Every listener's serial once each of them answers and verifies (a
/// service may still be starting or reloading).
fn serials(ca: &str, what: &str) -> Vec<String> {
    let mut found = Vec::new();
    wait_until(what, Duration::from_secs(60), || {
        let all: Option<Vec<String>> = listeners()
            .iter()
            .map(|(_, ip, port, starttls)| served_serial(ca, ip, *port, *starttls))
            .collect();
        all.map(|all| found = all).is_some()
    });
    found
}

/// Every TLS listener of the cluster: (what, ip, port, starttls).
fn listeners() -> Vec<(String, String, u16, bool)> {
    let mut all = Vec::new();
    for host in 11..=13 {
        let ip = format!("{PREFIX}.{host}");
        all.push((format!("db-{} postgres", host - 10), ip.clone(), 5432, true));
        all.push((format!("db-{} patroni", host - 10), ip.clone(), 8008, false));
        all.push((format!("db-{} etcd", host - 10), ip.clone(), 2379, false));
        all.push((format!("db-{} etcd peer", host - 10), ip, 2380, false));
    }
    for host in 21..=22 {
        let ip = format!("{PREFIX}.{host}");
        all.push((format!("proxy-{} pgbouncer", host - 20), ip, 6432, true));
    }
    all
}

/// Runs `script` (python3) in a container of the db image at `ip` on
/// `network`: a server of the customer's that is not in the spec.
fn stranger(network: &str, ip: &str, image: &str, script: &str) -> String {
    let output = run(Command::new("docker")
        .args(["run", "--rm", "--network", network, "--ip", ip])
        .args(["--entrypoint", "/usr/bin/python3", image, "-c", script]));
    String::from_utf8_lossy(&output.stdout).to_string()
}

const PROBES: &str = r#"
import glob, http.client, json, socket, ssl, subprocess, sys
psql = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))[-1]
prefix, leader = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = {}
def call(method, host, port, path, body=None):
    # Only a refusal by the network or TLS counts as "refused"; any other
    # failure is the probe's own and must fail the test.
    try:
        c = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return "%d %s" % (r.status, r.read(200).decode(errors="replace").strip())
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return "refused: %s %s" % (type(e).__name__, e)
    except Exception as e:
        return "probe failed: %s %s" % (type(e).__name__, e)
for method, path, body in [("PATCH", "/config", '{"postgresql":{"parameters":{"archive_command":"touch /tmp/owned"}}}'),
                           ("POST", "/restart", "{}"), ("POST", "/failover", '{"candidate":"db-1"}'),
                           ("POST", "/reinitialize", "{}"), ("POST", "/switchover", '{"leader":"x"}')]:
    out["patroni %s %s" % (method, path)] = call(method, leader, 8008, path, body)
out["patroni GET /health"] = call("GET", leader, 8008, "/health")
for op, body in [("range", '{"key":"Lw==","range_end":"MA=="}'), ("put", '{"key":"eA==","value":"eA=="}'),
                 ("deleterange", '{"key":"Lw==","range_end":"MA=="}')]:
    out["etcd " + op] = call("POST", leader, 2379, "/v3/kv/" + op, body)
s = socket.socket(); s.settimeout(3)
try:
    s.connect((prefix + ".21", 7000)); out["stats"] = "answered"
except Exception as e:
    out["stats"] = "refused: %s" % type(e).__name__
for host, port in [(leader, 5432), (prefix + ".21", 5000), (prefix + ".21", 5001), (prefix + ".21", 6432)]:
    r = subprocess.run([psql, "host=%s port=%d dbname=appdb user=app sslmode=disable connect_timeout=3" % (host, port),
                        "-Xc", "select 1"], capture_output=True, text=True, env={"PGPASSWORD": "guess"})
    out["psql plaintext %d" % port] = r.stderr.strip()
print(json.dumps(out))
"#;

const PUBLIC_PROBES: &str = r#"
import json, socket, sys
out = {}
for ip in sys.argv[1:]:
    for port in [5432, 8008, 2379, 2380, 5000, 5001, 6432, 7000]:
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((ip, port)); out["%s:%d" % (ip, port)] = "answered"
        except Exception as e:
            out["%s:%d" % (ip, port)] = type(e).__name__
print(json.dumps(out))
"#;

#[test]
fn a_stranger_gets_nothing_clients_verify_everything_and_rotation_keeps_serving() {
    let images = loaded_images();
    let network = Network::create("nodeimg-sec", PREFIX);
    let public = Network::create("nodeimg-pub", PUBLIC);
    write_inputs(&network, &test_spec(PREFIX, true));
    let ca = network.dir.path().join("ca.crt").display().to_string();
    for (node, host) in [("db-1", 11), ("db-2", 12), ("db-3", 13)] {
        start_node(&network, node, &images.db, host);
    }
    for (node, host) in [("proxy-1", 21), ("proxy-2", 22)] {
        start_node(&network, node, &images.haproxy, host);
    }
    // db-1 and proxy-1 also face a second network, standing in for the
    // public side of a Hetzner server.
    for (node, host) in [("db-1", 11), ("proxy-1", 21)] {
        run(Command::new("docker").args([
            "network",
            "connect",
            "--ip",
            &format!("{PUBLIC}.{host}"),
            &public.name,
            &container_of(&network, node),
        ]));
    }
    wait_until(
        "a leader, two streaming replicas and PgBouncer",
        Duration::from_secs(120),
        || healthy(&network),
    );
    let (leader, replicas) = roles(&network).unwrap();
    let leader_ip = network.ip(db_host(&leader));

    // A stranger inside cluster.cidr.
    let probes = stranger(
        &network.name,
        &format!("{PREFIX}.50"),
        &images.db,
        &format!("import sys; sys.argv = ['', '{PREFIX}', '{leader_ip}']\n{PROBES}"),
    );
    let probes: serde_json::Value = serde_json::from_str(&probes).unwrap();
    eprintln!("{probes:#}");
    for endpoint in [
        "PATCH /config",
        "POST /restart",
        "POST /failover",
        "POST /reinitialize",
        "POST /switchover",
    ] {
        let answer = probes[format!("patroni {endpoint}")].as_str().unwrap();
        assert!(
            answer.starts_with("401") || answer.starts_with("403") || answer.starts_with("refused"),
            "{endpoint} without credentials: {answer}"
        );
    }
    // Health checks stay open (over TLS) for HAProxy.
    assert!(
        probes["patroni GET /health"]
            .as_str()
            .unwrap()
            .starts_with("200")
    );
    for op in ["range", "put", "deleterange"] {
        let answer = probes[format!("etcd {op}")].as_str().unwrap();
        assert!(
            answer.starts_with("refused"),
            "etcd {op} without a client certificate: {answer}"
        );
    }
    assert!(
        probes["stats"].as_str().unwrap().starts_with("refused"),
        "{probes}"
    );
    for port in [5432, 5000, 5001, 6432] {
        let answer = probes[format!("psql plaintext {port}")].as_str().unwrap();
        assert!(
            answer.contains("no encryption") || answer.contains("SSL required"),
            "plaintext to {port}: {answer}"
        );
    }
    // The archive_command the stranger tried to set did not land.
    let config = run(Command::new("docker").args([
        "exec",
        &container_of(&network, &leader),
        "patronictl",
        "show-config",
    ]));
    assert!(!text(&config).contains("/tmp/owned"), "{}", text(&config));

    // Nothing answers on the public side.
    let public_probes = stranger(
        &public.name,
        &format!("{PUBLIC}.50"),
        &images.db,
        &format!("import sys; sys.argv = ['', '{PUBLIC}.11', '{PUBLIC}.21']\n{PUBLIC_PROBES}"),
    );
    let public_probes: serde_json::Value = serde_json::from_str(&public_probes).unwrap();
    for (what, answer) in public_probes.as_object().unwrap() {
        assert_ne!(answer, "answered", "{what} answers on the public network");
    }
    assert_eq!(public_probes.as_object().unwrap().len(), 16);

    // Clients holding the CA: verify-full through PgBouncer and HAProxy
    // (psql() always verifies), every listener verifies, every walsender
    // on the leader is encrypted.
    assert_eq!(
        psql(&network.ip(21), 6432, "appdb", "select 1").unwrap(),
        "1"
    );
    assert_eq!(
        psql(&network.ip(22), 5000, "appdb", "select 1").unwrap(),
        "1"
    );
    let before = serials(&ca, "every listener verifying against the CA");
    let walsenders = run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &container_of(&network, &leader),
        "psql",
        "-h",
        "/run/postgresql",
        "-XtAc",
        "select count(*), bool_and(s.ssl) from pg_stat_replication r join pg_stat_ssl s using (pid)",
    ]));
    assert_eq!(String::from_utf8_lossy(&walsenders.stdout).trim(), "2|t");

    // No node holds the CA key; every key file is 0600.
    let full = std::fs::read_to_string(network.dir.path().join("cluster.secrets.toml")).unwrap();
    let full: toml::Value = toml::from_str(&full).unwrap();
    let ca_key_line = full["tls"]["ca_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for node in ["db-1", "db-2", "db-3", "proxy-1", "proxy-2"] {
        let container = container_of(&network, node);
        // Everything the node was given or rendered, copied out and read.
        let copy = tempfile::tempdir().unwrap();
        for (i, path) in ["/run/nodeimg", "/etc/nodeimg"].iter().enumerate() {
            run(Command::new("docker")
                .args(["cp", &format!("{container}:{path}")])
                .arg(copy.path().join(i.to_string())));
        }
        let mut read = 0;
        let mut stack = vec![copy.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    read += 1;
                    assert!(
                        !String::from_utf8_lossy(&bytes).contains(&ca_key_line),
                        "{node} holds the CA key in {}",
                        path.display()
                    );
                }
            }
        }
        assert!(read >= 5, "{node}: only {read} files read");
        // docker cp keeps the modes: every key file is 0600.
        for key in ["tls/node.key", "tls/etcd.key"] {
            let mode = std::fs::metadata(copy.path().join("0").join(key))
                .unwrap()
                .permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600,
                "{node}: {key}"
            );
        }
    }

    // patronictl on a db node with no arguments, as the runbooks use it.
    let listed = run(Command::new("docker").args([
        "exec",
        &container_of(&network, "db-1"),
        "patronictl",
        "list",
        "-f",
        "json",
    ]));
    let members: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let members = members.as_array().unwrap();
    assert_eq!(members.iter().filter(|m| m["Role"] == "Leader").count(), 1);
    assert_eq!(
        members.iter().filter(|m| m["State"] == "streaming").count(),
        2,
        "{members:?}"
    );
    // In synchronous mode Patroni hands over only to the synchronous standby.
    let candidate = members
        .iter()
        .find(|m| m["Role"] == "Sync Standby")
        .and_then(|m| m["Member"].as_str())
        .unwrap_or_else(|| panic!("no synchronous standby: {members:?}"))
        .to_string();
    assert!(replicas.contains(&candidate));
    let candidate = &candidate;
    let switched = Command::new("docker")
        .args(["exec", &container_of(&network, "db-1"), "patronictl"])
        .args(["switchover", "--force", "--candidate", candidate])
        .output()
        .unwrap();
    assert!(switched.status.success(), "{}", text(&switched));
    eprintln!("{}", text(&switched));
    wait_until("the switchover", Duration::from_secs(60), || {
        roles(&network).is_some_and(|(now, others)| now == *candidate && others.len() == 2)
    });

    // Rotation: new node certificates, delivered as the README says (each
    // node's file replaced, then SIGHUP: `systemctl reload nodeimg` on a
    // host), while a client writes through PgBouncer.
    psql(
        &network.ip(21),
        6432,
        "appdb",
        "create table writes (id bigserial primary key, at timestamptz default now())",
    )
    .unwrap();
    let writer = Writer::start(network.ip(21), 6432);
    wait_until("writes through PgBouncer", Duration::from_secs(20), || {
        writer.written_after(Instant::now() - Duration::from_secs(1))
    });
    let rotation_started = Instant::now();
    let dir = network.dir.path();
    let rotated = nodeimg(
        &[
            "secrets",
            "rotate",
            "--cluster",
            "cluster.toml",
            "--secrets",
            "cluster.secrets.toml",
        ],
        dir,
    );
    assert!(rotated.status.success(), "{}", text(&rotated));
    for node in ["db-1", "db-2", "db-3", "proxy-1", "proxy-2"] {
        let file = node_dir(&network, node).join("secrets.toml");
        let made = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["secrets", "for-node", node, "--cluster", "cluster.toml"])
            .args(["--secrets", "cluster.secrets.toml", "--force", "-o"])
            .arg(&file)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made));
        run(Command::new("docker").args([
            "kill",
            "--signal",
            "HUP",
            &container_of(&network, node),
        ]));
    }
    let mut after = Vec::new();
    wait_until(
        "every listener serving its new certificate",
        Duration::from_secs(60),
        || {
            let now: Option<Vec<String>> = listeners()
                .iter()
                .map(|(_, ip, port, starttls)| served_serial(&ca, ip, *port, *starttls))
                .collect();
            now.is_some_and(|now| {
                after = now;
                after.iter().zip(&before).all(|(a, b)| a != b)
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let failed_during_rotation = writer
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, id)| *at > rotation_started && id.is_none())
        .count();
    let acknowledged = writer.stop();
    eprintln!(
        "rotation: {} acknowledged writes, {failed_during_rotation} failed",
        acknowledged.len()
    );
    assert!(
        failed_during_rotation <= 1,
        "{failed_during_rotation} writes failed during rotation"
    );
    // The rotated cluster is still whole and verifies against the same CA.
    assert_eq!(
        psql(&network.ip(22), 6432, "appdb", "select 1").unwrap(),
        "1"
    );
    // Whole again: replicas that reconnected with the new certificates
    // stream, and PgBouncer answers on both proxies.
    wait_until("the rotated cluster whole", Duration::from_secs(60), || {
        healthy(&network)
    });
}
