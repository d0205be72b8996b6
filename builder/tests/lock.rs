//! `nodeimg lock` end to end: the real binary against a signed archive that
//! the test writes and serves on loopback, with two sources and two keys.

mod support {
    pub mod archive;
    pub mod pgp;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use support::archive::{Archive, Pkg, Server};
use support::pgp::{KeyKind, TestKey, generate_key};

fn keys() -> &'static (TestKey, TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            generate_key(KeyKind::Ed25519, "Base Archive <base@example.invalid>"),
            generate_key(KeyKind::Rsa2048, "Extra Archive <extra@example.invalid>"),
            generate_key(KeyKind::Ed25519, "Stranger <stranger@example.invalid>"),
        )
    })
}

fn base_packages() -> Vec<Pkg> {
    vec![
        Pkg::new("libc6", "2.41-1"),
        Pkg::new("libfoo", "1.0-1"),
        Pkg::new("libfoo", "2.0-1").depends("libc6 (>= 2.38)"),
        Pkg::new("libbar", "3.0-1").depends("libc6"),
        Pkg::new("libbaz", "1.0-1"),
        // The higher Priority wins among providers of a virtual package.
        Pkg {
            priority: "standard".into(),
            ..Pkg::new("mta-real", "1.0").provides("mail-transport-agent")
        },
        Pkg::new("mta-other", "1.0")
            .provides("mail-transport-agent")
            .conflicts("mail-transport-agent"),
        Pkg::new("debconf", "1.5.91").arch("all"),
        Pkg::new("perl", "5.40.1-6"),
        Pkg::new("z1", "1.0").depends("libfoo"),
        Pkg::new("y1", "1.0").depends("libfoo (<< 2.0)"),
        Pkg::new("pyfast", "1.0").provides("python3-speedups (= 2.0)"),
        Pkg::new("wants-new-speedups", "1.0").depends("python3-speedups (>= 3.0)"),
    ]
}

fn extra_packages() -> Vec<Pkg> {
    vec![
        Pkg::new("app", "1.0-1")
            .pre_depends("libc6 (>= 2.38)")
            .depends(
                "libfoo (>= 2.0), libbar | libbaz, mail-transport-agent, \
                 debconf (>= 0.5) | debconf-2.0, perl:any, python3-speedups (>= 2.0)",
            ),
        Pkg::new("libfoo", "1.5-1"),
        Pkg::new("top", "1.0").depends("broken"),
        Pkg::new("broken", "1.0").depends("missing-thing (>= 1)"),
        Pkg::new("x1", "1.0").depends("libfoo (<< 1.0)"),
    ]
}

struct Fixture {
    dir: tempfile::TempDir,
    archive: Archive,
    server: Server,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(&dir.path().join("archive"));
        let (base_key, extra_key, _) = keys();
        archive.write_suite("base", &base_packages(), &[base_key]);
        archive.write_suite("extra", &extra_packages(), &[extra_key]);
        let server = Server::start(&archive.root);
        let keys_dir = dir.path().join("recipes/keys");
        std::fs::create_dir_all(&keys_dir).unwrap();
        std::fs::write(keys_dir.join("base.asc"), base_key.public_armored()).unwrap();
        std::fs::write(keys_dir.join("extra.asc"), extra_key.public_armored()).unwrap();
        std::fs::write(keys_dir.join("stranger.asc"), keys().2.public_armored()).unwrap();
        Fixture {
            dir,
            archive,
            server,
        }
    }

    fn recipe_path(&self) -> PathBuf {
        self.dir.path().join("recipes/app.toml")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.path().join("recipes/app.lock")
    }

    /// Writes a recipe with both sources; `packages` is the [packages] body.
    fn write_recipe(&self, packages: &str) {
        self.write_recipe_with_keys(packages, "keys/extra.asc");
    }

    fn write_recipe_with_keys(&self, packages: &str, extra_key: &str) {
        let url = self.server.url();
        let text = format!(
            r#"[recipe]
name = "app"

[[source]]
name = "base"
url = "{url}"
suite = "base"
components = ["main"]
keys = ["keys/base.asc"]

[[source]]
name = "extra"
url = "{url}/"
suite = "extra"
components = ["main"]
keys = ["{extra_key}"]

[packages]
{packages}
"#
        );
        std::fs::write(self.recipe_path(), text).unwrap();
    }

    fn nodeimg(&self, args: &[&str]) -> Output {
        self.nodeimg_with_cache(args, &self.dir.path().join("cache"))
    }

    fn nodeimg_with_cache(&self, args: &[&str], cache: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(args)
            .env("NODEIMG_CACHE", cache)
            .env("NODEIMG_BACKOFF_MS", "10")
            .env_remove("NODEIMG_LOG")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn lock(&self, extra: &[&str]) -> Output {
        let recipe = self.recipe_path();
        let mut args = vec!["lock", recipe.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.nodeimg(&args)
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.lock_path()).unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "expected success, stderr:\n{}",
        stderr(output)
    );
}

