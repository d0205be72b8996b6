//! Node identity over real HTTP from the Hetzner metadata stand-in, and
//! the errors a node prints when no source can say who it is.

mod support {
    pub mod hetzner_metadata;
}

use std::net::Ipv4Addr;
use std::time::Duration;

use nodeimg::identity::{self, HttpPolicy, MetadataSource};
use support::hetzner_metadata::{HetznerStandIn, ServerDoc};

fn quick() -> HttpPolicy {
    HttpPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
    }
}

fn standin() -> HetznerStandIn {
    let standin = HetznerStandIn::start("127.0.0.1".parse().unwrap());
    standin.add_server(
        "127.0.0.1".parse().unwrap(),
        ServerDoc {
            hostname: "db-postgres-02".into(),
            instance_id: 4242,
            private_networks: vec![
                ("10.0.0.121".into(), "10.0.0.0/16".into()),
                ("192.168.0.2".into(), "192.168.0.0/16".into()),
            ],
        },
    );
    standin
}

#[test]
fn reads_name_and_every_private_ip_from_the_hetzner_service() {
    let standin = standin();
    let found =
        identity::detect(&MetadataSource::Hetzner(standin.url()), &|_| None, &quick()).unwrap();
    // The trailing newline of the plain-text leaves is not part of the name.
    assert_eq!(found.name.as_deref(), Some("db-postgres-02"));
    assert_eq!(found.instance_id.as_deref(), Some("4242"));
    let expected: Vec<Ipv4Addr> = vec![
        "10.0.0.121".parse().unwrap(),
        "192.168.0.2".parse().unwrap(),
    ];
    assert_eq!(found.private_ips, expected);
    assert!(found.source.contains(&standin.url()), "{}", found.source);
}

#[test]
fn retries_while_the_service_answers_500() {
    let standin = standin();
    standin.fail_first(2);
    let found =
        identity::detect(&MetadataSource::Hetzner(standin.url()), &|_| None, &quick()).unwrap();
    assert_eq!(found.name.as_deref(), Some("db-postgres-02"));
    // Two failures, then hostname, instance-id and private-networks.
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        5
    );
}

#[test]
fn gives_up_with_the_url_and_status_when_the_service_keeps_failing() {
    let standin = standin();
    standin.fail_first(100);
    let err = identity::detect(&MetadataSource::Hetzner(standin.url()), &|_| None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/hetzner/v1/metadata/hostname"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
}

#[test]
fn an_unknown_caller_gets_404_at_once() {
    let standin = HetznerStandIn::start("127.0.0.1".parse().unwrap());
    let err = identity::detect(&MetadataSource::Hetzner(standin.url()), &|_| None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 404"), "{err}");
    assert_eq!(
        standin.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_server_without_private_network_is_refused() {
    let standin = HetznerStandIn::start("127.0.0.1".parse().unwrap());
    standin.add_server(
        "127.0.0.1".parse().unwrap(),
        ServerDoc {
            hostname: "lonely".into(),
            instance_id: 1,
            private_networks: vec![],
        },
    );
    let err = identity::detect(&MetadataSource::Hetzner(standin.url()), &|_| None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no private network"), "{err}");
}

#[test]
fn nothing_listening_is_a_clear_error() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hetzner/v1/metadata");
    let err = identity::detect(&MetadataSource::Hetzner(url.clone()), &|_| None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url), "{err}");
}
