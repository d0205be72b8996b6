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

/// How the registry authenticates clients.
enum Auth<'a> {
    Anonymous,
    /// Basic, with one (user, password).
    Htpasswd(&'a str, &'a str),
    /// Bearer tokens from this token server.
    Token(&'a TokenServer),
}

impl Registry {
    fn start(auth: Auth) -> Registry {
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
        match auth {
            Auth::Anonymous => {}
            Auth::Htpasswd(user, password) => {
                // Registry 2.x reads bcrypt entries only.
                let output = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                std::fs::write(dir.path().join("htpasswd"), output.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: nodeimg-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            Auth::Token(server) => config.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                server.port,
                server.dir.path().join("cert.pem").display()
            )),
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

const SERVICE: &str = "nodeimg-test-registry";
const ISSUER: &str = "nodeimg-test-issuer";

/// A token server as the distribution spec describes one: GET /token with
/// Basic credentials, `service` and `scope`, answers `{"token": JWT}`
/// granting the scope's actions. The JWT is RS256, signed by openssl with
/// a self-signed certificate the registry trusts (sent in `x5c`).
struct TokenServer {
    port: u16,
    dir: tempfile::TempDir,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    fn start(user: &'static str, password: &'static str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=nodeimg-test-token-issuer", "-keyout"])
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem")));
        let der = run(Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(dir.path().join("cert.pem")))
        .stdout;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let key = dir.path().join("key.pem");
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                answer_token_request(stream, user, password, &der, &key, &counter);
            }
        });
        TokenServer { port, dir, issued }
    }
}

