//! `nodeimg boot --render-only` with the repository's templates and the
//! example cluster spec: what each role renders, and every spec or
//! identity mistake refused before anything is written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nodeimg::cluster::ClusterSpec;
use nodeimg::cluster::scram::Verifier;
use nodeimg::cluster::secrets::Secrets;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const LB: &str = "10.0.0.10";

/// A complete secrets file for the example spec (CA and node certificates
/// included), the application user's verifier from a known password.
fn secrets(dir: &Path) -> PathBuf {
    let spec = ClusterSpec::load(&example()).unwrap();
    let mut secrets = Secrets::generate(&spec).unwrap();
    let user = secrets.users.get_mut("keybuzz_app").unwrap();
    user.scram = Some(Verifier::generate("app-secret-123").unwrap().to_string());
    user.password = None;
    let path = dir.join("secrets.toml");
    std::fs::write(&path, secrets.to_toml()).unwrap();
    private(&path);
    path
}

/// Mode 0600: secrets files are read only when private.
fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `nodeimg boot --render-only` for the node at `ip`.
fn render(role: &str, spec: &Path, ip: &str, out: &Path, secrets: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["boot", "--role", role, "--metadata", "env"])
        .arg("--cluster")
        .arg(spec)
        .arg("--secrets")
        .arg(secrets)
        .arg("--templates")
        .arg(repo().join(format!("overlays/{role}/usr/share/nodeimg/templates")))
        .arg("--render-only")
        .arg(out)
        .env("NODEIMG_PRIVATE_IP", ip)
        .env_remove("NODEIMG_NODE_NAME")
        .output()
        .unwrap()
}

fn example() -> PathBuf {
    repo().join("examples/cluster.toml")
}

#[test]
fn a_db_node_renders_patroni_and_etcd_from_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = render("db", &example(), "10.0.0.121", &out, &secrets(dir.path()));
    assert!(output.status.success(), "{output:?}");
    let patroni = std::fs::read_to_string(out.join("patroni.yml")).unwrap();
    assert!(patroni.contains("name: \"db-postgres-02\""), "{patroni}");
    assert!(patroni.contains("listen: \"10.0.0.121:8008\""));
    for ip in ["10.0.0.120", "10.0.0.121", "10.0.0.122"] {
        assert!(
            patroni.contains(&format!(
                "- hostssl replication replicator {ip}/32 scram-sha-256"
            )),
            "replication rule for {ip}"
        );
    }
    assert!(patroni.contains("- hostssl all all 10.0.0.0/16 scram-sha-256"));
    // Nothing from the network without TLS, and the refusal comes first.
    let reject = patroni
        .find("- hostnossl all all 0.0.0.0/0 reject")
        .unwrap();
    assert!(patroni.contains("- hostnossl replication all 0.0.0.0/0 reject"));
    assert!(reject < patroni.find("- hostssl").unwrap());
    for line in patroni
        .lines()
        .filter(|l| l.trim_start().starts_with("- host "))
    {
        assert!(
            line.contains("127.0.0.1/32"),
            "plain host rule off loopback: {line}"
        );
    }
    assert!(!patroni.contains(" md5") && !patroni.contains("trust"));
    assert!(patroni.contains("ssl: \"on\""));
    assert!(patroni.contains("ssl_min_protocol_version: \"TLSv1.2\""));
    assert_eq!(
        patroni.matches("sslmode: verify-full").count(),
        2,
        "replication and rewind"
    );
    // The REST API: HTTPS, client certificates checked on unsafe calls,
    // and a password.
    assert!(patroni.contains("certfile: \"/run/nodeimg/tls/node.crt\""));
    assert!(patroni.contains("verify_client: optional"));
    assert!(patroni.contains("authentication:\n    username: patroni\n    password: \""));
    assert!(patroni.contains("etcd3:\n  protocol: https"));
    assert!(patroni.contains("data-checksums"));
    assert!(patroni.contains("jit: \"off\""));
    assert!(
        !patroni.contains("users:"),
        "Patroni 4 has no bootstrap.users"
    );
    let etcd = std::fs::read_to_string(out.join("etcd.yml")).unwrap();
    assert!(etcd.contains("name: \"db-postgres-02\""));
    assert!(etcd.contains("db-postgres-01=https://10.0.0.120:2380,db-postgres-02=https://10.0.0.121:2380,db-postgres-03=https://10.0.0.122:2380"));
    assert!(
        etcd.contains("listen-client-urls: \"https://10.0.0.121:2379,https://127.0.0.1:2379\"")
    );
    assert!(!etcd.contains("http://"));
    assert_eq!(
        etcd.matches("client-cert-auth: true").count(),
        2,
        "clients and peers"
    );
    // The node's own key and certificate, the CA certificate, nothing more.
    let key_mode = std::fs::metadata(out.join("tls/node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let ca = std::fs::read_to_string(out.join("tls/ca.crt")).unwrap();
    assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 1);
    let cert = std::fs::read_to_string(out.join("tls/node.crt")).unwrap();
    let full = std::fs::read_to_string(dir.path().join("secrets.toml")).unwrap();
    let full: toml::Value = toml::from_str(&full).unwrap();
    assert_eq!(
        cert,
        full["tls"]["nodes"]["db-postgres-02"]["cert"]
            .as_str()
            .unwrap()
    );
    let ca_key = full["tls"]["ca_key"].as_str().unwrap();
    for entry in std::fs::read_dir(out.join("tls")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains(ca_key.lines().nth(1).unwrap()),
            "the CA key reached a node"
        );
    }
    let mode = std::fs::metadata(out.join("patroni.yml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds passwords");
}

