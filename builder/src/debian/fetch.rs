//! Downloads over HTTP(S) with retries and exponential backoff, and reads
//! `file://` URLs from disk (local mirrors, air-gapped package sources).

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use thiserror::Error;

/// Index and package files are large but bounded; this guards against a
/// misbehaving mirror streaming forever.
const MAX_DOWNLOAD_BYTES: u64 = 2 << 30;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{url}: not found (HTTP 404): check the source's url and suite in the recipe")]
    NotFound { url: String },
    #[error(
        "{url}: HTTP {status} after {attempts} attempts: the mirror is failing; try again later or use another mirror"
    )]
    Status {
        url: String,
        status: u16,
        attempts: u32,
    },
    #[error(
        "{url}: {reason} (after {attempts} attempts): the mirror is unreachable; check the network or use --offline with a filled cache"
    )]
    Unreachable {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error("{path}: {source}")]
    LocalFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a conditional download returned.
pub enum Fetched {
    Body {
        bytes: Vec<u8>,
        last_modified: Option<String>,
    },
    NotModified,
}

#[derive(Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    attempts: u32,
    first_backoff: Duration,
    /// Where snapshot archives are (`debian::snapshot`): files a mirror no
    /// longer serves are asked there.
    snapshot_base: String,
}

impl Fetcher {
    /// `attempts` is the total number of tries per URL (at least 1);
    /// waits double after each failure, starting at `first_backoff`.
    pub fn new(attempts: u32, first_backoff: Duration) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("nodeimg/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            attempts: attempts.max(1),
            first_backoff,
            snapshot_base: crate::debian::snapshot::DEFAULT_BASE.to_string(),
        }
    }

    /// Another snapshot archive than snapshot.debian.org (an internal
    /// mirror with the same layout, or a `file://` folder).
    pub fn with_snapshot_base(mut self, base: &str) -> Fetcher {
        self.snapshot_base = base.trim_end_matches('/').to_string();
        self
    }

    pub fn snapshot_base(&self) -> &str {
        &self.snapshot_base
    }

    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        match self.get_if_modified(url, None)? {
            Fetched::Body { bytes, .. } => Ok(bytes),
            Fetched::NotModified => unreachable!("no If-Modified-Since was sent"),
        }
    }

    /// GET with `If-Modified-Since` when `since` is given, so an unchanged
    /// index costs one small round trip.
    pub fn get_if_modified(&self, url: &str, since: Option<&str>) -> Result<Fetched, FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            let bytes = std::fs::read(path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => FetchError::NotFound {
                    url: url.to_string(),
                },
                _ => FetchError::LocalFile {
                    path: path.into(),
                    source,
                },
            })?;
            return Ok(Fetched::Body {
                bytes,
                last_modified: None,
            });
        }
        let mut wait = self.first_backoff;
        let mut attempt = 1;
        loop {
            let failure = match self.try_once(url, since) {
                Ok(fetched) => return Ok(fetched),
                Err(Attempt::Final(err)) => return Err(err),
                Err(Attempt::Retry(failure)) => failure,
            };
            if attempt >= self.attempts {
                return Err(match failure {
                    Failure::Status(status) => FetchError::Status {
                        url: url.to_string(),
                        status,
                        attempts: attempt,
                    },
                    Failure::Transport(reason) => FetchError::Unreachable {
                        url: url.to_string(),
                        reason,
                        attempts: attempt,
                    },
                });
            }
            tracing::warn!(
                "{url}: {}; retrying in {:.1}s (attempt {}/{})",
                failure.describe(),
                wait.as_secs_f64(),
                attempt + 1,
                self.attempts
            );
            thread::sleep(wait);
            wait *= 2;
            attempt += 1;
        }
    }

    fn try_once(&self, url: &str, since: Option<&str>) -> Result<Fetched, Attempt> {
        let mut request = self.agent.get(url);
        if let Some(since) = since {
            request = request.header("If-Modified-Since", since);
        }
        let mut response = request
            .call()
            .map_err(|err| Attempt::Retry(Failure::Transport(err.to_string())))?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let last_modified = response
                    .headers()
                    .get("last-modified")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bytes = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_DOWNLOAD_BYTES)
                    .read_to_vec()
                    .map_err(|err| Attempt::Retry(Failure::Transport(err.to_string())))?;
                Ok(Fetched::Body {
                    bytes,
                    last_modified,
                })
            }
            304 => Ok(Fetched::NotModified),
            404 | 410 => Err(Attempt::Final(FetchError::NotFound {
                url: url.to_string(),
            })),
            // Client errors other than timeouts and rate limits will not heal
            // by retrying.
            400..=499 if status != 408 && status != 429 => {
                Err(Attempt::Final(FetchError::Status {
                    url: url.to_string(),
                    status,
                    attempts: 1,
                }))
            }
            _ => Err(Attempt::Retry(Failure::Status(status))),
        }
    }
}

enum Attempt {
    Retry(Failure),
    Final(FetchError),
}

enum Failure {
    Status(u16),
    Transport(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Status(status) => format!("HTTP {status}"),
            Failure::Transport(reason) => reason.clone(),
        }
    }
}
