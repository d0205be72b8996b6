//! The Hetzner Cloud plan (`nodeimg plan`): the steps that create a cluster, as
//! `hcloud` commands or as the JSON request bodies of the Hetzner Cloud
//! API. Servers are created stopped, attached to the private network at
//! the address the spec gives them (the create call cannot choose it),
//! then started: on first boot each finds itself in the spec by that IP.
//!
//! The network boundary: a Hetzner Firewall, applied by label to every
//! server of the cluster, admits nothing on the public side but SSH from
//! `[hetzner] ssh_source_ips`; the load balancer sits on the private
//! network at `cluster.load_balancer` (no public interface unless asked)
//! and forwards PgBouncer's port to the proxies' private IPs.

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
    steps.extend(firewall_steps(spec));
    for (role, member) in spec.members() {
        let role_name = role.as_str();
        let file = user_data.join(format!("{}.yaml", member.name));
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
                "public_net": {"enable_ipv4": h.public_ipv4, "enable_ipv6": true},
            }),
            command: format!(
                "hcloud server create --name {} --type {} --image {} --location {} --start-after-create=false --label {} --user-data-from-file {}{create_volume}{}",
                quote(&member.name),
                server_type,
                h.image,
                h.location,
                label(role_name),
                quote(&file.display().to_string()),
                if h.public_ipv4 { "" } else { " --without-ipv4" }
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
    steps.extend(load_balancer_steps(spec, &network));
    Ok(steps)
}

/// The cluster's Hetzner Firewall: no inbound rule but SSH from the
/// configured ranges, so the public side reaches nothing else; applied to
/// every server labelled with the cluster (those created below too).
fn firewall_steps(spec: &ClusterSpec) -> Vec<Step> {
    let cluster = &spec.cluster.name;
    let name = format!("{cluster}-firewall");
    let sources = &spec.hetzner.ssh_source_ips;
    let rules: Vec<Value> = if sources.is_empty() {
        Vec::new()
    } else {
        vec![json!({
            "direction": "in", "protocol": "tcp", "port": "22", "source_ips": sources,
            "description": "SSH from the operators' ranges",
        })]
    };
    let mut command = format!(
        "hcloud firewall create --name {} --label cluster={}",
        quote(&name),
        quote(cluster)
    );
    if !sources.is_empty() {
        command.push_str(&format!(
            "\nhcloud firewall add-rule {} --direction in --protocol tcp --port 22 --source-ips {} --description {}",
            quote(&name),
            quote(&sources.join(",")),
            quote("SSH from the operators' ranges")
        ));
    }
    command.push_str(&format!(
        "\nhcloud firewall apply-to-resource {} --type label_selector --label-selector cluster={}",
        quote(&name),
        quote(cluster)
    ));
    vec![Step {
        method: "POST",
        path: "/v1/firewalls".into(),
        body: json!({
            "name": name,
            "labels": {"cluster": cluster},
            "rules": rules,
            "apply_to": [{"type": "label_selector", "label_selector": {"selector": format!("cluster={cluster}")}}],
        }),
        command,
    }]
}

