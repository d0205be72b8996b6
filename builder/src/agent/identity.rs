//! Who this node is: its name and private IPs, from the Hetzner metadata
//! service, a NoCloud-style `meta-data` file, or environment variables.
//! The node then finds itself in the cluster spec by IP (or name).
//!
//! What each source reads:
//!
//! - Hetzner (`--metadata hetzner` or `hetzner:URL`): `URL/hostname` and
//!   `URL/instance-id` (plain text, trailing newline trimmed) and
//!   `URL/private-networks` (the documented YAML list; every `ip` and every
//!   `alias_ips` entry is a private IP of this node, in document order).
//! - NoCloud (`--metadata nocloud:PATH`, PATH a `meta-data` file or a folder
//!   holding one): a YAML mapping with cloud-init's `instance-id` and
//!   `local-hostname`, plus nodeimg's own `private-ip` (NoCloud has no key
//!   for a private address), or a Hetzner-shaped `private-networks` list.
//!   One YAML format rather than a TOML identity file of our own: it is the
//!   seed operators already write for local VMs, and `nodeimg cloud-init`
//!   writes it too.
//! - Environment (`--metadata env`): `NODEIMG_PRIVATE_IP`, `NODEIMG_NODE_NAME`.
//! - `auto`: the environment if either variable is set, else the first
//!   NoCloud file that exists, else the Hetzner service.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Hetzner's metadata endpoint (documented; no authentication).
pub const HETZNER_URL: &str = "http://169.254.169.254/hetzner/v1/metadata";
/// Where `auto` looks for a NoCloud `meta-data` file, in this order.
pub const NOCLOUD_PATHS: &[&str] = &[
    "/etc/nodeimg/meta-data",
    "/var/lib/cloud/seed/nocloud/meta-data",
];
pub const ENV_NAME: &str = "NODEIMG_NODE_NAME";
pub const ENV_IP: &str = "NODEIMG_PRIVATE_IP";
/// The NoCloud key nodeimg adds for the node's private address.
pub const NOCLOUD_PRIVATE_IP_KEY: &str = "private-ip";

/// What every "cannot find out who I am" message ends with.
const WHAT_TO_DO: &str = "set NODEIMG_PRIVATE_IP (and NODEIMG_NODE_NAME), mount a NoCloud meta-data file at /etc/nodeimg/meta-data, or pass --metadata hetzner:URL";

/// Where the identity should come from (`--metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataSource {
    /// Environment, then a NoCloud file, then the Hetzner service.
    Auto,
    /// The Hetzner metadata service at this base URL.
    Hetzner(String),
    /// A `meta-data` file, or a folder holding one.
    NoCloud(PathBuf),
    Env,
}

impl std::str::FromStr for MetadataSource {
    type Err = String;

    fn from_str(text: &str) -> Result<MetadataSource, String> {
        match text {
            "auto" => Ok(MetadataSource::Auto),
            "env" => Ok(MetadataSource::Env),
            "hetzner" => Ok(MetadataSource::Hetzner(HETZNER_URL.into())),
            _ => {
                if let Some(url) = text.strip_prefix("hetzner:") {
                    Ok(MetadataSource::Hetzner(url.into()))
                } else if let Some(path) = text.strip_prefix("nocloud:") {
                    Ok(MetadataSource::NoCloud(path.into()))
                } else {
                    Err(format!(
                        "unknown metadata source {text:?}: use auto, env, hetzner, hetzner:URL or nocloud:PATH"
                    ))
                }
            }
        }
    }
}

/// Which source answered; its `Display` is what the boot log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Environment,
    /// The `meta-data` file that was read.
    NoCloud(PathBuf),
    /// The base URL of the service that answered.
    Hetzner(String),
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::Environment => write!(f, "environment ({ENV_IP}, {ENV_NAME})"),
            IdentitySource::NoCloud(file) => write!(f, "NoCloud meta-data {}", file.display()),
            IdentitySource::Hetzner(url) => write!(f, "Hetzner metadata service at {url}"),
        }
    }
}

