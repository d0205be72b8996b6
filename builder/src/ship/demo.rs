//! A local demo cluster on Docker (`nodeimg demo up|status|down`): the
//! built images run as 3 db and 2 proxy nodes on a private bridge network
//! this module creates, each node told who it is through the environment
//! (`NODEIMG_METADATA=env`, so nothing asks a metadata service). Every
//! container, volume and network carries the label `io.nodeimg.demo=<name>`,
//! which is how `down` finds exactly what `up` made and nothing else.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::cluster::ClusterSpec;
use crate::cluster::secrets::Secrets;
use crate::util::fsutil::write_atomic;
use crate::util::json::read_json;

const LABEL: &str = "io.nodeimg.demo";
/// The application user, database and pools of the demo spec.
pub const APP: &str = "app";
const DB_NODES: [(&str, u8); 3] = [("db-1", 11), ("db-2", 12), ("db-3", 13)];
const PROXY_NODES: [(&str, u8); 2] = [("proxy-1", 21), ("proxy-2", 22)];

/// Which demo: its name and where its files are.
pub struct Demo {
    /// Names the network, containers and volumes (`nodeimg-<name>-...`).
    pub name: String,
    /// Where the spec, secrets and pgpass file of the demo are written.
    pub state_dir: PathBuf,
}

impl Demo {
    fn prefix(&self) -> String {
        format!("nodeimg-{}", self.name)
    }

    fn container(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix())
    }

    fn label(&self) -> String {
        format!("{LABEL}={}", self.name)
    }

    fn pgpass(&self) -> PathBuf {
        self.state_dir.join("pgpass")
    }

    /// The exact line that connects through PgBouncer on proxy-1, over
    /// TLS with the server checked against the demo's CA.
    pub fn psql_line(&self, port: u16) -> String {
        format!(
            "PGPASSFILE={} psql \"host=127.0.0.1 port={port} dbname={APP} user={APP} sslmode=verify-full sslrootcert={}\"",
            shell_word(&absolute(&self.pgpass()).display().to_string()),
            absolute(&self.state_dir.join("ca.crt")).display()
        )
    }

    /// (published port, app password) from the demo's pgpass file.
    fn login(&self) -> anyhow::Result<(u16, String)> {
        let text = std::fs::read_to_string(self.pgpass()).with_context(|| {
            format!(
                "cannot read {}: was the demo started with another --state-dir?",
                self.pgpass().display()
            )
        })?;
        let fields: Vec<&str> = text.trim().splitn(5, ':').collect();
        match fields[..] {
            [_, port, _, _, password] => Ok((
                port.parse().context("the pgpass file has no port")?,
                password.to_string(),
            )),
            _ => bail!("{} is not a pgpass line", self.pgpass().display()),
        }
    }

    /// proxy-1's address, from the demo's cluster spec.
    fn proxy_ip(&self) -> anyhow::Result<Ipv4Addr> {
        let spec = ClusterSpec::load(&self.state_dir.join("cluster.toml"))?;
        spec.haproxy_members
            .first()
            .map(|m| m.ip)
            .context("the demo spec has no proxy node")
    }
}

pub struct UpOptions {
    pub demo: Demo,
    /// The images/ folder `nodeimg build` wrote.
    pub images: PathBuf,
    /// A /24 the bridge network takes; nodes get .11-.13 and .21-.22.
    pub subnet: Ipv4Addr,
    /// The loopback port proxy-1's PgBouncer is published on.
    pub port: u16,
    /// How long `up` waits for a healthy cluster.
    pub timeout: Duration,
}

impl UpOptions {
    fn ip(&self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, host)
    }
}

