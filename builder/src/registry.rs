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
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad("the part before the first / must be a registry host"));
        }
        let (repository, tag) = rest
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .ok_or_else(|| bad("no :TAG"))?;
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "repository path parts are lowercase letters, digits, '.', '_' and '-'",
            ));
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
            return Err(bad("a tag is up to 128 letters, digits, '.', '_' or '-'"));
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
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }
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
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    /// The Authorization header that last worked.
    authorization: RefCell<Option<String>>,
    /// Blobs bigger than this go up in PATCH chunks of this size.
    pub chunk_size: usize,
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
    body: String,
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
            chunk_size: 16 << 20,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
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
        let request = builder.body(body.to_vec()).map_err(|e| e.to_string())?;
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
            body: String::new(),
        };
        Ok(Answer {
            body: read_text(&mut response, 64 << 10),
            ..answer
        })
    }

    /// Sends with retries (connection errors, 429, 5xx) and, on a 401,
    /// authenticates once as the challenge asks and sends again.
    fn send(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, RegistryError> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = self.first_backoff * 2u32.pow(attempt - 1);
            match self.once(method, url, content_type, extra, body) {
                Err(err) if attempt < self.attempts => {
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
                Ok(answer) if answer.status == 401 && !authenticated => {
                    let challenge = answer.authenticate.clone().unwrap_or_default();
                    self.authenticate(url, &challenge)?;
                    authenticated = true;
                    attempt -= 1;
                }
                Ok(answer) if answer.status == 401 => {
                    return Err(RegistryError::Unauthorized {
                        url: url.into(),
                        detail: error_detail(&answer.body),
                    });
                }
                Ok(answer)
                    if (answer.status == 429 || answer.status >= 500)
                        && attempt < self.attempts =>
                {
                    let wait = answer
                        .retry_after
                        .map_or(wait, |s| Duration::from_secs(s.min(30)));
                    tracing::warn!(
                        "{method} {url}: the registry answered {}; retrying in {wait:?}",
                        answer.status
                    );
                    std::thread::sleep(wait);
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// Sets the Authorization header the challenge asks for.
    fn authenticate(&self, url: &str, header: &str) -> Result<(), RegistryError> {
        let challenge = Challenge::parse(header).ok_or_else(|| RegistryError::BadChallenge {
            url: url.into(),
            challenge: header.into(),
        })?;
        let basic = self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        });
        match challenge.scheme.as_str() {
            "basic" => {
                let basic = basic.ok_or_else(|| RegistryError::NeedsCredentials {
                    url: url.into(),
                    challenge: header.into(),
                })?;
                *self.authorization.borrow_mut() = Some(basic);
                Ok(())
            }
            "bearer" => {
                let realm =
                    challenge
                        .param("realm")
                        .ok_or_else(|| RegistryError::BadChallenge {
                            url: url.into(),
                            challenge: header.into(),
                        })?;
                let scope = format!("repository:{}:pull,push", self.reference.repository);
                let mut token_url = format!("{realm}?scope={scope}");
                if let Some(service) = challenge.param("service") {
                    token_url.push_str(&format!("&service={service}"));
                }
                let mut request = self.agent.get(&token_url);
                if let Some(basic) = &basic {
                    request = request.header("Authorization", basic);
                }
                let mut response = request.call().map_err(|e| RegistryError::Transport {
                    method: "GET".into(),
                    url: token_url.clone(),
                    err: e.to_string(),
                })?;
                let status = response.status().as_u16();
                let body = read_text(&mut response, 1 << 20);
                if status == 401 || status == 403 {
                    return Err(if basic.is_none() {
                        RegistryError::NeedsCredentials {
                            url: token_url,
                            challenge: header.into(),
                        }
                    } else {
                        RegistryError::Unauthorized {
                            url: token_url,
                            detail: error_detail(&body),
                        }
                    });
                }
                let json: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                let token = json["token"]
                    .as_str()
                    .or(json["access_token"].as_str())
                    .ok_or_else(|| RegistryError::Status {
                        method: "GET".into(),
                        url: token_url.clone(),
                        status,
                        detail: ": no token in the answer".into(),
                    })?;
                *self.authorization.borrow_mut() = Some(format!("Bearer {token}"));
                Ok(())
            }
            _ => Err(RegistryError::BadChallenge {
                url: url.into(),
                challenge: header.into(),
            }),
        }
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
                detail: error_detail(&answer.body),
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

    /// Uploads one blob from `path`: in one PUT when it fits in a chunk,
    /// else in PATCH chunks then a closing PUT.
    pub fn upload_blob(&self, digest: &str, path: &Path, size: u64) -> Result<(), RegistryError> {
        let io = |err| RegistryError::Io {
            path: path.display().to_string(),
            err,
        };
        let start_url = self.url("blobs/uploads/");
        let answer = self.send("POST", &start_url, None, &[], &[])?;
        let answer = self.expect(answer, "POST", &start_url, &[202])?;
        let mut location = answer.location.unwrap_or_default();
        let mut file = std::fs::File::open(path).map_err(io)?;
        if size <= self.chunk_size as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(io)?;
            let url = upload_url(&self.base, &location, Some(("digest", digest)));
            let answer = self.send("PUT", &url, Some("application/octet-stream"), &[], &bytes)?;
            self.expect(answer, "PUT", &url, &[201])?;
            return Ok(());
        }
        let mut chunk = vec![0u8; self.chunk_size];
        let mut offset = 0u64;
        loop {
            let mut filled = 0;
            while filled < chunk.len() {
                let n = file.read(&mut chunk[filled..]).map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let url = upload_url(&self.base, &location, None);
            let range = format!("{offset}-{}", offset + filled as u64 - 1);
            let answer = self.send(
                "PATCH",
                &url,
                Some("application/octet-stream"),
                &[("Content-Range", range)],
                &chunk[..filled],
            )?;
            let answer = self.expect(answer, "PATCH", &url, &[202])?;
            location = answer.location.unwrap_or(location);
            offset += filled as u64;
        }
        let url = upload_url(&self.base, &location, Some(("digest", digest)));
        let answer = self.send("PUT", &url, None, &[], &[])?;
        self.expect(answer, "PUT", &url, &[201])?;
        Ok(())
    }

    /// Puts the manifest bytes as built, under the tag; returns the digest
    /// the registry says it stored.
    pub fn put_manifest(
        &self,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!("manifests/{}", self.reference.tag));
        let answer = self.send("PUT", &url, Some(media_type), &[], bytes)?;
        let answer = self.expect(answer, "PUT", &url, &[201])?;
        Ok(answer.digest)
    }
}

/// Up to `limit` bytes of a response body, as text (error bodies, tokens).
fn read_text(response: &mut ureq::http::Response<ureq::Body>, limit: u64) -> String {
    let mut text = String::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(limit)
        .read_to_string(&mut text);
    text
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
        for (bad, why) in [
            ("nodeimg/db:1", "registry host"),
            ("registry.example.com/pg/db", "no :TAG"),
            ("registry.example.com/pg/db@sha256:00", "digest"),
            ("registry.example.com/PG/db:1", "lowercase"),
            ("registry.example.com/pg/db:-x", "tag"),
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
}
