//! Bundle assembly (`nodeimg bundle`): one reproducible archive an air-gapped site installs
//! from (see `bundle.rs` for what it holds). Everything is rendered and
//! checked before the archive is written, and it is written beside the
//! output under a temporary name, then renamed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::cluster::secrets::Secrets;
use crate::cluster::{ClusterSpec, Role};
use crate::image::tarball::TarFile;
use crate::lock::{index_store, signed_sources};
use crate::ship::bundle::{self, RoleImage};
use crate::ship::cloud_init::{self, ImageSource};
use crate::ship::host_install;

pub struct BundleOptions {
    pub cluster: PathBuf,
    pub secrets: PathBuf,
    pub images: PathBuf,
    pub template: PathBuf,
    pub output: PathBuf,
    pub with_secrets: bool,
    /// Its `inrelease/` and `keys/` let the bundle's receiver re-check the
    /// signatures the images' locks record.
    pub recipes: PathBuf,
    /// The cache whose `packages/` holds the signed Packages indexes the
    /// images' locks were made from: they go in the bundle too.
    pub cache_dir: PathBuf,
    /// The host runtime recipe: its lock pins the packages the host keeps
    /// (the installer installs none: they must be there already).
    pub runtime: PathBuf,
    pub snapshot_url: String,
    /// Where the bundle will be unpacked on the hosts: the unit loads the
    /// image from `<host_dir>/nodeimg-<cluster>` when it is missing.
    pub host_dir: String,
}

const README: &str = "\
nodeimg cluster bundle

Unpack it where `nodeimg bundle --host-dir` said (default /opt/nodeimg):
the node's unit loads the image from there again if it is ever missing.

  sh install.sh --help            what the installer does
  sh install.sh --node db-1 --secrets db-1.secrets.toml
  nodeimg verify <this folder or the .tar>

install.sh checks every file against SHA256SUMS, loads images/ (one OCI
layout holding every role image) into Docker or Podman, installs the role's
files from host/<role>/root/ and runs host/<role>/setup.sh. cloud-init/
holds the same setup as #cloud-config user-data; sboms/ the SPDX SBOMs.
Compare the SHA-256 of SHA256SUMS with the one `nodeimg bundle` printed.
";

