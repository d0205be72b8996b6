//! Builds both role images once per test process, with this build of
//! nodeimg (stripped) as the agent, and loads them into Docker.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The agent laid into the images: this build of nodeimg, stripped as a
/// release build would be.
pub fn stripped_agent(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("nodeimg");
    std::fs::copy(env!("CARGO_BIN_EXE_nodeimg"), &path).unwrap();
    run(Command::new("strip").arg(&path));
    path
}

/// `work`/cache: a cache of its own (layers) whose .debs and signed
/// Packages indexes are the ones every test shares, so each is downloaded
/// once per checkout.
pub fn shared_cache(work: &Path) -> PathBuf {
    let cache = work.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let debs = repo().join("target/test-package-cache/debs");
    std::fs::create_dir_all(&debs).unwrap();
    link_once(&debs, &cache.join("debs"));
    // The signed Packages indexes the locks were made from, shared too.
    let packages = repo().join("target/test-package-cache/packages");
    std::fs::create_dir_all(&packages).unwrap();
    link_once(&packages, &cache.join("packages"));
    cache
}

/// A symlink `link` → `target`, unless there is one: tests running side by
/// side may make it at the same moment.
fn link_once(target: &Path, link: &Path) {
    match std::os::unix::fs::symlink(target, link) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other.unwrap(),
    }
}

/// The digest of the one manifest a layout's index names.
pub fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

pub struct LoadedImages {
    pub db: String,
    pub haproxy: String,
}

/// Builds db and haproxy into target/test-cluster/ (its layer cache kept
/// between runs, the .debs shared with the other tests) and loads them.
pub fn loaded_images() -> &'static LoadedImages {
    static IMAGES: OnceLock<LoadedImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let work = repo().join("target/test-cluster");
        let cache = shared_cache(&work);
        let agent = stripped_agent(&work.join("agent"));
        run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
            .args(["build", "--all", "--output"])
            .arg(work.join("images"))
            .current_dir(repo())
            .env("NODEIMG_CACHE", &cache)
            .env("NODEIMG_AGENT", &agent));
        let load = |role: &str| -> String { docker_load(&work.join(format!("images/{role}.tar"))) };
        LoadedImages {
            db: load("db"),
            haproxy: load("haproxy"),
        }
    })
}

/// The test host image (tests/host: Debian's cloud-init), built and loaded.
pub fn loaded_host_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| loaded_test_image("tests/host/host.toml"))
}

/// A test-only image (a recipe under tests/), built and loaded: its name.
pub fn loaded_test_image(recipe: &str) -> String {
    let work = repo().join("target/test-cluster");
    let cache = shared_cache(&work);
    let name = Path::new(recipe).file_stem().unwrap().to_string_lossy();
    let out = work.join(format!("{name}-images"));
    run(Command::new(env!("CARGO_BIN_EXE_nodeimg"))
        .args(["build", recipe, "--output"])
        .arg(&out)
        .current_dir(repo())
        .env("NODEIMG_CACHE", &cache));
    docker_load(&out.join(format!("{name}.tar")))
}

/// `docker load -i tar`: the name of the image it loaded.
fn docker_load(tar: &Path) -> String {
    let output = run(Command::new("docker").arg("load").arg("-i").arg(tar));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap()
        .to_string()
}

/// Where loaded_images() wrote the layouts.
pub fn built_images_dir() -> PathBuf {
    repo().join("target/test-cluster/images")
}
