//! A minimal client of etcd's v3 JSON gateway (keys and values base64),
//! over TLS with the node's client certificate: what the agent's own
//! tasks (fencing) need of the DCS.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::agent::https::ClientTls;

/// A key as etcd's JSON gateway returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub value: String,
    pub mod_revision: String,
}

/// A minimal client of etcd's v3 JSON gateway (keys and values base64).
pub struct Etcd {
    agent: ureq::Agent,
    base: String,
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(value: &Value) -> String {
    value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The key after every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Etcd {
    /// A client of the etcd at `base` (`https://127.0.0.1:2379`) that
    /// shows the node's certificate (etcd runs with client-cert-auth).
    pub fn new(base: &str, tls: &ClientTls) -> Result<Etcd, String> {
        Ok(Etcd {
            agent: tls.agent(Duration::from_secs(2))?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| format!("{url}: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
    }

    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, String> {
        let answer = self.call("/v3/kv/range", json!({"key": b64(key)}))?;
        Ok(answer["kvs"].get(0).map(|kv| KeyValue {
            value: unb64(&kv["value"]),
            mod_revision: kv["mod_revision"].as_str().unwrap_or("").to_string(),
        }))
    }

    pub fn values_under(&self, prefix: &str) -> Result<Vec<String>, String> {
        let answer = self.call(
            "/v3/kv/range",
            json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))}),
        )?;
        Ok(answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| unb64(&kv["value"]))
            .collect())
    }

    /// Puts `key` on a lease of `ttl` seconds, so it vanishes with its writer.
    pub fn put_leased(&self, key: &str, value: &str, ttl: u64) -> Result<(), String> {
        let lease = self.call("/v3/lease/grant", json!({"TTL": ttl.to_string()}))?;
        let id = lease["ID"].as_str().unwrap_or("0").to_string();
        self.call(
            "/v3/kv/put",
            json!({"key": b64(key), "value": b64(value), "lease": id}),
        )?;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.call("/v3/kv/deleterange", json!({"key": b64(key)}))
            .map(|_| ())
    }

    /// Deletes `key` and `also` only if `key`'s mod_revision is still
    /// `revision`.
    pub fn delete_if_unchanged(
        &self,
        key: &str,
        revision: &str,
        also: &str,
    ) -> Result<bool, String> {
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": revision}],
                "success": [
                    {"request_delete_range": {"key": b64(key)}},
                    {"request_delete_range": {"key": b64(also)}},
                ],
            }),
        )?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_after_the_prefix() {
        assert_eq!(prefix_end("/nodeimg/c/s/"), "/nodeimg/c/s0");
    }
}
