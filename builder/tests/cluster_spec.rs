//! The cluster spec as an operator meets it: the example of the operators'
//! topology loads, and each mistake is refused with a message that names
//! the file, the line, the field and the rule.

use std::path::{Path, PathBuf};

use nodeimg::cluster::{ClusterSpec, Dcs, PoolTarget, Role};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

#[test]
fn the_example_loads_with_the_operators_topology() {
    let spec = ClusterSpec::load(&example_path()).unwrap();
    assert_eq!(spec.cluster.name, "keybuzz-pg17");
    assert_eq!(spec.cluster.cidr, "10.0.0.0/16");
    assert_eq!(spec.cluster.dcs, Dcs::Etcd);
    assert_eq!(
        spec.cluster.load_balancer,
        Some("10.0.0.10".parse().unwrap())
    );
    let members: Vec<(Role, String, String)> = spec
        .members()
        .map(|(role, m)| (role, m.name.clone(), m.ip.to_string()))
        .collect();
    let expected = [
        (Role::Db, "db-postgres-01", "10.0.0.120"),
        (Role::Db, "db-postgres-02", "10.0.0.121"),
        (Role::Db, "db-postgres-03", "10.0.0.122"),
        (Role::Haproxy, "haproxy-01", "10.0.0.11"),
        (Role::Haproxy, "haproxy-02", "10.0.0.12"),
    ];
    assert_eq!(
        members,
        expected.map(|(r, n, ip)| (r, n.to_string(), ip.to_string()))
    );
    for (role, name, ip) in expected {
        let (found_role, member) = spec.member_by_ip(ip.parse().unwrap()).unwrap();
        assert_eq!((found_role, member.name.as_str()), (role, name));
        let (found_role, member) = spec.member_by_name(name).unwrap();
        assert_eq!((found_role, member.ip.to_string().as_str()), (role, ip));
    }
    // The load balancer is text for clients, not a member of the cluster.
    assert!(spec.member_by_ip("10.0.0.10".parse().unwrap()).is_none());

    let patroni = &spec.patroni;
    assert_eq!(
        (patroni.ttl, patroni.loop_wait, patroni.retry_timeout),
        (30, 10, 10)
    );
    let parameters = spec.effective_parameters();
    assert_eq!(parameters["jit"], "off");
    assert_eq!(parameters["password_encryption"], "scram-sha-256");
    assert_eq!(parameters["wal_level"], "replica");
    assert_eq!(
        parameters["shared_buffers"], "1GB",
        "the example's own value"
    );
    assert_eq!(spec.ports.postgres, 5432);
    assert_eq!(spec.ports.patroni, 8008);
    assert_eq!(spec.ports.pgbouncer, 6432);
    assert_eq!(spec.postgresql.data_dir, "/var/lib/postgresql/data");

    assert_eq!(spec.databases.len(), 1);
    let database = &spec.databases[0];
    assert_eq!(
        (database.name.as_str(), database.owner.as_str()),
        ("keybuzz", "keybuzz_app")
    );
    assert_eq!(database.extensions, ["vector"]);
    assert_eq!(spec.users[0].name, "keybuzz_app");
    assert_eq!(spec.users[0].databases, ["keybuzz"]);
    let pools: Vec<(&str, PoolTarget)> = spec
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.target))
        .collect();
    assert_eq!(
        pools,
        [
            ("keybuzz", PoolTarget::Primary),
            ("keybuzz_ro", PoolTarget::Replicas)
        ]
    );
    assert_eq!(spec.pgbouncer.pool_mode, "transaction");
    assert_eq!(
        spec.images.keys().collect::<Vec<_>>(),
        ["db", "haproxy"],
        "an image per role"
    );
}

/// Every key in a TOML value, at any depth.
fn keys(value: &toml::Value, into: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                into.push(key.clone());
                keys(inner, into);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| keys(item, into)),
        _ => {}
    }
}

#[test]
fn the_example_holds_no_secret() {
    let text = example_text();
    let document: toml::Value = toml::from_str(&text).unwrap();
    let mut all_keys = Vec::new();
    keys(&document, &mut all_keys);
    let secret_like: Vec<&String> = all_keys
        .iter()
        .filter(|k| k.as_str() != "password_encryption")
        .filter(|k| {
            ["password", "secret", "scram", "private_key", "token"]
                .iter()
                .any(|s| k.contains(s))
        })
        .collect();
    assert!(secret_like.is_empty(), "{secret_like:?}");
    assert!(!text.contains("SCRAM-SHA-256$"), "no verifier either");
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the spec"))
        + 1
}

/// The 1-based line of the last line of `text` containing `needle`.
fn last_line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .rposition(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the spec"))
        + 1
}

/// Writes `text` to a file of its own and loads it; the refusal.
fn refusal(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let err = match ClusterSpec::load(&path) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.starts_with(&format!("cluster spec {}", path.display())),
        "the file is named: {err}"
    );
    // Everything after the file name, for the assertions to read.
    err[format!("cluster spec {}", path.display()).len()..].to_string()
}

/// The example with one text replaced (which must be there).
fn edited(from: &str, to: &str) -> String {
    let text = example_text();
    assert!(text.contains(from), "{from:?} not in the example");
    text.replacen(from, to, 1)
}

fn assert_names(refusal: &str, parts: &[&str]) {
    for part in parts {
        assert!(refusal.contains(part), "{part:?} missing from: {refusal}");
    }
}