/// Asserts a failure whose message contains every needle, and returns it.
#[track_caller]
fn assert_fails(output: &Output, needles: &[&str]) -> String {
    let err = stderr(output);
    assert!(!output.status.success(), "expected failure, stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    err
}

const APP: &str = r#"include = ["app"]
exclude = ["debconf", "perl"]"#;

fn parse_lock(text: &str) -> toml::Table {
    text.parse().unwrap()
}

fn package<'a>(lock: &'a toml::Table, name: &str) -> Option<&'a toml::Table> {
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_table().unwrap())
        .find(|p| p["name"].as_str() == Some(name))
}

fn strings(value: &toml::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn resolves_across_two_signed_sources() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let lock = parse_lock(&fx.lock_text());

    let app = package(&lock, "app").unwrap();
    assert_eq!(app["source"].as_str(), Some("extra"));
    assert_eq!(strings(&app["required_by"]), ["recipe"]);
    // A package of source `extra` depends on one that source `base` carries
    // at a higher version than `extra` does: the highest version wins.
    let libfoo = package(&lock, "libfoo").unwrap();
    assert_eq!(libfoo["version"].as_str(), Some("2.0-1"));
    assert_eq!(libfoo["source"].as_str(), Some("base"));
    assert_eq!(strings(&libfoo["required_by"]), ["app"]);
    // The first alternative is taken; the second is not installed.
    assert!(package(&lock, "libbar").is_some());
    assert!(package(&lock, "libbaz").is_none());
    // Pre-Depends and Depends both pull libc6; both dependents are recorded.
    assert_eq!(
        strings(&package(&lock, "libc6").unwrap()["required_by"]),
        ["app", "libbar", "libfoo"]
    );
    // A virtual package is satisfied by its one installable provider, and a
    // versioned dependency by a versioned Provides.
    assert!(package(&lock, "mta-other").is_none());
    assert_eq!(
        strings(&package(&lock, "mta-real").unwrap()["required_by"]),
        ["app"]
    );
    assert_eq!(
        strings(&package(&lock, "pyfast").unwrap()["required_by"]),
        ["app"]
    );
    // Excluded packages are not installed, and the lock says who asked.
    assert!(package(&lock, "debconf").is_none());
    assert!(package(&lock, "perl").is_none());
    let excluded: Vec<(&str, Vec<&str>)> = lock["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), strings(&e["wanted_by"])))
        .collect();
    assert_eq!(excluded, [("debconf", vec!["app"]), ("perl", vec!["app"])]);

    // Packages are listed with their real size, hash and download path.
    let path = libfoo["path"].as_str().unwrap();
    let deb = std::fs::read(fx.archive.file(path)).unwrap();
    assert_eq!(libfoo["size"].as_integer(), Some(deb.len() as i64));
    use sha2::Digest;
    assert_eq!(
        libfoo["sha256"].as_str().unwrap(),
        support::archive::hex(&sha2::Sha256::digest(&deb))
    );

    // Both sources record the key that signed them.
    let sources = lock["source"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for source in sources {
        assert_eq!(source["signed_by"].as_array().unwrap().len(), 1);
        // The InRelease it was verified from is kept beside the lock, by hash.
        let sha = source["inrelease_sha256"].as_str().unwrap();
        let kept = std::fs::read(fx.lock_path().with_file_name("inrelease").join(sha)).unwrap();
        assert_eq!(support::archive::hex(&sha2::Sha256::digest(&kept)), sha);
        assert!(String::from_utf8_lossy(&kept).starts_with("-----BEGIN PGP SIGNED MESSAGE-----"));
    }
    assert_eq!(lock["source_date_epoch"].as_integer(), Some(1_789_199_741));
    let names: Vec<&str> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "packages are sorted by name");
}

#[test]
fn same_inputs_give_the_same_bytes_and_a_warm_cache_downloads_no_index() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let first = fx.lock_text();
    let cold_requests = fx.server.requests();
    assert!(
        cold_requests
            .iter()
            .any(|(path, _)| path.contains("Packages"))
    );

    // Second run, warm cache: only the InRelease freshness checks go out.
    fx.server.clear_log();
    assert_ok(&fx.lock(&[]));
    assert_eq!(fx.lock_text(), first);
    let warm = fx.server.requests();
    assert_eq!(warm.len(), 2, "{warm:?}");
    assert!(
        warm.iter()
            .all(|(path, status)| path.ends_with("/InRelease") && *status == 304),
        "{warm:?}"
    );

    // A fresh cache in another directory: byte-identical lock.
    let other_cache = fx.dir.path().join("other-cache");
    std::fs::remove_file(fx.lock_path()).unwrap();
    let recipe = fx.recipe_path();
    assert_ok(&fx.nodeimg_with_cache(&["lock", recipe.to_str().unwrap()], &other_cache));
    assert_eq!(fx.lock_text(), first);
}

