//! Node identity over real HTTP from the Hetzner metadata stand-in (on
//! 127.0.0.1, never 169.254.169.254), from NoCloud meta-data and from the
//! environment, and the message a node prints for every way it can fail.
//! Each test has its own stand-in, folders and environment closure: no
//! test depends on another or on the machine it runs on.

mod support {
    pub mod hetzner_metadata;
}

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodeimg::agent::identity::{
    self, DetectOptions, HttpPolicy, Identity, IdentityError, IdentitySource, MetadataSource,
};
use support::hetzner_metadata::{
    DOCUMENTED_PRIVATE_NETWORKS, DOCUMENTED_SUMMARY, HetznerStandIn, METADATA_PATH, ServerDoc,
};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn quick() -> HttpPolicy {
    HttpPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    }
}

fn ips(texts: &[&str]) -> Vec<Ipv4Addr> {
    texts.iter().map(|text| text.parse().unwrap()).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A db node on two private networks.
fn db_postgres_02() -> ServerDoc {
    ServerDoc {
        hostname: "db-postgres-02".into(),
        instance_id: 4242,
        private_networks: vec![
            ("10.1.0.121".into(), "10.1.0.0/16".into()),
            ("192.168.7.2".into(), "192.168.7.0/24".into()),
        ],
    }
}

fn standin_with(doc: ServerDoc) -> HetznerStandIn {
    let standin = HetznerStandIn::start(LOOPBACK);
    standin.add_server(LOOPBACK, doc);
    standin
}

fn from_hetzner(url: &str, policy: HttpPolicy) -> Result<Identity, IdentityError> {
    identity::detect_with(&DetectOptions {
        http: policy,
        ..DetectOptions::new(MetadataSource::Hetzner(url.to_string()), &no_env)
    })
}

fn error_text(result: Result<Identity, IdentityError>) -> String {
    result.unwrap_err().to_string()
}

/// A loopback port nothing listens on: bound, noted, closed.
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}{METADATA_PATH}")
}

fn statuses(standin: &HetznerStandIn) -> Vec<(String, u16)> {
    standin
        .served()
        .into_iter()
        .map(|served| {
            let leaf = served.path.rsplit('/').next().unwrap().to_string();
            (leaf, served.status)
        })
        .collect()
}

// --- the Hetzner service ---

#[test]
fn reads_the_documented_example_documents_verbatim() {
    let standin = HetznerStandIn::start(LOOPBACK);
    standin.set_document(LOOPBACK, METADATA_PATH, DOCUMENTED_SUMMARY);
    standin.set_document(
        LOOPBACK,
        &format!("{METADATA_PATH}/hostname"),
        "my-server\n",
    );
    standin.set_document(LOOPBACK, &format!("{METADATA_PATH}/instance-id"), "42\n");
    standin.set_document(
        LOOPBACK,
        &format!("{METADATA_PATH}/private-networks"),
        DOCUMENTED_PRIVATE_NETWORKS,
    );
    let found = from_hetzner(&standin.url(), quick()).unwrap();
    // The trailing newlines are not part of the name or the id; alias IPs
    // follow their network's address.
    assert_eq!(found.name.as_deref(), Some("my-server"));
    assert_eq!(found.instance_id.as_deref(), Some("42"));
    assert_eq!(
        found.private_ips,
        ips(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "192.168.0.2"])
    );
    assert_eq!(found.source, IdentitySource::Hetzner(standin.url()));
    assert_eq!(
        found.to_string(),
        format!(
            "identity from Hetzner metadata service at {}: name my-server, private IPs 10.0.0.2, 10.0.0.3, 10.0.0.4, 192.168.0.2, instance-id 42",
            standin.url()
        )
    );
}

