//! What the backup tests share: the repository volume, `nodeimg backup`
//! inside a node, its logs, SQL as the superuser.

use std::process::Command;
use std::time::Duration;

use super::cluster::{Network, container_of, wait_until};
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

/// SQL as postgres over the node's socket (superuser functions), in appdb.
pub fn superuser_sql(network: &Network, node: &str, sql: &str) -> String {
    superuser_sql_in(network, node, "appdb", sql)
}

/// SQL as postgres over the node's socket (peer authentication) in
/// `database`; fails on the first error.
pub fn superuser_sql_in(network: &Network, node: &str, database: &str, sql: &str) -> String {
    let output = run(Command::new("docker").args([
        "exec",
        "-u",
        "postgres",
        &container_of(network, node),
        "psql",
        "-X",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "/run/postgresql",
        "-d",
        database,
        "-c",
        sql,
    ]));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Waits for the schedule's first full backup to be done on `leader`.
pub fn wait_first_scheduled_full(network: &Network, leader: &str, limit: Duration) {
    wait_until("the first scheduled full backup", limit, || {
        logs(network, leader).lines().any(|l| {
            l.contains("backup: scheduled full (tick") && l.contains(") done on this node")
        })
    });
}
