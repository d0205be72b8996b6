//! An sftp backup repository on a real OpenSSH server (tests/sshd: Debian
//! trixie's openssh-server, standing in for a Hetzner Storage Box). The
//! spec pins the server's host keys; the db nodes log in with the key
//! `nodeimg secrets` made, which the server's authorized_keys holds. The
//! primary archives WAL and takes the scheduled full backup there, and a
//! replica's drill restores it. Then the server is replaced by one with
//! other host keys, as a man in the middle would show: pgBackRest refuses
//! it, `nodeimg backup status` says so and exits 1, the impostor receives
//! nothing, and the database keeps taking writes.

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
use support::images::{loaded_images, loaded_test_image, run};

const PREFIX: &str = "172.31.249";
/// The SSH server's address: PREFIX.30.
const SERVER: u8 = 30;
const REPO: &str = "/home/backup/repo";

/// Runs `script` with sh in the SSH server's container, `args` as $1...
fn on_server(network: &Network, script: &str, args: &[&str]) -> String {
    let output = run(Command::new("docker")
        .args([
            "exec",
            &container_of(network, "sshd"),
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A new SSH server (new host keys) at PREFIX.30 letting in `login_key`,
/// with an empty repository folder; returns its host keys.
fn start_server(network: &Network, image: &str, login_key: &str) -> Vec<String> {
    network.start("sshd", image, SERVER, &[]);
    let mut keys = String::new();
    wait_until(
        "the SSH server's host keys",
        Duration::from_secs(30),
        || {
            let output = Command::new("docker")
                .args(["exec", &container_of(network, "sshd")])
                .args(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
                .output()
                .unwrap();
            keys = String::from_utf8_lossy(&output.stdout).into_owned();
            keys.lines().count() == 3
        },
    );
    on_server(
        network,
        "printf '%s\\n' \"$1\" > /home/backup/.ssh/authorized_keys && chmod 600 /home/backup/.ssh/authorized_keys && mkdir -p \"$2\" && chown -R backup:backup /home/backup",
        &[login_key, REPO],
    );
    // `<type> <base64>`, as the spec pins them.
    keys.lines()
        .map(|line| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The spec's backup part for the sftp server at PREFIX.30: `settings`
/// (schedule lines) and the server's host keys.
fn sftp_backup(network: &Network, settings: &str, host_keys: &[String]) -> String {
    format!(
        "{}\n[backup]\nrepository = \"sftp\"\npath = \"{REPO}\"\n{settings}\n[backup.sftp]\nhost = \"{}\"\nuser = \"backup\"\nhost_keys = {:?}\n",
        test_spec(PREFIX, true),
        network.ip(SERVER),
        host_keys
    )
}

/// Secrets made first (the login key is made with them), then the SSH
/// server letting that key in, then the spec with the server's real host
/// keys as the operator writes it, then db-1..3. Returns the login key.
fn start_sftp_cluster(network: &Network, db_image: &str, sshd: &str, settings: &str) -> String {
    // Placeholder keys until the server exists (same type and format).
    let placeholder = vec![
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            .to_string(),
    ];
    write_inputs(network, &sftp_backup(network, settings, &placeholder));
    let secrets =
        nodeimg::cluster::secrets::Secrets::read(&network.dir.path().join("cluster.secrets.toml"))
            .unwrap();
    let login_key = secrets.sftp_public_key().unwrap().unwrap();
    assert!(login_key.starts_with("ssh-ed25519 "), "{login_key}");
    let host_keys = start_server(network, sshd, &login_key);
    std::fs::write(
        network.dir.path().join("cluster.toml"),
        sftp_backup(network, settings, &host_keys),
    )
    .unwrap();
    for node in ["db-1", "db-2", "db-3"] {
        start_db_node(network, db_image, node, &[]);
    }
    login_key
}

#[test]
fn sftp_repository_with_pinned_host_keys() {
    let images = loaded_images();
    let sshd = loaded_test_image("tests/sshd/sshd.toml");
    let network = Network::create("nodeimg-sftp", PREFIX);

    let login_key = start_sftp_cluster(
        &network,
        &images.db,
        &sshd,
        "archive_timeout = 10\nfull_every = \"1d\"\ndiff_every = \"off\"\ndrill_every = \"30s\"\n",
    );
    let (leader, _) = serving_with_a_drilled_backup(&network, &images.haproxy);
    // The files are on the SSH server, encrypted under the cluster's stanza.
    let stored = on_server(&network, "ls \"$1\"/backup/e2e \"$1\"/archive/e2e", &[REPO]);
    assert!(
        stored.contains("backup.info") && stored.contains("archive.info"),
        "{stored}"
    );

    // Another server at the same address: other host keys. Refused.
    run(Command::new("docker").args(["rm", "-f", &container_of(&network, "sshd")]));
    start_server(&network, &sshd, &login_key);
    repository_failure_is_loud_and_harmless(&network, &leader, "known hosts failure");
    assert_eq!(
        on_server(&network, "ls -A \"$1\"", &[REPO]),
        "",
        "the server with other host keys received files"
    );
}

/// The backup benchmark over sftp (scripts/bench-backup.sh; ignored in
/// CI): support::backup::bench_backup_and_drill.
#[test]
#[ignore]
fn bench_sftp_backup_and_drill() {
    let images = loaded_images();
    let sshd = loaded_test_image("tests/sshd/sshd.toml");
    let network = Network::create("nodeimg-sftp", PREFIX);
    start_sftp_cluster(&network, &images.db, &sshd, BENCH_SCHEDULE);
    bench_backup_and_drill(&network, "sftp");
}