#[test]
fn the_stand_in_serves_the_documented_shapes() {
    let standin = standin_with(db_postgres_02());
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .build()
        .new_agent();
    let get = |path: &str| {
        agent
            .get(&format!("http://{}{path}", standin.addr))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    assert_eq!(
        get(&format!("{METADATA_PATH}/hostname")),
        "db-postgres-02\n"
    );
    assert_eq!(get(&format!("{METADATA_PATH}/instance-id")), "4242\n");
    let networks = get(&format!("{METADATA_PATH}/private-networks"));
    assert!(
        networks.starts_with(
            "- ip: 10.1.0.121\n  alias_ips: []\n  interface_num: 1\n  mac_address: 86:00:00:"
        ),
        "{networks}"
    );
    assert!(
        networks.contains(
            "  network: 192.168.7.0/24\n  subnet: 192.168.7.0/24\n  gateway: 192.168.7.1\n"
        ),
        "{networks}"
    );
    let summary = get(METADATA_PATH);
    assert!(
        summary.contains("hostname: db-postgres-02\ninstance-id: 4242\nlocal-ipv4: ''\n"),
        "{summary}"
    );
}

#[test]
fn a_node_on_two_networks_gets_both_addresses_in_interface_order() {
    let standin = standin_with(db_postgres_02());
    let found = from_hetzner(&standin.url(), quick()).unwrap();
    assert_eq!(found.name.as_deref(), Some("db-postgres-02"));
    assert_eq!(found.instance_id.as_deref(), Some("4242"));
    assert_eq!(found.private_ips, ips(&["10.1.0.121", "192.168.7.2"]));
    // A base URL given with a trailing slash asks the same paths.
    let again = from_hetzner(&format!("{}/", standin.url()), quick()).unwrap();
    assert_eq!(again, found);
}

#[test]
fn retries_while_the_service_answers_500_then_succeeds() {
    let standin = standin_with(db_postgres_02());
    standin.fail_first(2);
    let found = from_hetzner(&standin.url(), quick()).unwrap();
    assert_eq!(found.name.as_deref(), Some("db-postgres-02"));
    assert_eq!(
        statuses(&standin),
        [
            ("hostname".to_string(), 500),
            ("hostname".to_string(), 500),
            ("hostname".to_string(), 200),
            ("instance-id".to_string(), 200),
            ("private-networks".to_string(), 200),
        ]
    );
}

#[test]
fn a_slow_answer_times_out_and_the_next_try_succeeds() {
    let standin = standin_with(db_postgres_02());
    standin.slow_first(1, Duration::from_secs(3));
    let policy = HttpPolicy {
        timeout: Duration::from_millis(300),
        ..quick()
    };
    let started = Instant::now();
    let found = from_hetzner(&standin.url(), policy).unwrap();
    assert_eq!(found.private_ips, ips(&["10.1.0.121", "192.168.7.2"]));
    // It did not wait for the slow answer: it gave up and asked again.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

#[test]
fn a_service_that_stays_slow_is_reported_with_the_timeout() {
    let standin = standin_with(db_postgres_02());
    standin.slow_first(100, Duration::from_secs(2));
    let policy = HttpPolicy {
        attempts: 2,
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let err = error_text(from_hetzner(&standin.url(), policy));
    assert!(
        err.starts_with(&format!(
            "{}/hostname: no answer after 2 attempts (last: timed out: no complete answer within 200ms)",
            standin.url()
        )),
        "{err}"
    );
    assert!(err.contains("slow right after boot"), "{err}");
}

#[test]
fn gives_up_with_the_url_and_status_when_the_service_keeps_failing() {
    let standin = standin_with(db_postgres_02());
    standin.fail_first(100);
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert!(
        err.starts_with(&format!(
            "{}/hostname: no answer after 4 attempts (last: HTTP 500 Internal Server Error)",
            standin.url()
        )),
        "{err}"
    );
    assert!(err.contains("set NODEIMG_PRIVATE_IP"), "{err}");
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

#[test]
fn http_404_means_not_hetzner_and_is_not_retried() {
    // The stand-in knows no server at the caller's address.
    let standin = HetznerStandIn::start(LOOPBACK);
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert!(
        err.starts_with(&format!(
            "{}/hostname: HTTP 404 Not Found: no Hetzner metadata service here (not a Hetzner Cloud server, or a wrong --metadata hetzner:URL); set NODEIMG_PRIVATE_IP",
            standin.url()
        )),
        "{err}"
    );
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn connection_refused_means_not_hetzner_and_is_not_retried() {
    let url = closed_port_url();
    // Retrying would sleep at least 2 s.
    let policy = HttpPolicy {
        first_backoff: Duration::from_secs(2),
        ..quick()
    };
    let started = Instant::now();
    let err = error_text(from_hetzner(&url, policy));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with(&format!(
            "{url}/hostname: connection refused: no Hetzner metadata service here"
        )),
        "{err}"
    );
}

#[test]
fn a_server_on_no_private_network_is_refused() {
    let standin = standin_with(ServerDoc {
        hostname: "lonely".into(),
        instance_id: 1,
        private_networks: vec![],
    });
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert_eq!(
        err,
        format!(
            "{}/private-networks: lists no private network: attach the server to the cluster's network (hcloud server attach-to-network)",
            standin.url()
        )
    );
    // An empty body says the same.
    standin.set_document(LOOPBACK, &format!("{METADATA_PATH}/private-networks"), "");
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert!(
        err.contains("/private-networks: lists no private network"),
        "{err}"
    );
}

#[test]
fn malformed_private_networks_name_the_document() {
    let standin = standin_with(db_postgres_02());
    let path = format!("{METADATA_PATH}/private-networks");
    let url = format!("{}/private-networks", standin.url());

    standin.set_document(LOOPBACK, &path, "- ip: [10.1.0.121\n");
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert!(
        err.starts_with(&format!(
            "{url}: not the documented YAML list of private networks: "
        )),
        "{err}"
    );

    let bad_alias = DOCUMENTED_PRIVATE_NETWORKS.replace("10.0.0.3", "10.0.0.300");
    standin.set_document(LOOPBACK, &path, &bad_alias);
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert_eq!(
        err,
        format!("{url}: network nw-test1: \"10.0.0.300\" is not an IPv4 address")
    );

    let no_ip = "- alias_ips: []\n  network_name: nw-test1\n";
    standin.set_document(LOOPBACK, &path, no_ip);
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert!(
        err.starts_with(&format!("{url}: ")) && err.contains("ip"),
        "{err}"
    );
}

#[test]
fn a_missing_document_after_hostname_answered_is_no_reason_to_say_not_hetzner() {
    let standin = standin_with(db_postgres_02());
    standin.remove_document(LOOPBACK, &format!("{METADATA_PATH}/private-networks"));
    let err = error_text(from_hetzner(&standin.url(), quick()));
    assert_eq!(
        err,
        format!(
            "{url}/private-networks: HTTP 404 Not Found, though {url}/hostname answered: a Hetzner metadata service serves both; check the --metadata URL",
            url = standin.url()
        )
    );
}

#[test]
fn ignores_http_proxy_settings() {
    // ureq reads ALL_PROXY/HTTP_PROXY by default; a proxy would answer for
    // its own host, not this one. The variables are set for a child run of
    // this test binary only: the environment of parallel tests stays as is.
    let standin = standin_with(db_postgres_02());
    let dead_proxy = closed_port_url().replace(METADATA_PATH, "");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "proxied_child", "--ignored", "--nocapture"])
        .env("NODEIMG_TEST_STANDIN_URL", standin.url())
        .env("ALL_PROXY", &dead_proxy)
        .env("HTTP_PROXY", &dead_proxy)
        .env("http_proxy", &dead_proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && log.contains("1 passed"), "{log}");
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

/// Run by `ignores_http_proxy_settings` with a dead proxy configured.
#[test]
#[ignore = "run by ignores_http_proxy_settings"]
fn proxied_child() {
    let url = std::env::var("NODEIMG_TEST_STANDIN_URL").unwrap();
    assert!(std::env::var("ALL_PROXY").is_ok());
    let found = from_hetzner(&url, quick()).unwrap();
    assert_eq!(found.name.as_deref(), Some("db-postgres-02"));
}

// --- NoCloud meta-data ---

fn nocloud(path: &Path) -> Result<Identity, IdentityError> {
    identity::detect_with(&DetectOptions::new(
        MetadataSource::NoCloud(path.to_path_buf()),
        &no_env,
    ))
}

#[test]
fn nocloud_folder_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meta-data");
    std::fs::write(
        &file,
        "instance-id: iid-db-2\nlocal-hostname: db-2\nprivate-ip: 10.1.0.122\n",
    )
    .unwrap();
    for path in [dir.path(), file.as_path()] {
        let found = nocloud(path).unwrap();
        assert_eq!(found.name.as_deref(), Some("db-2"));
        assert_eq!(found.instance_id.as_deref(), Some("iid-db-2"));
        assert_eq!(found.private_ips, ips(&["10.1.0.122"]));
        assert_eq!(found.source, IdentitySource::NoCloud(file.clone()));
        assert_eq!(
            found.to_string(),
            format!(
                "identity from NoCloud meta-data {}: name db-2, private IP 10.1.0.122, instance-id iid-db-2",
                file.display()
            )
        );
    }
}

#[test]
fn nocloud_with_a_hetzner_shaped_network_list() {
    let dir = tempfile::tempdir().unwrap();
    let networks: String = DOCUMENTED_PRIVATE_NETWORKS
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    std::fs::write(
        dir.path().join("meta-data"),
        format!("instance-id: 7\nlocal-hostname: db-3\nprivate-networks:\n{networks}"),
    )
    .unwrap();
    let found = nocloud(dir.path()).unwrap();
    assert_eq!(found.instance_id.as_deref(), Some("7"));
    assert_eq!(
        found.private_ips,
        ips(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "192.168.0.2"])
    );
}

#[test]
fn nocloud_mistakes_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meta-data");
    let shown = file.display().to_string();

    let err = error_text(nocloud(dir.path()));
    assert!(
        err.starts_with(&format!("{shown}: cannot read the NoCloud meta-data: "))
            && err.ends_with("mount it there, or point --metadata nocloud:PATH at it"),
        "{err}"
    );

    std::fs::write(&file, "local-hostname: db-2\nprivate-ip: [oops\n").unwrap();
    let err = error_text(nocloud(dir.path()));
    assert!(
        err.starts_with(&format!("{shown}: not valid YAML: ")),
        "{err}"
    );

    std::fs::write(&file, "local-hostname: db-2\nprivate-ip: 10.1.0\n").unwrap();
    assert_eq!(
        error_text(nocloud(dir.path())),
        format!("{shown}: private-ip \"10.1.0\" is not an IPv4 address")
    );

    std::fs::write(&file, "instance-id: iid-1\n").unwrap();
    assert_eq!(
        error_text(nocloud(dir.path())),
        format!(
            "{shown}: names neither local-hostname nor private-ip: add `private-ip: <this node's private IPv4 address>`"
        )
    );

    std::fs::write(&file, "").unwrap();
    assert!(error_text(nocloud(dir.path())).starts_with(&format!("{shown}: is empty: ")),);

    std::fs::write(&file, "- db-2\n").unwrap();
    assert!(
        error_text(nocloud(dir.path())).starts_with(&format!("{shown}: is not a YAML mapping")),
    );
}

