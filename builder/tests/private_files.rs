//! Every command that reads a secrets file refuses one that its group or
//! others may read (0644), naming the file and the `chmod 600` to run, and
//! gets past that step once the file is 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn nodeimg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        .env("NODEIMG_PRIVATE_IP", "10.0.0.120")
        .env_remove("NODEIMG_SECRETS")
        .output()
        .unwrap()
}

/// The subcommand of `nodeimg secrets` that writes one role's or one
/// node's part of the full file, with its arguments.
fn split_args(dir: &Path) -> Vec<&'static str> {
    let help = nodeimg(dir, &["secrets", "--help"]);
    if String::from_utf8_lossy(&help.stdout).contains("for-node") {
        vec![
            "secrets",
            "for-node",
            "db-postgres-01",
            "--cluster",
            "cluster.toml",
            "--secrets",
            "cluster.secrets.toml",
            "-o",
            "part.secrets.toml",
        ]
    } else {
        vec![
            "secrets",
            "for-role",
            "db",
            "--secrets",
            "cluster.secrets.toml",
            "-o",
            "part.secrets.toml",
        ]
    }
}

#[test]
fn a_secrets_file_others_can_read_is_refused_by_every_command_that_reads_one() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::copy(
        repo().join("examples/cluster.toml"),
        work.join("cluster.toml"),
    )
    .unwrap();
    let init = nodeimg(
        work,
        &[
            "secrets",
            "init",
            "--cluster",
            "cluster.toml",
            "-o",
            "cluster.secrets.toml",
        ],
    );
    assert!(init.status.success(), "{init:?}");
    let secrets = work.join("cluster.secrets.toml");
    let template = repo().join("cloud-init/node.yaml.j2");
    let template = template.to_str().unwrap();
    let templates = repo().join("overlays/db/usr/share/nodeimg/templates");
    let templates = templates.to_str().unwrap();
    let commands: Vec<(&str, Vec<&str>)> = vec![
        (
            "cloud-init",
            vec![
                "cloud-init",
                "cluster.toml",
                "--secrets",
                "cluster.secrets.toml",
                "--template",
                template,
                "--images",
                "no-images",
            ],
        ),
        (
            "bundle",
            vec![
                "bundle",
                "cluster.toml",
                "--secrets",
                "cluster.secrets.toml",
                "--template",
                template,
                "--images",
                "no-images",
                "-o",
                "bundle.tar",
            ],
        ),
        ("secrets split", split_args(work)),
        (
            "boot",
            vec![
                "boot",
                "--role",
                "db",
                "--cluster",
                "cluster.toml",
                "--secrets",
                "cluster.secrets.toml",
                "--metadata",
                "env",
                "--templates",
                templates,
                "--render-only",
                "rendered",
            ],
        ),
    ];
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(mode)).unwrap();
        for (name, args) in &commands {
            let output = nodeimg(work, args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{name} accepted a {mode:o} file");
            assert!(
                stderr.contains(&format!(
                    "secrets file cluster.secrets.toml: mode {mode:04o}"
                )) && stderr.contains("`chmod 600 cluster.secrets.toml`"),
                "{name} with a {mode:o} file: {stderr}"
            );
        }
        assert!(!work.join("bundle.tar").exists());
        assert!(!work.join("part.secrets.toml").exists());
        assert!(!work.join("rendered").exists());
        assert!(!work.join("out").exists());
    }
    // 0600: every command gets past reading the secrets (some then stop
    // for another reason, e.g. no built image).
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (name, args) in &commands {
        let output = nodeimg(work, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("chmod 600"), "{name}: {stderr}");
    }
    assert!(work.join("part.secrets.toml").is_file());
}
