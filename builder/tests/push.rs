//! `nodeimg push` against Debian's real registry (docker-registry, the
//! CNCF distribution server) on loopback, then `docker pull` by digest and
//! `docker run` of what it pushed.

mod support {
    #[allow(dead_code)]
    pub mod images;
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::images::{built_images_dir, loaded_images, manifest_digest, run};

/// A docker-registry process on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `htpasswd`: (user, password) for Basic authentication, or none.
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            // Registry 2.x reads bcrypt entries only.
            let output = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            std::fs::write(dir.path().join("htpasswd"), output.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: nodeimg-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while registry.get("/v2/").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (status, body) of a GET, or None when nothing listens yet.
    fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut response = agent
            .get(format!("http://{}{path}", self.host()))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .call()
            .ok()?;
        let status = response.status().as_u16();
        Some((
            status,
            response.body_mut().read_to_vec().unwrap_or_default(),
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push(layout: &Path, target: &str, extra: &[&str], password: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .arg("push")
        .arg(layout)
        .arg(target)
        .args(extra)
        .env_remove("NODEIMG_REGISTRY_USERNAME")
        .env_remove("NODEIMG_REGISTRY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(password) = password {
        writeln!(stdin, "{password}").unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn layout(role: &str) -> PathBuf {
    loaded_images();
    built_images_dir().join(role)
}

#[test]
fn both_images_are_pushed_then_pulled_by_digest_and_run() {
    let registry = Registry::start(None);
    // db in 4 MiB chunks (its big layers take the PATCH path), haproxy whole.
    for (role, extra, check) in [
        (
            "db",
            &["--chunk-size", "4MiB"][..],
            vec!["/usr/lib/postgresql/17/bin/postgres", "--version"],
        ),
        ("haproxy", &[][..], vec!["/usr/sbin/haproxy", "-v"]),
    ] {
        let layout = layout(role);
        let digest = manifest_digest(&layout);
        let target = format!("{}/nodeimg/{role}:test", registry.host());
        let output = push(&layout, &target, extra, None);
        assert!(output.status.success(), "{}", text(&output));
        let pushed = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let by_digest = format!("{}/nodeimg/{role}@{digest}", registry.host());
        assert_eq!(pushed, by_digest);

        // The registry holds the manifest bytes exactly as built.
        let built = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        let (status, served) = registry
            .get(&format!("/v2/nodeimg/{role}/manifests/test"))
            .unwrap();
        assert_eq!(status, 200);
        assert!(
            served == built,
            "{role}: the registry serves other manifest bytes"
        );

        // Pushed again: every blob is found, nothing is uploaded.
        let again = push(&layout, &target, &["--json"], None);
        assert!(again.status.success(), "{}", text(&again));
        let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(report["blobs_uploaded"], 0, "{report}");
        assert_eq!(report["bytes_uploaded"], 0);
        assert!(report["blobs_skipped"].as_u64().unwrap() >= 2);
        assert_eq!(report["digest"], digest.as_str());

        // Docker pulls it by digest (plain HTTP on loopback) and runs it.
        run(Command::new("docker").args(["pull", &by_digest]));
        let ran = run(Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                check[0],
                &by_digest,
            ])
            .args(&check[1..]));
        let said = text(&ran);
        assert!(
            said.contains("PostgreSQL) 17") || said.contains("HAProxy version 3."),
            "{role}: {said}"
        );
        let agent = run(Command::new("docker").args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/usr/bin/nodeimg",
            &by_digest,
            "--version",
        ]));
        assert!(String::from_utf8_lossy(&agent.stdout).starts_with("nodeimg "));
        let _ = Command::new("docker").args(["rmi", &by_digest]).output();
    }
}

#[test]
fn basic_auth_is_asked_for_refused_when_wrong_and_used_when_given() {
    let registry = Registry::start(Some(("ci", "s3cret-for-the-test")));
    let layout = layout("haproxy");
    let target = format!("{}/nodeimg/haproxy:auth", registry.host());

    let anonymous = push(&layout, &target, &[], None);
    assert!(!anonymous.status.success());
    assert!(
        text(&anonymous).contains("NODEIMG_REGISTRY_USERNAME"),
        "{}",
        text(&anonymous)
    );
    let wrong = push(
        &layout,
        &target,
        &["--username", "ci", "--password-stdin"],
        Some("nope"),
    );
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("refused the credentials"),
        "{}",
        text(&wrong)
    );
    assert!(
        !text(&wrong).contains("nope"),
        "the password is never printed"
    );

    let right = push(
        &layout,
        &target,
        &["--username", "ci", "--password-stdin"],
        Some("s3cret-for-the-test"),
    );
    assert!(right.status.success(), "{}", text(&right));
    assert!(!text(&right).contains("s3cret-for-the-test"));
}

#[test]
fn a_damaged_layout_pushes_nothing_and_names_the_blob() {
    let registry = Registry::start(None);
    let copy = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-r")
        .arg(layout("haproxy"))
        .arg(copy.path()));
    let damaged = copy.path().join("haproxy");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            damaged
                .join("blobs/sha256")
                .join(&manifest_digest(&damaged)[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = damaged.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let output = push(
        &damaged,
        &format!("{}/nodeimg/haproxy:bad", registry.host()),
        &[],
        None,
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains(&format!("blob {layer} is damaged"))
            && text(&output).contains("nothing was pushed"),
        "{}",
        text(&output)
    );
    let (status, _) = registry.get("/v2/nodeimg/haproxy/manifests/bad").unwrap();
    assert_eq!(status, 404);
    let (status, _) = registry
        .get(&format!(
            "/v2/nodeimg/haproxy/blobs/{}",
            manifest["config"]["digest"].as_str().unwrap()
        ))
        .unwrap();
    assert_eq!(status, 404, "no blob went up before the check");

    let bad_target = push(&layout("haproxy"), "nodeimg/haproxy", &[], None);
    assert!(!bad_target.status.success());
    assert!(
        text(&bad_target).contains("HOST[:PORT]/REPOSITORY:TAG"),
        "{}",
        text(&bad_target)
    );
}
