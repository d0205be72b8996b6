//! The Hetzner Cloud plan (`nodeimg plan`): the steps that create a cluster, as
//! `hcloud` commands or as the JSON request bodies of the Hetzner Cloud
//! API. Servers are created stopped, attached to the private network at
//! the address the spec gives them (the create call cannot choose it),
//! then started: on first boot each finds itself in the spec by that IP.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cluster::{ClusterSpec, Role};

fn quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// One API call: method, path, body.
pub struct Step {
    pub method: &'static str,
    pub path: String,
    pub body: Value,
    pub command: String,
}

pub fn steps(spec: &ClusterSpec, user_data: &Path) -> anyhow::Result<Vec<Step>> {
    let h = &spec.hetzner;
    let cluster = &spec.cluster.name;
    let network = format!("{cluster}-net");
    let label = |role: &str| format!("cluster={cluster},role={role}");
    let mut steps = vec![Step {
        method: "POST",
        path: "/v1/networks".into(),
        body: json!({
            "name": network,
            "ip_range": spec.cluster.cidr,
            "subnets": [{"type": "cloud", "network_zone": h.network_zone, "ip_range": spec.cluster.cidr}],
            "labels": {"cluster": cluster},
        }),
        command: format!(
            "hcloud network create --name {} --ip-range {} --label cluster={}\nhcloud network add-subnet {} --type cloud --network-zone {} --ip-range {}",
            quote(&network),
            spec.cluster.cidr,
            quote(cluster),
            quote(&network),
            h.network_zone,
            spec.cluster.cidr
        ),
    }];
    for (role, member) in spec.members() {
        let role_name = role.as_str();
        let file = user_data.join(format!("{role_name}.yaml"));
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "cannot read {}: run `nodeimg cloud-init` first",
                file.display()
            )
        })?;
        let server_type = match role {
            Role::Db => &h.db_server_type,
            Role::Haproxy => &h.haproxy_server_type,
        };
        let mut create_volume = String::new();
        let mut volumes = Vec::new();
        if role == Role::Db {
            let volume = format!("{}-data", member.name);
            steps.push(Step {
                method: "POST",
                path: "/v1/volumes".into(),
                // No format and no automount: the node's cloud-init formats
                // an empty volume XFS and owns the mount.
                body: json!({
                    "name": volume, "size": h.db_volume_gb, "location": h.location,
                    "automount": false, "labels": {"cluster": cluster, "role": role_name},
                }),
                command: format!(
                    "hcloud volume create --name {} --size {} --location {} --label {}",
                    quote(&volume),
                    h.db_volume_gb,
                    h.location,
                    label(role_name)
                ),
            });
            create_volume = format!(" --volume {}", quote(&volume));
            volumes.push(json!(volume));
        }
        steps.push(Step {
            method: "POST",
            path: "/v1/servers".into(),
            body: json!({
                "name": member.name, "server_type": server_type, "image": h.image,
                "location": h.location, "start_after_create": false, "automount": false,
                "user_data": text, "volumes": volumes,
                "labels": {"cluster": cluster, "role": role_name},
            }),
            command: format!(
                "hcloud server create --name {} --type {} --image {} --location {} --start-after-create=false --label {} --user-data-from-file {}{create_volume}",
                quote(&member.name),
                server_type,
                h.image,
                h.location,
                label(role_name),
                quote(&file.display().to_string())
            ),
        });
        steps.push(Step {
            method: "POST",
            path: format!("/v1/servers/{{{}}}/actions/attach_to_network", member.name),
            body: json!({"network": network, "ip": member.ip.to_string()}),
            command: format!(
                "hcloud server attach-to-network {} --network {} --ip {}",
                quote(&member.name),
                quote(&network),
                member.ip
            ),
        });
        steps.push(Step {
            method: "POST",
            path: format!("/v1/servers/{{{}}}/actions/poweron", member.name),
            body: json!({}),
            command: format!("hcloud server poweron {}", quote(&member.name)),
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_gets_its_address_and_db_members_a_volume() {
        let spec = ClusterSpec::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for role in ["db", "haproxy"] {
            std::fs::write(
                dir.path().join(format!("{role}.yaml")),
                format!("#cloud-config\n# {role}\n"),
            )
            .unwrap();
        }
        let steps = steps(&spec, dir.path()).unwrap();
        let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
        assert!(
            commands[0].starts_with(
                "hcloud network create --name keybuzz-pg17-net --ip-range 10.0.0.0/16"
            )
        );
        assert!(commands.contains(&"hcloud server attach-to-network db-postgres-02 --network keybuzz-pg17-net --ip 10.0.0.121"));
        assert_eq!(steps.iter().filter(|s| s.path == "/v1/volumes").count(), 3);
        let server = steps.iter().find(|s| s.path == "/v1/servers").unwrap();
        assert_eq!(server.body["start_after_create"], false);
        assert_eq!(server.body["user_data"], "#cloud-config\n# db\n");
        assert_eq!(server.body["volumes"][0], "db-postgres-01-data");
        let missing = super::steps(&spec, Path::new("/nonexistent"))
            .err()
            .unwrap();
        assert!(format!("{missing:#}").contains("nodeimg cloud-init"));
    }
}