/// Who this node is. `name` is the server's name (Hetzner `hostname`,
/// NoCloud `local-hostname`, or `NODEIMG_NODE_NAME`): on every source it is
/// also the host name, so there is no second field for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    /// Every private address, first network's first.
    pub private_ips: Vec<Ipv4Addr>,
    pub instance_id: Option<String>,
    pub source: IdentitySource,
}

/// One log line: `identity from Hetzner metadata service at URL: name
/// db-1, private IP 10.1.0.11, instance-id 42`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "identity from {}: ", self.source)?;
        match &self.name {
            Some(name) => write!(f, "name {name}")?,
            None => write!(f, "no name")?,
        }
        match self.private_ips.as_slice() {
            [] => write!(f, ", no private IP")?,
            [ip] => write!(f, ", private IP {ip}")?,
            ips => write!(f, ", private IPs {}", join_ips(ips))?,
        }
        if let Some(id) = &self.instance_id {
            write!(f, ", instance-id {id}")?;
        }
        Ok(())
    }
}

fn join_ips(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Nothing listens there, or it does not know the path: not Hetzner.
    #[error(
        "{url}: {answer}: no Hetzner metadata service here (not a Hetzner Cloud server, or a wrong --metadata hetzner:URL); {WHAT_TO_DO}"
    )]
    NotHetzner { url: String, answer: String },
    #[error(
        "{url}: no answer after {attempts} attempts (last: {last}); the metadata service can be slow right after boot: check the server's network and start the node again, or {WHAT_TO_DO}"
    )]
    Unavailable {
        url: String,
        attempts: u32,
        last: String,
    },
    /// A document that was read but does not say what it should.
    #[error("{document}: {problem}")]
    Malformed { document: String, problem: String },
    #[error(
        "{path}: cannot read the NoCloud meta-data: {error}; mount it there, or point --metadata nocloud:PATH at it"
    )]
    Unreadable {
        path: PathBuf,
        // Not `source`: the message already says it, a chain would repeat it.
        error: std::io::Error,
    },
    #[error(
        "{variable}={value:?} is not an IPv4 address: set it to this node's private IPv4 address as the cluster spec lists it"
    )]
    BadEnvironment { variable: String, value: String },
    #[error(
        "--metadata env, but neither {ENV_IP} nor {ENV_NAME} is set: set {ENV_IP} to this node's private IPv4 address"
    )]
    EnvironmentUnset,
    #[error("no metadata source found: tried {}; {WHAT_TO_DO}", tried.join(", "))]
    NoneFound {
        /// Each source tried, with why it did not answer.
        tried: Vec<String>,
    },
}

/// How the Hetzner client waits: the service can be slow right after boot.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Tries per document (HTTP 5xx, timeouts, unreachable network).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each next one.
    pub first_backoff: Duration,
    /// To open the connection: the service is on the host, link-local.
    pub connect_timeout: Duration,
    /// For one whole request, body included.
    pub timeout: Duration,
}