#[test]
fn a_proxy_node_routes_to_patroni_and_never_back_to_the_load_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let secrets = secrets(dir.path());
    let output = render("haproxy", &example(), "10.0.0.12", &out, &secrets);
    assert!(output.status.success(), "{output:?}");
    let haproxy = std::fs::read_to_string(out.join("haproxy.cfg")).unwrap();
    // Only the private IP and loopback, never every address.
    assert!(!haproxy.contains("bind *"));
    for port in [5000, 5001] {
        assert!(haproxy.contains(&format!("bind 10.0.0.12:{port}")));
        assert!(haproxy.contains(&format!("bind 127.0.0.1:{port}")));
    }
    // The stats page: loopback only.
    let stats = haproxy
        .split("listen stats")
        .nth(1)
        .unwrap()
        .split("listen ")
        .next()
        .unwrap();
    assert!(
        stats.contains("bind 127.0.0.1:7000") && !stats.contains("10.0.0.12"),
        "{stats}"
    );
    // Health checks over HTTPS, verified against the CA and the name.
    assert_eq!(
        haproxy
            .matches("check-ssl verify required ca-file /run/nodeimg/tls/ca.crt")
            .count(),
        2
    );
    // OPTIONS: Patroni sends the status line only, so HAProxy's reset
    // after a check never interrupts a body (Patroni logs those).
    assert!(
        haproxy.contains("meth OPTIONS uri /primary")
            && haproxy.contains("meth OPTIONS uri /replica")
    );
    assert!(!haproxy.contains("/master"), "deprecated endpoint");
    assert!(haproxy.contains("on-marked-down shutdown-sessions"));
    assert!(haproxy.contains(
        "server db-postgres-01 10.0.0.120:5432 check port 8008 verifyhost db-postgres-01"
    ));
    assert!(haproxy.contains("stats enable"));
    let pgbouncer = std::fs::read_to_string(out.join("pgbouncer.ini")).unwrap();
    assert!(pgbouncer.contains("keybuzz = host=127.0.0.1 port=5000 dbname=keybuzz"));
    assert!(pgbouncer.contains("keybuzz_ro = host=127.0.0.1 port=5001 dbname=keybuzz"));
    assert!(
        !pgbouncer.contains(LB),
        "PgBouncer must not loop through the load balancer"
    );
    assert!(pgbouncer.contains("auth_type = scram-sha-256"));
    assert!(pgbouncer.contains("listen_addr = 10.0.0.12,127.0.0.1"));
    assert!(pgbouncer.contains("client_tls_sslmode = require"));
    assert!(pgbouncer.contains("server_tls_sslmode = verify-full"));
    let userlist = std::fs::read_to_string(out.join("userlist.txt")).unwrap();
    let given = std::fs::read_to_string(&secrets).unwrap();
    let verifier = userlist.split('"').nth(3).unwrap();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"));
    assert!(
        given.contains(verifier),
        "the very verifier of the secrets file"
    );
    assert!(!userlist.contains("app-secret-123"));
}

/// The example spec with `edit` applied, written to a file.
fn edited_spec(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let path = dir.join("cluster.toml");
    std::fs::write(&path, edit(std::fs::read_to_string(example()).unwrap())).unwrap();
    path
}

