//! HTTPS clients of the agent's own tasks (etcd, Patroni's REST API):
//! the cluster CA as the only root, and the node's certificate to show.

use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// The files a node's TLS clients use (see `render::TlsView`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl ClientTls {
    /// An agent that trusts only the cluster CA(s) and presents the node's
    /// certificate; no proxy.
    pub fn agent(&self, timeout: Duration) -> Result<ureq::Agent, String> {
        let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
        let ca_pem = read(&self.ca)?;
        let roots: Vec<Certificate<'static>> = ureq::tls::parse_pem(&ca_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            return Err(format!("{}: no CA certificate", self.ca));
        }
        let cert =
            Certificate::from_pem(&read(&self.cert)?).map_err(|e| format!("{}: {e}", self.cert))?;
        // The node's key: read only when private (0600), as every key file.
        let key_pem = crate::util::private_file::read(std::path::Path::new(&self.key))
            .map_err(|e| format!("cannot read {}: {e}", self.key))?;
        let key = PrivateKey::from_pem(&key_pem).map_err(|e| format!("{}: {e}", self.key))?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
            .build();
        Ok(ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .proxy(None)
            .tls_config(tls)
            .build()
            .new_agent())
    }

    /// [`ClientTls::agent`] with a 2 s timeout, retried every 5 s until the
    /// files are readable (a background task of `what` waits for them).
    pub fn agent_when_ready(&self, what: &str) -> ureq::Agent {
        loop {
            match self.agent(Duration::from_secs(2)) {
                Ok(agent) => return agent,
                Err(err) => {
                    tracing::error!("{what}: {err}; retrying");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    }
}
