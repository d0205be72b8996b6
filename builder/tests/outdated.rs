//! `nodeimg outdated` against a signed archive on loopback that moves on
//! after the lock was made: a newer version in the main suite, a security
//! update (the superseded version dropped, as Debian's security archive
//! does), in text and JSON; exit status zero only when nothing is behind.

mod support {
    pub mod archive;
    pub mod pgp;
}

use std::path::Path;
use std::process::{Command, Output};

use support::archive::{Archive, Pkg, Server};
use support::pgp::{KeyKind, generate_key};

fn nodeimg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        .env("NODEIMG_CACHE", dir.join("cache"))
        .env("NODEIMG_BACKOFF_MS", "10")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn main_suite(libfoo: &str) -> Vec<Pkg> {
    vec![
        Pkg::new("app", "1.0-1").depends("libfoo, libssl3t64"),
        Pkg::new("libfoo", libfoo),
        Pkg::new("libssl3t64", "3.5.1-1"),
        Pkg::new("tzdata", "2026a-1").arch("all"),
    ]
}

#[test]
fn newer_versions_are_listed_security_updates_marked_and_the_exit_status_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let key = generate_key(KeyKind::Ed25519, "Stand-in <archive@example.invalid>");
    let archive = Archive::new(&work.join("mirror"));
    archive.write_suite("stable", &main_suite("1.0-1"), &[&key]);
    let security = |version: &str| {
        vec![
            Pkg::new("libssl3t64", version).pool("updates/main"),
            Pkg::new("tzdata", "2026a-1+deb13u1")
                .arch("all")
                .pool("updates/main"),
        ]
    };
    archive.write_suite("stable-security", &security("3.5.7-1~deb13u3"), &[&key]);
    let server = Server::start(&archive.root);
    std::fs::create_dir_all(work.join("recipes/keys")).unwrap();
    std::fs::write(work.join("recipes/keys/archive.asc"), key.public_armored()).unwrap();
    let url = server.url();
    std::fs::write(
        work.join("recipes/app.toml"),
        format!(
            r#"[recipe]
name = "app"

[[source]]
name = "debian"
url = "{url}"
suite = "stable"
components = ["main"]
keys = ["keys/archive.asc"]

[[source]]
name = "debian-security"
url = "{url}"
suite = "stable-security"
components = ["main"]
keys = ["keys/archive.asc"]

[packages]
include = ["app", "tzdata"]
"#
        ),
    )
    .unwrap();
    let lock = nodeimg(work, &["lock", "recipes/app.toml"]);
    assert!(lock.status.success(), "{}", stderr(&lock));

    // Nothing newer yet: exit 0, and it says so.
    let current = nodeimg(work, &["outdated", "recipes/app.toml"]);
    assert!(current.status.success(), "{}", stderr(&current));
    assert!(
        stdout(&current)
            .contains("recipes/app.lock: all 4 packages are the newest their sources have"),
        "{}",
        stdout(&current)
    );

    // The archive moves on: libfoo in the main suite, a security update
    // of libssl3t64 that replaces the locked one.
    // (the main suite keeps the old libfoo beside the new one)
    let mut moved = main_suite("1.1-1");
    moved.push(Pkg::new("libfoo", "1.0-1"));
    archive.write_suite("stable", &moved, &[&key]);
    archive.write_suite("stable-security", &security("3.5.9-1~deb13u1"), &[&key]);
    let behind = nodeimg(work, &["outdated", "--all"]);
    assert!(
        !behind.status.success(),
        "non-zero when a package is behind"
    );
    let text = stdout(&behind);
    assert!(
        text.contains(
            "recipes/app.lock: 2 of 4 packages have newer versions (1 from a security suite):"
        ),
        "{text}"
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_string()
    };
    let libssl = line("libssl3t64");
    assert!(
        libssl.contains("3.5.7-1~deb13u3 → 3.5.9-1~deb13u1")
            && libssl.contains("debian-security (stable-security)")
            && libssl.contains("SECURITY")
            && libssl.contains("no longer served"),
        "{libssl}"
    );
    let libfoo = line("libfoo");
    assert!(
        libfoo.contains("1.0-1 → 1.1-1") && !libfoo.contains("SECURITY"),
        "{libfoo}"
    );
    assert!(!text.contains("tzdata"), "{text}");
    assert!(
        stderr(&behind).contains("2 locked package(s) have newer versions (1 security update(s))")
            && stderr(&behind).contains("nodeimg lock recipes/app.toml"),
        "{}",
        stderr(&behind)
    );

    // The same as JSON, on stdout, from the cache alone.
    let json = nodeimg(
        work,
        &["outdated", "recipes/app.toml", "--json", "--offline"],
    );
    assert!(!json.status.success());
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["outdated"], 2);
    assert_eq!(report["security"], 1);
    let newer = report["locks"][0]["newer"].as_array().unwrap();
    let ssl = newer.iter().find(|n| n["name"] == "libssl3t64").unwrap();
    assert_eq!(ssl["locked"], "3.5.7-1~deb13u3");
    assert_eq!(ssl["newest"], "3.5.9-1~deb13u1");
    assert_eq!(ssl["source"], "debian-security");
    assert_eq!(ssl["security"], true);
    assert_eq!(ssl["locked_still_served"], false);
    let foo = newer.iter().find(|n| n["name"] == "libfoo").unwrap();
    assert_eq!(foo["security"], false);
    assert_eq!(foo["locked_still_served"], true);

    // Re-locking takes the updates; then nothing is behind.
    let relock = nodeimg(work, &["lock", "recipes/app.toml"]);
    assert!(
        stderr(&relock).contains("~ libssl3t64 3.5.7-1~deb13u3 → 3.5.9-1~deb13u1"),
        "{}",
        stderr(&relock)
    );
    assert!(
        nodeimg(work, &["outdated", "recipes/app.toml"])
            .status
            .success()
    );
}