impl Default for HttpPolicy {
    /// 5 tries 0.5 s, 1 s, 2 s, 4 s apart: a node off Hetzner whose
    /// 169.254.169.254 swallows packets gives up after about 13 s (5 connect
    /// timeouts and the waits); one that accepts but never answers, 23 s.
    fn default() -> HttpPolicy {
        HttpPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Everything [`detect_with`] consults; [`DetectOptions::new`] gives the
/// production defaults, tests point the paths and URL elsewhere.
pub struct DetectOptions<'a> {
    pub source: MetadataSource,
    /// Reads an environment variable (see [`process_env`]).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The `meta-data` files `auto` looks for, in order.
    pub nocloud_paths: Vec<PathBuf>,
    /// The service `auto` asks last.
    pub hetzner_url: String,
    pub http: HttpPolicy,
}

impl<'a> DetectOptions<'a> {
    pub fn new(
        source: MetadataSource,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> DetectOptions<'a> {
        DetectOptions {
            source,
            env,
            nocloud_paths: NOCLOUD_PATHS.iter().map(PathBuf::from).collect(),
            hetzner_url: HETZNER_URL.to_string(),
            http: HttpPolicy::default(),
        }
    }
}

/// The process environment, an empty value counting as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Finds the identity from `source` with the default NoCloud paths and
/// Hetzner URL; `env` reads environment variables.
pub fn detect(
    source: &MetadataSource,
    env: &dyn Fn(&str) -> Option<String>,
    policy: &HttpPolicy,
) -> Result<Identity, IdentityError> {
    detect_with(&DetectOptions {
        http: policy.clone(),
        ..DetectOptions::new(source.clone(), env)
    })
}

/// Finds the identity as `options` say. In `auto`, a source that is
/// present but wrong (a bad `NODEIMG_PRIVATE_IP`, a malformed meta-data
/// file, a Hetzner document that does not parse) is an error, not a
/// reason to try the next one: falling through would hide the mistake.
pub fn detect_with(options: &DetectOptions<'_>) -> Result<Identity, IdentityError> {
    match &options.source {
        MetadataSource::Env => {
            from_env(options.env).unwrap_or(Err(IdentityError::EnvironmentUnset))
        }
        MetadataSource::NoCloud(path) => from_nocloud(path),
        MetadataSource::Hetzner(url) => from_hetzner(url, &options.http),
        MetadataSource::Auto => {
            if let Some(found) = from_env(options.env) {
                return found;
            }
            let mut tried = vec![format!("env {ENV_IP} and {ENV_NAME} (unset)")];
            for path in &options.nocloud_paths {
                if path.exists() {
                    return from_nocloud(path);
                }
                tried.push(format!("{} (missing)", path.display()));
            }
            match from_hetzner(&options.hetzner_url, &options.http) {
                Err(IdentityError::NotHetzner { url, answer }) => {
                    tried.push(format!("{url} ({answer})"))
                }
                Err(IdentityError::Unavailable {
                    url,
                    attempts,
                    last,
                }) => tried.push(format!(
                    "{url} (no answer after {attempts} attempts: {last})"
                )),
                answered => return answered,
            }
            Err(IdentityError::NoneFound { tried })
        }
    }
}

/// `None` when neither variable is set.
fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Result<Identity, IdentityError>> {
    let set = |variable: &str| env(variable).filter(|value| !value.trim().is_empty());
    let (ip, name) = (set(ENV_IP), set(ENV_NAME));
    if ip.is_none() && name.is_none() {
        return None;
    }
    let mut private_ips = Vec::new();
    if let Some(ip) = ip {
        match ip.trim().parse() {
            Ok(ip) => private_ips.push(ip),
            Err(_) => {
                return Some(Err(IdentityError::BadEnvironment {
                    variable: ENV_IP.to_string(),
                    value: ip,
                }));
            }
        }
    }
    Some(Ok(Identity {
        name: name.map(|name| name.trim().to_string()),
        private_ips,
        instance_id: None,
        source: IdentitySource::Environment,
    }))
}

fn from_nocloud(path: &Path) -> Result<Identity, IdentityError> {
    let file = if path.is_dir() {
        path.join("meta-data")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|error| IdentityError::Unreadable {
        path: file.clone(),
        error,
    })?;
    let meta_data = parse_nocloud(&text, &file.display().to_string())?;
    Ok(Identity {
        source: IdentitySource::NoCloud(file),
        ..meta_data
    })
}

/// A NoCloud `meta-data` document; `document` names it in errors.
fn parse_nocloud(text: &str, document: &str) -> Result<Identity, IdentityError> {
    let malformed = |problem: String| IdentityError::Malformed {
        document: document.to_string(),
        problem,
    };
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|err| malformed(format!("not valid YAML: {err}")))?;
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => {
            return Err(malformed(format!(
                "is empty: write at least `local-hostname: <name>` and `{NOCLOUD_PRIVATE_IP_KEY}: <this node's private IPv4 address>`"
            )));
        }
        _ => {
            return Err(malformed(
                "is not a YAML mapping (instance-id, local-hostname, private-ip)".into(),
            ));
        }
    };
    let scalar = |key: &str| -> Result<Option<String>, IdentityError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(_) => Err(malformed(format!("{key} is not a single value"))),
        }
    };
    let name = scalar("local-hostname")?.filter(|name| !name.is_empty());
    let instance_id = scalar("instance-id")?;
    let mut private_ips = Vec::new();
    if let Some(ip) = scalar(NOCLOUD_PRIVATE_IP_KEY)? {
        let ip = ip.parse().map_err(|_| {
            malformed(format!(
                "{NOCLOUD_PRIVATE_IP_KEY} {ip:?} is not an IPv4 address"
            ))
        })?;
        private_ips.push(ip);
    }
    if let Some(networks) = map.get("private-networks") {
        let networks = serde_yaml_ng::from_value::<Option<Vec<PrivateNetwork>>>(networks.clone())
            .map_err(|err| {
                malformed(format!(
                    "private-networks is not Hetzner's list of networks: {err}"
                ))
            })?
            .unwrap_or_default();
        private_ips.extend(addresses(&networks).map_err(malformed)?);
    }
    if name.is_none() && private_ips.is_empty() {
        return Err(malformed(format!(
            "names neither local-hostname nor {NOCLOUD_PRIVATE_IP_KEY}: add `{NOCLOUD_PRIVATE_IP_KEY}: <this node's private IPv4 address>`"
        )));
    }
    Ok(Identity {
        name,
        private_ips,
        instance_id,
        source: IdentitySource::NoCloud(PathBuf::from(document)),
    })
}

