//! A cluster of nodeimg containers on a Docker network of the test's own:
//! the network, each node's inputs (spec, per-node secrets, the CA), TLS
//! clients (psql with verify-full, Patroni's REST API), a writer that
//! records every acknowledged insert, and waiting helpers. Shared by the
//! cluster, security and fault tests.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodeimg::cluster::scram::Verifier;
use nodeimg::cluster::secrets::{Secrets, UserSecret};

use super::images::run;

pub const APP_PASSWORD: &str = "app-password-for-the-e2e-test";

/// A Docker network and the containers on it, removed on drop.
pub struct Network {
    pub name: String,
    pub prefix: String,
    pub containers: Mutex<Vec<String>>,
    pub dir: tempfile::TempDir,
}

impl Network {
    pub fn create(base: &str, prefix: &str) -> Network {
        // What a killed earlier run left behind holds the subnet: remove it.
        let stale = |what: &[&str]| -> Vec<String> {
            let output = Command::new("docker").args(what).output().unwrap();
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|n| n.starts_with(&format!("{base}-")))
                .map(str::to_string)
                .collect()
        };
        for container in stale(&["ps", "-a", "--format", "{{.Names}}"]) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &container])
                .output();
        }
        for network in stale(&["network", "ls", "--format", "{{.Name}}"]) {
            let _ = Command::new("docker")
                .args(["network", "rm", &network])
                .output();
        }
        let name = format!("{base}-{}", std::process::id());
        run(Command::new("docker").args([
            "network",
            "create",
            "--subnet",
            &format!("{prefix}.0/24"),
            &name,
        ]));
        Network {
            name,
            prefix: prefix.to_string(),
            containers: Mutex::new(Vec::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// `docker run -d` of a node; `extra` are more docker arguments.
    pub fn start(&self, name: &str, image: &str, host: u8, extra: &[String]) -> String {
        let container = format!("{}-{name}", self.name);
        let mut command = Command::new("docker");
        command
            .args(["run", "-d", "--name", &container, "--hostname", name])
            .args(["--network", &self.name, "--ip", &self.ip(host)])
            .arg("-v")
            .arg(format!(
                "{}:/etc/nodeimg/cluster.toml:ro",
                self.dir.path().join("cluster.toml").display()
            ))
            .args(extra)
            .arg(image);
        run(&mut command);
        self.containers.lock().unwrap().push(container.clone());
        container
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // NODEIMG_E2E_KEEP=1 leaves the containers for a post-mortem.
        if std::env::var_os("NODEIMG_E2E_KEEP").is_some() {
            return;
        }
        for container in self.containers.lock().unwrap().iter() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", container])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// 3 db and 2 proxy nodes at .11-.13 and .21-.22 of `prefix`, fast test
/// timings, synchronous mode, the `app` user and the `appdb` pools.
pub fn test_spec(prefix: &str, fencing: bool) -> String {
    spec_with(
        prefix,
        &format!(
            "ttl = 20\nloop_wait = 1\nretry_timeout = 5\nsynchronous_mode = true\nfence_dead_leader = {fencing}\n"
        ),
    )
}

/// The same cluster with `patroni` as its `[patroni]` section (empty: the
/// defaults).
pub fn spec_with(prefix: &str, patroni: &str) -> String {
    format!(
        r#"[cluster]
name = "e2e"
cidr = "{prefix}.0/24"

[[db]]
name = "db-1"
ip = "{prefix}.11"

[[db]]
name = "db-2"
ip = "{prefix}.12"

[[db]]
name = "db-3"
ip = "{prefix}.13"

[[haproxy]]
name = "proxy-1"
ip = "{prefix}.21"

[[haproxy]]
name = "proxy-2"
ip = "{prefix}.22"

[patroni]
{patroni}
[[database]]
name = "appdb"
owner = "app"
extensions = ["vector"]

[[user]]
name = "app"
databases = ["appdb"]

[[pool]]
name = "appdb"
database = "appdb"

[[pool]]
name = "appdb_ro"
database = "appdb"
target = "replicas"
"#
    )
}

/// Writes cluster.toml, the full secrets (CA and node certificates
/// included) and each node's own secrets file (`<node>.secrets.toml`, as
/// `nodeimg secrets for-node` writes them) into the network's folder.
pub fn write_inputs(network: &Network, spec_text: &str) {
    write_inputs_with(network, spec_text, |_| {});
}

/// The same, `edit` adding what an operator gives (an s3 bucket's key).
pub fn write_inputs_with(network: &Network, spec_text: &str, edit: impl FnOnce(&mut Secrets)) {
    let dir = network.dir.path();
    let spec_path = dir.join("cluster.toml");
    std::fs::write(&spec_path, spec_text).unwrap();
    let spec = nodeimg::cluster::ClusterSpec::load(&spec_path).unwrap();
    let mut secrets = Secrets::generate(&spec).unwrap();
    edit(&mut secrets);
    secrets.users.insert(
        "app".into(),
        UserSecret {
            scram: Some(Verifier::generate(APP_PASSWORD).unwrap().to_string()),
            password: Some(APP_PASSWORD.into()),
        },
    );
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        // The agent reads secrets files only when private.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    };
    for (_, member) in spec.members() {
        let mine = secrets.for_node(&spec, &member.name).unwrap();
        write(&format!("{}.secrets.toml", member.name), mine.to_toml());
    }
    let ca = secrets.tls.as_ref().unwrap().trusted_bundle();
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    CAS.lock().unwrap().insert(
        network.prefix.clone(),
        (ca.into_bytes(), dir.join("ca.crt").display().to_string()),
    );
    write("cluster.secrets.toml", secrets.to_toml());
}

/// The secrets file of the node at `host` (db-N at .1N, proxy-N at .2N).
pub fn node_secrets(network: &Network, host: u8) -> String {
    let name = match host {
        11..=19 => format!("db-{}", host - 10),
        _ => format!("proxy-{}", host - 20),
    };
    network
        .dir
        .path()
        .join(format!("{name}.secrets.toml"))
        .display()
        .to_string()
}

/// `psql -tAc` as the app user, over TLS with the server's certificate
/// checked against the cluster CA and the address dialled
/// (`sslmode=verify-full`); Err carries psql's message.
pub fn psql(host: &str, port: u16, database: &str, sql: &str) -> Result<String, String> {
    psql_as(host, port, database, "app", APP_PASSWORD, sql)
}

/// The same as another user, with its password.
pub fn psql_as(
    host: &str,
    port: u16,
    database: &str,
    user: &str,
    password: &str,
    sql: &str,
) -> Result<String, String> {
    let ca = ca_of(host).1;
    let output = Command::new("psql")
        .arg(format!(
            "host={host} port={port} dbname={database} user={user} connect_timeout=2 sslmode=verify-full sslrootcert={ca}"
        ))
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Each test cluster's CA (PEM, file), by network prefix: tests of one
/// binary run in parallel, each with a cluster and a CA of its own.
static CAS: Mutex<std::collections::BTreeMap<String, (Vec<u8>, String)>> =
    Mutex::new(std::collections::BTreeMap::new());

/// The CA of the cluster `host` (an address of a test network) is in.
pub fn ca_of(host: &str) -> (Vec<u8>, String) {
    let prefix = host.rsplit_once('.').map_or(host, |(p, _)| p);
    CAS.lock()
        .unwrap()
        .get(prefix)
        .cloned()
        .unwrap_or_else(|| panic!("write_inputs made no CA for {prefix}"))
}

pub fn ca_cert(host: &str) -> ureq::tls::Certificate<'static> {
    ureq::tls::Certificate::from_pem(&ca_of(host).0).unwrap()
}

/// An HTTPS client that trusts only the CA of `host`'s cluster.
pub fn ca_agent(host: &str, timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca_cert(host)]))
                .build(),
        )
        .build()
        .new_agent()
}