fn refused(spec_edit: impl Fn(String) -> String, ip: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let spec = edited_spec(dir.path(), spec_edit);
    let out = dir.path().join("out");
    let output = render("db", &spec, ip, &out, &secrets(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
    assert!(!out.exists(), "nothing is written when the spec is refused");
}

#[test]
fn spec_mistakes_are_refused_with_the_rule_named() {
    refused(
        |s| s.replace("loop_wait = 10", "loop_wait = 15"),
        "10.0.0.120",
        &["loop_wait + 2 * retry_timeout <= ttl", "15 + 2 * 10 > 30"],
    );
    refused(
        |s| {
            s.replace(
                "[[db]]\nname = \"db-postgres-03\"\nip = \"10.0.0.122\"\n",
                "",
            )
        },
        "10.0.0.120",
        &["odd number", "quorum"],
    );
    refused(
        |s| s.replace("ip = \"10.0.0.122\"", "ip = \"192.168.1.5\""),
        "10.0.0.120",
        &["db[2].ip", "outside the private network 10.0.0.0/16"],
    );
    refused(
        |s| s.replace("ip = \"10.0.0.12\"", "ip = \"10.0.0.11\""),
        "10.0.0.120",
        &["haproxy[1].ip", "duplicate member address 10.0.0.11"],
    );
    refused(
        |s| s.replace("name = \"db-postgres-02\"", "name = \"db-postgres-01\""),
        "10.0.0.120",
        &["db[1].name", "duplicate member name"],
    );
    refused(
        |s| {
            s.replace("ttl = 30", "ttl = 10")
                .replace("loop_wait = 10", "loop_wait = 2")
                .replace("retry_timeout = 10", "retry_timeout = 4")
        },
        "10.0.0.120",
        &["patroni.ttl", "minimum of 20"],
    );
    refused(
        |s| s.replace("[cluster]", "[cluster]\nbogus = 1"),
        "10.0.0.120",
        &["unknown field `bogus`", "cluster.toml"],
    );
}

#[test]
fn identity_and_secret_mistakes_are_refused() {
    // A node the spec does not know.
    refused(
        |s| s,
        "10.0.9.9",
        &["is not in the cluster spec", "10.0.9.9"],
    );
    // A proxy running the db image.
    refused(|s| s, "10.0.0.11", &["haproxy member", "db image"]);
    // A missing secret names the variable that can carry it.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    private(&empty);
    let output = render(
        "db",
        &example(),
        "10.0.0.120",
        &dir.path().join("out"),
        &empty,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("NODEIMG_SUPERUSER_PASSWORD"), "{stderr}");
    assert!(!dir.path().join("out").exists());
    // The seeds' base64(sha256(password || user)) is not a verifier.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[users.keybuzz_app]\nscram = \"q2Tn2oZ8pQF0cW1v2kM0nXyXq3s9b3VQ0Yb7t0YJ0Ck=\"\n",
    )
    .unwrap();
    private(&wrong);
    let output = render(
        "haproxy",
        &example(),
        "10.0.0.11",
        &dir.path().join("out"),
        &wrong,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("users.keybuzz_app.scram"), "{stderr}");
    assert!(stderr.contains("not a SCRAM-SHA-256 verifier"), "{stderr}");
}

/// The example spec with `[backup]` and `extra` appended, and a secrets
/// file for it (with its repository passphrase).
fn backup_spec(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let spec = edited_spec(dir, |s| {
        s + "\n[backup]\nrepository = \"posix\"\npath = \"/var/lib/pgbackrest\"\n" + extra
    });
    let secrets = Secrets::generate(&ClusterSpec::load(&spec).unwrap()).unwrap();
    let path = dir.join("secrets.toml");
    std::fs::write(&path, secrets.to_toml()).unwrap();
    private(&path);
    (spec, path)
}

/// Patroni's bootstrap section of the node's rendered patroni.yml.
fn rendered_bootstrap(extra: &str) -> serde_yaml_ng::Value {
    let dir = tempfile::tempdir().unwrap();
    let (spec, secrets) = backup_spec(dir.path(), extra);
    let out = dir.path().join("out");
    let output = render("db", &spec, "10.0.0.120", &out, &secrets);
    assert!(output.status.success(), "{output:?}");
    let patroni: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(out.join("patroni.yml")).unwrap())
            .unwrap();
    patroni["bootstrap"].clone()
}

