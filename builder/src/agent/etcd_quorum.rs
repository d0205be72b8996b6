//! etcd membership changes that keep a quorum, one member at a time.
//!
//! A cluster of n voting members needs n/2 + 1 of them answering. Adding a
//! member raises n before the new member answers; removing one lowers n
//! but may remove an answering member. So every change is checked against
//! the members that answer a linearizable read right now, and refused,
//! with a message naming the members, when what would remain could not
//! reach a quorum. Changes are made one at a time: a node does not join
//! while another added member has not started yet, and removals wait for
//! the cluster to answer again before the next one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::etcd::{Etcd, Member};
use crate::agent::etcd_membership::Peer;
use crate::agent::https::ClientTls;

/// Members needed for a quorum among `voters`.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn label(member: &Member) -> String {
    if member.name.is_empty() {
        format!(
            "an unstarted member at {}",
            member.peer_urls.first().map(String::as_str).unwrap_or("?")
        )
    } else {
        member.name.clone()
    }
}

fn names<'a>(members: impl Iterator<Item = &'a Member>) -> String {
    let mut names: Vec<String> = members.map(label).collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// IDs of the members whose client URL serves a linearizable read.
pub fn answering(members: &[Member], tls: &ClientTls) -> BTreeSet<String> {
    members
        .iter()
        .filter(|m| {
            m.client_urls
                .iter()
                .filter_map(|url| Etcd::new(url, tls).ok())
                .any(|etcd| etcd.has_quorum())
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Whether the node with `peer_url` may join now (pure). `replacing` is
/// its stale former self, removed just before it is added again.
pub fn check_join(
    node: &str,
    peer_url: &str,
    members: &[Member],
    answering: &BTreeSet<String>,
    replacing: Option<&str>,
) -> Result<(), String> {
    if let Some(other) = members
        .iter()
        .find(|m| m.name.is_empty() && !m.peer_urls.iter().any(|u| u == peer_url))
    {
        return Err(format!(
            "{} was added to etcd but has not started yet: members join one at a time, so {node} waits until it has",
            label(other)
        ));
    }
    let already = members
        .iter()
        .any(|m| m.peer_urls.iter().any(|u| u == peer_url));
    // Replacing keeps the count; a new member adds one voter that does not
    // answer yet.
    let voters = members.len() + usize::from(replacing.is_none() && !already);
    let up: Vec<&Member> = members
        .iter()
        .filter(|m| answering.contains(&m.id) && Some(m.id.as_str()) != replacing)
        .collect();
    let needed = quorum(voters);
    if up.len() < needed {
        return Err(format!(
            "refusing to add {node} to etcd: the cluster would have {voters} voting members and need {needed} answering for a quorum, but only {} answer ({}); bring the others back first",
            up.len(),
            names(up.into_iter())
        ));
    }
    Ok(())
}

/// The next step of removing the members the spec no longer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Remove this member (id, name) now.
    Remove { id: String, name: String },
    /// Not now, and why (the change would lose quorum, or the member is
    /// the leader).
    Refused(String),
    /// No member left to remove.
    Done,
}

/// Which member to remove next (pure). Members that do not answer go
/// first: removing one never lowers the count of answering members.
pub fn next_removal(
    members: &[Member],
    answering: &BTreeSet<String>,
    leader: Option<&str>,
    removing: &[Peer],
) -> Removal {
    let listed = |m: &Member| {
        removing
            .iter()
            .any(|p| (!m.name.is_empty() && m.name == p.name) || m.peer_urls.contains(&p.peer_url))
    };
    let mut targets: Vec<&Member> = members.iter().filter(|m| listed(m)).collect();
    if targets.is_empty() {
        return Removal::Done;
    }
    targets.sort_by_key(|m| (answering.contains(&m.id), m.name.clone()));
    let mut refusal = None;
    for target in targets {
        if !target.name.is_empty() && Some(target.name.as_str()) == leader {
            refusal.get_or_insert(format!(
                "refusing to remove {} from etcd: it is the Patroni leader; stop it (a stopped leader hands over at once) or switch over to a member the spec keeps, then reload again",
                target.name
            ));
            continue;
        }
        let rest: Vec<&Member> = members.iter().filter(|m| m.id != target.id).collect();
        let up: Vec<&Member> = rest
            .iter()
            .copied()
            .filter(|m| answering.contains(&m.id))
            .collect();
        let needed = quorum(rest.len());
        if up.len() < needed {
            return Removal::Refused(format!(
                "refusing to remove {} from etcd: the {} members left ({}) need {needed} answering for a quorum, but only {} answer ({}); bring the others back, then reload again",
                label(target),
                rest.len(),
                names(rest.iter().copied()),
                up.len(),
                names(up.into_iter())
            ));
        }
        return Removal::Remove {
            id: target.id.clone(),
            name: label(target),
        };
    }
    Removal::Refused(refusal.unwrap_or_default())
}

/// Removes every member of `removing` from the etcd cluster at `local`,
/// one at a time, each only while the rest keeps a quorum. Returns the
/// names removed, or why it stopped (nothing of the rest was changed).
pub fn remove_members(
    local: &str,
    tls: &ClientTls,
    leader_key: &str,
    removing: &[Peer],
) -> Result<Vec<String>, String> {
    let etcd = Etcd::new(local, tls)?;
    let mut removed = Vec::new();
    loop {
        let members = etcd.member_list()?;
        let up = answering(&members, tls);
        let leader = etcd.get(leader_key)?.map(|kv| kv.value);
        match next_removal(&members, &up, leader.as_deref(), removing) {
            Removal::Done => return Ok(removed),
            Removal::Refused(why) => {
                return Err(if removed.is_empty() {
                    why
                } else {
                    format!("removed {} first, then {why}", removed.join(", "))
                });
            }
            Removal::Remove { id, name } => {
                if let Err(err) = etcd.member_remove(&id) {
                    // Another db node, reloaded with the same spec, may
                    // have removed it first.
                    if etcd.member_list()?.iter().any(|m| m.id == id) {
                        return Err(err);
                    }
                    continue;
                }
                tracing::info!(
                    "etcd: removed {name} (no longer in the cluster spec); {} voting members left",
                    members.len() - 1
                );
                removed.push(name);
                // The next change only once the cluster answers again.
                let started = std::time::Instant::now();
                while !etcd.has_quorum() {
                    if started.elapsed() > Duration::from_secs(60) {
                        return Err(format!(
                            "removed {}, then the cluster stopped answering for 60 s; the rest waits for the next reload",
                            removed.join(", ")
                        ));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The members a reload took out of the spec whose etcd removal is still
/// to do: requested at each reload, removed by one thread at a time, kept
/// after a refusal until the next reload.
#[derive(Clone, Default)]
pub struct PendingRemovals {
    peers: Arc<Mutex<Vec<Peer>>>,
    running: Arc<AtomicBool>,
}

impl PendingRemovals {
    /// Adds `more` and, unless a removal is under way, starts removing
    /// every pending member through the local etcd.
    pub fn request(&self, more: Vec<Peer>, local: String, tls: ClientTls, leader_key: String) {
        let mut peers = self.peers.lock().unwrap();
        for peer in more {
            if !peers.iter().any(|p| p.name == peer.name) {
                peers.push(peer);
            }
        }
        if peers.is_empty() || self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let todo = peers.clone();
        drop(peers);
        let this = self.clone();
        std::thread::spawn(move || {
            let names: Vec<&str> = todo.iter().map(|p| p.name.as_str()).collect();
            tracing::info!(
                "etcd: removing {} (no longer in the cluster spec), one at a time",
                names.join(", ")
            );
            let outcome = remove_members(&local, &tls, &leader_key, &todo);
            let mut peers = this.peers.lock().unwrap();
            match outcome {
                Ok(_) => {
                    peers.retain(|p| !todo.iter().any(|t| t.name == p.name));
                    tracing::info!("etcd: the membership is the cluster spec's");
                }
                Err(why) => tracing::error!("etcd membership change refused: {why}"),
            }
            this.running.store(false, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str, ip: u8) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{ip}:2380")],
            client_urls: vec![format!("https://10.0.0.{ip}:2379")],
        }
    }

    fn peer(name: &str, ip: u8) -> Peer {
        Peer {
            name: name.into(),
            client_url: format!("https://10.0.0.{ip}:2379"),
            peer_url: format!("https://10.0.0.{ip}:2380"),
        }
    }

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn five() -> Vec<Member> {
        (1..=5)
            .map(|i| member(&i.to_string(), &format!("db-{i}"), i))
            .collect()
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!(
            [1, 2, 3, 4, 5].map(quorum),
            [1, 2, 2, 3, 3],
            "n/2 + 1 of n voters"
        );
    }

    #[test]
    fn a_node_joins_alone_and_only_when_the_grown_cluster_keeps_a_quorum() {
        let three = &five()[..3];
        let url = "https://10.0.0.4:2380";
        assert_eq!(
            check_join("db-4", url, three, &ids(&["1", "2", "3"]), None),
            Ok(())
        );
        // 4 voters need 3: two answering members are not enough.
        let err = check_join("db-4", url, three, &ids(&["1", "2"]), None).unwrap_err();
        assert!(
            err.contains("refusing to add db-4") && err.contains("need 3"),
            "{err}"
        );
        assert!(err.contains("only 2 answer (db-1, db-2)"), "{err}");
        // db-4 added but not started: db-5 waits for it.
        let mut grown = three.to_vec();
        grown.push(member("9", "", 4));
        let err = check_join(
            "db-5",
            "https://10.0.0.5:2380",
            &grown,
            &ids(&["1", "2", "3"]),
            None,
        )
        .unwrap_err();
        assert!(err.contains("one at a time"), "{err}");
        // db-4 itself, added by an interrupted join, may start.
        assert_eq!(
            check_join("db-4", url, &grown, &ids(&["1", "2", "3"]), None),
            Ok(())
        );
        // A rebuilt db-3 replaces its former self: 3 voters, 2 answering.
        assert_eq!(
            check_join(
                "db-3",
                "https://10.0.0.3:2380",
                three,
                &ids(&["1", "2"]),
                Some("3")
            ),
            Ok(())
        );
    }

    #[test]
    fn removals_go_one_at_a_time_dead_members_first() {
        let members = five();
        let removing = [peer("db-4", 4), peer("db-5", 5)];
        // db-5 does not answer: it goes first.
        assert_eq!(
            next_removal(
                &members,
                &ids(&["1", "2", "3", "4"]),
                Some("db-1"),
                &removing
            ),
            Removal::Remove {
                id: "5".into(),
                name: "db-5".into()
            }
        );
        let four = &members[..4];
        assert_eq!(
            next_removal(four, &ids(&["1", "2", "3", "4"]), Some("db-1"), &removing),
            Removal::Remove {
                id: "4".into(),
                name: "db-4".into()
            }
        );
        assert_eq!(
            next_removal(
                &members[..3],
                &ids(&["1", "2", "3"]),
                Some("db-1"),
                &removing
            ),
            Removal::Done
        );
    }

    #[test]
    fn a_removal_that_would_lose_quorum_is_refused_and_names_the_members() {
        // db-2 and db-3 are down: removing db-4 would leave 4 voters with
        // only db-1 and db-5 answering.
        let removing = [peer("db-4", 4), peer("db-5", 5)];
        let Removal::Refused(why) =
            next_removal(&five(), &ids(&["1", "4", "5"]), Some("db-1"), &removing)
        else {
            panic!("must refuse");
        };
        assert!(
            why.contains("refusing to remove db-4")
                && why.contains("need 3 answering")
                && why.contains("only 2 answer (db-1, db-5)"),
            "{why}"
        );
    }

    #[test]
    fn the_leader_is_never_removed() {
        let removing = [peer("db-5", 5)];
        let all = ids(&["1", "2", "3", "4", "5"]);
        let Removal::Refused(why) = next_removal(&five(), &all, Some("db-5"), &removing) else {
            panic!("must refuse");
        };
        assert!(why.contains("Patroni leader"), "{why}");
        // Another removal may still go ahead.
        let removing = [peer("db-4", 4), peer("db-5", 5)];
        assert_eq!(
            next_removal(&five(), &all, Some("db-5"), &removing),
            Removal::Remove {
                id: "4".into(),
                name: "db-4".into()
            }
        );
    }

    #[test]
    fn an_added_member_that_never_started_is_removed_by_its_address() {
        let mut members = five()[..3].to_vec();
        members.push(member("9", "", 4));
        assert_eq!(
            next_removal(
                &members,
                &ids(&["1", "2", "3"]),
                Some("db-1"),
                &[peer("db-4", 4)]
            ),
            Removal::Remove {
                id: "9".into(),
                name: "an unstarted member at https://10.0.0.4:2380".into()
            }
        );
    }
}
