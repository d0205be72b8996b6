//! Role recipes (`recipes/<role>.toml`): what an image is made of. The
//! format is documented in `recipes/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::debian::relation::{self, Relation};

#[derive(Debug, Error)]
pub enum RecipeError {
    #[error("{path}: cannot read the recipe: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A recipe as written, before parameters are applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub recipe: RecipeInfo,
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
    pub packages: Packages,
    #[serde(default)]
    pub prune: Prune,
    #[serde(default)]
    pub accounts: Accounts,
    #[serde(default)]
    pub image: ImageConfig,
    /// Left out of the serialized form when unset, so recipes without it
    /// keep their checksum.
    #[serde(default, skip_serializing_if = "Layers::is_unset")]
    pub layers: Layers,
    #[serde(default, skip_serializing_if = "Overlays::is_empty")]
    pub overlays: Overlays,
}

/// Folders of files laid on top of the image, in order (a later folder
/// wins), relative to the recipe: `["../overlays/common", "../overlays/db"]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlays {
    #[serde(default)]
    pub dirs: Vec<String>,
}

impl Overlays {
    fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

/// How the image is split into layers (see `layer_plan`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// Packages of the shared base layer; nodeimg's default list when
    /// absent. Roles share the base blob only if they agree on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Vec<String>>,
    /// Most layers an image may have, counting the base and the layer of
    /// generated files (default 8, at least 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<usize>,
}

impl Layers {
    fn is_unset(&self) -> bool {
        self.base.is_none() && self.budget.is_none()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeInfo {
    /// The role name: `db`, `haproxy`. Names the lock and the image.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_architecture")]
    pub architecture: String,
    /// `image` (the default): `build` makes an image of it. `host-packages`:
    /// packages a host installs with apt (`recipes/host-runtime.toml`,
    /// read by `nodeimg cloud-init`); `build` makes nothing of it.
    #[serde(default, skip_serializing_if = "RecipeKind::is_image")]
    pub kind: RecipeKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipeKind {
    #[default]
    Image,
    HostPackages,
}

impl RecipeKind {
    fn is_image(&self) -> bool {
        *self == RecipeKind::Image
    }
}

fn default_architecture() -> String {
    "amd64".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub default: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short name used in the lock (`debian`, `pgdg`).
    pub name: String,
    /// Archive root, e.g. `http://deb.debian.org/debian`, or `file:///path`.
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    /// OpenPGP public key files, relative to the recipe's folder. The
    /// suite's InRelease must carry a good signature from one of them.
    pub keys: Vec<String>,
    /// A parameter expression; the source is used only when it is true
    /// (e.g. `pg_major != "17"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The archive's name in snapshot archives (`debian`,
    /// `debian-security`), where a locked `.deb` the mirror stopped serving
    /// is fetched from. Default: the name for Debian's own mirrors
    /// (`debian::snapshot::debian_archive_name`), none for others; `""`
    /// for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_archive: Option<String>,
}

impl Source {
    /// The archive's name in snapshot archives, if it has one.
    pub fn snapshot_archive(&self) -> Option<String> {
        match &self.snapshot_archive {
            Some(name) if name.is_empty() => None,
            Some(name) => Some(name.clone()),
            None => crate::debian::snapshot::debian_archive_name(&self.url),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// Wanted packages, in Debian relation syntax: `patroni (>= 4.0)`.
    pub include: Vec<String>,
    /// Packages never installed: a dependency on one of them counts as met
    /// (the image does not run maintainer scripts that would need them).
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// Glob patterns of paths removed from the image (`/usr/share/man/**`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Patterns kept even when a prune pattern matches (copyright files).
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default = "default_home")]
    pub home: String,
    #[serde(default = "default_shell")]
    pub shell: String,
    #[serde(default)]
    pub gecos: String,
}

fn default_home() -> String {
    "/nonexistent".to_string()
}

fn default_shell() -> String {
    "/usr/sbin/nologin".to_string()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `5432/tcp`, `8008/tcp`, `53/udp`.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Where the nodeimg agent binary goes in the image
    /// (`/usr/bin/nodeimg`), in a layer of its own; no agent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// A recipe with its parameters applied: what `lock` and `build` use.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub path: PathBuf,
    /// The recipe with every template rendered and inactive sources removed.
    pub recipe: Recipe,
    /// Final parameter values (defaults overridden from the command line).
    pub params: BTreeMap<String, String>,
    /// Wanted packages, parsed.
    pub wanted: Vec<Relation>,
    /// SHA-256 of the normalized recipe, its parameters and its key files.
    pub checksum: String,
}

impl LoadedRecipe {
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn key_paths(&self, source: &Source) -> Vec<PathBuf> {
        source.keys.iter().map(|key| self.dir().join(key)).collect()
    }

    /// Where the lock of this recipe lives: `recipes/db.toml` → `recipes/db.lock`.
    /// `recipes/<role>.lock`, or, when parameters differ from the recipe's
    /// defaults, a lock of its own for that variant
    /// (`recipes/db.pg_major-16.lock`), so `--param` never overwrites the
    /// default lock.
    pub fn default_lock_path(&self) -> PathBuf {
        let variant: Vec<String> = self
            .params
            .iter()
            .filter(|(name, value)| {
                self.recipe
                    .params
                    .get(*name)
                    .is_some_and(|param| &param.default != *value)
            })
            .map(|(name, value)| {
                let value: String = value
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("{name}-{value}")
            })
            .collect();
        if variant.is_empty() {
            self.path.with_extension("lock")
        } else {
            self.path
                .with_extension(format!("{}.lock", variant.join(".")))
        }
    }
}

/// Reads, renders and validates a recipe. `overrides` are `name=value`
/// parameter settings from the command line.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<LoadedRecipe, RecipeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| RecipeError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let raw: Recipe = toml::from_str(&text).map_err(|err| RecipeError::Syntax {
        path: path.to_path_buf(),
        message: err.to_string().trim_end().to_string(),
    })?;

