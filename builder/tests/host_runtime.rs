//! What cloud-init installs stays installable: the user-data pins the host
//! runtime recipe's packages at its lock's versions, with apt sources
//! pinned to the snapshot of the lock's date. Rendered with the real
//! `nodeimg cloud-init`, then its package set is resolved (`nodeimg lock`
//! of a recipe made of the user-data's own apt sources and pins) against
//! a signed stand-in archive on loopback whose security suite has since
//! dropped the pinned docker.io; the same pins against the live sources
//! do not resolve, which is why the snapshot sources are there.

mod support {
    pub mod archive;
    pub mod pgp;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::archive::{Archive, Pkg, Server};
use support::pgp::{KeyKind, generate_key};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn nodeimg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(args)
        .current_dir(dir)
        .env("NODEIMG_CACHE", dir.join("cache"))
        .env("NODEIMG_BACKOFF_MS", "10")
        .env_remove("NODEIMG_SNAPSHOT_URL")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[track_caller]
fn ok(output: &Output) {
    assert!(output.status.success(), "{}", text(output));
}

fn main_packages() -> Vec<Pkg> {
    vec![
        Pkg::new("libc6", "2.41-12"),
        Pkg::new("iptables", "1.8.11-2").depends("libc6"),
        Pkg::new("containerd", "1.7.24~ds1-6").depends("libc6"),
        Pkg::new("runc", "1.1.15+ds1-2").depends("libc6"),
        Pkg::new("tini", "0.19.0-1"),
        Pkg::new("nftables", "1.1.3-1").depends("libc6"),
        Pkg::new("xfsprogs", "6.13.0-2").depends("libc6"),
    ]
}

fn docker(version: &str) -> Pkg {
    Pkg::new("docker.io", version)
        .pool("updates/main")
        .depends("containerd (>= 1.6.8~), runc (>= 1.1.0~), tini (>= 0.19.0), iptables, libc6")
}

const RECIPE: &str = r#"[recipe]
name = "host-runtime"
kind = "host-packages"

[[source]]
name = "debian"
url = "URL"
suite = "stable"
components = ["main"]
keys = ["keys/archive.asc"]
snapshot_archive = "standin"

[[source]]
name = "debian-security"
url = "URL"
suite = "stable-security"
components = ["main"]
keys = ["keys/archive.asc"]
snapshot_archive = "standin-security"

[packages]
include = ["docker.io", "containerd", "runc", "nftables", "xfsprogs"]
"#;

/// (url, suite, components) of each `deb [...] URL SUITE COMPONENTS` line.
fn apt_sources(user_data: &serde_yaml_ng::Value) -> Vec<(String, String, Vec<String>)> {
    user_data["apt"]["sources"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|source| {
            let line = source["source"].as_str().unwrap();
            let after = line.split_once("] ").unwrap().1;
            let mut words = after.split_whitespace();
            let url = words.next().unwrap().to_string();
            let suite = words.next().unwrap().to_string();
            (url, suite, words.map(str::to_string).collect())
        })
        .collect()
}

/// `name (= version)` of every pinned package of the user-data.
fn pins(user_data: &serde_yaml_ng::Value) -> Vec<String> {
    user_data["packages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p
                .as_sequence()
                .expect("every package is pinned: [name, version]");
            format!("{} (= {})", p[0].as_str().unwrap(), p[1].as_str().unwrap())
        })
        .collect()
}

/// A recipe of the given apt sources that wants exactly `pins`.
fn resolution_recipe(sources: &[(String, String, Vec<String>)], pins: &[String]) -> String {
    let mut text = String::from("[recipe]\nname = \"resolve\"\nkind = \"host-packages\"\n\n");
    for (i, (url, suite, components)) in sources.iter().enumerate() {
        text.push_str(&format!(
            "[[source]]\nname = \"s{i}\"\nurl = \"{url}\"\nsuite = \"{suite}\"\ncomponents = {components:?}\nkeys = [\"keys/archive.asc\"]\nsnapshot_archive = \"\"\n\n"
        ));
    }
    text.push_str(&format!("[packages]\ninclude = {pins:?}\n"));
    text
}

