//! A client of the OCI distribution API, just enough to push one image:
//! blob existence checks, monolithic or chunked uploads, the manifest put
//! with the exact bytes that were built, Basic and Bearer authentication,
//! and retries of what may heal (connection errors, 429, 5xx).

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(
        "{text:?} is not a push target: {reason} (expected HOST[:PORT]/REPOSITORY:TAG, e.g. registry.example.com/pg/db:17)"
    )]
    BadReference { text: String, reason: String },
    #[error("{method} {url}: {err}")]
    Transport {
        method: String,
        url: String,
        err: String,
    },
    #[error("{method} {url}: the registry answered {status}{detail}")]
    Status {
        method: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{url}: the registry wants credentials ({challenge}): set NODEIMG_REGISTRY_USERNAME and NODEIMG_REGISTRY_PASSWORD, or pass --username and --password-stdin"
    )]
    NeedsCredentials { url: String, challenge: String },
    #[error("{url}: the registry refused the credentials{detail}")]
    Unauthorized { url: String, detail: String },
    #[error("{url}: unsupported authentication challenge {challenge:?}")]
    BadChallenge { url: String, challenge: String },
    #[error(
        "blob {digest} is damaged ({path} hashes to {actual}): rebuild the image; nothing was pushed"
    )]
    DamagedBlob {
        digest: String,
        path: String,
        actual: String,
    },
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("the registry stored the manifest as {actual}, not {expected}: it rewrote the bytes")]
    DigestChanged { expected: String, actual: String },
}