/// A JSON document from a member's Patroni REST API (`/cluster`,
/// `/patroni`, ...).
pub fn patroni_get(ip: &str, path: &str) -> Option<serde_json::Value> {
    let mut response = ca_agent(ip, Duration::from_secs(2))
        .get(&format!("https://{ip}:8008{path}"))
        .call()
        .ok()?;
    serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
}

/// Patroni's view of the cluster from one member's REST API.
pub fn patroni_cluster(ip: &str) -> Option<serde_json::Value> {
    patroni_get(ip, "/cluster")
}

/// (leader name, names of replicas streaming with no lag).
pub fn roles(network: &Network) -> Option<(String, Vec<String>)> {
    agreed_view(network).map(|(leader, streaming, _)| (leader, streaming))
}

/// (leader, streaming replicas, a synchronous standby registered) as every
/// db node that answers sees it, when at least two answer and they all
/// agree on the leader. One node's view alone can be stale: a node just
/// reconnected after being cut off still shows the cluster it last saw.
fn agreed_view(network: &Network) -> Option<(String, Vec<String>, bool)> {
    let views: Vec<serde_json::Value> = (11..=13)
        .filter_map(|host| patroni_cluster(&network.ip(host)))
        .collect();
    let read = |cluster: &serde_json::Value| -> Option<(String, Vec<String>, bool)> {
        let mut leader = None;
        let mut streaming = Vec::new();
        let mut sync = false;
        for member in cluster["members"].as_array()? {
            let name = member["name"].as_str()?.to_string();
            let role = member["role"].as_str()?;
            sync |= role == "sync_standby";
            match role {
                "leader" if member["state"] == "running" => leader = Some(name),
                "replica" | "sync_standby"
                    if member["state"] == "streaming" && member["lag"].as_u64() == Some(0) =>
                {
                    streaming.push(name)
                }
                _ => {}
            }
        }
        Some((leader?, streaming, sync))
    };
    let seen: Vec<(String, Vec<String>, bool)> = views.iter().filter_map(read).collect();
    if views.len() < 2 || seen.len() != views.len() {
        return None;
    }
    let first = seen[0].clone();
    seen.iter()
        .all(|(leader, ..)| *leader == first.0)
        .then_some(first)
}

pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A leader, two replicas streaming with no lag, one of them registered
/// as the synchronous standby (until then, synchronous mode has no
/// failover candidate by design), and PgBouncer answering.
/// Waits until the proxy at `host` routes to the primary (HAProxy 5000):
/// its checks mark the leader up a few seconds after the db nodes agree.
pub fn wait_proxy(network: &Network, host: u8) {
    wait_until(
        "the proxy routing to the primary",
        Duration::from_secs(60),
        || psql(&network.ip(host), 5000, "appdb", "select 1").is_ok(),
    );
}

pub fn healthy(network: &Network) -> bool {
    matches!(agreed_view(network), Some((_, replicas, true)) if replicas.len() == 2)
        && psql(&network.ip(21), 6432, "appdb", "select 1").is_ok()
}

/// Writes as fast as one client can, one connection per write, and
/// remembers which succeeded.
/// When each write ended, and the id it got if it succeeded.
pub type WriteLog = Arc<Mutex<Vec<(Instant, Option<i64>)>>>;

pub struct Writer {
    stop: Arc<AtomicBool>,
    pub log: WriteLog,
    /// For each acknowledged write: when, and which db node committed it
    /// (`inet_server_addr()`, through HAProxy and PgBouncer alike).
    pub servers: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Inserts through `host:port` (HAProxy's 5000, or PgBouncer's 6432
    /// with the `appdb` pool).
    pub fn start(host: String, port: u16) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let servers = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_log, thread_servers) =
            (stop.clone(), log.clone(), servers.clone());
        let thread = std::thread::spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                let result = psql(
                    &host,
                    port,
                    "appdb",
                    "insert into writes default values returning id::text || ' ' || host(inet_server_addr())",
                );
                let answer = result.unwrap_or_default();
                let mut fields = answer.split_whitespace();
                let id = fields.next().and_then(|id| id.parse().ok());
                let now = Instant::now();
                if let (Some(_), Some(server)) = (id, fields.next()) {
                    thread_servers
                        .lock()
                        .unwrap()
                        .push((now, server.to_string()));
                }
                thread_log.lock().unwrap().push((now, id));
                if id.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Writer {
            stop,
            log,
            servers,
            thread: Some(thread),
        }
    }

    /// The longest gap between two successful writes after `since`.
    pub fn outage_after(&self, since: Instant) -> Duration {
        let log = self.log.lock().unwrap();
        let mut last_ok = log
            .iter()
            .rev()
            .find(|(at, id)| *at <= since && id.is_some())
            .map(|(at, _)| *at)
            .unwrap_or(since);
        let mut longest = Duration::ZERO;
        for (at, id) in log.iter().filter(|(at, _)| *at > since) {
            if id.is_some() {
                longest = longest.max(at.duration_since(last_ok));
                last_ok = *at;
            }
        }
        longest
    }

    pub fn written_after(&self, since: Instant) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|(at, id)| *at > since && id.is_some())
    }

    pub fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, id)| *id)
            .collect()
    }
}

