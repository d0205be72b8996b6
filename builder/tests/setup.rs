//! The README's first command on a fresh clone: `scripts/setup.sh` (with
//! NODEIMG_SKIP_DEMO=1: the demo part has its own test) builds nodeimg and
//! both images from the committed locks, leaves `git status` clean, and
//! gives the same image digests as a build from the same locks elsewhere
//! (another folder, an empty layer cache, the same agent binary).

mod support {
    #[allow(dead_code)]
    pub mod images;
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::images::{repo, run, shared_cache};

/// `<role> <digest>` lines of a build's stdout.
fn digests(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once(" sha256:"))
        .map(|(role, digest)| (role.to_string(), format!("sha256:{digest}")))
        .collect()
}

#[test]
fn setup_on_a_fresh_clone_builds_the_committed_locks_and_leaves_the_tree_clean() {
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("clone");
    let head = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo()));
    run(Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone));
    run(Command::new("git")
        .args(["checkout", "--quiet"])
        .arg(String::from_utf8_lossy(&head.stdout).trim())
        .current_dir(&clone));
    // Kept between runs so a local re-run compiles incrementally; the .debs
    // are the ones every test shares (downloaded once per checkout).
    let target = repo().join("target/fresh-clone");
    let cache = shared_cache(&repo().join("target/fresh-clone-cache"));
    let setup = run(Command::new("bash")
        .arg("scripts/setup.sh")
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", &target)
        .env("NODEIMG_CACHE", &cache)
        .env("NODEIMG_SKIP_DEMO", "1")
        .env_remove("NODEIMG_AGENT"));
    let built = digests(&setup.stdout);
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        ["db", "haproxy"],
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    for role in ["db", "haproxy"] {
        assert!(clone.join(format!("images/{role}.tar")).is_file());
    }
    let status = run(Command::new("git")
        .args(["status", "--porcelain", "--ignored=no"])
        .current_dir(&clone));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "setup.sh changed the working tree"
    );

    // Elsewhere: this checkout's nodeimg, another output folder and an
    // empty layer cache, the clone's binary as the agent (setup.sh lays in
    // the nodeimg it built).
    let elsewhere = work.path().join("elsewhere");
    let agent = target.join("release/nodeimg");
    let other_cache = work.path().join("cache");
    std::fs::create_dir_all(&other_cache).unwrap();
    std::os::unix::fs::symlink(cache.join("debs"), other_cache.join("debs")).unwrap();
    let again = run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["build", "--all", "--output"])
        .arg(&elsewhere)
        .current_dir(repo())
        .env("NODEIMG_CACHE", &other_cache)
        .env("NODEIMG_AGENT", &agent));
    assert_eq!(digests(&again.stdout), built);
    assert!(Path::new(&elsewhere).join("db/index.json").is_file());
}
