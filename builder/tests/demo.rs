//! `nodeimg demo up|status|down` end to end on Docker, with the images the
//! other cluster tests build: up waits for a healthy cluster and prints a
//! psql line that works as printed, status sees one leader and two
//! streaming replicas, a second up is refused, down leaves nothing behind,
//! and a missing Docker is named.

mod support {
    #[allow(dead_code)]
    pub mod images;
}

use std::process::{Command, Output};

use support::images::{built_images_dir, loaded_images};

fn nodeimg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Names of the objects labelled for demo `name`.
fn leftovers(name: &str) -> Vec<String> {
    let label = format!("label=io.nodeimg.demo={name}");
    let mut found = Vec::new();
    for args in [
        vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
        vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
        vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
    ] {
        let output = Command::new("docker").args(&args).output().unwrap();
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    found
}

/// Removes the demo even when an assertion fails half-way.
struct DownOnDrop<'a>(&'a [&'a str]);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let mut args = vec!["demo", "down"];
        args.extend_from_slice(self.0);
        let _ = nodeimg(&args);
    }
}

#[test]
fn demo_up_status_and_down() {
    loaded_images();
    let name = format!("t{}", std::process::id());
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let images = built_images_dir();
    let which = ["--name", &name, "--state-dir", state_dir.to_str().unwrap()];
    let _down = DownOnDrop(&which);

    let mut up = vec!["demo", "up"];
    up.extend_from_slice(&which);
    up.extend(["--images", images.to_str().unwrap()]);
    up.extend(["--subnet", "172.31.236.0", "--port", &port]);
    let output = nodeimg(&up);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("two replicas streaming, PgBouncer answering"),
        "{said}"
    );

    // The printed line works as printed, from the host, through PgBouncer.
    let line = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("PGPASSFILE="))
        .unwrap_or_else(|| panic!("no psql line in:\n{said}"))
        .trim()
        .to_string();
    assert!(line.contains(&format!("port={port}")), "{line}");
    assert!(line.contains("sslmode=verify-full"), "{line}");
    // Each node's folder holds only its own key, never the CA's.
    let node_file = std::fs::read_to_string(state_dir.join("nodes/db-2/secrets.toml")).unwrap();
    assert_eq!(node_file.matches("BEGIN PRIVATE KEY").count(), 1);
    assert!(!node_file.contains("ca_key") && node_file.contains("[tls.nodes.db-2]"));
    let psql = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{line} -X -tA -c \"select current_user || ' ' || (select extversion from pg_extension where extname = 'vector')\""
        ))
        .output()
        .unwrap();
    assert!(psql.status.success(), "{}", text(&psql));
    assert!(
        String::from_utf8_lossy(&psql.stdout).starts_with("app 0.8"),
        "{}",
        text(&psql)
    );
    // The password is in the 0600 pgpass file, not on the screen.
    let pgpass = std::fs::read_to_string(state_dir.join("pgpass")).unwrap();
    let password = pgpass.trim().rsplit(':').next().unwrap();
    assert!(!said.contains(password));
    for file in [
        "pgpass",
        "cluster.secrets.toml",
        "nodes/db-1/secrets.toml",
        "nodes/proxy-2/secrets.toml",
    ] {
        let mode = std::fs::metadata(state_dir.join(file))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{file}"
        );
    }

    let mut status = vec!["demo", "status", "--json"];
    status.extend_from_slice(&which);
    let output = nodeimg(&status);
    assert!(output.status.success(), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["containers"].as_array().unwrap().len(),
        5,
        "{report}"
    );
    assert!(
        report["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "running")
    );
    let members = report["members"].as_array().unwrap();
    assert_eq!(
        members.iter().filter(|m| m["role"] == "Leader").count(),
        1,
        "{report}"
    );
    assert_eq!(
        members.iter().filter(|m| m["state"] == "streaming").count(),
        2,
        "{report}"
    );
    assert_eq!(report["pgbouncer_answers"], true);

    // A second up is refused and changes nothing.
    let again = nodeimg(&up);
    assert!(!again.status.success());
    assert!(text(&again).contains("already up"), "{}", text(&again));

    let mut down = vec!["demo", "down"];
    down.extend_from_slice(&which);
    let output = nodeimg(&down);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("5 containers, 6 volumes, 1 networks"),
        "{}",
        text(&output)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert!(!state_dir.exists(), "down leaves the state folder");
    let status = nodeimg(&status);
    assert!(!status.status.success());
    assert!(text(&status).contains("no demo"), "{}", text(&status));
}

#[test]
fn demo_without_docker_says_what_to_do() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    // No engine behind the socket.
    let output = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["demo", "up", "--name", "nodocker", "--state-dir", dir])
        .env("DOCKER_HOST", format!("unix://{dir}/no-such.sock"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("no Docker engine is reachable: start the Docker daemon"),
        "{}",
        text(&output)
    );
    // No docker command at all.
    let output = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["demo", "status", "--name", "nodocker", "--state-dir", dir])
        .env("PATH", dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("install Docker"),
        "{}",
        text(&output)
    );
}