/// `docker run` of db-N at .1N (N from the name) with its own secrets
/// file and its address from the environment; `extra` are more docker
/// arguments (volumes).
/// The host part of db-N's address: .1N.
pub fn db_host(node: &str) -> u8 {
    10 + node[3..].parse::<u8>().unwrap()
}

pub fn start_db_node(network: &Network, image: &str, node: &str, extra: &[String]) {
    let host = db_host(node);
    let mut args = vec![
        "-v".to_string(),
        format!(
            "{}:/run/secrets/nodeimg.toml:ro",
            node_secrets(network, host)
        ),
        "-e".to_string(),
        format!("NODEIMG_PRIVATE_IP={}", network.ip(host)),
    ];
    args.extend_from_slice(extra);
    network.start(node, image, host, &args);
}

/// `docker run` of a proxy node at `host` with its own secrets file.
pub fn start_proxy_node(network: &Network, image: &str, name: &str, host: u8) {
    network.start(
        name,
        image,
        host,
        &[
            "-v".into(),
            format!(
                "{}:/run/secrets/nodeimg.toml:ro",
                node_secrets(network, host)
            ),
            "-e".into(),
            format!("NODEIMG_PRIVATE_IP={}", network.ip(host)),
        ],
    );
}

/// The ids the `writes` table holds (through proxy-1's HAProxy), to
/// compare with what the writers saw acknowledged.
pub fn stored_ids(network: &Network) -> std::collections::BTreeSet<i64> {
    psql(&network.ip(21), 5000, "appdb", "select id from writes")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

pub fn container_of(network: &Network, member: &str) -> String {
    format!("{}-{member}", network.name)
}

/// Runs `script` in a throw-away container of `image` at the member
/// address `host`, after `nodeimg boot --render-only /run/nodeimg`.
pub fn in_node(network: &Network, image: &str, host: u8, secrets: &str, script: &str) -> Output {
    Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            &network.name,
            "--ip",
            &network.ip(host),
        ])
        .arg("-v")
        .arg(format!(
            "{}:/etc/nodeimg/cluster.toml:ro",
            network.dir.path().join("cluster.toml").display()
        ))
        .arg("-v")
        .arg(format!("{secrets}:/run/secrets/nodeimg.toml:ro"))
        .args(["-e", &format!("NODEIMG_PRIVATE_IP={}", network.ip(host))])
        .args(["--entrypoint", "/bin/sh", image, "-c"])
        .arg(format!(
            "/usr/bin/nodeimg boot --render-only /run/nodeimg && {script}"
        ))
        .output()
        .unwrap()
}
