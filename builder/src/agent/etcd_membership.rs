//! How a db node's etcd member starts: the node rebuilt with a blank volume
//! (the immutable way to repair one) or a node added to the spec must join
//! the etcd cluster that exists, not bootstrap a new one.
//!
//! - Data in the etcd data directory: etcd restarts from it (the initial
//!   cluster settings are ignored).
//! - No data, and no peer serves a linearizable read (no cluster with a
//!   quorum exists yet): the static bootstrap every first start uses.
//! - No data, and a peer's cluster has a quorum: this node joins it. A
//!   started member of this node's name is this node's former self (its
//!   data is gone), so it is removed; then this node is added by its peer
//!   URL (unless an earlier, interrupted join already added it) and etcd
//!   starts with `initial-cluster-state: existing` and the cluster's
//!   current membership. Only one member joins at a time, and only while
//!   the grown cluster keeps a quorum (etcd_quorum.rs).

use std::path::Path;
use std::time::Duration;

use crate::agent::etcd::{Etcd, Member};
use crate::agent::etcd_quorum;
use crate::agent::https::ClientTls;

/// How etcd is to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From the data directory (settings of the first start ignored).
    FromData,
    /// A first start of the whole cluster: every member from the spec.
    Bootstrap,
    /// Joining the cluster that exists, with its membership as
    /// `name=peer-url,...`.
    Join { initial_cluster: String },
}

/// One db member of the spec: name, its client URL, its peer URL.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
}

/// What to do about the membership, from what the peers said (pure, so
/// every case is tested without a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Remove this stale member (this node's former self) first.
    RemoveThenAdd {
        stale_id: String,
    },
    Add,
    /// Already a member (added by an interrupted join, or listed by the
    /// static bootstrap and never started): start and join.
    AlreadyListed,
}

pub fn change_for(me: &Peer, members: &[Member]) -> Change {
    if let Some(stale) = members
        .iter()
        .find(|m| m.name == me.name && !m.name.is_empty())
    {
        return Change::RemoveThenAdd {
            stale_id: stale.id.clone(),
        };
    }
    if members.iter().any(|m| m.peer_urls.contains(&me.peer_url)) {
        return Change::AlreadyListed;
    }
    Change::Add
}

/// `name=peer-url,...` for etcd's `initial-cluster`: the new member, still
/// nameless in the list, is this node.
pub fn initial_cluster(me: &Peer, members: &[Member]) -> String {
    let mut entries: Vec<String> = members
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls.first()?;
            let name = if m.peer_urls.contains(&me.peer_url) {
                &me.name
            } else {
                &m.name
            };
            (!name.is_empty()).then(|| format!("{name}={url}"))
        })
        .collect();
    entries.sort();
    entries.join(",")
}