#[test]
fn offline_uses_only_the_cache() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_fails(&fx.lock(&["--offline"]), &["no cached index", "--offline"]);
    assert!(!fx.lock_path().exists(), "no lock after a failed run");

    assert_ok(&fx.lock(&[]));
    let online = fx.lock_text();
    // Mirror gone: --offline still works from the cache.
    fx.server.behaviour.lock().unwrap().fail_always = true;
    fx.server.clear_log();
    std::fs::remove_file(fx.lock_path()).unwrap();
    assert_ok(&fx.lock(&["--offline"]));
    assert_eq!(fx.lock_text(), online);
    assert!(fx.server.requests().is_empty());
}

#[test]
fn check_detects_a_stale_lock() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    assert_ok(&fx.lock(&["--check"]));

    // The archive moves: a new libbar. --check fails and names the change.
    let mut base = base_packages();
    base.push(Pkg::new("libbar", "3.1-1").depends("libc6"));
    fx.archive.write_suite("base", &base, &[&keys().0]);
    assert_fails(&fx.lock(&["--check"]), &["stale", "libbar 3.0-1 → 3.1-1"]);

    // Re-locking writes it and says what changed, package by package.
    let before = fx.lock_text();
    let relock = fx.lock(&[]);
    assert_ok(&relock);
    let said = stderr(&relock);
    assert!(said.contains("1 change(s)"), "{said}");
    assert!(said.contains("~ libbar 3.0-1 → 3.1-1"), "{said}");
    assert!(said.contains("then commit it"), "{said}");
    assert_ne!(fx.lock_text(), before);
    fx.archive
        .write_suite("base", &base_packages(), &[&keys().0]);
    assert_ok(&fx.lock(&[]));

    // The recipe changes: also stale, and --check writes nothing.
    let before = fx.lock_text();
    fx.write_recipe(
        r#"include = ["app", "libbaz"]
exclude = ["debconf", "perl"]"#,
    );
    assert_fails(
        &fx.lock(&["--check"]),
        &["stale", "recipe changed", "+ libbaz"],
    );
    assert_eq!(fx.lock_text(), before);

    // Comments and whitespace do not change the recipe checksum.
    assert_ok(&fx.lock(&[]));
    let text = std::fs::read_to_string(fx.recipe_path()).unwrap();
    std::fs::write(
        fx.recipe_path(),
        format!("# a comment\n{}", text.replace('\n', "\r\n")),
    )
    .unwrap();
    assert_ok(&fx.lock(&["--check"]));
}

