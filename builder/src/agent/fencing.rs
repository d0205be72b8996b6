//! Fencing of a dead leader, so a hard-killed primary is replaced in
//! seconds rather than after its leader key's TTL (Patroni refuses a TTL
//! under 20 s).
//!
//! The evidence is the leader's lease, never the leader key: Patroni's
//! etcd3 code renews its term by keeping its lease alive and does not
//! rewrite the key, so an unchanged key proves nothing. Every db node's
//! agent reads the leader key's lease through LeaseTimeToLive once a second.
//! A keepalive sets the remaining TTL back to the granted TTL, so granted
//! minus remaining is how long ago the lease was last kept alive: etcd's own
//! count, not something sampled here. (A new etcd leader also resets every
//! TTL: that only delays fencing.) When the lease has not been kept alive
//! for the grace period, the node says so under
//! `<namespace><scope>/nodeimg-suspects/<me>` (a key on a short lease of its
//! own). Once a majority of etcd's voting members suspect the same lease
//! (only suspicions written under a voting member's name count, and the
//! membership is read each time: members come and go with the spec), one
//! of them checks that the leader key still lives on that lease and revokes
//! the lease: what its expiry would do, only sooner. Patroni elects a new
//! leader at once.
//!
//! Why it is safe: the grace is `loop_wait + retry_timeout` plus a margin.
//! A leader renews at least every `loop_wait`; one that cannot renew for
//! `retry_timeout` demotes itself (Patroni's rule). So a lease unrenewed for
//! the grace belongs to a leader that is dead, paused, or has already
//! demoted. A leader that still renews, through any etcd member (an
//! asymmetric partition, a hung REST thread), resets its TTL and is never
//! suspected. A majority must agree, so one node with a bad view cannot act,
//! and without an etcd quorum nothing can be read or revoked at all.

use std::time::Duration;

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