#[test]
fn a_restore_section_becomes_patronis_custom_bootstrap_from_the_old_stanza() {
    let bootstrap = rendered_bootstrap("");
    assert!(
        bootstrap.get("method").is_none(),
        "initdb without [restore]"
    );

    let bootstrap = rendered_bootstrap(
        "\n[restore]\nfrom = \"old-cluster\"\ntarget_time = \"2026-12-01 21:00:00.5+00\"\n",
    );
    assert_eq!(bootstrap["method"], "nodeimg_restore");
    let method = &bootstrap["nodeimg_restore"];
    assert_eq!(
        method["command"],
        "/usr/bin/pgbackrest --config=/run/nodeimg/pgbackrest.conf --stanza=old-cluster --delta restore"
    );
    // pgBackRest's recovery settings are kept; Patroni adds no --scope.
    assert_eq!(method["keep_existing_recovery_conf"], true);
    assert_eq!(method["no_params"], true);
    assert_eq!(method["pg1-path"], "/var/lib/postgresql/data");
    assert_eq!(method["type"], "time");
    assert_eq!(method["target"], "2026-12-01 21:00:00.5+00");
    assert_eq!(method["target-action"], "promote");

    let latest = rendered_bootstrap("\n[restore]\nfrom = \"old-cluster\"\n");
    assert_eq!(latest["nodeimg_restore"]["type"], "default");
    assert!(latest["nodeimg_restore"].get("target").is_none());
}

#[test]
fn restore_mistakes_are_refused_with_the_field_named() {
    refused(
        |s| s + "\n[restore]\nfrom = \"old\"\n",
        "10.0.0.120",
        &["restore.from", "needs a [backup] section"],
    );
    let backup = "\n[backup]\nrepository = \"posix\"\n";
    refused(
        |s| s + backup + "\n[restore]\nfrom = \"old\"\ntarget_time = \"2026-12-01 21:00\"\n",
        "10.0.0.120",
        &["restore.target_time", "2026-12-01 21:00:00+00"],
    );
}

#[test]
fn a_restored_clusters_secrets_take_the_old_repositorys_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, old) = backup_spec(dir.path(), "\n[restore]\nfrom = \"keybuzz-old\"\n");
    let init = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["secrets", "init", "--cluster"])
            .arg(&spec)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let output = init(&["-o", "new.toml", "--backup-cipher-from", "secrets.toml"]);
    assert!(output.status.success(), "{output:?}");
    let new = Secrets::read(&dir.path().join("new.toml")).unwrap();
    let old = Secrets::read(&old).unwrap();
    assert!(old.backup_cipher_password.is_some());
    assert_eq!(new.backup_cipher_password, old.backup_cipher_password);
    assert_ne!(new.superuser_password, old.superuser_password);
    // A file without a passphrase is refused, naming it.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    private(&empty);
    let output = init(&["-o", "other.toml", "--backup-cipher-from", "empty.toml"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("holds no backup_cipher_password"),
        "{stderr}"
    );
}