// --- environment ---

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Identity, IdentityError> {
    identity::detect_with(&DetectOptions::new(MetadataSource::Env, env))
}

#[test]
fn environment_name_and_address() {
    let env = env_of(&[
        ("NODEIMG_PRIVATE_IP", " 10.1.0.123 "),
        ("NODEIMG_NODE_NAME", "db-3"),
    ]);
    let found = from_env(&env).unwrap();
    assert_eq!(found.name.as_deref(), Some("db-3"));
    assert_eq!(found.private_ips, ips(&["10.1.0.123"]));
    assert_eq!(
        found.to_string(),
        "identity from environment (NODEIMG_PRIVATE_IP, NODEIMG_NODE_NAME): name db-3, private IP 10.1.0.123"
    );
    // A name alone is enough to find the node in the spec by name.
    let found = from_env(&env_of(&[("NODEIMG_NODE_NAME", "db-3")])).unwrap();
    assert!(found.private_ips.is_empty());
}

#[test]
fn environment_mistakes_name_the_variable() {
    let err = error_text(from_env(&env_of(&[("NODEIMG_PRIVATE_IP", "10.1.0")])));
    assert_eq!(
        err,
        "NODEIMG_PRIVATE_IP=\"10.1.0\" is not an IPv4 address: set it to this node's private IPv4 address as the cluster spec lists it"
    );
    // Empty values count as unset, as `docker run -e NODEIMG_PRIVATE_IP=` gives.
    for env in [
        env_of(&[]),
        env_of(&[("NODEIMG_PRIVATE_IP", ""), ("NODEIMG_NODE_NAME", " ")]),
    ] {
        assert_eq!(
            error_text(from_env(&env)),
            "--metadata env, but neither NODEIMG_PRIVATE_IP nor NODEIMG_NODE_NAME is set: set NODEIMG_PRIVATE_IP to this node's private IPv4 address"
        );
    }
}

