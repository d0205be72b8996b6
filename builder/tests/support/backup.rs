//! What the backup tests share: the repository volume, `nodeimg backup`
//! inside a node, its logs, SQL as the superuser.

use std::process::Command;

use super::cluster::{Network, container_of};
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

/// SQL as postgres over the node's socket (superuser functions).
pub fn superuser_sql(network: &Network, node: &str, sql: &str) -> String {
    let output = run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &container_of(network, node),
        "psql",
        "-X",
        "-tA",
        "-h",
        "/run/postgresql",
        "-d",
        "appdb",
        "-c",
        sql,
    ]));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