#[test]
fn an_s3_repository_takes_its_key_from_the_operator_and_verifies_tls() {
    let dir = tempfile::tempdir().unwrap();
    let spec = edited_spec(dir.path(), |s| {
        s + "\n[backup]\nrepository = \"s3\"\npath = \"/pgbackrest\"\n[backup.s3]\nendpoint = \"fsn1.your-objectstorage.com\"\nbucket = \"keybuzz-backups\"\nregion = \"fsn1\"\n"
    });
    let init = |out: &str, env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["secrets", "init", "--cluster"])
            .arg(&spec)
            .args(["-o", out])
            .env_remove("NODEIMG_BACKUP_S3_KEY")
            .env_remove("NODEIMG_BACKUP_S3_KEY_SECRET")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // nodeimg cannot make the bucket's key: without it, nothing is written.
    let output = init("none.toml", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("backup_s3_key") && stderr.contains("NODEIMG_BACKUP_S3_KEY_SECRET"),
        "{stderr}"
    );
    assert!(!dir.path().join("none.toml").exists());
    let output = init(
        "secrets.toml",
        &[
            ("NODEIMG_BACKUP_S3_KEY", "HETZNERKEY0001"),
            ("NODEIMG_BACKUP_S3_KEY_SECRET", "hetzner-secret-0001"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let secrets = dir.path().join("secrets.toml");
    // A key the provider rotated rides along with `secrets rotate` (on a
    // copy: what follows reads the first key).
    let rotated = dir.path().join("rotated.toml");
    std::fs::copy(&secrets, &rotated).unwrap();
    let rotate = Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["secrets", "rotate", "--cluster"])
        .arg(&spec)
        .arg("--secrets")
        .arg(&rotated)
        .env("NODEIMG_BACKUP_S3_KEY", "HETZNERKEY0002")
        .env("NODEIMG_BACKUP_S3_KEY_SECRET", "hetzner-secret-0002")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{rotate:?}");
    assert!(
        String::from_utf8_lossy(&rotate.stderr).contains("backup_s3_key, backup_s3_key_secret"),
        "{rotate:?}"
    );
    let out = dir.path().join("out-rotated");
    assert!(
        render("db", &spec, "10.0.0.120", &out, &rotated)
            .status
            .success()
    );
    let conf = std::fs::read_to_string(out.join("pgbackrest.conf")).unwrap();
    assert!(conf.contains("repo1-s3-key=HETZNERKEY0002\n"), "{conf}");
    let out = dir.path().join("out");
    let output = render("db", &spec, "10.0.0.120", &out, &secrets);
    assert!(output.status.success(), "{output:?}");
    let conf = std::fs::read_to_string(out.join("pgbackrest.conf")).unwrap();
    for line in [
        "repo1-type=s3",
        "repo1-path=/pgbackrest",
        "repo1-s3-endpoint=fsn1.your-objectstorage.com",
        "repo1-storage-port=443",
        "repo1-s3-bucket=keybuzz-backups",
        "repo1-s3-region=fsn1",
        "repo1-s3-uri-style=host",
        "repo1-s3-key=HETZNERKEY0001",
        "repo1-s3-key-secret=hetzner-secret-0001",
        "repo1-storage-verify-tls=y",
        // The public CAs the db image's build bundles.
        "repo1-storage-ca-file=/etc/ssl/certs/ca-certificates.crt",
        // Restores fetch files in parallel.
        "[global:restore]",
        "process-max=4",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    assert!(!out.join("backup-s3-ca.pem").exists());

    // A private endpoint's CA, from the spec.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap().pem();
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{text}uri_style = \"path\"\nport = 7443\nca = '''\n{ca}'''\n"),
    )
    .unwrap();
    let out = dir.path().join("out-ca");
    let output = render("db", &spec, "10.0.0.120", &out, &secrets);
    assert!(output.status.success(), "{output:?}");
    let conf = std::fs::read_to_string(out.join("pgbackrest.conf")).unwrap();
    assert!(conf.contains("repo1-storage-ca-file=/run/nodeimg/backup-s3-ca.pem\n"));
    assert!(
        conf.contains("repo1-s3-uri-style=path\n") && conf.contains("repo1-storage-port=7443\n")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("backup-s3-ca.pem")).unwrap(),
        ca
    );
}

#[test]
fn every_db_node_serves_pgbackrest_to_the_other_db_nodes_only() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, secrets) = backup_spec(dir.path(), "");
    let out = dir.path().join("out");
    let output = render("db", &spec, "10.0.0.120", &out, &secrets);
    assert!(output.status.success(), "{output:?}");
    let conf = std::fs::read_to_string(out.join("pgbackrest.conf")).unwrap();
    let section = |name: &str| -> Vec<String> {
        conf.split(&format!("[{name}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no [{name}] in:\n{conf}"))
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    // The server: the node's private address only, the node certificate,
    // and the three db nodes of the example by their certificates' names.
    assert_eq!(
        section("global:server"),
        [
            "tls-server-address=10.0.0.120",
            "tls-server-port=8432",
            "tls-server-cert-file=/run/nodeimg/tls/node.crt",
            "tls-server-key-file=/run/nodeimg/tls/node.key",
            "tls-server-ca-file=/run/nodeimg/tls/ca.crt",
            "tls-server-auth=db-postgres-01=keybuzz-pg17",
            "tls-server-auth=db-postgres-02=keybuzz-pg17",
            "tls-server-auth=db-postgres-03=keybuzz-pg17",
        ]
    );
    // A backup taken here as a standby names the primary (pg2) on its
    // command line: set here, every command would require a pg2.
    assert!(!conf.lines().any(|l| l.starts_with("pg2-")), "{conf}");
    let client = std::fs::read_to_string(out.join("tls/backup-client.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(client.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "db-postgres-01"
    );
}
