//! The cluster's own PKI: one CA per cluster and one key pair and
//! certificate per node, made with rcgen (ECDSA P-256, which PostgreSQL,
//! libpq, etcd, Patroni, HAProxy and PgBouncer all accept) and read back
//! with x509-parser. The CA key stays in the operator's secrets file; a
//! node receives its own key, its own certificate and the trusted CA
//! certificates, nothing else.
//!
//! Every node certificate is valid for server and client use: etcd peers,
//! Patroni and the agent talk to etcd with it, and it serves PostgreSQL,
//! Patroni's REST API, etcd, HAProxy's and PgBouncer's listeners.
//!
//! A db node also gets a client-only certificate for the same key whose
//! common name is the node's name: pgBackRest's TLS server authorises
//! clients by that name (a replica backing up asks the primary for
//! `pg_backup_start`). The node certificate keeps no common name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cluster::{ClusterSpec, Role};

/// Default lifetimes: the CA outlives many node rotations.
pub const CA_DAYS: u32 = 3650;
pub const NODE_DAYS: u32 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: not a PEM certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error(
        "the secrets hold no CA private key (tls.ca_key): node certificates can only be issued from the operator's full secrets file, not from a node's copy"
    )]
    NoCaKey,
    #[error(
        "node {0} has no certificate in the secrets: run `nodeimg secrets rotate` on the full secrets file to issue one"
    )]
    NoNodeCert(String),
}

/// The TLS part of the secrets file (`[tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSecrets {
    /// The CA certificate that issues the node certificates (PEM).
    pub ca_cert: String,
    /// Its private key: in the operator's file only, never on a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<String>,
    /// CA certificates still trusted during a CA rotation's overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_ca_certs: Vec<String>,
    /// Each node's certificate and key, by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeCert>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCert {
    pub cert: String,
    pub key: String,
    /// A db node's pgBackRest client certificate (CN = the node's name,
    /// client use only, same key); none on proxies and in secrets written
    /// before it existed (`nodeimg secrets update` adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_client_cert: Option<String>,
}

impl TlsSecrets {
    /// A new CA and a certificate for every member of the spec.
    pub fn generate(spec: &ClusterSpec, ca_days: u32, node_days: u32) -> Result<Self, PkiError> {
        let (ca_cert, ca_key) = new_ca(&spec.cluster.name, ca_days)?;
        let mut tls = TlsSecrets {
            ca_cert,
            ca_key: Some(ca_key),
            ..TlsSecrets::default()
        };
        tls.issue_all(spec, node_days)?;
        Ok(tls)
    }