    let mut params: BTreeMap<String, String> = raw
        .params
        .iter()
        .map(|(name, param)| (name.clone(), param.default.clone()))
        .collect();
    for (name, value) in overrides {
        if !params.contains_key(name) {
            let known: Vec<&str> = params.keys().map(String::as_str).collect();
            return Err(invalid(format!(
                "unknown parameter `{name}` given on the command line; this recipe takes: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        params.insert(name.clone(), value.clone());
    }

    let renderer = Renderer::new(&params);
    let mut recipe = raw.clone();
    recipe.render(&renderer).map_err(invalid)?;
    let mut active = Vec::new();
    for source in recipe.sources.drain(..) {
        let enabled = match &source.when {
            Some(expr) => renderer.condition(expr).map_err(|err| {
                invalid(format!(
                    "source `{}`: `when = {expr:?}`: {err}",
                    source.name
                ))
            })?,
            None => true,
        };
        if enabled {
            active.push(source);
        }
    }
    recipe.sources = active;
    validate(&recipe).map_err(invalid)?;

    let mut wanted = Vec::new();
    for spec in &recipe.packages.include {
        wanted.push(parse_wanted(spec).map_err(invalid)?);
    }

    let loaded_path = path.to_path_buf();
    let dir = loaded_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let checksum = checksum(&recipe, &params, &dir).map_err(invalid)?;
    Ok(LoadedRecipe {
        path: loaded_path,
        recipe,
        params,
        wanted,
        checksum,
    })
}

fn parse_wanted(spec: &str) -> Result<Relation, String> {
    let groups = relation::parse_relations(spec)
        .map_err(|err| format!("packages.include: {spec:?}: {err}"))?;
    match &groups[..] {
        [group] if group.len() == 1 => Ok(group[0].clone()),
        _ => Err(format!(
            "packages.include: {spec:?} must name exactly one package (write `name` or `name (>= version)`)"
        )),
    }
}

/// Hashes what the lock depends on, in a normalized form: comments,
/// whitespace and CRLF line endings do not change it.
fn checksum(
    recipe: &Recipe,
    params: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let normalized = toml::to_string(recipe).map_err(|err| err.to_string())?;
    hasher.update(normalized.as_bytes());
    for (name, value) in params {
        hasher.update(format!("param {name}={value}\n").as_bytes());
    }
    for source in &recipe.sources {
        for key in &source.keys {
            let bytes = std::fs::read(dir.join(key)).map_err(|err| {
                format!(
                    "source `{}`: key file {}: {err}; keys are looked up relative to the recipe's folder",
                    source.name,
                    dir.join(key).display()
                )
            })?;
            let normalized: Vec<u8> = bytes.into_iter().filter(|b| *b != b'\r').collect();
            hasher.update(format!("key {key} ").as_bytes());
            hasher.update(Sha256::digest(&normalized));
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn validate(recipe: &Recipe) -> Result<(), String> {
    let name = &recipe.recipe.name;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "recipe.name = {name:?}: use lowercase letters, digits and '-' (it names the image and the lock)"
        ));
    }
    if recipe.sources.is_empty() {
        return Err("no package source is active: add a [[source]] table".into());
    }
    let mut seen = BTreeSet::new();
    for source in &recipe.sources {
        if !seen.insert(&source.name) {
            return Err(format!(
                "two sources are named `{}`: source names must be unique",
                source.name
            ));
        }
        if !(source.url.starts_with("http://")
            || source.url.starts_with("https://")
            || source.url.starts_with("file://"))
        {
            return Err(format!(
                "source `{}`: url {:?} must start with http://, https:// or file://",
                source.name, source.url
            ));
        }
        if source.components.is_empty() {
            return Err(format!(
                "source `{}`: components is empty (e.g. [\"main\"])",
                source.name
            ));
        }
        if let Some(name) = &source.snapshot_archive
            && !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "source `{}`: snapshot_archive = {name:?}: give the archive's name in the snapshot archive (`debian`, `debian-security`), or \"\" for none",
                source.name
            ));
        }
        if source.keys.is_empty() {
            return Err(format!(
                "source `{}`: keys is empty; every source must name the OpenPGP key files that sign it (unsigned archives are refused)",
                source.name
            ));
        }
    }
    if recipe.packages.include.is_empty() {
        return Err("packages.include is empty: name at least one package".into());
    }
    let mut uids = BTreeMap::new();
    for user in &recipe.accounts.users {
        if let Some(other) = uids.insert(user.uid, &user.name) {
            return Err(format!(
                "accounts: users `{other}` and `{}` share uid {}",
                user.name, user.uid
            ));
        }
    }
    let mut gids = BTreeMap::new();
    for group in &recipe.accounts.groups {
        if let Some(other) = gids.insert(group.gid, &group.name) {
            return Err(format!(
                "accounts: groups `{other}` and `{}` share gid {}",
                group.name, group.gid
            ));
        }
    }
    for port in &recipe.image.ports {
        let valid = match port.split_once('/') {
            Some((number, proto)) => {
                number.parse::<u16>().is_ok() && matches!(proto, "tcp" | "udp")
            }
            None => port.parse::<u16>().is_ok(),
        };
        if !valid {
            return Err(format!(
                "image.ports: {port:?} is not a port (write \"5432/tcp\")"
            ));
        }
    }
    Ok(())
}

/// Renders `{{ param }}` templates in recipe strings with minijinja; an
/// undefined parameter is an error rather than an empty string.
struct Renderer {
    env: minijinja::Environment<'static>,
    context: minijinja::Value,
}

impl Renderer {
    fn new(params: &BTreeMap<String, String>) -> Renderer {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        Renderer {
            env,
            context: minijinja::Value::from_serialize(params),
        }
    }