/// The demo's cluster spec: the example topology on the bridge network,
/// with nodeimg's default timings.
pub fn spec_text(options: &UpOptions) -> String {
    let mut text = format!(
        "# The nodeimg demo cluster `{name}` (written by `nodeimg demo up`).\n\
         [cluster]\nname = \"demo-{name}\"\ncidr = \"{net}/24\"\n\n",
        name = options.demo.name,
        net = options.ip(0)
    );
    for (section, nodes) in [("db", &DB_NODES[..]), ("haproxy", &PROXY_NODES[..])] {
        for (node, host) in nodes {
            text.push_str(&format!(
                "[[{section}]]\nname = \"{node}\"\nip = \"{}\"\n\n",
                options.ip(*host)
            ));
        }
    }
    text.push_str(&format!(
        "[[database]]\nname = \"{APP}\"\nowner = \"{APP}\"\nextensions = [\"vector\"]\n\n\
         [[user]]\nname = \"{APP}\"\ndatabases = [\"{APP}\"]\n\n\
         [[pool]]\nname = \"{APP}\"\ndatabase = \"{APP}\"\ntarget = \"primary\"\n\n\
         [[pool]]\nname = \"{APP}_ro\"\ndatabase = \"{APP}\"\ntarget = \"replicas\"\n"
    ));
    text
}

/// The docker CLI, with errors that name the command and what it said.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run `docker`: install Docker (the docker CLI must be on PATH)")?;
    if !output.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Fails with what to do when no Docker engine answers.
pub fn require_docker() -> anyhow::Result<String> {
    docker(&["version", "--format", "{{.Server.Version}}"]).context(
        "no Docker engine is reachable: start the Docker daemon (or check DOCKER_HOST and your access to its socket)",
    )
}

/// The ID (config digest) of the image a layout holds, loaded into Docker
/// from `<role>.tar` when the engine does not have it yet.
fn ensure_loaded(images: &Path, role: &str) -> anyhow::Result<String> {
    let layout = images.join(role);
    let not_built = || {
        format!(
            "no {role} image in {}: run `nodeimg build --all` first",
            images.display()
        )
    };
    let index = read_json(&layout.join("index.json")).with_context(not_built)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .with_context(not_built)?;
    let manifest = read_json(&crate::image::oci::blob_path(&layout, manifest_digest))?;
    let id = manifest["config"]["digest"]
        .as_str()
        .with_context(not_built)?
        .to_string();
    if docker(&["image", "inspect", "--format", "{{.Id}}", &id]).is_err() {
        let tarball = images.join(format!("{role}.tar"));
        eprintln!("loading {} into Docker", tarball.display());
        docker(&["load", "-q", "-i", &tarball.to_string_lossy()]).with_context(not_built)?;
        let loaded = docker(&["image", "inspect", "--format", "{{.Id}}", &id])
            .with_context(|| format!("{} did not load image {id}", tarball.display()))?;
        anyhow::ensure!(loaded == id, "Docker loaded {loaded}, expected {id}");
    }
    Ok(id)
}

/// The names of this demo's objects of one kind (`container`, `volume`,
/// `network`).
fn labelled(demo: &Demo, kind: &str) -> anyhow::Result<Vec<String>> {
    let label = format!("label={}", demo.label());
    let out = match kind {
        "container" => docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])?,
        "volume" => docker(&["volume", "ls", "--filter", &label, "--format", "{{.Name}}"])?,
        _ => docker(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])?,
    };
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    Ok(names)
}