    /// New certificates and keys for every member, from the current CA;
    /// certificates of nodes no longer in the spec are dropped.
    pub fn issue_all(&mut self, spec: &ClusterSpec, node_days: u32) -> Result<(), PkiError> {
        let ca_key = self.ca_key.clone().ok_or(PkiError::NoCaKey)?;
        let key = KeyPair::from_pem(&ca_key)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert, key)?;
        self.nodes.clear();
        for (role, member) in spec.members() {
            let cert = issue(&issuer, spec, role, &member.name, member.ip, node_days)?;
            self.nodes.insert(member.name.clone(), cert);
        }
        Ok(())
    }

    /// After members were added to or removed from the spec: a certificate
    /// for every member that has none, or whose names no longer match what
    /// the spec gives it (a proxy or the load balancer added); the
    /// certificates of nodes no longer in the spec dropped; every other
    /// certificate kept, so running nodes need nothing new. Returns (issued,
    /// dropped) node names.
    pub fn sync_members(
        &mut self,
        spec: &ClusterSpec,
        node_days: u32,
    ) -> Result<(Vec<String>, Vec<String>), PkiError> {
        let ca_key = self.ca_key.clone().ok_or(PkiError::NoCaKey)?;
        let key = KeyPair::from_pem(&ca_key)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert, key)?;
        let wanted: BTreeMap<String, (Role, Ipv4Addr)> = spec
            .members()
            .map(|(role, m)| (m.name.clone(), (role, m.ip)))
            .collect();
        let dropped: Vec<String> = self
            .nodes
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in &dropped {
            self.nodes.remove(name);
        }
        let now = OffsetDateTime::now_utc();
        let mut issued = Vec::new();
        for (name, (role, ip)) in wanted {
            let expected = san_strings(&node_sans(spec, role, &name, ip));
            let current = self
                .nodes
                .get(&name)
                .and_then(|c| inspect(&name, &c.cert, now).ok())
                .map(|info| {
                    info.sans
                        .into_iter()
                        .collect::<std::collections::BTreeSet<_>>()
                });
            if current.as_ref() == Some(&expected) {
                if role == Role::Db
                    && let Some(own) = self.nodes.get_mut(&name)
                    && own.backup_client_cert.is_none()
                {
                    let key = KeyPair::from_pem(&own.key)?;
                    own.backup_client_cert = Some(backup_client(&issuer, &name, &key, node_days)?);
                    issued.push(name);
                }
                continue;
            }
            let cert = issue(&issuer, spec, role, &name, ip, node_days)?;
            self.nodes.insert(name.clone(), cert);
            issued.push(name);
        }
        Ok((issued, dropped))
    }

    /// Starts a CA rotation: the current CA is kept as trusted, a new one
    /// issues new node certificates. Nodes given these files trust both,
    /// so old and new certificates verify during the overlap.
    pub fn rotate_ca(
        &mut self,
        spec: &ClusterSpec,
        ca_days: u32,
        node_days: u32,
    ) -> Result<(), PkiError> {
        let (ca_cert, ca_key) = new_ca(&spec.cluster.name, ca_days)?;
        let old = std::mem::replace(&mut self.ca_cert, ca_cert);
        self.previous_ca_certs.push(old);
        self.ca_key = Some(ca_key);
        self.issue_all(spec, node_days)
    }

    /// Ends a CA rotation's overlap: only the current CA stays trusted.
    pub fn finish_ca_rotation(&mut self) -> usize {
        std::mem::take(&mut self.previous_ca_certs).len()
    }

    /// Every trusted CA certificate, current first, as one PEM bundle.
    pub fn trusted_bundle(&self) -> String {
        std::iter::once(&self.ca_cert)
            .chain(&self.previous_ca_certs)
            .map(|pem| pem.trim_end().to_string() + "\n")
            .collect()
    }

    /// What one node receives: the trusted CAs, its own certificate and
    /// key; never the CA key, never another node's key.
    pub fn for_node(&self, node: &str) -> Result<TlsSecrets, PkiError> {
        let own = self
            .nodes
            .get(node)
            .ok_or_else(|| PkiError::NoNodeCert(node.to_string()))?;
        Ok(TlsSecrets {
            ca_cert: self.ca_cert.clone(),
            ca_key: None,
            previous_ca_certs: self.previous_ca_certs.clone(),
            nodes: BTreeMap::from([(node.to_string(), own.clone())]),
        })
    }
}

fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive, and never a leading zero byte (RFC 5280 serials).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Valid from an hour ago (clock skew between nodes) for `days`.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// A self-signed CA for `cluster`: (certificate PEM, key PEM).
pub fn new_ca(cluster: &str, days: u32) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "nodeimg");
    name.push(DnType::CommonName, format!("nodeimg {cluster} CA"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The names a node's certificate is valid for. Every node: its name, its
/// private IP, and loopback (its own services reach each other there).
/// Proxy nodes also carry the load balancer's address (clients connect
/// through it). Db nodes also carry the proxies' and the load balancer's
/// addresses: HAProxy's 5000/5001 pass TLS through untouched, so a client
/// verifying the server there sees the db node's certificate.
pub fn node_sans(spec: &ClusterSpec, role: Role, name: &str, ip: Ipv4Addr) -> Vec<SanType> {
    let mut dns = vec![name.to_string(), "localhost".to_string()];
    let mut ips = vec![ip, Ipv4Addr::LOCALHOST];
    if role == Role::Db {
        ips.extend(spec.haproxy_members.iter().map(|m| m.ip));
        dns.extend(spec.haproxy_members.iter().map(|m| m.name.clone()));
    }
    ips.extend(spec.cluster.load_balancer);
    dns.dedup();
    let mut seen = std::collections::BTreeSet::new();
    ips.retain(|ip| seen.insert(*ip));
    dns.into_iter()
        .filter_map(|d| d.try_into().ok().map(SanType::DnsName))
        .chain(ips.into_iter().map(|ip| SanType::IpAddress(IpAddr::V4(ip))))
        .collect()
}

/// SANs as `secrets show` prints them (`DNS:name`, `IP:address`).
fn san_strings(sans: &[SanType]) -> std::collections::BTreeSet<String> {
    sans.iter()
        .map(|san| match san {
            SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
            SanType::IpAddress(ip) => format!("IP:{ip}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    spec: &ClusterSpec,
    role: Role,
    name: &str,
    ip: Ipv4Addr,
    days: u32,
) -> Result<NodeCert, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    // No common name: the SANs name the node, and etcd logs a warning for
    // every gateway request made with a certificate that has one.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nodeimg");
    dn.push(DnType::OrganizationalUnitName, name);
    params.distinguished_name = dn;
    params.subject_alt_names = node_sans(spec, role, name, ip);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    let cert = params.signed_by(&key, issuer)?;
    let backup_client_cert = match role {
        Role::Db => Some(backup_client(issuer, name, &key, days)?),
        Role::Haproxy => None,
    };
    Ok(NodeCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
        backup_client_cert,
    })
}

/// The client certificate pgBackRest's TLS server knows a db node by: its
/// name as the common name (`tls-server-auth` matches it), for client
/// authentication only, on the node's own key.
fn backup_client(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    key: &KeyPair,
    days: u32,
) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nodeimg");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    Ok(params.signed_by(key, issuer)?.pem())
}

/// What `secrets show` reports of one certificate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertInfo {
    /// `ca`, `previous-ca` or the node's name.
    pub name: String,
    pub subject: String,
    pub issuer: String,
    /// Hex, upper case, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sans: Vec<String>,
    /// Seconds left until expiry (negative once expired).
    pub seconds_left: i64,
    /// `ok`, `renew` (less than a third of its lifetime left) or `expired`.
    pub status: &'static str,
}

/// Reads one PEM certificate.
pub fn inspect(name: &str, pem: &str, now: OffsetDateTime) -> Result<CertInfo, PkiError> {
    let bad = |reason: String| PkiError::BadCertificate {
        what: name.to_string(),
        reason,
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let left = not_after - now.unix_timestamp();
    let life = (not_after - not_before).max(1);
    let status = if left <= 0 {
        "expired"
    } else if left * 3 < life {
        "renew"
    } else {
        "ok"
    };
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => format!("DNS:{d}"),
                    x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                        format!("IP:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertInfo {
        name: name.to_string(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        not_before: rfc3339(validity.not_before.to_datetime()),
        not_after: rfc3339(validity.not_after.to_datetime()),
        sans,
        seconds_left: left,
        status,
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Every certificate of `tls`: the CA, the previous CAs, each node's.
pub fn inventory(tls: &TlsSecrets, now: OffsetDateTime) -> Result<Vec<CertInfo>, PkiError> {
    let mut all = vec![inspect("ca", &tls.ca_cert, now)?];
    for pem in &tls.previous_ca_certs {
        all.push(inspect("previous-ca", pem, now)?);
    }
    for (name, node) in &tls.nodes {
        all.push(inspect(name, &node.cert, now)?);
        if let Some(pem) = &node.backup_client_cert {
            all.push(inspect(&format!("{name} (backup client)"), pem, now)?);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml"),
        )
        .unwrap()
    }

    #[test]
    fn node_certificates_name_the_node_and_verify_against_the_ca() {
        let spec = spec();
        let tls = TlsSecrets::generate(&spec, CA_DAYS, NODE_DAYS).unwrap();
        assert_eq!(tls.nodes.len(), 5);
        let now = OffsetDateTime::now_utc();
        let db = inspect("db", &tls.nodes["db-postgres-01"].cert, now).unwrap();
        assert!(
            db.sans.contains(&"DNS:db-postgres-01".to_string()),
            "{db:?}"
        );
        assert!(db.sans.contains(&"IP:10.0.0.120".to_string()), "{db:?}");
        assert!(db.sans.contains(&"IP:127.0.0.1".to_string()), "{db:?}");
        // Reached through HAProxy and the load balancer.
        assert!(db.sans.contains(&"IP:10.0.0.11".to_string()), "{db:?}");
        assert!(db.sans.contains(&"IP:10.0.0.10".to_string()), "{db:?}");
        let proxy = inspect("p", &tls.nodes["haproxy-01"].cert, now).unwrap();
        assert!(
            proxy.sans.contains(&"IP:10.0.0.10".to_string()),
            "{proxy:?}"
        );
        assert!(
            !proxy.sans.contains(&"IP:10.0.0.120".to_string()),
            "{proxy:?}"
        );
        assert_eq!(db.status, "ok");
        assert!(db.seconds_left > 364 * 86400);
        let ca = inspect("ca", &tls.ca_cert, now).unwrap();
        assert_eq!(db.issuer, ca.subject);
        assert!(ca.seconds_left > 3649 * 86400);
        // The signature checks with the CA's public key.
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(tls.ca_cert.as_bytes()).unwrap();
        let ca_x509 = ca_pem.parse_x509().unwrap();
        let (_, node_pem) =
            x509_parser::pem::parse_x509_pem(tls.nodes["haproxy-02"].cert.as_bytes()).unwrap();
        let node_x509 = node_pem.parse_x509().unwrap();
        node_x509
            .verify_signature(Some(ca_x509.public_key()))
            .unwrap();
        assert_ne!(db.serial, proxy.serial);
    }

    #[test]
    fn db_nodes_get_a_backup_client_certificate_named_by_its_common_name() {
        let spec = spec();
        let mut tls = TlsSecrets::generate(&spec, CA_DAYS, NODE_DAYS).unwrap();
        let db = &tls.nodes["db-postgres-01"];
        let pem = db.backup_client_cert.as_ref().expect("a db node has one");
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let client = block.parse_x509().unwrap();
        let cn: Vec<_> = client
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cn, ["db-postgres-01"]);
        let usage = client.extended_key_usage().unwrap().unwrap().value;
        assert!(usage.client_auth && !usage.server_auth);
        // Same key as the node certificate, signed by the CA.
        let (_, node_block) = x509_parser::pem::parse_x509_pem(db.cert.as_bytes()).unwrap();
        let node = node_block.parse_x509().unwrap();
        assert_eq!(client.public_key().raw, node.public_key().raw);
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(tls.ca_cert.as_bytes()).unwrap();
        let ca = ca_block.parse_x509().unwrap();
        client.verify_signature(Some(ca.public_key())).unwrap();
        // The node certificate itself keeps no common name.
        assert_eq!(node.subject().iter_common_name().count(), 0);
        assert!(tls.nodes["haproxy-01"].backup_client_cert.is_none());
        // Secrets from before it existed get one from `secrets update`.
        let before = tls.nodes["db-postgres-02"].clone();
        tls.nodes
            .get_mut("db-postgres-02")
            .unwrap()
            .backup_client_cert = None;
        let (issued, _) = tls.sync_members(&spec, NODE_DAYS).unwrap();
        assert_eq!(issued, ["db-postgres-02"]);
        let after = &tls.nodes["db-postgres-02"];
        assert_eq!((&after.cert, &after.key), (&before.cert, &before.key));
        assert!(after.backup_client_cert.is_some());
        let names: Vec<String> = inventory(&tls, OffsetDateTime::now_utc())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(names.contains(&"db-postgres-02 (backup client)".to_string()));
    }

    #[test]
    fn a_node_gets_its_own_key_and_no_ca_key() {
        let spec = spec();
        let tls = TlsSecrets::generate(&spec, CA_DAYS, NODE_DAYS).unwrap();
        let mine = tls.for_node("db-postgres-02").unwrap();
        assert!(mine.ca_key.is_none());
        assert_eq!(mine.nodes.keys().collect::<Vec<_>>(), ["db-postgres-02"]);
        assert!(matches!(
            mine.clone().issue_all(&spec, 1),
            Err(PkiError::NoCaKey)
        ));
        assert!(tls.for_node("nobody").is_err());
    }

    #[test]
    fn ca_rotation_trusts_both_until_finished() {
        let spec = spec();
        let mut tls = TlsSecrets::generate(&spec, CA_DAYS, NODE_DAYS).unwrap();
        let old_ca = tls.ca_cert.clone();
        let old_node = tls.nodes["db-postgres-01"].clone();
        tls.rotate_ca(&spec, CA_DAYS, NODE_DAYS).unwrap();
        assert_ne!(tls.ca_cert, old_ca);
        assert_ne!(tls.nodes["db-postgres-01"], old_node);
        let bundle = tls.trusted_bundle();
        assert!(bundle.contains(old_ca.trim()) && bundle.contains(tls.ca_cert.trim()));
        assert_eq!(tls.finish_ca_rotation(), 1);
        assert!(!tls.trusted_bundle().contains(old_ca.trim()));
    }

    #[test]
    fn syncing_members_issues_for_new_nodes_and_keeps_the_others() {
        let spec = spec();
        let mut tls = TlsSecrets::generate(&spec, CA_DAYS, NODE_DAYS).unwrap();
        let before = tls.clone();
        assert_eq!(
            tls.sync_members(&spec, NODE_DAYS).unwrap(),
            (vec![], vec![]),
            "an unchanged spec changes nothing"
        );
        assert_eq!(tls, before);
        // Two db members added, one removed.
        let mut grown = spec.clone();
        let mut added = grown.db_members[0].clone();
        added.name = "db-postgres-09".into();
        added.ip = "10.0.0.129".parse().unwrap();
        grown.db_members.push(added);
        grown.db_members.remove(1);
        let (issued, dropped) = tls.sync_members(&grown, NODE_DAYS).unwrap();
        assert_eq!(issued, ["db-postgres-09"]);
        assert_eq!(dropped, ["db-postgres-02"]);
        assert_eq!(tls.nodes["db-postgres-01"], before.nodes["db-postgres-01"]);
        let new = inspect(
            "n",
            &tls.nodes["db-postgres-09"].cert,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert!(new.sans.contains(&"IP:10.0.0.129".to_string()), "{new:?}");
        // A proxy moved: every db certificate names the proxies, so they
        // are issued again, and the moved proxy's own.
        let mut moved = grown.clone();
        moved.haproxy_members[0].ip = "10.0.0.19".parse().unwrap();
        let (issued, _) = tls.sync_members(&moved, NODE_DAYS).unwrap();
        assert_eq!(
            issued,
            [
                "db-postgres-01",
                "db-postgres-03",
                "db-postgres-09",
                "haproxy-01"
            ]
        );
    }

    #[test]
    fn expiry_is_reported_at_a_third_of_the_lifetime() {
        let spec = spec();
        let tls = TlsSecrets::generate(&spec, CA_DAYS, 30).unwrap();
        let pem = &tls.nodes["haproxy-01"].cert;
        let now = OffsetDateTime::now_utc();
        assert_eq!(inspect("n", pem, now).unwrap().status, "ok");
        assert_eq!(
            inspect("n", pem, now + Duration::days(21)).unwrap().status,
            "renew"
        );
        assert_eq!(
            inspect("n", pem, now + Duration::days(31)).unwrap().status,
            "expired"
        );
    }
}