#[test]
fn patroni_timings_must_satisfy_loop_wait_plus_twice_retry_timeout_within_ttl() {
    let text = edited("loop_wait = 10", "loop_wait = 15");
    let refusal = refusal(&text);
    assert_names(
        &refusal,
        &[
            &format!(":{}: patroni: ", line_of(&text, "[patroni]")),
            "loop_wait + 2 * retry_timeout <= ttl",
            "15 + 2 * 10 > 30",
        ],
    );
    // Raising ttl to match makes the same spec acceptable.
    let fixed = text.replace("ttl = 30", "ttl = 35");
    ClusterSpec::parse(&fixed, Path::new("fixed.toml")).unwrap();
}

#[test]
fn etcd_needs_an_odd_number_of_db_members() {
    let text = edited(
        "[[db]]\nname = \"db-postgres-03\"\nip = \"10.0.0.122\"\n",
        "",
    );
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: db: ", line_of(&text, "[[db]]")),
            "odd number",
            "quorum",
        ],
    );
    // Raft is kept for existing clusters as they are.
    let raft = text.replace("dcs = \"etcd\"", "dcs = \"raft\"");
    let spec = ClusterSpec::parse(&raft, Path::new("raft.toml")).unwrap();
    assert_eq!(spec.cluster.dcs, Dcs::Raft);
}

#[test]
fn a_member_outside_the_private_network_is_refused() {
    let text = edited("ip = \"10.0.0.122\"", "ip = \"192.168.1.5\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: db[2].ip: ", line_of(&text, "ip = \"192.168.1.5\"")),
            "192.168.1.5 is outside the private network 10.0.0.0/16 (cluster.cidr)",
        ],
    );
    // The example's header quotes this very refusal: it must stay true.
    let quoted = example_text()
        .lines()
        .find_map(|line| line.strip_prefix("#   cluster spec cluster.toml"))
        .expect("the example quotes a refusal")
        .to_string();
    assert!(
        refusal(&text).starts_with(&quoted),
        "the example quotes {quoted:?}"
    );
}

#[test]
fn names_and_addresses_are_unique_across_all_members() {
    // A proxy with a db node's name.
    let text = edited("name = \"haproxy-02\"", "name = \"db-postgres-01\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(
                ":{}: haproxy[1].name: ",
                last_line_of(&text, "name = \"db-postgres-01\"")
            ),
            "duplicate member name \"db-postgres-01\"",
        ],
    );
    // A proxy with a db node's address.
    let text = edited("ip = \"10.0.0.11\"", "ip = \"10.0.0.120\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: haproxy[0].ip: ", last_line_of(&text, "10.0.0.120")),
            "duplicate member address 10.0.0.120",
        ],
    );
    // Two db nodes with one name.
    let text = edited("name = \"db-postgres-02\"", "name = \"db-postgres-01\"");
    assert_names(
        &refusal(&text),
        &["db[1].name: ", "duplicate member name \"db-postgres-01\""],
    );
}

#[test]
fn users_and_databases_must_be_declared_before_they_are_used() {
    let text = edited("owner = \"keybuzz_app\"", "owner = \"kb_admin\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: database[0].owner: ", line_of(&text, "owner = ")),
            "unknown user \"kb_admin\"",
            "[[user]]",
        ],
    );
    let text = edited("databases = [\"keybuzz\"]", "databases = [\"kb\"]");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: user[0].databases: ", line_of(&text, "databases = ")),
            "unknown database \"kb\"",
        ],
    );
    let text = edited(
        "name = \"keybuzz_ro\"\ndatabase = \"keybuzz\"",
        "name = \"keybuzz_ro\"\ndatabase = \"kb\"",
    );
    assert_names(
        &refusal(&text),
        &[
            &format!(
                ":{}: pool[1].database: ",
                line_of(&text, "database = \"kb\"")
            ),
            "unknown database \"kb\"",
        ],
    );
}

#[test]
fn a_cluster_without_db_members_is_refused() {
    let mut text = example_text();
    for n in 1..=3 {
        let block = format!(
            "[[db]]\nname = \"db-postgres-0{n}\"\nip = \"10.0.0.12{}\"\n",
            n - 1
        );
        assert!(text.contains(&block));
        text = text.replace(&block, "");
    }
    // Written nowhere, so no line: the field and the rule say it all.
    assert_names(
        &refusal(&text),
        &[
            ": db: ",
            "a cluster needs at least one db member ([[db]] name and ip)",
        ],
    );
    let explicit_empty = text.replace("[cluster]", "db = []\n\n[cluster]");
    assert_names(
        &refusal(&explicit_empty),
        &["db: ", "at least one db member"],
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_where_they_are_written() {
    let text = edited("[cluster]\n", "[cluster]\ndsc = \"etcd\"\n");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: ", line_of(&text, "dsc = ")),
            "unknown field `dsc`",
        ],
    );
    let text = edited("ttl = 30", "ttl = \"30s\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: ", line_of(&text, "ttl = ")),
            "invalid type: string \"30s\", expected u32",
        ],
    );
    let text = edited("ip = \"10.0.0.121\"", "ip = \"10.0.0.321\"");
    assert_names(
        &refusal(&text),
        &[
            &format!(":{}: ", line_of(&text, "10.0.0.321")),
            "invalid IPv4",
        ],
    );
    let text = edited("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.1/16\"");
    assert_names(
        &refusal(&text),
        &["cluster.cidr: ", "host bits set", "10.0.0.0/16"],
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = ClusterSpec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("No such file"),
        "{err}"
    );
}