/// Writes the spec, the secrets (all, per role) and the pgpass file, 0600
/// where they hold a secret.
fn write_state(options: &UpOptions) -> anyhow::Result<()> {
    let dir = &options.demo.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spec_path = dir.join("cluster.toml");
    write_atomic(&spec_path, spec_text(options).as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", spec_path.display()))?;
    let spec = ClusterSpec::load(&spec_path)?;
    let secrets = Secrets::generate(&spec)?;
    let password = secrets.users[APP]
        .password
        .clone()
        .context("generated secrets without the app password")?;
    let mut files = vec![
        ("cluster.secrets.toml".to_string(), secrets.to_toml()),
        (
            "pgpass".to_string(),
            format!("127.0.0.1:{}:{APP}:{APP}:{password}\n", options.port),
        ),
    ];
    // Each node its own folder (mounted as its /etc/nodeimg): the spec and
    // its own secrets, never another node's key or the CA's.
    for (_, member) in spec.members() {
        let mine = secrets.for_node(&spec, &member.name)?;
        let node = format!("nodes/{}", member.name);
        files.push((format!("{node}/secrets.toml"), mine.to_toml()));
        files.push((format!("{node}/cluster.toml"), spec_text(options)));
    }
    let ca = dir.join("ca.crt");
    write_atomic(&ca, secrets.tls()?.trusted_bundle().as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", ca.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        write_atomic(&path, text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn run_node(
    options: &UpOptions,
    node: &str,
    host: u8,
    image: &str,
    extra: &[String],
) -> anyhow::Result<()> {
    let demo = &options.demo;
    let state = absolute(&demo.state_dir);
    let container = demo.container(node);
    let ip = options.ip(host).to_string();
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        &container,
        "--hostname",
        node,
        "--network",
        &demo.prefix(),
        "--ip",
        &ip,
        "--label",
        &demo.label(),
        "--restart",
        "unless-stopped",
        // The rendered files (keys among them) never on the host's disk.
        "--tmpfs",
        "/run/nodeimg:mode=0755,size=16m",
        "-e",
        "NODEIMG_METADATA=env",
        "-e",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("NODEIMG_PRIVATE_IP={ip}"));
    args.extend(["-e".into(), format!("NODEIMG_NODE_NAME={node}")]);
    args.extend([
        // The node's folder, not single files: a secrets file replaced by
        // `nodeimg secrets for-node` (a rotation) is what the node reads on
        // `docker kill --signal HUP`.
        "-v".into(),
        format!(
            "{}:/etc/nodeimg:ro",
            state.join("nodes").join(node).display()
        ),
        "-e".into(),
        "NODEIMG_SECRETS=/etc/nodeimg/secrets.toml".into(),
    ]);
    args.extend(extra.iter().cloned());
    args.push(image.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)?;
    Ok(())
}

/// Named volumes for a db node's data, labelled so `down` removes them.
fn db_volumes(demo: &Demo, node: &str) -> anyhow::Result<Vec<String>> {
    let mut args = Vec::new();
    for (what, path) in [("pgdata", "/var/lib/postgresql"), ("etcd", "/var/lib/etcd")] {
        let volume = format!("{}-{what}", demo.container(node));
        docker(&["volume", "create", "--label", &demo.label(), &volume])?;
        args.extend(["-v".to_string(), format!("{volume}:{path}")]);
    }
    Ok(args)
}

/// Starts the demo and waits until it serves SQL through PgBouncer.
pub fn up(options: &UpOptions) -> anyhow::Result<()> {
    let version = require_docker()?;
    let demo = &options.demo;
    let existing = labelled(demo, "container")?;
    if !existing.is_empty() {
        bail!(
            "the demo `{}` is already up ({}): see `nodeimg demo status`, or remove it with `nodeimg demo down`",
            demo.name,
            existing.join(", ")
        );
    }
    let db_image = ensure_loaded(&options.images, "db")?;
    let proxy_image = ensure_loaded(&options.images, "haproxy")?;
    write_state(options)?;
    eprintln!(
        "Docker {version}: starting 3 db and 2 proxy nodes on network {} ({}/24)",
        demo.prefix(),
        options.ip(0)
    );
    let started = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        docker(&[
            "network",
            "create",
            "--subnet",
            &format!("{}/24", options.ip(0)),
            "--label",
            &demo.label(),
            &demo.prefix(),
        ])
        .context(
            "cannot create the demo network: if the subnet is taken, pick another with --subnet",
        )?;
        for (node, host) in DB_NODES {
            let volumes = db_volumes(demo, node)?;
            run_node(options, node, host, &db_image, &volumes)?;
        }
        for (node, host) in PROXY_NODES {
            let publish = if node == PROXY_NODES[0].0 {
                vec!["-p".to_string(), format!("127.0.0.1:{}:6432", options.port)]
            } else {
                Vec::new()
            };
            run_node(options, node, host, &proxy_image, &publish)?;
        }
        wait_healthy(demo, options.ip(PROXY_NODES[0].1), options.timeout)
    })();
    if let Err(err) = result {
        eprintln!(
            "the demo did not come up; its containers are left for a look (`docker logs {}`), `nodeimg demo down` removes everything",
            demo.container("db-1")
        );
        return Err(err);
    }
    eprintln!(
        "demo `{}` is up: leader elected, two replicas streaming, PgBouncer answering ({:.0} s)",
        demo.name,
        started.elapsed().as_secs_f64()
    );
    println!(
        "Connect through PgBouncer (proxy-1, published on 127.0.0.1:{}):",
        options.port
    );
    println!("  {}", demo.psql_line(options.port));
    println!(
        "Pools: {APP} (primary), {APP}_ro (replicas). Secrets: {}",
        absolute(&demo.state_dir).display()
    );
    println!("Status: nodeimg demo status    Stop and remove it: nodeimg demo down");
    Ok(())
}