#[test]
fn the_user_datas_runtime_packages_resolve_from_the_snapshot_after_the_archive_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let key = generate_key(KeyKind::Ed25519, "Stand-in <archive@example.invalid>");
    let archive = Archive::new(&work.join("mirror"));
    archive.write_suite("stable", &main_packages(), &[&key]);
    archive.write_suite(
        "stable-security",
        &[docker("26.1.5+dfsg1-9+deb13u1")],
        &[&key],
    );
    let mirror = Server::start(&archive.root);
    let snapshot_root = work.join("snapshot");
    let snapshot = Server::start(&snapshot_root);

    std::fs::create_dir_all(work.join("recipes/keys")).unwrap();
    std::fs::write(work.join("recipes/keys/archive.asc"), key.public_armored()).unwrap();
    std::fs::write(
        work.join("recipes/host-runtime.toml"),
        RECIPE.replace("URL", &mirror.url()),
    )
    .unwrap();
    ok(&nodeimg(work, &["lock", "recipes/host-runtime.toml"]));
    let lock = nodeimg::lock::Lock::read(&work.join("recipes/host-runtime.lock")).unwrap();
    let timestamp = lock.snapshot.clone().unwrap();
    // build makes no image of it.
    let build = nodeimg(work, &["build", "recipes/host-runtime.toml"]);
    assert!(!build.status.success());
    assert!(text(&build).contains("not an image"), "{}", text(&build));

    // The snapshot service imported the archive as it was at lock time;
    // then the security suite moved on and dropped the pinned docker.io.
    for name in ["standin", "standin-security"] {
        let target = snapshot_root.join("archive").join(name).join(&timestamp);
        std::fs::create_dir_all(&target).unwrap();
        let copied = Command::new("cp")
            .arg("-r")
            .arg(archive.root.join("dists"))
            .arg(archive.root.join("pool"))
            .arg(&target)
            .output()
            .unwrap();
        assert!(copied.status.success());
    }
    std::fs::remove_dir_all(archive.root.join("pool/updates")).unwrap();
    archive.write_suite(
        "stable-security",
        &[docker("26.1.5+dfsg1-9+deb13u2")],
        &[&key],
    );

    // The user-data, rendered by the real command (the image digests from
    // stand-in layouts: only their index.json is read).
    std::fs::copy(
        repo().join("examples/cluster.toml"),
        work.join("cluster.toml"),
    )
    .unwrap();
    for role in ["db", "haproxy"] {
        std::fs::create_dir_all(work.join("images").join(role)).unwrap();
        std::fs::write(
            work.join("images").join(role).join("index.json"),
            format!(
                r#"{{"manifests":[{{"digest":"sha256:{}"}}]}}"#,
                "a".repeat(64)
            ),
        )
        .unwrap();
    }
    ok(&nodeimg(
        work,
        &["secrets", "init", "--cluster", "cluster.toml"],
    ));
    let template = repo().join("cloud-init/node.yaml.j2");
    let render = |extra: &[&str]| {
        let mut args = vec![
            "cloud-init",
            "cluster.toml",
            "--template",
            template.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        nodeimg(work, &args)
    };
    let snapshot_url = snapshot.url();
    ok(&render(&["--snapshot-url", &snapshot_url]));
    let read = |node: &str| -> serde_yaml_ng::Value {
        let text =
            std::fs::read_to_string(work.join(format!("out/cloud-init/{node}.yaml"))).unwrap();
        serde_yaml_ng::from_str(&text).unwrap()
    };
    let db = read("db-postgres-01");
    let proxy = read("haproxy-01");
    let db_pins = pins(&db);
    assert_eq!(
        db_pins,
        [
            "containerd (= 1.7.24~ds1-6)",
            "docker.io (= 26.1.5+dfsg1-9+deb13u1)",
            "nftables (= 1.1.3-1)",
            "runc (= 1.1.15+ds1-2)",
            "xfsprogs (= 6.13.0-2)",
        ]
    );
    assert!(
        !pins(&proxy).iter().any(|p| p.starts_with("xfsprogs")),
        "xfsprogs is for db hosts"
    );
    let sources = apt_sources(&db);
    assert_eq!(
        sources
            .iter()
            .map(|(url, suite, _)| format!("{url} {suite}"))
            .collect::<Vec<_>>(),
        [
            format!("{snapshot_url}/archive/standin/{timestamp} stable"),
            format!("{snapshot_url}/archive/standin-security/{timestamp} stable-security"),
        ]
    );
    assert_eq!(db["apt"]["preserve_sources_list"].as_bool(), Some(true));
    // apt keeps exactly these versions.
    let preferences = db["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/apt/preferences.d/60-nodeimg-runtime")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        preferences.contains(
            "Package: docker.io\nPin: version 26.1.5+dfsg1-9+deb13u1\nPin-Priority: 1001"
        ),
        "{preferences}"
    );

    // Resolve the user-data's package set against its own sources, as apt
    // on a new server would: signatures checked, dependencies met.
    let check = work.join("check");
    std::fs::create_dir_all(check.join("keys")).unwrap();
    std::fs::write(check.join("keys/archive.asc"), key.public_armored()).unwrap();
    std::fs::write(
        check.join("snapshot.toml"),
        resolution_recipe(&sources, &db_pins),
    )
    .unwrap();
    ok(&nodeimg(work, &["lock", "check/snapshot.toml"]));
    let resolved = nodeimg::lock::Lock::read(&check.join("snapshot.lock")).unwrap();
    let docker_io = resolved
        .packages
        .iter()
        .find(|p| p.name == "docker.io")
        .unwrap();
    assert_eq!(docker_io.version, "26.1.5+dfsg1-9+deb13u1");
    assert!(resolved.packages.iter().any(|p| p.name == "tini"));

    // The live sources alone no longer have it: without the snapshot
    // sources, this first boot would fail to install its runtime.
    let live: Vec<_> = sources
        .iter()
        .map(|(_, suite, components)| (mirror.url(), suite.clone(), components.clone()))
        .collect();
    std::fs::write(check.join("live.toml"), resolution_recipe(&live, &db_pins)).unwrap();
    let gone = nodeimg(work, &["lock", "check/live.toml"]);
    assert!(!gone.status.success());
    assert!(
        text(&gone).contains("docker.io (= 26.1.5+dfsg1-9+deb13u1)")
            && text(&gone).contains("26.1.5+dfsg1-9+deb13u2"),
        "{}",
        text(&gone)
    );

    // A spec that still pins docker.io itself must agree with the lock.
    let spec = std::fs::read_to_string(work.join("cluster.toml")).unwrap();
    std::fs::write(
        work.join("cluster.toml"),
        spec.replace(
            "[hosts]\n",
            "[hosts]\ndocker_version = \"20.10.24+dfsg1-1\"\n",
        ),
    )
    .unwrap();
    let refused = render(&["--snapshot-url", &snapshot_url, "-o", "other"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("docker_version = \"20.10.24+dfsg1-1\"")
            && text(&refused).contains("pins docker.io 26.1.5+dfsg1-9+deb13u1"),
        "{}",
        text(&refused)
    );
    assert!(!work.join("other").exists());
}