/// One entry of Hetzner's `private-networks` document; the other fields
/// (mac_address, network, gateway, ...) say nothing about who we are.
#[derive(Debug, Deserialize)]
struct PrivateNetwork {
    ip: String,
    #[serde(default)]
    alias_ips: Vec<String>,
    #[serde(default)]
    network_name: Option<String>,
}

/// Hetzner's `private-networks` document: every address it lists.
fn parse_private_networks(text: &str, document: &str) -> Result<Vec<Ipv4Addr>, IdentityError> {
    let malformed = |problem: String| IdentityError::Malformed {
        document: document.to_string(),
        problem,
    };
    // A server on no network may get an empty body rather than `[]`.
    let networks: Vec<PrivateNetwork> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml_ng::from_str::<Option<Vec<PrivateNetwork>>>(text)
            .map_err(|err| {
                malformed(format!(
                    "not the documented YAML list of private networks: {err}"
                ))
            })?
            .unwrap_or_default()
    };
    let ips = addresses(&networks).map_err(malformed)?;
    if ips.is_empty() {
        return Err(malformed(
            "lists no private network: attach the server to the cluster's network (hcloud server attach-to-network)".into(),
        ));
    }
    Ok(ips)
}

fn addresses(networks: &[PrivateNetwork]) -> Result<Vec<Ipv4Addr>, String> {
    let mut ips = Vec::new();
    for (index, network) in networks.iter().enumerate() {
        let which = match &network.network_name {
            Some(name) => format!("network {name}"),
            None => format!("network {}", index + 1),
        };
        for text in std::iter::once(&network.ip).chain(&network.alias_ips) {
            let ip = text
                .trim()
                .parse()
                .map_err(|_| format!("{which}: {text:?} is not an IPv4 address"))?;
            ips.push(ip);
        }
    }
    Ok(ips)
}

