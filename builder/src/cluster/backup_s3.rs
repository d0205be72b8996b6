//! `[backup.s3]`: an S3 bucket holding the repository (Hetzner Object
//! Storage or any S3 API). The access key and its secret live in the
//! secrets (`backup_s3_key`, `backup_s3_key_secret`), never here.

use serde::{Deserialize, Serialize};

/// How the bucket is named in requests: `host` (virtual-hosted,
/// `bucket.endpoint`, what Hetzner and AWS expect) or `path`
/// (`endpoint/bucket`, for servers without wildcard DNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UriStyle {
    Host,
    Path,
}

impl UriStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            UriStyle::Host => "host",
            UriStyle::Path => "path",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Bucket {
    /// The endpoint's host name, without scheme or path:
    /// `fsn1.your-objectstorage.com` for Hetzner's Falkenstein region.
    pub endpoint: String,
    pub bucket: String,
    /// `fsn1`, `nbg1` or `hel1` on Hetzner; what signs the requests.
    pub region: String,
    #[serde(default = "host_style")]
    pub uri_style: UriStyle,
    /// The endpoint's HTTPS port (pgBackRest speaks only HTTPS to S3).
    #[serde(default = "https_port")]
    pub port: u16,
    /// The PEM certificate(s) of the CA that signed the endpoint's
    /// certificate, for a private endpoint; without it, the public CAs
    /// the db image carries (Debian's ca-certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

fn host_style() -> UriStyle {
    UriStyle::Host
}

fn https_port() -> u16 {
    443
}

impl S3Bucket {
    /// Each refusal: (field under `s3.`, rule).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, rule: String| Err((format!("s3.{field}"), rule));
        if let Some(rest) = self
            .endpoint
            .strip_prefix("https://")
            .or_else(|| self.endpoint.strip_prefix("http://"))
        {
            return fail(
                "endpoint",
                format!(
                    "{:?}: write the host name only, without the scheme (endpoint = {:?}); pgBackRest always speaks HTTPS",
                    self.endpoint,
                    rest.trim_end_matches('/')
                ),
            );
        }
        if let Some((host, port)) = self.endpoint.rsplit_once(':') {
            return fail(
                "endpoint",
                format!(
                    "{:?}: give the port on its own (endpoint = {host:?} and port = {port})",
                    self.endpoint
                ),
            );
        }
        let host_name = |text: &str| {
            !text.is_empty()
                && text.len() <= 253
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        };
        if !host_name(&self.endpoint) {
            return fail(
                "endpoint",
                format!(
                    "{:?} must be a host name or address, like fsn1.your-objectstorage.com",
                    self.endpoint
                ),
            );
        }
        // S3's bucket naming rules (what every S3 server accepts).
        let bucket = &self.bucket;
        if !(3..=63).contains(&bucket.len())
            || !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            return fail(
                "bucket",
                format!(
                    "{bucket:?} is not a bucket name: 3 to 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
                ),
            );
        }
        if self.uri_style == UriStyle::Host && bucket.contains('.') {
            return fail(
                "bucket",
                format!(
                    "{bucket:?} holds a '.', which breaks TLS with uri_style = \"host\" (the certificate covers one label): choose a name without dots or set uri_style = \"path\""
                ),
            );
        }
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return fail(
                "region",
                format!(
                    "{:?} must be the bucket's region, like fsn1 (letters, digits, '-')",
                    self.region
                ),
            );
        }
        if self.port == 0 {
            return fail("port", "0 is not a port (443 is HTTPS's)".into());
        }
        if let Some(ca) = &self.ca {
            check_certificates(ca).or_else(|rule| fail("ca", rule))?;
        }
        Ok(())
    }
}

/// One or more PEM certificates, each parsed.
fn check_certificates(text: &str) -> Result<(), String> {
    let mut rest = text.as_bytes();
    let mut count = 0;
    while !String::from_utf8_lossy(rest).trim().is_empty() {
        let (left, pem) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|e| format!("is not PEM certificates (-----BEGIN CERTIFICATE-----): {e}"))?;
        pem.parse_x509()
            .map_err(|e| format!("certificate {} does not parse: {e}", count + 1))?;
        count += 1;
        rest = left;
    }
    if count == 0 {
        return Err(
            "holds no certificate: paste the CA's PEM, or remove ca to use the public CAs".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> S3Bucket {
        toml::from_str(text).unwrap()
    }

    const HETZNER: &str = "endpoint = \"fsn1.your-objectstorage.com\"\nbucket = \"prod-pg-backups\"\nregion = \"fsn1\"\n";

    #[test]
    fn hetzner_object_storage_needs_three_fields() {
        let bucket = parse(HETZNER);
        assert_eq!(bucket.validate(), Ok(()));
        assert_eq!(bucket.uri_style, UriStyle::Host);
        assert_eq!(bucket.port, 443);
        assert!(bucket.ca.is_none());
    }

    #[test]
    fn refusals_name_the_field_and_the_fix() {
        let refused = |text: &str| parse(text).validate().unwrap_err();
        let (field, rule) = refused(&HETZNER.replace(
            "\"fsn1.your-objectstorage.com\"",
            "\"https://fsn1.your-objectstorage.com/\"",
        ));
        assert_eq!(field, "s3.endpoint");
        assert!(
            rule.contains("endpoint = \"fsn1.your-objectstorage.com\""),
            "{rule}"
        );
        let (field, rule) =
            refused(&HETZNER.replace("\"fsn1.your-objectstorage.com\"", "\"minio.internal:9000\""));
        assert_eq!(field, "s3.endpoint");
        assert!(rule.contains("port = 9000"), "{rule}");
        let (field, _) = refused(&HETZNER.replace("prod-pg-backups", "Prod_Backups"));
        assert_eq!(field, "s3.bucket");
        let (field, rule) = refused(&HETZNER.replace("prod-pg-backups", "prod.pg"));
        assert_eq!(field, "s3.bucket");
        assert!(rule.contains("uri_style = \"path\""), "{rule}");
        let path_style = format!(
            "{}uri_style = \"path\"\n",
            HETZNER.replace("prod-pg-backups", "prod.pg")
        );
        assert_eq!(parse(&path_style).validate(), Ok(()));
        let (field, _) = refused(&HETZNER.replace("\"fsn1\"\n", "\"\"\n"));
        assert_eq!(field, "s3.region");
        let (field, rule) = refused(&format!("{HETZNER}ca = \"not a certificate\"\n"));
        assert_eq!(field, "s3.ca");
        assert!(rule.contains("PEM"), "{rule}");
        assert!(toml::from_str::<S3Bucket>(&format!("{HETZNER}key = \"AKIA\"\n")).is_err());
    }

    #[test]
    fn a_private_ca_is_parsed() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();
        let bucket = parse(&format!("{HETZNER}ca = '''\n{ca}'''\n"));
        assert_eq!(bucket.validate(), Ok(()));
        let two = parse(&format!("{HETZNER}ca = '''\n{ca}{ca}'''\n"));
        assert_eq!(two.validate(), Ok(()));
    }
}
