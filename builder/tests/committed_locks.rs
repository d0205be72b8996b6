//! The locks committed under recipes/ are well formed and still match
//! their recipes (no network: this is what `build` will check first).

use std::path::Path;

use nodeimg::lock::Lock;
use nodeimg::lock::recipe;

fn check(role: &str) -> Lock {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let recipe = recipe::load(&dir.join(format!("{role}.toml")), &[]).unwrap();
    let lock_path = dir.join(format!("{role}.lock"));
    let lock = Lock::read(&lock_path).unwrap();
    lock.ensure_matches(&lock_path, &recipe).unwrap();
    // Rewriting the lock from its own data gives the committed bytes.
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock.to_toml());
    for wanted in &recipe.wanted {
        assert!(
            lock.packages.iter().any(|p| p.name == wanted.name),
            "{role}.lock lacks wanted package {}",
            wanted.name
        );
    }
    lock
}

#[test]
fn db_lock_matches_its_recipe() {
    let lock = check("db");
    let version = |name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.version.clone())
            .unwrap()
    };
    assert!(version("postgresql-17").starts_with("17."));
    assert!(version("patroni").starts_with("4."));
    assert!(version("postgresql-17-pgvector").starts_with("0.8"));
    assert!(version("etcd-server").starts_with("3.5"));
    // The JIT runtime is excluded on purpose.
    assert!(lock.packages.iter().all(|p| p.name != "libllvm19"));
}

#[test]
fn haproxy_lock_matches_its_recipe() {
    let lock = check("haproxy");
    assert!(
        lock.packages
            .iter()
            .any(|p| p.name == "haproxy" && p.version.starts_with("3.0"))
    );
    assert!(
        lock.packages
            .iter()
            .any(|p| p.name == "pgbouncer" && p.version.starts_with("1.24"))
    );
}

#[test]
fn host_runtime_lock_matches_its_recipe_and_can_fall_back_to_a_snapshot() {
    let lock = check("host-runtime");
    assert!(lock.packages.iter().any(|p| p.name == "docker.io"));
    // trixie's docker.io has no `docker` command (the unit runs it).
    assert!(lock.packages.iter().any(|p| p.name == "docker-cli"));
    // What makes its pins installable later: a snapshot for every source.
    assert!(lock.snapshot.is_some());
    assert!(lock.sources.iter().all(|s| s.snapshot_archive.is_some()));
}

#[test]
fn an_edited_recipe_makes_its_lock_stale() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dir.join("db.toml")).unwrap();
    std::fs::write(
        tmp.path().join("db.toml"),
        text.replace("\"etcd-client\",", ""),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("keys")).unwrap();
    for entry in std::fs::read_dir(dir.join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            tmp.path().join("keys").join(entry.file_name()),
        )
        .unwrap();
    }
    let edited = recipe::load(&tmp.path().join("db.toml"), &[]).unwrap();
    let lock_path = dir.join("db.lock");
    let err = Lock::read(&lock_path)
        .unwrap()
        .ensure_matches(&lock_path, &edited)
        .unwrap_err();
    assert!(err.to_string().contains("stale"), "{err}");
    assert!(err.to_string().contains("nodeimg lock"), "{err}");
}
