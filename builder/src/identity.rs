//! Who this node is: its name and private IP, from the Hetzner metadata
//! service, a NoCloud-style `meta-data` file, or environment variables.
//! The node then finds itself in the cluster spec by IP (or name).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Hetzner's metadata endpoint (documented; no authentication).
pub const HETZNER_URL: &str = "http://169.254.169.254/hetzner/v1/metadata";
/// Where a NoCloud seed or a mounted identity is looked for by default.
pub const NOCLOUD_PATHS: &[&str] = &[
    "/etc/nodeimg/meta-data",
    "/var/lib/cloud/seed/nocloud/meta-data",
];
pub const ENV_NAME: &str = "NODEIMG_NODE_NAME";
pub const ENV_IP: &str = "NODEIMG_PRIVATE_IP";

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    pub private_ips: Vec<Ipv4Addr>,
    pub instance_id: Option<String>,
    /// Which source answered, for the log: `Hetzner metadata service at …`.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{url}: {err}")]
    Http { url: String, err: String },
    #[error("{what}: {err}")]
    Document { what: String, err: String },
    #[error("{0}: cannot read it: {1}")]
    File(PathBuf, std::io::Error),
    #[error(
        "no metadata source answered: {0}; set {ENV_IP} (and {ENV_NAME}), mount a meta-data file at {first}, or run on Hetzner",
        first = NOCLOUD_PATHS[0]
    )]
    NoneFound(String),
}