/// Where to push: `host[:port]/repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::BadReference {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        if text.contains('@') {
            return Err(bad("a digest cannot be pushed to; name a tag"));
        }
        let (registry, rest) = text
            .split_once('/')
            .ok_or_else(|| bad("no registry host"))?;
        // Docker's rule: a first part with a '.' or a ':' (or localhost) is a
        // host; anything else would silently mean Docker Hub.
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad("the part before the first / must be a registry host"));
        }
        if !host_ok(registry) {
            return Err(bad(
                "the registry host is letters, digits, '.' and '-' (or [IPv6]), with an optional :PORT",
            ));
        }
        let (repository, tag) = rest
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .ok_or_else(|| bad("no :TAG"))?;
        if !repository_ok(repository) {
            return Err(bad(
                "repository path parts are lowercase letters and digits, joined by '.', '_', '__' or '-'",
            ));
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let tag_ok = tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !tag_ok {
            return Err(bad(
                "a tag is up to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            ));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }

    /// Loopback registries speak plain HTTP (as Docker assumes for them).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `host[:port]`: DNS labels or an IPv4 address, or `[IPv6]`.
fn host_ok(registry: &str) -> bool {
    let (host, port) = match registry.rfind(':') {
        Some(i) if !registry[i..].contains(']') => (&registry[..i], Some(&registry[i + 1..])),
        _ => (registry, None),
    };
    let port_ok = port.is_none_or(|p| {
        p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0)
    });
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.split('.').all(label_ok),
    };
    port_ok && host_ok
}

/// A repository path: `/`-separated parts of the distribution grammar.
pub fn repository_ok(repository: &str) -> bool {
    repository.split('/').all(path_component_ok)
}

/// One part of a repository path, as the distribution grammar has it:
/// `[a-z0-9]+` runs joined by one '.', one or two '_', or any '-'s.
fn path_component_ok(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    part.starts_with(alnum)
        && part.ends_with(alnum)
        && part
            .split(alnum)
            .filter(|sep| !sep.is_empty())
            .all(|sep| sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-'))
}

pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// One authentication challenge from `WWW-Authenticate`.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = Vec::new();
        while let Some((key, after)) = rest.split_once('=') {
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            params.push((key, value.to_string()));
            rest = tail;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Resolves an upload `Location` against the registry and adds a query
/// parameter, keeping the query the registry put there (its upload state).
pub fn upload_url(base: &str, location: &str, query: Option<(&str, &str)>) -> String {
    let mut url = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    };
    if let Some((key, value)) = query {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{key}={value}"));
    }
    url
}

/// What one push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
}

/// How a blob reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Mounted from another repository: no bytes sent.
    Mounted,
    /// Uploaded; `chunks` PATCH requests (0: one PUT).
    Uploaded { chunks: u64 },
}

/// Blobs up to this size go up in one PUT, bigger ones in PATCH chunks of
/// this size. One chunk is what a push holds in memory. 16 MiB keeps most
/// layers to two requests (POST, PUT), stays above the 5 MiB minimum part
/// some registries (ECR) impose on all but the last chunk, and far below
/// the request-body limits of the proxies in front of registries (often
/// 100 MB or less).
pub const DEFAULT_CHUNK_SIZE: usize = 16 << 20;

pub struct Client {
    agent: ureq::Agent,
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    /// The Authorization header that last worked, kept for the whole push
    /// (one token exchange, not one per request).
    authorization: RefCell<Option<String>>,
    pub chunk_size: usize,
    /// A repository of the same registry whose blobs a push may mount
    /// instead of uploading them (a cross-repository mount).
    pub mount_from: Option<String>,
    /// Tries per request; waits of first_backoff, doubled each time.
    attempts: u32,
    first_backoff: Duration,
}

/// A response, read whole (registry answers are small).
struct Answer {
    status: u16,
    location: Option<String>,
    digest: Option<String>,
    authenticate: Option<String>,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new(reference: Reference, plain_http: bool, credentials: Option<Credentials>) -> Client {
        let scheme = if plain_http { "http" } else { "https" };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(4)
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("nodeimg/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: format!("{scheme}://{}", reference.registry),
            reference,
            credentials,
            authorization: RefCell::new(None),
            chunk_size: DEFAULT_CHUNK_SIZE,
            mount_from: None,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// One request, its answer read whole (bounded), or why none came.
    fn call(&self, request: ureq::http::Request<&[u8]>) -> Result<Answer, String> {
        let mut response = self.agent.run(request).map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let answer = Answer {
            status: response.status().as_u16(),
            location: header("location"),
            digest: header("docker-content-digest"),
            authenticate: header("www-authenticate"),
            retry_after: header("retry-after").and_then(|v| v.trim().parse().ok()),
            body: Vec::new(),
        };
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(4 << 20)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(Answer { body, ..answer })
    }

    fn once(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(auth) = self.authorization.borrow().as_ref() {
            builder = builder.header("Authorization", auth);
        }
        if let Some(content_type) = content_type {
            builder = builder.header("Content-Type", content_type);
        }
        for (name, value) in extra {
            builder = builder.header(*name, value);
        }
        self.call(builder.body(body).map_err(|e| e.to_string())?)
    }

    /// Tries `request` until it gets an answer that waiting will not
    /// change: connection errors, 429 and 5xx are retried with backoff
    /// (or the registry's Retry-After, capped); the last answer is returned
    /// as it is, for the caller to judge.
    fn with_retries(
        &self,
        method: &str,
        url: &str,
        request: impl Fn() -> Result<Answer, String>,
    ) -> Result<Answer, RegistryError> {
        let mut wait = self.first_backoff;
        for attempt in 1.. {
            let last = attempt >= self.attempts;
            match request() {
                Err(err) if !last => {
                    tracing::warn!("{method} {url}: {err}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(err) => {
                    return Err(RegistryError::Transport {
                        method: method.into(),
                        url: url.into(),
                        err,
                    });
                }
                Ok(answer) if (answer.status == 429 || answer.status >= 500) && !last => {
                    let pause = answer
                        .retry_after
                        .map_or(wait, |s| Duration::from_secs(s.min(30)));
                    tracing::warn!(
                        "{method} {url}: the registry answered {}; retrying in {pause:?}",
                        answer.status
                    );
                    std::thread::sleep(pause);
                }
                Ok(answer) => return Ok(answer),
            }
            wait *= 2;
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Sends with retries and, on a 401, authenticates as the challenge
    /// asks and sends again (once: a second 401 means the credentials
    /// are refused).
    fn send(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, RegistryError> {
        let request = || self.once(method, url, content_type, extra, body);
        let answer = self.with_retries(method, url, request)?;
        if answer.status != 401 {
            return Ok(answer);
        }
        self.authenticate(url, answer.authenticate.as_deref())?;
        let answer = self.with_retries(method, url, request)?;
        if answer.status == 401 {
            return Err(RegistryError::Unauthorized {
                url: url.into(),
                detail: error_detail(&answer.text()),
            });
        }
        Ok(answer)
    }

    /// Sets the Authorization header the challenge asks for.
    fn authenticate(&self, url: &str, header: Option<&str>) -> Result<(), RegistryError> {
        let bad_challenge = || RegistryError::BadChallenge {
            url: url.into(),
            challenge: header.unwrap_or("(no WWW-Authenticate header)").into(),
        };
        let challenge = header
            .and_then(Challenge::parse)
            .ok_or_else(bad_challenge)?;
        let needs_credentials = || RegistryError::NeedsCredentials {
            url: url.into(),
            challenge: header.unwrap_or_default().into(),
        };
        let basic = self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        });
        let authorization = match challenge.scheme.as_str() {
            "basic" => basic.ok_or_else(needs_credentials)?,
            "bearer" => {
                let realm = challenge.param("realm").ok_or_else(bad_challenge)?;
                let mut scopes = vec![format!(
                    "repository:{}:pull,push",
                    self.reference.repository
                )];
                // A mount reads the other repository.
                if let Some(from) = &self.mount_from {
                    scopes.push(format!("repository:{from}:pull"));
                }
                let token_url = token_url(realm, challenge.param("service"), &scopes);
                let answer = self.with_retries("GET", &token_url, || {
                    let mut builder = ureq::http::Request::builder().uri(&token_url);
                    if let Some(basic) = &basic {
                        builder = builder.header("Authorization", basic);
                    }
                    self.call(builder.body(&[][..]).map_err(|e| e.to_string())?)
                })?;
                if answer.status == 401 || answer.status == 403 {
                    return Err(match basic {
                        None => needs_credentials(),
                        Some(_) => RegistryError::Unauthorized {
                            url: token_url,
                            detail: error_detail(&answer.text()),
                        },
                    });
                }
                let json: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
                let token = json["token"]
                    .as_str()
                    .or(json["access_token"].as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| RegistryError::Status {
                        method: "GET".into(),
                        url: token_url.clone(),
                        status: answer.status,
                        detail: ": no token in the answer".into(),
                    })?;
                format!("Bearer {token}")
            }
            _ => return Err(bad_challenge()),
        };
        *self.authorization.borrow_mut() = Some(authorization);
        Ok(())
    }

    fn expect(
        &self,
        answer: Answer,
        method: &str,
        url: &str,
        ok: &[u16],
    ) -> Result<Answer, RegistryError> {
        if ok.contains(&answer.status) {
            Ok(answer)
        } else {
            Err(RegistryError::Status {
                method: method.into(),
                url: url.into(),
                status: answer.status,
                detail: error_detail(&answer.text()),
            })
        }
    }

    pub fn blob_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let answer = self.send("HEAD", &url, None, &[], &[])?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => self.expect(answer, "HEAD", &url, &[200]).map(|_| false),
        }
    }

    /// Sends one blob from `path`: mounted from `mount_from` when the
    /// registry can, else in one PUT when it fits in a chunk, else in
    /// PATCH chunks then a closing PUT, reading one chunk at a time.
    pub fn upload_blob(&self, digest: &str, path: &Path, size: u64) -> Result<Sent, RegistryError> {
        let io = |err| RegistryError::Io {
            path: path.display().to_string(),
            err,
        };
        let start_url = match &self.mount_from {
            Some(from) => self.url(&format!(
                "blobs/uploads/?mount={digest}&from={}",
                percent_encode(from)
            )),
            None => self.url("blobs/uploads/"),
        };
        let answer = self.send("POST", &start_url, None, &[], &[])?;
        // 201: mounted. 202: an upload session instead (the registry cannot
        // mount, or the other repository lacks the blob).
        let ok: &[u16] = if self.mount_from.is_some() {
            &[201, 202]
        } else {
            &[202]
        };
        let answer = self.expect(answer, "POST", &start_url, ok)?;
        if answer.status == 201 {
            return Ok(Sent::Mounted);
        }
        let mut location = answer.location.ok_or_else(|| RegistryError::Status {
            method: "POST".into(),
            url: start_url.clone(),
            status: 202,
            detail: ": no Location for the upload".into(),
        })?;
        let file = std::fs::File::open(path).map_err(io)?;
        let mut chunk = Vec::with_capacity(self.chunk_size.min(size as usize));
        let mut reader = file.take(0);
        let mut offset = 0u64;
        let mut chunks = 0;
        // A blob that fits in a chunk is sent whole, with its digest.
        let whole = size <= self.chunk_size as u64;
        loop {
            chunk.clear();
            reader.set_limit(self.chunk_size as u64);
            reader.read_to_end(&mut chunk).map_err(io)?;
            if whole || chunk.is_empty() {
                break;
            }
            let url = upload_url(&self.base, &location, None);
            let range = format!("{offset}-{}", offset + chunk.len() as u64 - 1);
            let answer = self.send(
                "PATCH",
                &url,
                Some("application/octet-stream"),
                &[("Content-Range", range)],
                &chunk,
            )?;
            let answer = self.expect(answer, "PATCH", &url, &[202])?;
            // Each answer names where the next part goes.
            location = answer.location.unwrap_or(location);
            offset += chunk.len() as u64;
            chunks += 1;
        }
        let url = upload_url(&self.base, &location, Some(("digest", digest)));
        let answer = self.send("PUT", &url, Some("application/octet-stream"), &[], &chunk)?;
        self.expect(answer, "PUT", &url, &[201])?;
        Ok(Sent::Uploaded { chunks })
    }

    /// Puts the manifest bytes as built, under the tag; returns the digest
    /// the registry stored them as: its Docker-Content-Digest, or (from a
    /// registry that does not send one) the hash of what it serves back.
    pub fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<String, RegistryError> {
        let url = self.url(&format!("manifests/{}", self.reference.tag));
        let answer = self.send("PUT", &url, Some(media_type), &[], bytes)?;
        let answer = self.expect(answer, "PUT", &url, &[201])?;
        if let Some(digest) = answer.digest {
            return Ok(digest);
        }
        let accept = [("Accept", media_type.to_string())];
        let answer = self.send("GET", &url, None, &accept, &[])?;
        let answer = self.expect(answer, "GET", &url, &[200])?;
        Ok(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(&answer.body))
        ))
    }
}

/// The token request URL: the realm with one `scope` parameter per scope
/// and `service` added (percent-encoded, after any query the realm has).
fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut url = realm.to_string();
    for scope in scopes {
        let separator = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!("{separator}scope={}", percent_encode(scope)));
    }
    if let Some(service) = service {
        url.push_str(&format!("&service={}", percent_encode(service)));
    }
    url
}