/// Decides how etcd starts, changing the membership when this node joins.
/// Retries while peers answer but cannot change the membership (a quorum
/// lost for a moment), for up to `patience`.
pub fn prepare(
    me: &Peer,
    peers: &[Peer],
    data_dir: &Path,
    tls: &ClientTls,
    patience: Duration,
) -> Result<Start, String> {
    if data_dir.join("member").exists() {
        return Ok(Start::FromData);
    }
    let started = std::time::Instant::now();
    loop {
        match try_join(me, peers, tls) {
            Ok(start) => return Ok(start),
            Err(err) if started.elapsed() < patience => {
                tracing::warn!("etcd: cannot join the cluster yet ({err}); retrying in 5 s");
                std::thread::sleep(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

fn try_join(me: &Peer, peers: &[Peer], tls: &ClientTls) -> Result<Start, String> {
    let Some(peer) = peers
        .iter()
        .filter(|p| p.name != me.name)
        .filter_map(|p| Etcd::new(&p.client_url, tls).ok().map(|e| (p, e)))
        .find(|(_, etcd)| etcd.has_quorum())
    else {
        tracing::info!(
            "etcd: no peer has a cluster with a quorum and this node has no etcd data: bootstrapping the cluster as the spec lists it"
        );
        return Ok(Start::Bootstrap);
    };
    let (peer, etcd) = peer;
    let members = etcd.member_list()?;
    let change = change_for(me, &members);
    let replacing = match &change {
        Change::RemoveThenAdd { stale_id } => Some(stale_id.as_str()),
        _ => None,
    };
    let up = etcd_quorum::answering(&members, tls);
    etcd_quorum::check_join(&me.name, &me.peer_url, &members, &up, replacing)?;
    let members = match change {
        Change::RemoveThenAdd { stale_id } => {
            tracing::info!(
                "etcd: {} is listed as a started member but this node has no etcd data (a rebuilt node): removing the stale member {stale_id} through {}, then adding this node",
                me.name,
                peer.name
            );
            etcd.member_remove(&stale_id)?;
            etcd.member_add(&me.peer_url)?
        }
        Change::Add => {
            tracing::info!(
                "etcd: {} is not a member of the cluster: adding it through {}",
                me.name,
                peer.name
            );
            etcd.member_add(&me.peer_url)?
        }
        Change::AlreadyListed => members,
    };
    Ok(Start::Join {
        initial_cluster: initial_cluster(me, &members),
    })
}

/// A node rebuilt blank under a leader's name must not find that leader's
/// key naming it: Patroni would take the lock as its own and rebuild its
/// data from any member, possibly one behind the synchronous standby, and
/// lose acknowledged writes. So before Patroni starts on an empty data
/// directory, a leader key that names this node (its former self, dead) is
/// ended through a peer: its lease is revoked, as its expiry would, and the
/// synchronous standby takes over. Returns whether a key was ended.
pub fn end_former_leadership(
    me: &Peer,
    peers: &[Peer],
    leader_key: &str,
    tls: &ClientTls,
) -> Result<bool, String> {
    let Some(etcd) = peers
        .iter()
        .filter(|p| p.name != me.name)
        .filter_map(|p| Etcd::new(&p.client_url, tls).ok())
        .find(|etcd| etcd.has_quorum())
    else {
        return Ok(false);
    };
    let Some(leader) = etcd.get(leader_key)? else {
        return Ok(false);
    };
    if leader.value != me.name || leader.lease == "0" {
        return Ok(false);
    }
    if !etcd.key_on_lease(leader_key, &leader.lease)? {
        return Ok(false);
    }
    etcd.revoke(&leader.lease)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Peer {
        Peer {
            name: "db-2".into(),
            client_url: "https://10.0.0.2:2379".into(),
            peer_url: "https://10.0.0.2:2380".into(),
        }
    }

    fn member(id: &str, name: &str, ip: u8) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{ip}:2380")],
            client_urls: vec![format!("https://10.0.0.{ip}:2379")],
        }
    }

    #[test]
    fn a_rebuilt_node_replaces_its_former_self() {
        let members = [
            member("1", "db-1", 1),
            member("2", "db-2", 2),
            member("3", "db-3", 3),
        ];
        assert_eq!(
            change_for(&me(), &members),
            Change::RemoveThenAdd {
                stale_id: "2".into()
            }
        );
    }

    #[test]
    fn a_new_node_is_added_and_an_interrupted_join_is_not_repeated() {
        let members = [member("1", "db-1", 1), member("3", "db-3", 3)];
        assert_eq!(change_for(&me(), &members), Change::Add);
        let added = [
            member("1", "db-1", 1),
            member("9", "", 2),
            member("3", "db-3", 3),
        ];
        assert_eq!(change_for(&me(), &added), Change::AlreadyListed);
        assert_eq!(
            initial_cluster(&me(), &added),
            "db-1=https://10.0.0.1:2380,db-2=https://10.0.0.2:2380,db-3=https://10.0.0.3:2380"
        );
    }

    #[test]
    fn data_on_disk_means_a_plain_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("member")).unwrap();
        let tls = ClientTls {
            ca: "/nonexistent".into(),
            cert: "/nonexistent".into(),
            key: "/nonexistent".into(),
        };
        assert_eq!(
            prepare(&me(), &[], dir.path(), &tls, Duration::ZERO),
            Ok(Start::FromData)
        );
    }
}