fn from_hetzner(base: &str, policy: &HttpPolicy) -> Result<Identity, IdentityError> {
    let base = base.trim_end_matches('/');
    let client = MetadataClient::new(policy);
    // The first answer decides whether there is a Hetzner service at all.
    let hostname = client.get(&format!("{base}/hostname"))?;
    let leaf = |name: &str| {
        let url = format!("{base}/{name}");
        match client.get(&url) {
            Ok(text) => Ok((url, text)),
            // The service answered `hostname`, so a 404 here is no longer
            // "not Hetzner": the document itself is missing.
            Err(IdentityError::NotHetzner { url, answer }) => Err(IdentityError::Malformed {
                document: url,
                problem: format!(
                    "{answer}, though {base}/hostname answered: a Hetzner metadata service serves both; check the --metadata URL"
                ),
            }),
            Err(err) => Err(err),
        }
    };
    let (_, instance_id) = leaf("instance-id")?;
    let (networks_url, networks) = leaf("private-networks")?;
    let private_ips = parse_private_networks(&networks, &networks_url)?;
    let non_empty = |text: &str| Some(text.trim().to_string()).filter(|text| !text.is_empty());
    Ok(Identity {
        name: non_empty(&hostname),
        private_ips,
        instance_id: non_empty(&instance_id),
        source: IdentitySource::Hetzner(base.to_string()),
    })
}

struct MetadataClient<'a> {
    agent: ureq::Agent,
    policy: &'a HttpPolicy,
}

/// Why one try failed.
enum TryFailure {
    /// Nothing listens, or a 4xx: asking again will not help.
    NotHere(String),
    /// 5xx, timeouts, an unreachable network: worth another try.
    Transient(String),
}