/// The load balancer of the operators' topology, at `cluster.load_balancer`
/// on the private network, forwarding PgBouncer (and optionally HAProxy's
/// ports) to every proxy by private IP, with TCP health checks. None when
/// the spec names no load balancer address.
fn load_balancer_steps(spec: &ClusterSpec, network: &str) -> Vec<Step> {
    let Some(address) = spec.cluster.load_balancer else {
        return Vec::new();
    };
    let h = &spec.hetzner;
    let cluster = &spec.cluster.name;
    let name = format!("{cluster}-lb");
    let mut ports = vec![spec.ports.pgbouncer];
    if h.load_balancer_haproxy_ports {
        ports.extend([spec.ports.haproxy_primary, spec.ports.haproxy_replicas]);
    }
    let services: Vec<Value> = ports
        .iter()
        .map(|port| {
            json!({
                "protocol": "tcp", "listen_port": port, "destination_port": port,
                "proxyprotocol": false,
                "health_check": {"protocol": "tcp", "port": port, "interval": 5, "timeout": 3, "retries": 2},
            })
        })
        .collect();
    let mut create = format!(
        "hcloud load-balancer create --name {} --type {} --location {} --algorithm-type round_robin --label cluster={}",
        quote(&name),
        h.load_balancer_type,
        h.location,
        quote(cluster)
    );
    if !h.load_balancer_public {
        create.push_str(&format!(
            "\nhcloud load-balancer disable-public-interface {}",
            quote(&name)
        ));
    }
    for port in &ports {
        create.push_str(&format!(
            "\nhcloud load-balancer add-service {lb} --protocol tcp --listen-port {port} --destination-port {port}\nhcloud load-balancer update-service {lb} --listen-port {port} --health-check-protocol tcp --health-check-port {port} --health-check-interval 5s --health-check-timeout 3s --health-check-retries 2",
            lb = quote(&name)
        ));
    }
    let mut steps = vec![
        Step {
            method: "POST",
            path: "/v1/load_balancers".into(),
            body: json!({
                "name": name, "load_balancer_type": h.load_balancer_type, "location": h.location,
                "algorithm": {"type": "round_robin"}, "public_interface": h.load_balancer_public,
                "labels": {"cluster": cluster}, "services": services,
            }),
            command: create,
        },
        Step {
            method: "POST",
            path: format!("/v1/load_balancers/{{{name}}}/actions/attach_to_network"),
            body: json!({"network": network, "ip": address.to_string()}),
            command: format!(
                "hcloud load-balancer attach-to-network {} --network {} --ip {address}",
                quote(&name),
                quote(network)
            ),
        },
    ];
    for member in &spec.haproxy_members {
        steps.push(Step {
            method: "POST",
            path: format!("/v1/load_balancers/{{{name}}}/actions/add_target"),
            body: json!({"type": "server", "server": {"id": format!("{{{}}}", member.name)}, "use_private_ip": true}),
            command: format!(
                "hcloud load-balancer add-target {} --server {} --use-private-ip",
                quote(&name),
                quote(&member.name)
            ),
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_spec(extra: &str) -> ClusterSpec {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml"),
        )
        .unwrap()
        .replace("[hetzner]\n", &format!("[hetzner]\n{extra}"));
        ClusterSpec::parse(&text, Path::new("cluster.toml")).unwrap()
    }

    fn user_data(spec: &ClusterSpec) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (_, member) in spec.members() {
            std::fs::write(
                dir.path().join(format!("{}.yaml", member.name)),
                format!("#cloud-config\n# {}\n", member.name),
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn every_member_gets_its_address_its_own_user_data_and_db_members_a_volume() {
        let spec = example_spec("");
        let dir = user_data(&spec);
        let steps = steps(&spec, dir.path()).unwrap();
        let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
        assert!(
            commands[0].starts_with(
                "hcloud network create --name keybuzz-pg17-net --ip-range 10.0.0.0/16"
            )
        );
        assert!(commands.contains(&"hcloud server attach-to-network db-postgres-02 --network keybuzz-pg17-net --ip 10.0.0.121"));
        assert_eq!(steps.iter().filter(|s| s.path == "/v1/volumes").count(), 3);
        let servers: Vec<&Step> = steps.iter().filter(|s| s.path == "/v1/servers").collect();
        assert_eq!(servers.len(), 5);
        for server in &servers {
            let name = server.body["name"].as_str().unwrap();
            assert_eq!(server.body["start_after_create"], false);
            // Each server gets the file made for it (its own TLS key).
            assert_eq!(
                server.body["user_data"],
                format!("#cloud-config\n# {name}\n")
            );
            assert_eq!(server.body["public_net"]["enable_ipv4"], true);
            assert!(server.command.contains(&format!("{name}.yaml")));
        }
        assert_eq!(servers[0].body["volumes"][0], "db-postgres-01-data");
        let missing = super::steps(&spec, Path::new("/nonexistent"))
            .err()
            .unwrap();
        assert!(format!("{missing:#}").contains("nodeimg cloud-init"));
    }

    /// The bodies carry the fields the Hetzner Cloud API documents for
    /// POST /firewalls, /load_balancers and their actions, with allowed values.
    #[test]
    fn the_firewall_admits_nothing_public_and_the_load_balancer_is_private() {
        let spec = example_spec("");
        let dir = user_data(&spec);
        let steps = steps(&spec, dir.path()).unwrap();
        let firewall = steps.iter().find(|s| s.path == "/v1/firewalls").unwrap();
        assert_eq!(firewall.body["name"], "keybuzz-pg17-firewall");
        assert_eq!(
            firewall.body["rules"],
            json!([]),
            "no inbound rule: nothing public answers"
        );
        let apply = &firewall.body["apply_to"][0];
        assert_eq!(apply["type"], "label_selector");
        assert_eq!(apply["label_selector"]["selector"], "cluster=keybuzz-pg17");
        // Created before any server, so none is ever exposed.
        let first_server = steps.iter().position(|s| s.path == "/v1/servers").unwrap();
        assert!(
            steps
                .iter()
                .position(|s| s.path == "/v1/firewalls")
                .unwrap()
                < first_server
        );
        assert!(firewall.command.contains("hcloud firewall apply-to-resource keybuzz-pg17-firewall --type label_selector --label-selector cluster=keybuzz-pg17"));
        assert!(!firewall.command.contains("add-rule"));

        let lb = steps
            .iter()
            .find(|s| s.path == "/v1/load_balancers")
            .unwrap();
        for field in ["name", "load_balancer_type", "algorithm", "location"] {
            assert!(!lb.body[field].is_null(), "{field}");
        }
        assert_eq!(lb.body["algorithm"]["type"], "round_robin");
        assert_eq!(lb.body["public_interface"], false);
        let services = lb.body["services"].as_array().unwrap();
        assert_eq!(services.len(), 1);
        let service = &services[0];
        assert_eq!(service["protocol"], "tcp");
        assert_eq!(service["listen_port"], 6432);
        assert_eq!(service["destination_port"], 6432);
        assert_eq!(service["proxyprotocol"], false);
        for field in ["protocol", "port", "interval", "timeout", "retries"] {
            assert!(
                !service["health_check"][field].is_null(),
                "health_check.{field}"
            );
        }
        let attach = steps
            .iter()
            .find(|s| s.path == "/v1/load_balancers/{keybuzz-pg17-lb}/actions/attach_to_network")
            .unwrap();
        assert_eq!(
            attach.body,
            json!({"network": "keybuzz-pg17-net", "ip": "10.0.0.10"})
        );
        let targets: Vec<&Step> = steps
            .iter()
            .filter(|s| s.path.ends_with("/actions/add_target"))
            .collect();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].body["type"], "server");
        assert_eq!(targets[0].body["use_private_ip"], true);
        assert_eq!(targets[0].body["server"]["id"], "{haproxy-01}");
        assert!(
            lb.command
                .contains("hcloud load-balancer disable-public-interface keybuzz-pg17-lb")
        );
        assert!(
            targets[1]
                .command
                .ends_with("--server haproxy-02 --use-private-ip")
        );
    }

    #[test]
    fn ssh_ranges_ipv6_only_servers_and_haproxy_ports_when_asked() {
        let spec = example_spec(
            "ssh_source_ips = [\"203.0.113.0/24\"]\npublic_ipv4 = false\nload_balancer_haproxy_ports = true\n",
        );
        let dir = user_data(&spec);
        let steps = steps(&spec, dir.path()).unwrap();
        let firewall = steps.iter().find(|s| s.path == "/v1/firewalls").unwrap();
        assert_eq!(
            firewall.body["rules"],
            json!([{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["203.0.113.0/24"], "description": "SSH from the operators' ranges"}])
        );
        assert!(firewall.command.contains("--source-ips 203.0.113.0/24"));
        let server = steps.iter().find(|s| s.path == "/v1/servers").unwrap();
        assert_eq!(server.body["public_net"]["enable_ipv4"], false);
        assert!(server.command.ends_with("--without-ipv4"));
        let lb = steps
            .iter()
            .find(|s| s.path == "/v1/load_balancers")
            .unwrap();
        let ports: Vec<u64> = lb.body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["listen_port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [6432, 5000, 5001]);
        let bad = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml"),
        )
        .unwrap()
        .replace(
            "[hetzner]\n",
            "[hetzner]\nssh_source_ips = [\"everyone\"]\n",
        );
        let err = ClusterSpec::parse(&bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hetzner.ssh_source_ips") && err.contains("not a CIDR"),
            "{err}"
        );
    }
}