// --- auto ---

struct Auto {
    /// Holds the NoCloud candidates; none exists until a test writes it.
    dir: tempfile::TempDir,
}

impl Auto {
    fn new() -> Auto {
        Auto {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn nocloud_paths(&self) -> Vec<PathBuf> {
        vec![
            self.dir.path().join("etc/meta-data"),
            self.dir.path().join("seed/nocloud/meta-data"),
        ]
    }

    fn write_seed(&self, text: &str) -> PathBuf {
        let file = self.nocloud_paths()[1].clone();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        file
    }

    fn detect(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        hetzner_url: &str,
    ) -> Result<Identity, IdentityError> {
        identity::detect_with(&DetectOptions {
            nocloud_paths: self.nocloud_paths(),
            hetzner_url: hetzner_url.to_string(),
            http: quick(),
            ..DetectOptions::new(MetadataSource::Auto, env)
        })
    }
}

#[test]
fn auto_prefers_the_environment() {
    let auto = Auto::new();
    auto.write_seed("local-hostname: db-2\nprivate-ip: 10.1.0.122\n");
    let standin = standin_with(db_postgres_02());
    let found = auto
        .detect(
            &env_of(&[("NODEIMG_PRIVATE_IP", "10.1.0.123")]),
            &standin.url(),
        )
        .unwrap();
    assert_eq!(found.source, IdentitySource::Environment);
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn auto_then_a_nocloud_file_that_exists() {
    let auto = Auto::new();
    let file = auto.write_seed("local-hostname: db-2\nprivate-ip: 10.1.0.122\n");
    let standin = standin_with(db_postgres_02());
    let found = auto.detect(&no_env, &standin.url()).unwrap();
    assert_eq!(found.source, IdentitySource::NoCloud(file));
    assert_eq!(found.name.as_deref(), Some("db-2"));
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn auto_then_the_hetzner_service() {
    let auto = Auto::new();
    let standin = standin_with(db_postgres_02());
    let found = auto.detect(&no_env, &standin.url()).unwrap();
    assert_eq!(found.source, IdentitySource::Hetzner(standin.url()));
    assert_eq!(found.private_ips, ips(&["10.1.0.121", "192.168.7.2"]));
}

#[test]
fn auto_does_not_skip_a_source_that_is_present_but_wrong() {
    let auto = Auto::new();
    let standin = standin_with(db_postgres_02());
    let err = error_text(auto.detect(&env_of(&[("NODEIMG_PRIVATE_IP", "db-3")]), &standin.url()));
    assert!(
        err.starts_with("NODEIMG_PRIVATE_IP=\"db-3\" is not"),
        "{err}"
    );
    let file = auto.write_seed("private-ip: nowhere\n");
    let err = error_text(auto.detect(&no_env, &standin.url()));
    assert!(
        err.starts_with(&format!("{}: private-ip", file.display())),
        "{err}"
    );
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn auto_with_nothing_lists_every_source_tried_and_what_to_do() {
    let auto = Auto::new();
    let url = closed_port_url();
    let err = error_text(auto.detect(&no_env, &url));
    let [etc, seed] = [0, 1].map(|i| auto.nocloud_paths()[i].display().to_string());
    assert_eq!(
        err,
        format!(
            "no metadata source found: tried env NODEIMG_PRIVATE_IP and NODEIMG_NODE_NAME (unset), \
             {etc} (missing), {seed} (missing), {url}/hostname (connection refused); \
             set NODEIMG_PRIVATE_IP (and NODEIMG_NODE_NAME), mount a NoCloud meta-data file at \
             /etc/nodeimg/meta-data, or pass --metadata hetzner:URL"
        )
    );
    // A service that is there but knows nothing of this node: 404.
    let standin = HetznerStandIn::start(LOOPBACK);
    let err = error_text(auto.detect(&no_env, &standin.url()));
    assert!(
        err.contains(&format!(
            "{}/hostname (HTTP 404 Not Found); set NODEIMG_PRIVATE_IP",
            standin.url()
        )),
        "{err}"
    );
}

#[test]
fn auto_reports_a_service_that_never_answers() {
    let auto = Auto::new();
    let standin = standin_with(db_postgres_02());
    standin.fail_first(100);
    let err = error_text(auto.detect(&no_env, &standin.url()));
    assert!(
        err.contains(&format!(
            "{}/hostname (no answer after 4 attempts: HTTP 500 Internal Server Error)",
            standin.url()
        )),
        "{err}"
    );
}

#[test]
fn the_production_defaults() {
    // Only what the defaults are; nothing here touches the network.
    let options = DetectOptions::new(MetadataSource::Auto, &no_env);
    assert_eq!(
        options.hetzner_url,
        "http://169.254.169.254/hetzner/v1/metadata"
    );
    assert_eq!(
        options.nocloud_paths,
        [
            PathBuf::from("/etc/nodeimg/meta-data"),
            PathBuf::from("/var/lib/cloud/seed/nocloud/meta-data")
        ]
    );
    assert_eq!(options.http.attempts, 5);
}