/// True when a majority of the `voters` (etcd's started voting members, by
/// name) suspect `leader_mark`; `suspects` are (member name, suspicion).
pub fn majority_suspects(
    suspects: &[(String, String)],
    leader_mark: &str,
    voters: &[String],
) -> bool {
    let agreeing = suspects
        .iter()
        .filter(|(name, mark)| mark == leader_mark && voters.contains(name))
        .count();
    agreeing > voters.len() / 2
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
    let mut suspecting = false;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let leader = match etcd.get(&leader_key) {
            Ok(Some(leader)) if leader.value != config.me && leader.lease != "0" => leader,
            Ok(_) => continue,
            // No quorum seen from here: this node must not act.
            Err(_) => continue,
        };
        let ttl = match etcd.lease_ttl(&leader.lease) {
            Ok(Some(ttl)) => ttl,
            // Gone: expired or revoked; Patroni elects without us.
            Ok(None) => continue,
            Err(_) => continue,
        };
        let unrenewed = Duration::from_secs(ttl.unrenewed_for() as u64);
        let mark = format!("{}@{}", leader.value, leader.lease);
        if unrenewed < config.grace {
            if std::mem::take(&mut suspecting) {
                let _ = etcd.delete(&my_suspicion);
            }
            continue;
        }
        if !suspecting {
            tracing::warn!(
                "fencing: leader {}'s lease {} has not been kept alive for {:.0} s (TTL {} s left)",
                leader.value,
                leader.lease,
                unrenewed.as_secs_f64(),
                ttl.seconds
            );
            suspecting = true;
        }
        // The suspicion outlives a missed beat or two, not a dead agent.
        if etcd.put_leased(&my_suspicion, &mark, 3).is_err() {
            continue;
        }
        let Ok(members) = etcd.member_list() else {
            continue;
        };
        // Every voter counts in the majority; an added member that has not
        // started yet cannot suspect, so it makes agreement harder, never
        // easier.
        let voters: Vec<String> = members.into_iter().map(|m| m.name).collect();
        let suspects: Vec<(String, String)> = etcd
            .entries_under(&suspects_prefix)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, mark)| Some((key.strip_prefix(&suspects_prefix)?.to_string(), mark)))
            .collect();
        if !majority_suspects(&suspects, &mark, &voters) {
            continue;
        }
        // Only while the key still names that lease: a new term is never
        // touched. Revoking deletes what lives on the lease (the leader key,
        // Patroni's member key); the member key goes explicitly too, so
        // Patroni does not ask the dead node for its WAL position first.
        match etcd.key_on_lease(&leader_key, &leader.lease) {
            Ok(true) => {}
            _ => continue,
        }
        match etcd.revoke(&leader.lease) {
            Ok(()) => {
                let _ = etcd.delete(&format!("{}members/{}", config.prefix, leader.value));
                tracing::warn!(
                    "fencing: a majority of the db nodes saw leader {}'s lease unrenewed for {:.0} s: revoked it, so a replica takes over now",
                    leader.value,
                    unrenewed.as_secs_f64()
                );
            }
            Err(err) => tracing::warn!("fencing: {err}"),
        }
        suspecting = false;
        let _ = etcd.delete(&my_suspicion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_the_voting_members_must_agree_on_the_same_lease() {
        let s = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(n, m)| (n.to_string(), m.to_string()))
                .collect::<Vec<_>>()
        };
        let voters = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let three = voters(&["db-1", "db-2", "db-3"]);
        // 3 members, the leader dead: both survivors must agree.
        assert!(!majority_suspects(
            &s(&[("db-2", "db-1@7")]),
            "db-1@7",
            &three
        ));
        assert!(majority_suspects(
            &s(&[("db-2", "db-1@7"), ("db-3", "db-1@7")]),
            "db-1@7",
            &three
        ));
        // A suspicion of another lease (an earlier term) does not count.
        assert!(!majority_suspects(
            &s(&[("db-2", "db-1@7"), ("db-3", "db-1@6")]),
            "db-1@7",
            &three
        ));
        // Nor one written under a name etcd no longer counts as a voter
        // (a removed node still running).
        assert!(!majority_suspects(
            &s(&[("db-2", "db-1@7"), ("db-5", "db-1@7")]),
            "db-1@7",
            &three
        ));
        // 5 voters, or 4 with one added and not started (no name): three.
        let two = s(&[("db-2", "a@1"), ("db-3", "a@1")]);
        let three_agree = s(&[("db-2", "a@1"), ("db-3", "a@1"), ("db-4", "a@1")]);
        let five = voters(&["db-1", "db-2", "db-3", "db-4", "db-5"]);
        assert!(!majority_suspects(&two, "a@1", &five));
        assert!(majority_suspects(&three_agree, "a@1", &five));
        assert!(!majority_suspects(
            &two,
            "a@1",
            &voters(&["db-1", "db-2", "db-3", ""])
        ));
    }

    #[test]
    fn the_lease_says_how_long_ago_it_was_kept_alive() {
        use crate::agent::etcd::LeaseTtl;
        let ttl = |seconds, granted| LeaseTtl { seconds, granted };
        assert_eq!(ttl(20, 20).unrenewed_for(), 0);
        assert_eq!(ttl(8, 20).unrenewed_for(), 12);
        // A lease granted longer than asked (a new etcd leader's reset
        // never reports more than granted): never negative.
        assert_eq!(ttl(25, 20).unrenewed_for(), 0);
        let grace = FenceConfig::grace_for(5, 5);
        assert!(Duration::from_secs(ttl(9, 20).unrenewed_for() as u64) < grace);
        assert!(Duration::from_secs(ttl(8, 20).unrenewed_for() as u64) >= grace);
    }

    #[test]
    fn the_grace_outlasts_patronis_own_demotion() {
        // A cut-off leader demotes after retry_timeout (plus one loop).
        assert_eq!(FenceConfig::grace_for(1, 5), Duration::from_secs(8));
        assert_eq!(FenceConfig::grace_for(10, 10), Duration::from_secs(22));
    }
}
