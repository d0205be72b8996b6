//! An s3 backup repository on a real S3 server (tests/s3: Ceph's radosgw
//! on a one-node Ceph from Debian trixie, standing in for Hetzner Object
//! Storage), over HTTPS with a certificate from a private CA the spec
//! names. The db nodes sign
//! with the bucket's key from the secrets. The primary archives WAL and
//! takes the scheduled full backup into the bucket, and a replica's drill
//! restores it. Then the key is revoked on the server, as an operator
//! deleting it in the console would: `nodeimg backup status` says so and
//! exits 1, the agent's log names the archiving failure, and the database
//! keeps taking writes; with the key given back, archiving catches up.

mod support {
    #[allow(dead_code)]
    pub mod backup;
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod images;
}

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::backup::*;
use support::cluster::*;
use support::images::{loaded_images, loaded_test_image, run};

const PREFIX: &str = "172.31.250";
/// The S3 server's address: PREFIX.40.
const SERVER: u8 = 40;
const BUCKET: &str = "nodeimg-backups";
const KEY: &str = "NODEIMGTESTKEY0001";
const KEY_SECRET: &str = "nodeimg-test-secret-0001-abcdef";
/// What `curl --aws-sigv4` must send for a body-less request (curl 7.88
/// signs it but leaves the header out).
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A CA and the server's certificate for its address, written to
/// `dir`/server.{pem,key}; returns the CA's PEM (what the spec pins).
fn server_tls(dir: &Path, ip: &str) -> String {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    // Distinct subjects: a certificate whose subject is its issuer's
    // reads as self-signed and is refused.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nodeimg test S3 CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::from_ca_cert_pem(&ca, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "nodeimg test S3 server");
    params.subject_alt_names = vec![SanType::IpAddress(ip.parse().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    ca
}

/// An S3 request signed with the bucket's key, checked against the
/// server's CA: (HTTP status, body).
fn s3_request(network: &Network, method: &str, path: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(network.dir.path().join("s3-tls/ca.pem"))
        .args(["--aws-sigv4", "aws:amz:fsn1:s3", "--user"])
        .arg(format!("{KEY}:{KEY_SECRET}"))
        .arg("-H")
        .arg(format!("x-amz-content-sha256: {EMPTY_SHA256}"))
        .arg(format!("https://{}{path}", network.ip(SERVER)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// radosgw-admin in the server's container.
fn admin(network: &Network, args: &[&str]) -> String {
    let output = run(Command::new("docker")
        .args(["exec", &container_of(network, "s3"), "radosgw-admin"])
        .args(args));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The spec naming the S3 server at PREFIX.40 and its CA, the secrets with
/// the bucket's key; then the server, with the bucket made as an operator
/// makes it in the console; then db-1..3.
fn start_s3_cluster(network: &Network, db_image: &str, s3_image: &str, settings: &str) {
    let tls = network.dir.path().join("s3-tls");
    let ca = server_tls(&tls, &network.ip(SERVER));
    let spec = format!(
        "{}\n[backup]\nrepository = \"s3\"\npath = \"/repo\"\n{settings}\n[backup.s3]\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\nregion = \"fsn1\"\nuri_style = \"path\"\nca = '''\n{ca}'''\n",
        test_spec(PREFIX, true),
        network.ip(SERVER),
    );
    // Written first: every container of the network mounts the spec.
    write_inputs_with(network, &spec, |secrets| {
        secrets.backup_s3_key = Some(KEY.into());
        secrets.backup_s3_key_secret = Some(KEY_SECRET.into());
    });
    network.start(
        "s3",
        s3_image,
        SERVER,
        &[
            "-v".into(),
            format!("{}:/etc/s3-test:ro", tls.display()),
            "-e".into(),
            format!("S3_KEY={KEY}"),
            "-e".into(),
            format!("S3_SECRET={KEY_SECRET}"),
        ],
    );
    // The one-node Ceph and its pools take some seconds.
    wait_until(
        "the S3 server making the bucket",
        Duration::from_secs(90),
        || s3_request(network, "PUT", &format!("/{BUCKET}")).0 == 200,
    );
    for node in ["db-1", "db-2", "db-3"] {
        start_db_node(network, db_image, node, &[]);
    }
}

#[test]
fn s3_repository_over_verified_https() {
    let images = loaded_images();
    let s3 = loaded_test_image("tests/s3/s3.toml");
    let network = Network::create("nodeimg-s3", PREFIX);
    start_s3_cluster(
        &network,
        &images.db,
        &s3,
        "archive_timeout = 10\nfull_every = \"1d\"\ndiff_every = \"off\"\ndrill_every = \"30s\"\n",
    );
    let (leader, _) = serving_with_a_drilled_backup(&network, &images.haproxy);
    // The objects are in the bucket, under the cluster's stanza, encrypted
    // (OpenSSL's salted format: no plaintext `[backrest]` header).
    for object in [
        "repo/backup/e2e/backup.info",
        "repo/archive/e2e/archive.info",
    ] {
        let (code, body) = s3_request(&network, "GET", &format!("/{BUCKET}/{object}"));
        assert_eq!(code, 200, "{object}: {body}");
        assert!(
            body.starts_with("Salted__"),
            "{object} is not encrypted: {body:.80}"
        );
    }

    // The key revoked on the server: refused, loudly, harmlessly.
    admin(
        &network,
        &["key", "rm", "--uid=backup", &format!("--access-key={KEY}")],
    );
    repository_failure_is_loud_and_harmless(&network, &leader, "InvalidAccessKeyId");

    // The same key given back: the WAL that piled up reaches the bucket.
    admin(
        &network,
        &[
            "key",
            "create",
            "--uid=backup",
            &format!("--access-key={KEY}"),
            &format!("--secret-key={KEY_SECRET}"),
        ],
    );
    wait_until(
        "archiving catching up and status ok",
        Duration::from_secs(120),
        || {
            status_json(&network, &leader)
                .is_some_and(|s| s["ok"] == true && s["archive"]["failing"] == false)
        },
    );
}

/// The backup benchmark over s3 (scripts/bench-backup.sh; ignored in CI):
/// support::backup::bench_backup_and_drill.
#[test]
#[ignore]
fn bench_s3_backup_and_drill() {
    let images = loaded_images();
    let s3 = loaded_test_image("tests/s3/s3.toml");
    let network = Network::create("nodeimg-s3", PREFIX);
    start_s3_cluster(&network, &images.db, &s3, BENCH_SCHEDULE);
    bench_backup_and_drill(&network, "s3");
}