/// One member as Patroni lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberState {
    pub name: String,
    pub role: String,
    pub state: String,
    /// Replication lag in MB (`patronictl list`), none for the leader.
    pub lag_mb: Option<f64>,
}

/// Patroni's members, asked inside the first db container that answers.
fn members(demo: &Demo) -> Option<Vec<MemberState>> {
    DB_NODES.iter().find_map(|(node, _)| {
        let out = docker(&[
            "exec",
            &demo.container(node),
            "patronictl",
            "-c",
            "/run/nodeimg/patroni.yml",
            "list",
            "-f",
            "json",
        ])
        .ok()?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
        Some(
            list.iter()
                .map(|m| MemberState {
                    name: m["Member"].as_str().unwrap_or_default().to_string(),
                    role: m["Role"].as_str().unwrap_or_default().to_string(),
                    state: m["State"].as_str().unwrap_or_default().to_string(),
                    lag_mb: m["Lag in MB"].as_f64(),
                })
                .collect(),
        )
    })
}

/// `select 1` as the app user through proxy-1's PgBouncer, run by the psql
/// of a db container (the host needs no client).
fn pgbouncer_answers(demo: &Demo, proxy: Ipv4Addr) -> bool {
    let Ok((_, password)) = demo.login() else {
        return false;
    };
    let conninfo = format!(
        "host={proxy} port=6432 dbname={APP} user={APP} connect_timeout=3 sslmode=verify-full sslrootcert=/run/nodeimg/tls/ca.crt"
    );
    // The password reaches docker through its environment, not its argv.
    Command::new("docker")
        .args(["exec", "-e", "PGPASSWORD", &demo.container("db-1")])
        .args(["psql", &conninfo, "-X", "-tA", "-c", "select 1"])
        .env("PGPASSWORD", password)
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1")
}

/// One line saying how far the cluster is.
fn describe(members: &Option<Vec<MemberState>>) -> (String, bool) {
    let Some(members) = members else {
        return ("waiting for Patroni".into(), false);
    };
    let leader = members
        .iter()
        .find(|m| m.role == "Leader" && m.state == "running");
    let streaming = members
        .iter()
        .filter(|m| m.role != "Leader" && m.state == "streaming")
        .count();
    let text = format!(
        "leader: {}, replicas streaming: {streaming}/2",
        leader.map_or("none yet", |m| m.name.as_str())
    );
    (text, leader.is_some() && streaming == 2)
}