pub fn write_bundle(options: &BundleOptions) -> anyhow::Result<()> {
    let spec_text = std::fs::read_to_string(&options.cluster)
        .with_context(|| format!("cannot read {}", options.cluster.display()))?;
    let spec = ClusterSpec::parse(&spec_text, &options.cluster)?;
    let secrets = Secrets::read(&options.secrets)?;
    let runtime =
        crate::ship::host_runtime::HostRuntime::load(&options.runtime, &options.snapshot_url)?;
    let root = format!("nodeimg-{}/", spec.cluster.name);
    anyhow::ensure!(
        options.host_dir.starts_with('/') && !options.host_dir.contains(['\'', ' ', '\n']),
        "--host-dir {:?}: give an absolute path without spaces or quotes (it goes into the systemd unit)",
        options.host_dir
    );
    let bundle_dir = format!(
        "{}/{}",
        options.host_dir.trim_end_matches('/'),
        root.trim_end_matches('/')
    );

    let mut images = Vec::new();
    let mut files = vec![
        TarFile::bytes(
            format!("{root}install.sh"),
            0o755,
            bundle::INSTALLER.as_bytes().to_vec(),
        ),
        TarFile::bytes(
            format!("{root}README.txt"),
            0o644,
            README.as_bytes().to_vec(),
        ),
        TarFile::bytes(
            format!("{root}cluster.toml"),
            0o644,
            spec_text.as_bytes().to_vec(),
        ),
    ];
    // The per-role user-data holds no secrets (each node gets its own file).
    let secret_mode = 0o644;
    for (role, members) in [
        (Role::Db, &spec.db_members),
        (Role::Haproxy, &spec.haproxy_members),
    ] {
        if members.is_empty() {
            continue;
        }
        let name = role.as_str();
        let image = RoleImage::read(&options.images, name)?;
        let user_data = cloud_init::render(
            &spec,
            &spec_text,
            cloud_init::Target::Role(role),
            &secrets,
            &ImageSource::Bundle {
                reference: &image.reference,
                ids: [&image.config_digest, &image.manifest_digest],
                dir: &bundle_dir,
            },
            &runtime,
            &options.template,
        )?;
        let (host_files, setup) = host_install::from_user_data(&user_data)?;
        for file in host_files {
            files.push(TarFile::bytes(
                format!("{root}host/{name}/root{}", file.path),
                file.mode,
                file.content,
            ));
        }
        files.push(TarFile::bytes(
            format!("{root}host/{name}/setup.sh"),
            0o755,
            setup.into_bytes(),
        ));
        files.push(TarFile::bytes(
            format!("{root}cloud-init/{name}.yaml"),
            secret_mode,
            user_data.into_bytes(),
        ));
        let sbom = options.images.join(format!("{name}.spdx.json"));
        files.push(TarFile::file(
            format!("{root}sboms/{name}.spdx.json"),
            0o644,
            std::fs::canonicalize(&sbom).with_context(|| {
                format!(
                    "{} is missing: run `nodeimg build recipes/{name}.toml` first",
                    sbom.display()
                )
            })?,
        ));
        images.push(image);
    }
    anyhow::ensure!(
        !images.is_empty(),
        "{} names no db or haproxy member: nothing to bundle",
        options.cluster.display()
    );
    let roles: String = images
        .iter()
        .map(|i| {
            format!(
                "{} {} {} {}\n",
                i.role, i.reference, i.config_digest, i.manifest_digest
            )
        })
        .collect();
    files.push(TarFile::bytes(
        format!("{root}roles"),
        0o644,
        roles.into_bytes(),
    ));
    // Which role each node has (install.sh --node), and with
    // --with-secrets each node's own secrets file.
    let nodes: String = spec
        .members()
        .map(|(role, m)| format!("{} {}\n", m.name, role.as_str()))
        .collect();
    files.push(TarFile::bytes(
        format!("{root}nodes"),
        0o644,
        nodes.into_bytes(),
    ));
    for (_, member) in spec.members() {
        let mine = secrets.for_node(&spec, &member.name)?;
        if options.with_secrets {
            files.push(TarFile::bytes(
                format!("{root}secrets/{}.secrets.toml", member.name),
                0o600,
                mine.to_toml().into_bytes(),
            ));
        }
    }
    files.extend(signature_files(
        &root,
        &images,
        &options.recipes,
        &options.cache_dir,
    )?);
    files.extend(bundle::merged_layout(&format!("{root}images/"), &images));

    eprintln!("hashing {} files...", files.len());
    let sums = bundle::sha256sums(&files)?;
    let sums = sums.replace(&format!("  {root}"), "  ");
    let sums_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sums.as_bytes()));
    files.push(TarFile::bytes(
        format!("{root}SHA256SUMS"),
        0o644,
        sums.into_bytes(),
    ));

    let mtime = images
        .iter()
        .filter_map(|i| i.created)
        .max()
        .map_or(0, |t| t.max(0) as u64);
    // Readable by the operator only when it carries secrets.
    let mode = if options.with_secrets { 0o600 } else { 0o644 };
    write_archive(&options.output, mtime, mode, files)?;
    let blob_count: usize = images.iter().map(|i| i.blobs.len()).sum();
    let stored = bundle::stored_blob_count(&images);
    println!(
        "{}: {} bytes, roles {}, {stored} blobs stored for {blob_count} referenced; SHA256SUMS sha256:{sums_digest}",
        options.output.display(),
        std::fs::metadata(&options.output)?.len(),
        images
            .iter()
            .map(|i| i.role.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    if options.with_secrets {
        eprintln!("the bundle holds the secrets: keep it as private as the secrets file");
    }
    Ok(())
}

/// The InRelease files and keys that re-check each image's lock, checked
/// here first so a bundle never ships signatures that do not verify.
fn signature_files(
    root: &str,
    images: &[RoleImage],
    recipes: &std::path::Path,
    cache_dir: &std::path::Path,
) -> anyhow::Result<Vec<TarFile>> {
    let inrelease = recipes.join(index_store::DIR);
    let keys = index_store::key_files(&recipes.join("keys"));
    let packages = [
        index_store::packages_dir(recipes),
        index_store::packages_dir(cache_dir),
    ];
    let mut indexes = std::collections::BTreeMap::new();
    let memo = crate::lock::signed_packages::IndexMemo::default();
    let mut wanted = std::collections::BTreeMap::new();
    let mut trusted = std::collections::BTreeSet::new();
    for image in images {
        let lock = image.embedded_lock()?;
        signed_sources::recheck(&lock, &inrelease, &keys).with_context(|| {
            format!(
                "{}: the signatures its lock records cannot be re-checked from {}",
                image.reference,
                recipes.display()
            )
        })?;
        for source in &lock.sources {
            let name = signed_sources::file_name(source).to_string();
            wanted.insert(name.clone(), inrelease.join(&name));
            trusted.extend(source.trusted_keys.iter().cloned());
        }
        // The Packages indexes those InRelease files sign: the whole chain
        // is checked before it ships, and the receiver checks it again.
        let store = crate::lock::signed_packages::Store {
            inrelease: &inrelease,
            packages: &packages,
            keys: &keys,
            hint: &format!(
                "run `nodeimg fetch {}/{}` first (it downloads the signed indexes the lock was made from)",
                recipes.display(),
                lock.recipe
            ),
            memo: &memo,
        };
        crate::lock::signed_packages::recheck(&lock, &store)
            .with_context(|| format!("{}: its lock cannot be re-checked", image.reference))?;
        for (sha256, path) in crate::lock::signed_packages::index_files(&lock, &store)? {
            indexes.insert(sha256, path);
        }
    }
    let mut files: Vec<TarFile> = wanted
        .into_iter()
        .map(|(name, path)| {
            TarFile::file(
                format!("{root}signatures/{}/{name}", index_store::DIR),
                0o644,
                path,
            )
        })
        .collect();
    files.extend(indexes.into_iter().map(|(sha256, path)| {
        TarFile::file(
            format!("{root}signatures/{}/{sha256}", index_store::PACKAGES_DIR),
            0o644,
            path,
        )
    }));
    for key in keys {
        let fingerprints = crate::debian::signature::Keyring::load(&[&key])?.fingerprints();
        if fingerprints.iter().any(|f| trusted.contains(f)) {
            let name = key.file_name().unwrap_or_default().to_string_lossy();
            files.push(TarFile::file(
                format!("{root}signatures/keys/{name}"),
                0o644,
                key.clone(),
            ));
        }
    }
    Ok(files)
}

fn write_archive(
    output: &std::path::Path,
    mtime: u64,
    mode: u32,
    files: Vec<TarFile>,
) -> anyhow::Result<()> {
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut out = std::io::BufWriter::new(tmp.as_file());
    crate::image::tarball::write(&mut out, mtime, files)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", output.display()))?;
    drop(out);
    let mut perms = tmp.as_file().metadata()?.permissions();
    tmp.as_file().sync_all()?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
    tmp.as_file().set_permissions(perms)?;
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
