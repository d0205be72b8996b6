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
    /// The lease the key lives on (`0` for none), as etcd prints IDs.
    pub lease: String,
}

/// What LeaseTimeToLive says of a lease: the seconds left, and the TTL
/// it was granted with. A keepalive sets `seconds` back to `granted` (so
/// does a new etcd leader, for every lease): `granted - seconds` is how
/// long ago the lease was last kept alive, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    pub seconds: i64,
    pub granted: i64,
}

impl LeaseTtl {
    /// Whole seconds since the last keepalive (or reset), at least.
    pub fn unrenewed_for(&self) -> i64 {
        (self.granted - self.seconds).max(0)
    }
}

/// A member as `member/list` and `member/add` report it. A member added
/// but not yet started has no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

fn urls(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

fn members_of(answer: &Value) -> Vec<Member> {
    answer["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| Member {
            id: m["ID"].as_str().unwrap_or_default().to_string(),
            name: m["name"].as_str().unwrap_or_default().to_string(),
            peer_urls: urls(&m["peerURLs"]),
            client_urls: urls(&m["clientURLs"]),
        })
        .collect()
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
            lease: kv["lease"].as_str().unwrap_or("0").to_string(),
        }))
    }

    /// (key, value) of every key starting with `prefix`.
    pub fn entries_under(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let answer = self.call(
            "/v3/kv/range",
            json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))}),
        )?;
        Ok(answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| (unb64(&kv["key"]), unb64(&kv["value"])))
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

    /// Puts `key` without a lease.
    pub fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.call("/v3/kv/put", json!({"key": b64(key), "value": b64(value)}))
            .map(|_| ())
    }

    /// Creates `key` (on a lease of `ttl` seconds) only if it does not
    /// exist, in one transaction: true for the one caller that created it.
    pub fn claim(&self, key: &str, value: &str, ttl: u64) -> Result<bool, String> {
        let lease = self.call("/v3/lease/grant", json!({"TTL": ttl.to_string()}))?;
        let id = lease["ID"].as_str().unwrap_or("0").to_string();
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"request_put": {"key": b64(key), "value": b64(value), "lease": id}}],
            }),
        )?;
        let won = answer["succeeded"].as_bool().unwrap_or(false);
        if !won {
            let _ = self.revoke(&id);
        }
        Ok(won)
    }

    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.call("/v3/kv/deleterange", json!({"key": b64(key)}))
            .map(|_| ())
    }
}

impl Etcd {
    /// The seconds left on `lease` (a keepalive sets it back to the granted
    /// TTL), or None when the lease is gone.
    pub fn lease_ttl(&self, lease: &str) -> Result<Option<LeaseTtl>, String> {
        let answer = self.call("/v3/lease/timetolive", json!({"ID": lease}))?;
        let number = |v: &Value| {
            v.as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .or_else(|| v.as_i64())
        };
        let ttl = number(&answer["TTL"]).unwrap_or(-1);
        Ok((ttl > 0).then(|| LeaseTtl {
            seconds: ttl,
            granted: number(&answer["grantedTTL"]).unwrap_or(ttl),
        }))
    }

    /// Ends a lease as its expiry would: every key on it is deleted.
    pub fn revoke(&self, lease: &str) -> Result<(), String> {
        self.call("/v3/lease/revoke", json!({"ID": lease}))
            .map(|_| ())
    }

    /// Whether `key` still lives on `lease` (a linearizable read).
    pub fn key_on_lease(&self, key: &str, lease: &str) -> Result<bool, String> {
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [{"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": lease}],
            }),
        )?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// True when this member serves a linearizable read: its cluster has a
    /// quorum.
    pub fn has_quorum(&self) -> bool {
        self.call("/v3/kv/range", json!({"key": b64("/nodeimg-quorum-probe")}))
            .is_ok_and(|answer| answer.get("header").is_some())
    }

    pub fn member_list(&self) -> Result<Vec<Member>, String> {
        Ok(members_of(
            &self.call("/v3/cluster/member/list", json!({}))?,
        ))
    }

    /// Adds a member by its peer URL; returns the membership after it.
    pub fn member_add(&self, peer_url: &str) -> Result<Vec<Member>, String> {
        Ok(members_of(&self.call(
            "/v3/cluster/member/add",
            json!({"peerURLs": [peer_url]}),
        )?))
    }

    pub fn member_remove(&self, id: &str) -> Result<(), String> {
        self.call("/v3/cluster/member/remove", json!({"ID": id}))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_after_the_prefix() {
        assert_eq!(prefix_end("/nodeimg/c/s/"), "/nodeimg/c/s0");
    }

    #[test]
    fn members_are_read_as_the_gateway_prints_them() {
        let answer = json!({"members": [
            {"ID": "1234", "name": "db-1", "peerURLs": ["https://10.0.0.1:2380"], "clientURLs": ["https://10.0.0.1:2379"]},
            {"ID": "99", "peerURLs": ["https://10.0.0.2:2380"]},
        ]});
        let members = members_of(&answer);
        assert_eq!(members[0].name, "db-1");
        assert_eq!(members[1].name, "", "added, not started");
        assert_eq!(members[1].peer_urls, ["https://10.0.0.2:2380"]);
        assert_eq!(members[0].client_urls, ["https://10.0.0.1:2379"]);
        assert!(members[1].client_urls.is_empty());
    }
}