fn wait_healthy(demo: &Demo, proxy: Ipv4Addr, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = String::new();
    loop {
        let (text, db_ready) = describe(&members(demo));
        let ready = db_ready && pgbouncer_answers(demo, proxy);
        let line = format!(
            "{text}; PgBouncer: {}",
            if ready { "answering" } else { "waiting" }
        );
        match &spinner {
            Some(bar) => {
                bar.set_message(format!("{line} ({:.0} s)", started.elapsed().as_secs_f64()))
            }
            None if line != last => eprintln!("{:>4.0} s  {line}", started.elapsed().as_secs_f64()),
            None => {}
        }
        last = line;
        if ready {
            if let Some(bar) = &spinner {
                bar.finish_and_clear();
            }
            return Ok(());
        }
        if started.elapsed() > timeout {
            if let Some(bar) = &spinner {
                bar.abandon();
            }
            bail!(
                "the demo was not healthy after {} s ({last})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[derive(Debug, Serialize)]
pub struct ContainerState {
    pub name: String,
    /// Docker's state: running, restarting, exited, ...
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct DemoStatus {
    pub name: String,
    pub containers: Vec<ContainerState>,
    pub members: Option<Vec<MemberState>>,
    pub pgbouncer_answers: bool,
    pub connect: String,
}

pub fn status(demo: &Demo) -> anyhow::Result<DemoStatus> {
    require_docker()?;
    let names = labelled(demo, "container")?;
    if names.is_empty() {
        bail!(
            "no demo `{}` is running: start one with `nodeimg demo up`",
            demo.name
        );
    }
    let mut containers = Vec::new();
    for name in names {
        let state = docker(&["inspect", "--format", "{{.State.Status}}", &name])?;
        containers.push(ContainerState { name, state });
    }
    let (port, _) = demo.login()?;
    Ok(DemoStatus {
        name: demo.name.clone(),
        containers,
        members: members(demo),
        pgbouncer_answers: pgbouncer_answers(demo, demo.proxy_ip()?),
        connect: demo.psql_line(port),
    })
}

pub fn print_status(status: &DemoStatus) {
    println!("demo `{}`", status.name);
    for c in &status.containers {
        println!("  {:<28} {}", c.name, c.state);
    }
    match &status.members {
        Some(members) => {
            println!("Patroni:");
            for m in members {
                let lag = m.lag_mb.map(|l| format!("lag {l} MB")).unwrap_or_default();
                println!("  {:<8} {:<14} {:<10} {lag}", m.name, m.role, m.state);
            }
        }
        None => println!("Patroni: no db node answers"),
    }
    println!(
        "PgBouncer on proxy-1: {}",
        if status.pgbouncer_answers {
            "answering"
        } else {
            "not answering"
        }
    );
    println!("Connect: {}", status.connect);
}

/// What `down` removed.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

/// Removes every container, volume and network labelled for this demo,
/// and the demo's state folder. Removing nothing is not an error.
pub fn down(demo: &Demo) -> anyhow::Result<Removed> {
    require_docker()?;
    let removed = Removed {
        containers: labelled(demo, "container")?,
        volumes: labelled(demo, "volume")?,
        networks: labelled(demo, "network")?,
    };
    for container in &removed.containers {
        docker(&["rm", "-f", "-v", container])?;
    }
    for volume in &removed.volumes {
        docker(&["volume", "rm", "-f", volume])?;
    }
    for network in &removed.networks {
        docker(&["network", "rm", network])?;
    }
    for (node, _) in DB_NODES.iter().chain(PROXY_NODES.iter()) {
        let dir = demo.state_dir.join("nodes").join(node);
        for name in ["cluster.toml", "secrets.toml"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let _ = std::fs::remove_dir(dir);
    }
    let _ = std::fs::remove_dir(demo.state_dir.join("nodes"));
    for name in ["cluster.toml", "cluster.secrets.toml", "pgpass", "ca.crt"] {
        let _ = std::fs::remove_file(demo.state_dir.join(name));
    }
    let _ = std::fs::remove_dir(&demo.state_dir);
    Ok(removed)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `text` as one shell word (quoted only when it has to be).
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> UpOptions {
        UpOptions {
            demo: Demo {
                name: "demo".into(),
                state_dir: "/tmp/x y/demo".into(),
            },
            images: "images".into(),
            subnet: "172.29.81.0".parse().unwrap(),
            port: 6432,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_demo_spec_is_a_valid_cluster_spec() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, spec_text(&options())).unwrap();
        let spec = ClusterSpec::load(&path).unwrap();
        assert_eq!(spec.db_members.len(), 3);
        assert_eq!(spec.db_members[2].ip.to_string(), "172.29.81.13");
        assert_eq!(spec.cluster.name, "demo-demo");
    }

    #[test]
    fn the_psql_line_quotes_the_pgpass_path() {
        assert_eq!(
            options().demo.psql_line(6432),
            "PGPASSFILE='/tmp/x y/demo/pgpass' psql \"host=127.0.0.1 port=6432 dbname=app user=app sslmode=verify-full sslrootcert=/tmp/x y/demo/ca.crt\""
        );
    }
}
