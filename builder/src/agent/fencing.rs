//! Fencing of a dead leader, so a hard-killed primary is replaced in
//! seconds rather than after its leader key's TTL (Patroni refuses a TTL
//! under 20 s, and a new etcd leader renews every lease it inherits).
//!
//! Every db node's agent watches the Patroni leader key in etcd. When the
//! leader's Patroni API and its etcd member both stop answering, the node
//! says so under `<namespace><scope>/nodeimg-suspects/<me>` (a key on a
//! short lease). Once a majority of all db members suspect the same leader
//! key (same revision) for longer than `loop_wait + retry_timeout` plus a
//! margin, one of them deletes that key in a transaction that succeeds only
//! if the key is unchanged, and Patroni elects a new leader at once.
//!
//! Why it is safe: a leader that is alive but cut off cannot update its key
//! and demotes itself after `retry_timeout` (Patroni's rule), before the
//! majority acts; a majority is needed, so one replica with a bad link
//! cannot depose a healthy leader; and the delete is conditional, so a key
//! renewed or replaced meanwhile is never touched.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::agent::etcd::Etcd;
use crate::agent::https::ClientTls;

/// What the fencing thread needs to know about the cluster.
#[derive(Debug, Clone)]
pub struct FenceConfig {
    /// The local etcd's client URL, e.g. `https://127.0.0.1:2379`.
    pub etcd: String,
    /// The node's certificate, key and CA, to talk to etcd.
    pub tls: ClientTls,
    /// `<namespace><scope>/`, as Patroni lays out its keys.
    pub prefix: String,
    pub me: String,
    /// Every db member: name, IP.
    pub members: Vec<(String, Ipv4Addr)>,
    pub patroni_port: u16,
    pub etcd_port: u16,
    /// How long the leader must look dead to a majority before its key goes.
    pub grace: Duration,
}

impl FenceConfig {
    /// `loop_wait + retry_timeout` and two seconds: by then a leader that
    /// is alive but cut off from etcd has demoted itself.
    pub fn grace_for(loop_wait: u32, retry_timeout: u32) -> Duration {
        Duration::from_secs(u64::from(loop_wait + retry_timeout) + 2)
    }
}

/// True when `suspects` (the values of every suspicion key) show that a
/// majority of the `members` db members suspect `leader_mark`.
pub fn majority_suspects(suspects: &[String], leader_mark: &str, members: usize) -> bool {
    let agreeing = suspects.iter().filter(|s| *s == leader_mark).count();
    agreeing > members / 2
}

/// Whether something accepts TCP connections at `ip:port` within `timeout`.
fn answers(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok()
}

/// Runs forever (a thread of the db node's agent).
pub fn watch(config: FenceConfig) {
    let etcd = match Etcd::new(&config.etcd, &config.tls) {
        Ok(etcd) => etcd,
        Err(err) => {
            tracing::error!("fencing is off: {err}");
            return;
        }
    };
    let leader_key = format!("{}leader", config.prefix);
    let suspects_prefix = format!("{}nodeimg-suspects/", config.prefix);
    let my_suspicion = format!("{suspects_prefix}{}", config.me);
    // (leader mark, since when it has looked dead from here)
    let mut dead_since: Option<(String, Instant)> = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let leader = match etcd.get(&leader_key) {
            Ok(Some(leader)) if leader.value != config.me => leader,
            Ok(_) => {
                dead_since = None;
                continue;
            }
            // No quorum seen from here: this node must not act.
            Err(_) => continue,
        };
        let Some((_, ip)) = config
            .members
            .iter()
            .find(|(name, _)| *name == leader.value)
        else {
            continue;
        };
        let probe = Duration::from_millis(500);
        let alive =
            answers(*ip, config.patroni_port, probe) || answers(*ip, config.etcd_port, probe);
        let mark = format!("{}@{}", leader.value, leader.mod_revision);
        if alive {
            if dead_since.take().is_some() {
                let _ = etcd.delete(&my_suspicion);
            }
            continue;
        }
        let since = match &dead_since {
            Some((seen, since)) if *seen == mark => *since,
            _ => {
                tracing::warn!(
                    "fencing: leader {} answers neither on Patroni's port nor on etcd's; watching it",
                    leader.value
                );
                let now = Instant::now();
                dead_since = Some((mark.clone(), now));
                now
            }
        };
        // The suspicion outlives a missed beat or two, not a dead agent.
        if etcd.put_leased(&my_suspicion, &mark, 3).is_err() {
            continue;
        }
        if since.elapsed() < config.grace {
            continue;
        }
        let suspects = etcd.values_under(&suspects_prefix).unwrap_or_default();
        if !majority_suspects(&suspects, &mark, config.members.len()) {
            continue;
        }
        // Its member key goes too: Patroni would otherwise ask the dead
        // node for its WAL position before promoting, and wait for a timeout.
        let member_key = format!("{}members/{}", config.prefix, leader.value);
        match etcd.delete_if_unchanged(&leader_key, &leader.mod_revision, &member_key) {
            Ok(true) => tracing::warn!(
                "fencing: leader {} unreachable for {:.0} s from a majority of the db nodes: removed its leader key so a replica takes over now",
                leader.value,
                since.elapsed().as_secs_f64()
            ),
            Ok(false) => {}
            Err(err) => tracing::warn!("fencing: {err}"),
        }
        dead_since = None;
        let _ = etcd.delete(&my_suspicion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_all_members_must_agree_on_the_same_key_revision() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // 3 members, the leader dead: both survivors must agree.
        assert!(!majority_suspects(&s(&["db-1@7"]), "db-1@7", 3));
        assert!(majority_suspects(&s(&["db-1@7", "db-1@7"]), "db-1@7", 3));
        // A suspicion of an older revision of the key does not count.
        assert!(!majority_suspects(&s(&["db-1@7", "db-1@6"]), "db-1@7", 3));
        // 5 members: three.
        assert!(!majority_suspects(&s(&["a@1", "a@1"]), "a@1", 5));
        assert!(majority_suspects(&s(&["a@1", "a@1", "a@1"]), "a@1", 5));
    }

    #[test]
    fn the_grace_outlasts_patronis_own_demotion() {
        // A cut-off leader demotes after retry_timeout (plus one loop).
        assert_eq!(FenceConfig::grace_for(1, 5), Duration::from_secs(8));
        assert_eq!(FenceConfig::grace_for(10, 10), Duration::from_secs(22));
    }
}