/// Query-value encoding: everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The registry's `errors[].code: message`, for error messages.
fn error_detail(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let errors: Vec<String> = json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", errors.join("; "))
    }
}

/// SHA-256 of a file, streamed, as `sha256:<hex>`.
pub fn file_digest(path: &Path) -> Result<String, RegistryError> {
    let mut file = std::fs::File::open(path).map_err(|err| RegistryError::Io {
        path: path.display().to_string(),
        err,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|err| RegistryError::Io {
        path: path.display().to_string(),
        err,
    })?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_host_a_repository_and_a_tag() {
        let r = Reference::parse("127.0.0.1:5000/nodeimg/db:17-abc").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "nodeimg/db", "17-abc")
        );
        assert!(r.is_loopback());
        let r = Reference::parse("registry.example.com/pg/db:17").unwrap();
        assert!(!r.is_loopback());
        assert!(Reference::parse("localhost/db:1").unwrap().is_loopback());
        let r = Reference::parse("[::1]:5000/a__b/c-d--e/f.g:v1.0_rc-1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("[::1]:5000", "a__b/c-d--e/f.g", "v1.0_rc-1")
        );
        assert!(r.is_loopback());
        assert!(Reference::parse("[::1]/db:1").unwrap().is_loopback());
        // A name that merely starts like a loopback address is not one.
        assert!(
            !Reference::parse("127.example.com/db:1")
                .unwrap()
                .is_loopback()
        );
        assert!(Reference::parse("127.1.2.3:80/db:1").unwrap().is_loopback());
        for (bad, why) in [
            ("nodeimg/db:1", "registry host"),
            ("registry.example.com/pg/db", "no :TAG"),
            ("registry.example.com/pg/db@sha256:00", "digest"),
            ("registry.example.com/PG/db:1", "lowercase"),
            ("registry.example.com/pg/db:-x", "tag"),
            ("registry.example.com/pg/db:", "tag"),
            ("registry.example.com/-pg/db:1", "lowercase"),
            ("registry.example.com/pg/db./x:1", "lowercase"),
            ("registry.example.com/pg//db:1", "lowercase"),
            ("registry.example.com/pg/d..b:1", "lowercase"),
            ("registry.example.com/pg/d b:1", "lowercase"),
            ("registry.exa_mple.com/pg/db:1", "registry host"),
            ("registry.example.com:99999/pg/db:1", "registry host"),
            ("registry.example.com:/pg/db:1", "registry host"),
            ("[::1/db:1", "registry host"),
        ] {
            let err = Reference::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn challenges_parse_quoted_and_bare_parameters() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:pg/db:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("scope"), Some("repository:pg/db:pull,push"));
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("Registry Realm"))
        );
        let c = Challenge::parse("Bearer realm=https://a/t, service=reg").unwrap();
        assert_eq!(c.param("service"), Some("reg"));
    }

    #[test]
    fn upload_locations_resolve_and_keep_their_query() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            upload_url(
                base,
                "/v2/db/blobs/uploads/u1?_state=x",
                Some(("digest", "sha256:ab"))
            ),
            "http://127.0.0.1:5000/v2/db/blobs/uploads/u1?_state=x&digest=sha256:ab"
        );
        assert_eq!(
            upload_url(
                base,
                "https://r.example.com/v2/db/blobs/uploads/u2",
                Some(("digest", "d"))
            ),
            "https://r.example.com/v2/db/blobs/uploads/u2?digest=d"
        );
        assert_eq!(upload_url(base, "v2/x", None), "http://127.0.0.1:5000/v2/x");
    }

    #[test]
    fn token_requests_carry_an_encoded_scope_and_service() {
        assert_eq!(
            token_url(
                "https://auth.example.com/token",
                Some("registry.example.com"),
                &["repository:pg/db:pull,push".into()]
            ),
            "https://auth.example.com/token?scope=repository%3Apg%2Fdb%3Apull%2Cpush&service=registry.example.com"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/t?account=ci", None, &["a b".into()]),
            "http://127.0.0.1:9/t?account=ci&scope=a%20b"
        );
        // A mount asks for a second scope, in a parameter of its own.
        assert_eq!(
            token_url(
                "https://auth.example.com/token",
                None,
                &[
                    "repository:pg/haproxy:pull,push".into(),
                    "repository:pg/db:pull".into()
                ]
            ),
            "https://auth.example.com/token?scope=repository%3Apg%2Fhaproxy%3Apull%2Cpush&scope=repository%3Apg%2Fdb%3Apull"
        );
    }
}