fn answer_token_request(
    mut stream: std::net::TcpStream,
    user: &str,
    password: &str,
    der: &[u8],
    key: &Path,
    issued: &std::sync::atomic::AtomicUsize,
) {
    use base64::Engine;
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let reply = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if authorization.as_deref() != Some(expected.as_str()) {
        let _ = stream
            .write_all(reply("401 Unauthorized", r#"{"details":"bad credentials"}"#).as_bytes());
        return;
    }
    // scope=repository:NAME:ACTIONS, once per repository asked for (a
    // mount asks for the repository it reads too).
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(|scope| {
            let scope = percent_decode(scope);
            let mut parts = scope.splitn(3, ':');
            let (_, name, actions) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            serde_json::json!({"type": "repository", "name": name, "actions": actions.split(',').collect::<Vec<_>>()})
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("nodeimg-test-{now}-{}", issued.load(std::sync::atomic::Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = openssl.wait_with_output().unwrap().stdout;
    let token = format!("{signing_input}.{}", b64(&signature));
    issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _ = stream
        .write_all(reply("200 OK", &serde_json::json!({"token": token}).to_string()).as_bytes());
}

/// A query value as a token server reads it (%XX decoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
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
    let registry = Registry::start(Auth::Anonymous);
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
        if role == "db" {
            // Its layers over 4 MiB went up as PATCH chunks.
            assert!(
                text(&output).contains("chunks of up to 4194304 bytes"),
                "{}",
                text(&output)
            );
        }
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

/// Without credentials the push is refused and says how to give them;
/// with a wrong password it is refused without echoing the password.
fn assert_credentials_required_and_checked(layout: &Path, target: &str) {
    let anonymous = push(layout, target, &[], None);
    assert!(!anonymous.status.success());
    assert!(
        text(&anonymous).contains("NODEIMG_REGISTRY_USERNAME"),
        "{}",
        text(&anonymous)
    );
    let wrong = push(
        layout,
        target,
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
}

#[test]
fn basic_auth_is_asked_for_refused_when_wrong_and_used_when_given() {
    let registry = Registry::start(Auth::Htpasswd("ci", "s3cret-for-the-test"));
    let layout = layout("haproxy");
    let target = format!("{}/nodeimg/haproxy:auth", registry.host());

    assert_credentials_required_and_checked(&layout, &target);

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
    let registry = Registry::start(Auth::Anonymous);
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

    for (target, why) in [
        ("nodeimg/haproxy", "registry host"),
        ("127.0.0.1:5000/nodeimg/haproxy", "no :TAG"),
        (
            "127.0.0.1:5000/nodeimg/haproxy@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "name a tag",
        ),
        ("127.0.0.1:5000/nodeimg/HAProxy:1", "lowercase"),
    ] {
        let output = push(&layout("haproxy"), target, &[], None);
        assert!(!output.status.success());
        let said = text(&output);
        assert!(
            said.contains("HOST[:PORT]/REPOSITORY:TAG") && said.contains(why),
            "{target}: {said}"
        );
    }
    let missing = push(
        &copy.path().join("web"),
        &format!("{}/nodeimg/web:1", registry.host()),
        &[],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("run `nodeimg build recipes/web.toml` first"),
        "{}",
        text(&missing)
    );
}

#[test]
fn bearer_tokens_are_fetched_from_the_realm_the_registry_names() {
    let tokens = TokenServer::start("ci", "token-password-for-the-test");
    let registry = Registry::start(Auth::Token(&tokens));
    let layout = layout("haproxy");
    let target = format!("{}/nodeimg/haproxy:bearer", registry.host());

    assert_credentials_required_and_checked(&layout, &target);

    let right = push(
        &layout,
        &target,
        &["--username", "ci", "--password-stdin"],
        Some("token-password-for-the-test"),
    );
    assert!(right.status.success(), "{}", text(&right));
    assert_eq!(
        String::from_utf8_lossy(&right.stdout).trim(),
        format!(
            "{}/nodeimg/haproxy@{}",
            registry.host(),
            manifest_digest(&layout)
        )
    );
    // One token served the whole push.
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The config and layer digests of a built layout.
fn blob_digests(layout: &Path) -> std::collections::BTreeSet<String> {
    let digest = manifest_digest(layout);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_second_role_mounts_the_blobs_it_shares_with_the_first() {
    let tokens = TokenServer::start("ci", "token-password-for-the-test");
    let registry = Registry::start(Auth::Token(&tokens));
    let login = ["--username", "ci", "--password-stdin"];
    let password = Some("token-password-for-the-test");
    let (db, haproxy) = (layout("db"), layout("haproxy"));
    let shared = blob_digests(&db)
        .intersection(&blob_digests(&haproxy))
        .count();
    assert!(shared >= 1, "the roles share their base layer");
    let report = |output: &Output| -> serde_json::Value {
        assert!(output.status.success(), "{}", text(output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let flags = |extra: &[&'static str]| [&login[..], &["--json"], extra].concat();

    let host = registry.host();
    report(&push(
        &db,
        &format!("{host}/nodeimg/db:m"),
        &flags(&[]),
        password,
    ));

    // The blobs haproxy shares with db are mounted (the token covers
    // both repositories), the rest uploaded.
    let target = format!("{host}/nodeimg/haproxy:m");
    let mounted = push(
        &haproxy,
        &target,
        &flags(&["--mount-from", "nodeimg/db"]),
        password,
    );
    let pushed = report(&mounted);
    let total = blob_digests(&haproxy).len() as u64;
    assert_eq!(pushed["blobs_mounted"], shared as u64, "{}", text(&mounted));
    assert_eq!(pushed["blobs_uploaded"], total - shared as u64);
    assert!(text(&mounted).contains("mounted from nodeimg/db, nothing sent"));
    // They are really in haproxy's repository now.
    let again = report(&push(&haproxy, &target, &flags(&[]), password));
    assert_eq!(again["blobs_skipped"], total, "{again}");

    // A repository that lacks the blobs: the registry opens a normal upload.
    let elsewhere = format!("{host}/nodeimg/other:m");
    let fallback = report(&push(
        &haproxy,
        &elsewhere,
        &flags(&["--mount-from", "nodeimg/none"]),
        password,
    ));
    assert_eq!(fallback["blobs_mounted"], 0, "{fallback}");
    assert_eq!(fallback["blobs_uploaded"], total);

    // Mounting from the target itself, or from a malformed name, is refused.
    for bad in ["nodeimg/haproxy", "Nodeimg/DB", "127.0.0.1:5000/nodeimg/db"] {
        let refused = push(&haproxy, &target, &["--mount-from", bad], None);
        assert!(!refused.status.success());
        assert!(
            text(&refused).contains("--mount-from"),
            "{}",
            text(&refused)
        );
    }
}

/// A loopback TCP proxy in front of the registry that answers the first
/// `fail_first` connections with 503 (as an overloaded registry or its
/// load balancer does) and forwards the rest unchanged.
struct Flaky {
    port: u16,
}

impl Flaky {
    fn start(upstream: u16, fail_first: usize) -> Flaky {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut client) = stream else { continue };
                if n < fail_first {
                    let _ = client.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut client_r, mut server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_r, &mut server_w);
                    let _ = server_w.shutdown(std::net::Shutdown::Write);
                });
                let mut server_r = server;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Flaky { port }
    }
}

#[test]
fn a_registry_that_answers_503_is_retried_then_reported() {
    let registry = Registry::start(Auth::Anonymous);
    let layout = layout("haproxy");

    // Two 503s, then the real registry: the push goes through.
    let flaky = Flaky::start(registry.port, 2);
    let target = format!("127.0.0.1:{}/nodeimg/haproxy:retried", flaky.port);
    let output = push(&layout, &target, &[], None);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("answered 503; retrying"),
        "{}",
        text(&output)
    );
    let (status, _) = registry
        .get("/v2/nodeimg/haproxy/manifests/retried")
        .unwrap();
    assert_eq!(status, 200);

    // A registry that never recovers: a clear error after the retries.
    let down = Flaky::start(registry.port, usize::MAX);
    let target = format!("127.0.0.1:{}/nodeimg/haproxy:never", down.port);
    let output = push(&layout, &target, &[], None);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("the registry answered 503"),
        "{}",
        text(&output)
    );
}