    fn render(&self, text: &str) -> Result<String, String> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, &self.context)
            .map_err(|err| format!("template {text:?}: {err}"))
    }

    fn condition(&self, expr: &str) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|err| err.to_string())?;
        let value = compiled
            .eval(&self.context)
            .map_err(|err| err.to_string())?;
        Ok(value.is_true())
    }
}

impl Recipe {
    /// Applies parameters to every string that may mention one.
    fn render(&mut self, renderer: &Renderer) -> Result<(), String> {
        let list = |items: &mut Vec<String>, what: &str| -> Result<(), String> {
            for item in items.iter_mut() {
                *item = renderer
                    .render(item)
                    .map_err(|err| format!("{what}: {err}"))?;
            }
            Ok(())
        };
        let map = |items: &mut BTreeMap<String, String>, what: &str| -> Result<(), String> {
            for value in items.values_mut() {
                *value = renderer
                    .render(value)
                    .map_err(|err| format!("{what}: {err}"))?;
            }
            Ok(())
        };
        self.recipe.description = renderer.render(&self.recipe.description)?;
        for source in &mut self.sources {
            source.url = renderer.render(&source.url)?;
            source.suite = renderer.render(&source.suite)?;
            list(&mut source.components, "source.components")?;
            list(&mut source.keys, "source.keys")?;
        }
        list(&mut self.packages.include, "packages.include")?;
        list(&mut self.packages.exclude, "packages.exclude")?;
        list(&mut self.prune.paths, "prune.paths")?;
        list(&mut self.prune.keep, "prune.keep")?;
        list(&mut self.image.entrypoint, "image.entrypoint")?;
        list(&mut self.image.cmd, "image.cmd")?;
        list(&mut self.image.volumes, "image.volumes")?;
        map(&mut self.image.env, "image.env")?;
        map(&mut self.image.labels, "image.labels")?;
        Ok(())
    }
}