#[test]
fn a_hand_edited_lock_is_refused() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let text = fx.lock_text();
    std::fs::write(
        fx.lock_path(),
        text.replacen("version = \"2.0-1\"", "version = \"2.1-1\"", 1),
    )
    .unwrap();
    assert_fails(
        &fx.lock(&["--check"]),
        &["inconsistent lock", "content_sha256", "do not edit"],
    );

    let dangling = text.replacen("required_by = [\"app\"]", "required_by = [\"ghost\"]", 1);
    std::fs::write(fx.lock_path(), dangling).unwrap();
    assert_fails(
        &fx.lock(&["--check"]),
        &["inconsistent lock", "`ghost`, which is not in the lock"],
    );
}

#[test]
fn version_conflicts_between_dependents_are_resolved_by_restarting() {
    let fx = Fixture::new();
    // z1 takes any libfoo (2.0-1 first), then y1 needs << 2.0.
    fx.write_recipe(r#"include = ["z1", "y1"]"#);
    assert_ok(&fx.lock(&[]));
    let lock = parse_lock(&fx.lock_text());
    let libfoo = package(&lock, "libfoo").unwrap();
    assert_eq!(libfoo["version"].as_str(), Some("1.5-1"));
    assert_eq!(libfoo["source"].as_str(), Some("extra"));
    assert_eq!(strings(&libfoo["required_by"]), ["y1", "z1"]);
}

fn assert_no_lock(fx: &Fixture) {
    assert!(
        !fx.lock_path().exists(),
        "a failed lock must not leave a file"
    );
}

#[test]
fn unknown_package_suggests_close_names() {
    let fx = Fixture::new();
    fx.write_recipe(r#"include = ["libfo"]"#);
    assert_fails(
        &fx.lock(&[]),
        &["`libfo` does not exist", "did you mean", "libfoo"],
    );
    assert_no_lock(&fx);
}

#[test]
fn unsatisfiable_dependency_prints_the_chain() {
    let fx = Fixture::new();
    fx.write_recipe(r#"include = ["top"]"#);
    assert_fails(
        &fx.lock(&[]),
        &[
            "missing-thing (>= 1)",
            "broken ← top ← recipe",
            "no such package",
        ],
    );
    assert_no_lock(&fx);
}

#[test]
fn constraints_no_candidate_meets_are_explained() {
    let fx = Fixture::new();
    fx.write_recipe(r#"include = ["libfoo (>= 3.0)"]"#);
    assert_fails(
        &fx.lock(&[]),
        &["libfoo (>= 3.0)", "available: 2.0-1, 1.5-1, 1.0-1"],
    );
    // Two dependents whose constraints on one package cannot both hold.
    fx.write_recipe(
        r#"include = ["app", "x1"]
exclude = ["debconf", "perl"]"#,
    );
    assert_fails(&fx.lock(&[]), &["libfoo (<< 1.0)", "x1"]);
    // A versioned dependency on a virtual package that is provided only at
    // a lower version.
    fx.write_recipe(r#"include = ["wants-new-speedups"]"#);
    assert_fails(
        &fx.lock(&[]),
        &["python3-speedups (>= 3.0)", "wants-new-speedups ← recipe"],
    );
    assert_no_lock(&fx);
}

#[test]
fn conflicting_packages_are_refused() {
    let fx = Fixture::new();
    fx.write_recipe(r#"include = ["mta-real", "mta-other"]"#);
    assert_fails(
        &fx.lock(&[]),
        &[
            "mta-other",
            "conflicts with",
            "mta-real",
            "cannot be installed together",
        ],
    );
    assert_no_lock(&fx);
}

#[test]
fn signatures_from_untrusted_keys_are_refused() {
    let fx = Fixture::new();
    fx.write_recipe_with_keys(APP, "keys/stranger.asc");
    assert_fails(
        &fx.lock(&[]),
        &["source `extra`", "signature", "recipes/keys"],
    );
    assert_no_lock(&fx);
}

#[test]
fn a_tampered_inrelease_is_refused() {
    let fx = Fixture::new();
    let inrelease = fx.archive.file("dists/extra/InRelease");
    let text = std::fs::read_to_string(&inrelease).unwrap();
    std::fs::write(&inrelease, text.replacen("Suite: extra", "Suite: extrb", 1)).unwrap();
    fx.write_recipe(APP);
    assert_fails(&fx.lock(&[]), &["source `extra`", "signature"]);
    assert_no_lock(&fx);
}

#[test]
fn a_packages_index_that_does_not_match_the_signed_hash_is_refused() {
    let fx = Fixture::new();
    // Replace the index files after signing: same names, other packages.
    let signed_release = std::fs::read(fx.archive.file("dists/extra/InRelease")).unwrap();
    fx.archive
        .write_suite("extra", &[Pkg::new("app", "9.9")], &[&keys().1]);
    std::fs::write(fx.archive.file("dists/extra/InRelease"), signed_release).unwrap();
    fx.write_recipe(APP);
    assert_fails(
        &fx.lock(&[]),
        &[
            "source `extra`",
            "expected SHA-256",
            "main/binary-amd64/Packages",
        ],
    );
    assert_no_lock(&fx);
    // Nothing unverified was cached: a retry still refuses.
    assert_fails(&fx.lock(&[]), &["expected SHA-256"]);
}

#[test]
fn a_failing_mirror_is_retried_then_reported() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    fx.server.behaviour.lock().unwrap().fail_next = 2;
    assert_ok(&fx.lock(&["--attempts", "3"]));
    let requests = fx.server.requests();
    assert_eq!(
        requests.iter().filter(|(_, status)| *status == 503).count(),
        2
    );

    std::fs::remove_file(fx.lock_path()).unwrap();
    fx.server.behaviour.lock().unwrap().fail_always = true;
    let cache = fx.dir.path().join("cold-cache");
    let recipe = fx.recipe_path();
    let output = fx.nodeimg_with_cache(
        &["lock", recipe.to_str().unwrap(), "--attempts", "3"],
        &cache,
    );
    assert_fails(
        &output,
        &["HTTP 503 after 3 attempts", "/dists/base/InRelease"],
    );
    assert_no_lock(&fx);
}

#[test]
fn an_unreachable_mirror_is_reported() {
    let fx = Fixture::new();
    // A port nothing listens on: bind, take the port, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recipe = format!(
        "[recipe]\nname = \"app\"\n[[source]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{port}\"\n\
         suite = \"base\"\ncomponents = [\"main\"]\nkeys = [\"keys/base.asc\"]\n[packages]\ninclude = [\"app\"]\n"
    );
    std::fs::write(fx.recipe_path(), recipe).unwrap();
    assert_fails(
        &fx.lock(&["--attempts", "2"]),
        &["unreachable", "after 2 attempts", "--offline"],
    );
    assert_no_lock(&fx);
}

#[test]
fn malformed_recipes_name_the_line() {
    let fx = Fixture::new();
    std::fs::write(
        fx.recipe_path(),
        "[recipe]\nname = \"app\"\n[packages\ninclude = []\n",
    )
    .unwrap();
    assert_fails(&fx.lock(&[]), &["app.toml", "line 3"]);

    fx.write_recipe("include = [\"app\"]\nflavour = \"extra\"");
    assert_fails(
        &fx.lock(&[]),
        &["app.toml", "unknown field `flavour`", "line"],
    );

    fx.write_recipe("include = [\"app | libfoo\"]");
    assert_fails(&fx.lock(&[]), &["exactly one package"]);
    assert_no_lock(&fx);
}

#[test]
fn parameters_are_applied_and_checked() {
    let fx = Fixture::new();
    let url = fx.server.url();
    let recipe = format!(
        r#"[recipe]
name = "app"
[params.which]
default = "bar"
[[source]]
name = "base"
url = "{url}"
suite = "base"
components = ["main"]
keys = ["keys/base.asc"]
[[source]]
name = "extra"
url = "{url}"
suite = "extra"
components = ["main"]
keys = ["keys/extra.asc"]
when = "which == 'foo'"
[packages]
include = ["lib{{{{ which }}}}"]
"#
    );
    std::fs::write(fx.recipe_path(), recipe).unwrap();
    assert_ok(&fx.lock(&[]));
    let lock = parse_lock(&fx.lock_text());
    assert!(package(&lock, "libbar").is_some());
    assert_eq!(
        lock["source"].as_array().unwrap().len(),
        1,
        "the `when` source is off"
    );

    let default_lock = fx.lock_text();
    assert_ok(&fx.lock(&["--param", "which=foo"]));
    // A variant gets a lock of its own; the default lock is left as it was.
    assert_eq!(fx.lock_text(), default_lock);
    let variant_path = fx.dir.path().join("recipes/app.which-foo.lock");
    let lock = parse_lock(&std::fs::read_to_string(&variant_path).unwrap());
    assert_eq!(
        package(&lock, "libfoo").unwrap()["version"].as_str(),
        Some("2.0-1")
    );
    assert_eq!(lock["source"].as_array().unwrap().len(), 2);
    assert_eq!(lock["params"]["which"].as_str(), Some("foo"));
    // Giving the default value explicitly is the default lock.
    assert_ok(&fx.lock(&["--param", "which=bar", "--check"]));

    assert_fails(
        &fx.lock(&["--param", "flavor=x"]),
        &["unknown parameter `flavor`", "which"],
    );
}

#[test]
fn an_unsigned_inrelease_is_refused() {
    let fx = Fixture::new();
    let release = std::fs::read(fx.archive.file("dists/base/Release")).unwrap();
    std::fs::write(fx.archive.file("dists/base/InRelease"), release).unwrap();
    fx.write_recipe(APP);
    assert_fails(
        &fx.lock(&[]),
        &[
            "source `base`",
            "not an OpenPGP cleartext-signed message",
            "refusing unsigned data",
        ],
    );
    assert_no_lock(&fx);
}

#[test]
fn a_missing_key_file_is_named() {
    let fx = Fixture::new();
    fx.write_recipe_with_keys(APP, "keys/nope.asc");
    assert_fails(
        &fx.lock(&[]),
        &[
            "source `extra`",
            "keys/nope.asc",
            "relative to the recipe's folder",
        ],
    );
    assert_no_lock(&fx);
}

fn cached_debs(fx: &Fixture) -> Vec<PathBuf> {
    match std::fs::read_dir(fx.dir.path().join("cache/debs/sha256")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn fetch_fills_and_verifies_the_package_cache() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    let recipe = fx.recipe_path();
    let recipe = recipe.to_str().unwrap();
    assert_fails(
        &fx.nodeimg(&["fetch", recipe]),
        &["cannot read the lock", "nodeimg lock"],
    );
    assert_ok(&fx.lock(&[]));
    assert_fails(
        &fx.nodeimg(&["fetch", recipe, "--offline"]),
        &["not in the cache", "--offline"],
    );

    assert_ok(&fx.nodeimg(&["fetch", recipe]));
    let lock = parse_lock(&fx.lock_text());
    let count = lock["package"].as_array().unwrap().len();
    assert_eq!(cached_debs(&fx).len(), count);

    // A damaged cached copy is detected, removed and downloaded again.
    let libfoo = package(&lock, "libfoo").unwrap();
    let cached = fx
        .dir
        .path()
        .join("cache/debs/sha256")
        .join(libfoo["sha256"].as_str().unwrap());
    std::fs::write(&cached, b"garbage").unwrap();
    assert_fails(
        &fx.nodeimg(&["fetch", recipe, "--offline"]),
        &["libfoo 2.0-1", "not in the cache"],
    );
    assert!(!cached.exists(), "the damaged copy is removed");
    fx.server.clear_log();
    assert_ok(&fx.nodeimg(&["fetch", recipe]));
    let refetched: Vec<_> = fx
        .server
        .requests()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        refetched,
        [format!("/{}", libfoo["path"].as_str().unwrap())]
    );
    assert_ok(&fx.nodeimg(&["fetch", recipe, "--offline"]));
}

#[test]
fn fetch_refuses_a_deb_that_does_not_match_the_lock() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let lock = parse_lock(&fx.lock_text());
    let libbar = package(&lock, "libbar").unwrap();
    std::fs::write(
        fx.archive.file(libbar["path"].as_str().unwrap()),
        b"tampered",
    )
    .unwrap();
    let recipe = fx.recipe_path();
    assert_fails(
        &fx.nodeimg(&["fetch", recipe.to_str().unwrap(), "--attempts", "1"]),
        &["package libbar 3.0-1", "expected", "nothing was kept"],
    );
    let bad = fx
        .dir
        .path()
        .join("cache/debs/sha256")
        .join(libbar["sha256"].as_str().unwrap());
    assert!(!bad.exists());
}

#[test]
fn fetch_refuses_a_stale_lock() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    fx.write_recipe(
        r#"include = ["app", "libbaz"]
exclude = ["debconf", "perl"]"#,
    );
    let recipe = fx.recipe_path();
    assert_fails(
        &fx.nodeimg(&["fetch", recipe.to_str().unwrap()]),
        &["stale", "nodeimg lock"],
    );
    assert!(cached_debs(&fx).is_empty());
}

#[test]
fn fetch_from_a_folder_of_debs_needs_no_mirror_and_names_what_is_missing() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let recipe = fx.recipe_path();
    let recipe = recipe.to_str().unwrap();
    let lock = parse_lock(&fx.lock_text());
    let packages = lock["package"].as_array().unwrap();

    // Every locked .deb but libfoo, at any depth, under Debian's file names.
    let folder = fx.dir.path().join("usb");
    let libfoo = package(&lock, "libfoo").unwrap();
    for p in packages {
        if p["name"].as_str() == Some("libfoo") {
            continue;
        }
        let path = p["path"].as_str().unwrap();
        let target = folder.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(fx.archive.file(path), &target).unwrap();
    }
    // A file named like libfoo with other bytes is not taken for it.
    let libfoo_path = libfoo["path"].as_str().unwrap();
    let libfoo_name = libfoo_path.rsplit('/').next().unwrap();
    std::fs::write(folder.join(libfoo_name), b"not the locked libfoo").unwrap();
    std::fs::write(folder.join("unrelated_1.0_all.deb"), b"something else").unwrap();

    fx.server.behaviour.lock().unwrap().fail_always = true;
    fx.server.clear_log();
    assert_fails(
        &fx.nodeimg(&["fetch", recipe, "--from-dir", "usb"]),
        &[
            &format!("1 of {} locked packages are not in usb", packages.len()),
            &format!("libfoo 2.0-1 ({libfoo_name})"),
        ],
    );
    assert_eq!(cached_debs(&fx).len(), packages.len() - 1);

    std::fs::copy(fx.archive.file(libfoo_path), folder.join(libfoo_name)).unwrap();
    assert_ok(&fx.nodeimg(&["fetch", recipe, "--from-dir", "usb"]));
    assert_eq!(cached_debs(&fx).len(), packages.len());
    assert!(
        fx.server.requests().is_empty(),
        "the mirror was asked: {:?}",
        fx.server.requests()
    );
    assert_ok(&fx.nodeimg(&["fetch", recipe, "--offline"]));
}

#[test]
fn build_refuses_a_stale_lock_and_an_unwritable_output() {
    let fx = Fixture::new();
    fx.write_recipe(APP);
    assert_ok(&fx.lock(&[]));
    let recipe = fx.recipe_path();
    let recipe = recipe.to_str().unwrap();

    // The output path is a file: a clear error, nothing written there.
    let blocker = fx.dir.path().join("images");
    std::fs::write(&blocker, b"not a directory").unwrap();
    fx.write_recipe(APP);
    assert_fails(
        &fx.nodeimg(&["build", recipe, "--output", "images"]),
        &["images"],
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory");

    fx.write_recipe(
        r#"include = ["app", "libbaz"]
exclude = ["debconf", "perl"]"#,
    );
    assert_fails(
        &fx.nodeimg(&["build", recipe, "--output", "out"]),
        &["stale", "nodeimg lock"],
    );
    assert!(!fx.dir.path().join("out/app").exists());
    assert!(
        cached_debs(&fx).is_empty(),
        "nothing is downloaded for a stale lock"
    );
}

#[test]
fn build_names_a_package_whose_deb_is_not_a_deb() {
    // The test archive's packages are stand-ins, not real .debs: the build
    // must stop on the first one, name it, and leave no image behind.
    let fx = Fixture::new();
    fx.write_recipe(r#"include = ["libbaz"]"#);
    assert_ok(&fx.lock(&[]));
    let recipe = fx.recipe_path();
    assert_fails(
        &fx.nodeimg(&["build", recipe.to_str().unwrap(), "--output", "out"]),
        &["package libbaz", "not a .deb"],
    );
    let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path().join("out"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        leftovers.iter().all(|n| *n == 0),
        "no half-written image: {leftovers:?}"
    );
}