impl<'a> MetadataClient<'a> {
    fn new(policy: &'a HttpPolicy) -> MetadataClient<'a> {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.timeout))
            .http_status_as_error(false)
            // ureq honours HTTP_PROXY by default; the metadata service is
            // link-local, a proxy would answer for its own host.
            .proxy(None)
            .build()
            .new_agent();
        MetadataClient { agent, policy }
    }

    /// GET with retries on transient failures, backing off exponentially.
    fn get(&self, url: &str) -> Result<String, IdentityError> {
        let attempts = self.policy.attempts.max(1);
        let mut backoff = self.policy.first_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.try_once(url) {
                Ok(text) => return Ok(text),
                Err(TryFailure::NotHere(answer)) => {
                    return Err(IdentityError::NotHetzner {
                        url: url.to_string(),
                        answer,
                    });
                }
                Err(TryFailure::Transient(why)) => last = why,
            }
            if attempt < attempts {
                tracing::debug!("{url}: {last}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff *= 2;
            }
        }
        Err(IdentityError::Unavailable {
            url: url.to_string(),
            attempts,
            last,
        })
    }

    fn try_once(&self, url: &str) -> Result<String, TryFailure> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|err| self.describe(err))?;
        let status = response.status();
        if status.is_success() {
            return response
                .body_mut()
                .read_to_string()
                .map_err(|err| self.describe(err));
        }
        let answer = format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string();
        if status.is_client_error() {
            Err(TryFailure::NotHere(answer))
        } else {
            Err(TryFailure::Transient(answer))
        }
    }

    fn describe(&self, err: ureq::Error) -> TryFailure {
        match err {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                TryFailure::NotHere("connection refused".into())
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => TryFailure::Transient(format!(
                "no connection within {:?}",
                self.policy.connect_timeout
            )),
            ureq::Error::Timeout(_) => TryFailure::Transient(format!(
                "timed out: no complete answer within {:?}",
                self.policy.timeout
            )),
            other => TryFailure::Transient(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in Hetzner's API reference and hcloud-go's tests.
    const DOCUMENTED_PRIVATE_NETWORKS: &str = "\
- ip: 10.0.0.2
  alias_ips: [10.0.0.3, 10.0.0.4]
  interface_num: 1
  mac_address: 86:00:00:2a:7d:e0
  network_id: 1234
  network_name: nw-test1
  network: 10.0.0.0/8
  subnet: 10.0.0.0/24
  gateway: 10.0.0.1
- ip: 192.168.0.2
  alias_ips: []
  interface_num: 2
  mac_address: 86:00:00:2a:7d:e1
  network_id: 4321
  network_name: nw-test2
  network: 192.168.0.0/16
  subnet: 192.168.0.0/24
  gateway: 192.168.0.1
";

    fn ips(texts: &[&str]) -> Vec<Ipv4Addr> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn parses_source_names() {
        assert_eq!("auto".parse(), Ok(MetadataSource::Auto));
        assert_eq!("env".parse(), Ok(MetadataSource::Env));
        assert_eq!(
            "hetzner".parse(),
            Ok(MetadataSource::Hetzner(HETZNER_URL.into()))
        );
        assert_eq!(
            "hetzner:http://127.0.0.1:9/x".parse(),
            Ok(MetadataSource::Hetzner("http://127.0.0.1:9/x".into()))
        );
        assert_eq!(
            "nocloud:/seed".parse(),
            Ok(MetadataSource::NoCloud("/seed".into()))
        );
        let err = "aws".parse::<MetadataSource>().unwrap_err();
        assert!(
            err.contains("\"aws\"") && err.contains("nocloud:PATH"),
            "{err}"
        );
    }

    #[test]
    fn every_address_of_the_documented_private_networks() {
        let found = parse_private_networks(DOCUMENTED_PRIVATE_NETWORKS, "doc").unwrap();
        assert_eq!(
            found,
            ips(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "192.168.0.2"])
        );
    }

    #[test]
    fn private_networks_that_say_nothing_usable_are_refused() {
        for empty in ["", "\n", "[]\n", "null\n"] {
            let err = parse_private_networks(empty, "URL/private-networks")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("URL/private-networks: lists no private network"),
                "{empty:?}: {err}"
            );
        }
        let bad_ip = DOCUMENTED_PRIVATE_NETWORKS.replace("10.0.0.4", "10.0.0.400");
        let err = parse_private_networks(&bad_ip, "URL/private-networks")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "URL/private-networks: network nw-test1: \"10.0.0.400\" is not an IPv4 address"
        );
        let err = parse_private_networks("hostname: db-1\n", "URL/private-networks")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not the documented YAML list of private networks"),
            "{err}"
        );
    }

    #[test]
    fn nocloud_meta_data_as_nodeimg_cloud_init_writes_it() {
        let text = crate::ship::cloud_init::nocloud_meta_data("db-2", "10.1.0.12".parse().unwrap());
        let found = parse_nocloud(&text, "meta-data").unwrap();
        assert_eq!(found.name.as_deref(), Some("db-2"));
        assert_eq!(found.instance_id.as_deref(), Some("db-2"));
        assert_eq!(found.private_ips, ips(&["10.1.0.12"]));
    }

    #[test]
    fn nocloud_meta_data_with_numbers_and_a_hetzner_network_list() {
        let text = format!(
            "instance-id: 42\nlocal-hostname: db-3\nprivate-networks:\n{}",
            DOCUMENTED_PRIVATE_NETWORKS
                .lines()
                .map(|line| format!("  {line}\n"))
                .collect::<String>()
        );
        let found = parse_nocloud(&text, "meta-data").unwrap();
        assert_eq!(found.instance_id.as_deref(), Some("42"));
        assert_eq!(found.private_ips.len(), 4);
    }

    #[test]
    fn one_log_line_names_source_name_and_addresses() {
        let identity = Identity {
            name: Some("db-1".into()),
            private_ips: ips(&["10.1.0.11"]),
            instance_id: Some("4242".into()),
            source: IdentitySource::Hetzner("http://127.0.0.1:1/hetzner/v1/metadata".into()),
        };
        assert_eq!(
            identity.to_string(),
            "identity from Hetzner metadata service at http://127.0.0.1:1/hetzner/v1/metadata: name db-1, private IP 10.1.0.11, instance-id 4242"
        );
        let identity = Identity {
            name: None,
            private_ips: ips(&["10.1.0.11", "10.2.0.11"]),
            instance_id: None,
            source: IdentitySource::Environment,
        };
        assert_eq!(
            identity.to_string(),
            "identity from environment (NODEIMG_PRIVATE_IP, NODEIMG_NODE_NAME): no name, private IPs 10.1.0.11, 10.2.0.11"
        );
    }
}