/// How the Hetzner client waits: the service can be slow right after boot.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for HttpPolicy {
    fn default() -> HttpPolicy {
        HttpPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Finds the identity from `source`; `env` reads environment variables.
pub fn detect(
    source: &MetadataSource,
    env: &dyn Fn(&str) -> Option<String>,
    policy: &HttpPolicy,
) -> Result<Identity, IdentityError> {
    match source {
        MetadataSource::Env => from_env(env)
            .unwrap_or_else(|| Err(IdentityError::NoneFound(format!("{ENV_IP} is not set")))),
        MetadataSource::NoCloud(path) => from_nocloud(path),
        MetadataSource::Hetzner(url) => from_hetzner(url, policy),
        MetadataSource::Auto => {
            let mut tried = Vec::new();
            if let Some(found) = from_env(env) {
                return found;
            }
            tried.push(format!("{ENV_IP} (unset)"));
            for path in NOCLOUD_PATHS {
                if Path::new(path).exists() {
                    return from_nocloud(Path::new(path));
                }
                tried.push(format!("{path} (missing)"));
            }
            // Off Hetzner the address does not answer: one quick try.
            let quick = HttpPolicy {
                attempts: 2,
                ..policy.clone()
            };
            match from_hetzner(HETZNER_URL, &quick) {
                Ok(identity) => Ok(identity),
                Err(err) => {
                    tried.push(err.to_string());
                    Err(IdentityError::NoneFound(tried.join("; ")))
                }
            }
        }
    }
}

fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Result<Identity, IdentityError>> {
    let ip = env(ENV_IP);
    let name = env(ENV_NAME).filter(|n| !n.is_empty());
    if ip.is_none() && name.is_none() {
        return None;
    }
    let private_ips = match ip.map(|ip| parse_ip(&ip, ENV_IP)).transpose() {
        Ok(ip) => ip.into_iter().collect(),
        Err(err) => return Some(Err(err)),
    };
    Some(Ok(Identity {
        name,
        private_ips,
        instance_id: None,
        source: format!("environment ({ENV_IP}, {ENV_NAME})"),
    }))
}

fn parse_ip(text: &str, what: &str) -> Result<Ipv4Addr, IdentityError> {
    text.trim().parse().map_err(|_| IdentityError::Document {
        what: what.to_string(),
        err: format!("{text:?} is not an IPv4 address"),
    })
}

/// The NoCloud `meta-data` keys nodeimg reads. `private-ip` is nodeimg's
/// own key (NoCloud has none for a private network address).
#[derive(Debug, Deserialize)]
struct NoCloudMetaData {
    #[serde(rename = "instance-id")]
    instance_id: Option<serde_yaml_ng::Value>,
    #[serde(rename = "local-hostname")]
    local_hostname: Option<String>,
    #[serde(rename = "private-ip")]
    private_ip: Option<String>,
}

fn from_nocloud(path: &Path) -> Result<Identity, IdentityError> {
    let file = if path.is_dir() {
        path.join("meta-data")
    } else {
        path.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&file).map_err(|err| IdentityError::File(file.clone(), err))?;
    let doc: NoCloudMetaData =
        serde_yaml_ng::from_str(&text).map_err(|err| IdentityError::Document {
            what: file.display().to_string(),
            err: err.to_string(),
        })?;
    let what = format!("{} private-ip", file.display());
    let private_ips = doc
        .private_ip
        .map(|ip| parse_ip(&ip, &what))
        .transpose()?
        .into_iter()
        .collect();
    Ok(Identity {
        name: doc.local_hostname,
        private_ips,
        instance_id: doc.instance_id.map(|v| scalar_text(&v)),
        source: format!("NoCloud meta-data {}", file.display()),
    })
}

fn scalar_text(value: &serde_yaml_ng::Value) -> String {
    match value {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// One entry of Hetzner's `private-networks` document.
#[derive(Debug, Deserialize)]
struct PrivateNetwork {
    ip: String,
    #[serde(default)]
    alias_ips: Vec<String>,
}

fn from_hetzner(base: &str, policy: &HttpPolicy) -> Result<Identity, IdentityError> {
    let base = base.trim_end_matches('/');
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(policy.timeout))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let hostname = get(&agent, &format!("{base}/hostname"), policy)?;
    let instance_id = get(&agent, &format!("{base}/instance-id"), policy)?;
    let networks_url = format!("{base}/private-networks");
    let networks_text = get(&agent, &networks_url, policy)?;
    let networks: Vec<PrivateNetwork> =
        serde_yaml_ng::from_str(&networks_text).map_err(|err| IdentityError::Document {
            what: networks_url.clone(),
            err: err.to_string(),
        })?;
    let mut private_ips = Vec::new();
    for network in &networks {
        private_ips.push(parse_ip(&network.ip, &networks_url)?);
        for alias in &network.alias_ips {
            private_ips.push(parse_ip(alias, &networks_url)?);
        }
    }
    if private_ips.is_empty() {
        return Err(IdentityError::Document {
            what: networks_url,
            err: "the server is attached to no private network: attach it to the cluster's network"
                .into(),
        });
    }
    Ok(Identity {
        name: Some(hostname.trim().to_string()).filter(|n| !n.is_empty()),
        private_ips,
        instance_id: Some(instance_id.trim().to_string()),
        source: format!("Hetzner metadata service at {base}"),
    })
}

/// GET with retries on connection errors and 5xx; 404 is final.
fn get(agent: &ureq::Agent, url: &str, policy: &HttpPolicy) -> Result<String, IdentityError> {
    let mut backoff = policy.first_backoff;
    let mut last = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        match agent.get(url).call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if status == 200 {
                    return response.body_mut().read_to_string().map_err(|err| {
                        IdentityError::Http {
                            url: url.to_string(),
                            err: err.to_string(),
                        }
                    });
                }
                last = format!("HTTP {status}");
                if status < 500 {
                    break;
                }
            }
            Err(err) => last = err.to_string(),
        }
        if attempt < policy.attempts {
            tracing::debug!("{url}: {last}; retrying in {}ms", backoff.as_millis());
            std::thread::sleep(backoff);
            backoff *= 2;
        }
    }
    Err(IdentityError::Http {
        url: url.to_string(),
        err: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_names() {
        assert_eq!("auto".parse(), Ok(MetadataSource::Auto));
        assert_eq!(
            "hetzner:http://127.0.0.1:9/x".parse(),
            Ok(MetadataSource::Hetzner("http://127.0.0.1:9/x".into()))
        );
        assert_eq!(
            "nocloud:/seed".parse(),
            Ok(MetadataSource::NoCloud("/seed".into()))
        );
        assert!(
            "aws"
                .parse::<MetadataSource>()
                .unwrap_err()
                .contains("hetzner")
        );
    }

    #[test]
    fn environment_and_nocloud_sources() {
        let env = |name: &str| match name {
            ENV_IP => Some("10.0.0.121".to_string()),
            _ => None,
        };
        let identity = detect(&MetadataSource::Env, &env, &HttpPolicy::default()).unwrap();
        assert_eq!(
            identity.private_ips,
            ["10.0.0.121".parse::<Ipv4Addr>().unwrap()]
        );
        let bad = |name: &str| (name == ENV_IP).then(|| "10.0.0".to_string());
        let err = detect(&MetadataSource::Env, &bad, &HttpPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("NODEIMG_PRIVATE_IP"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meta-data"),
            "instance-id: 42\nlocal-hostname: db-2\nprivate-ip: 10.0.0.122\n",
        )
        .unwrap();
        let seed = MetadataSource::NoCloud(dir.path().to_path_buf());
        let identity = detect(&seed, &|_| None, &HttpPolicy::default()).unwrap();
        assert_eq!(identity.name.as_deref(), Some("db-2"));
        assert_eq!(identity.instance_id.as_deref(), Some("42"));
        std::fs::write(dir.path().join("meta-data"), "private-ip: [oops\n").unwrap();
        let err = detect(&seed, &|_| None, &HttpPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("meta-data"), "{err}");
    }
}
