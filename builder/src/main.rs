//! The `nodeimg` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use nodeimg::commands;
use nodeimg::debian::fetch::Fetcher;

/// Build immutable node images for a PostgreSQL HA cluster from pinned
/// Debian packages.
///
/// The pipeline: `lock` resolves a role recipe (recipes/<role>.toml) against
/// signed Debian indexes into recipes/<role>.lock; builds use only the lock.
#[derive(Parser)]
#[command(name = "nodeimg", version, propagate_version = true)]
struct Cli {
    /// Where downloaded indexes and packages are cached
    /// [default: $XDG_CACHE_HOME/nodeimg or ~/.cache/nodeimg].
    #[arg(long, global = true, env = "NODEIMG_CACHE", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// How many times a download is tried before giving up (waits double
    /// after each failure, starting at 1 s).
    #[arg(long, global = true, default_value_t = 4, value_name = "N")]
    attempts: u32,

    /// The snapshot archive a locked .deb (or a signed index) is fetched
    /// from when the mirror no longer serves it, laid out as
    /// snapshot.debian.org: URL/archive/<archive>/<lock's snapshot>/<path>.
    /// An internal mirror with that layout, or file:///folder, works too.
    #[arg(
        long,
        global = true,
        env = "NODEIMG_SNAPSHOT_URL",
        default_value = nodeimg::debian::snapshot::DEFAULT_BASE,
        value_name = "URL"
    )]
    snapshot_url: String,

    /// More detail on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

/// A listing piped into `head` ends quietly, as other Unix tools do,
/// instead of panicking on the closed pipe.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the default disposition, set before any thread starts.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Write a new secrets file: random passwords for Patroni's superuser,
    /// replication, rewind and REST API users; for each [[user]] of the
    /// cluster spec a password and its SCRAM-SHA-256 verifier; the
    /// cluster's CA (ECDSA P-256) and a key and certificate for every node
    /// (SANs: its name, its private IP, loopback; the load balancer's
    /// address on proxies). Mode 0600; an existing file is kept unless
    /// --force.
    ///
    /// With an s3 backup repository, the bucket's key is the provider's:
    /// export NODEIMG_BACKUP_S3_KEY and NODEIMG_BACKUP_S3_KEY_SECRET first
    /// (nothing is written without them).
    Init {
        /// The cluster spec whose users get passwords.
        #[arg(long, default_value = "cluster.toml")]
        cluster: PathBuf,
        /// The secrets file to write (mode 0600; keep it out of git).
        #[arg(short, long, default_value = "cluster.secrets.toml")]
        output: PathBuf,
        /// Replace an existing file (its passwords are then lost).
        #[arg(long)]
        force: bool,
        /// Take backup_cipher_password from this (old) cluster's secrets
        /// file: a cluster restored from its backups ([restore]) shares
        /// their repository, and the passphrase is the repository's.
        #[arg(long, value_name = "OLD_SECRETS")]
        backup_cipher_from: Option<PathBuf>,
        #[command(flatten)]
        lifetimes: Lifetimes,
    },
    /// Write what one node receives: its role's passwords or verifiers,
    /// its own TLS key and certificate and the CA certificate; never the
    /// CA key, never another node's key. Proxy nodes get no plaintext
    /// password.
    ///
    /// Examples:
    ///   nodeimg secrets for-node db-postgres-01 -o db-postgres-01.secrets.toml
    ///   nodeimg secrets for-node --all -o out/secrets     # <node>.secrets.toml each
    #[command(verbatim_doc_comment)]
    ForNode {
        /// The node (a [[db]] or [[haproxy]] name); or --all.
        #[arg(required_unless_present = "all")]
        node: Option<String>,
        /// Every node of the spec, one file each in the --output folder.
        #[arg(long, conflicts_with = "node")]
        all: bool,
        /// The cluster spec.
        #[arg(long, default_value = "cluster.toml")]
        cluster: PathBuf,
        /// The full secrets file `secrets init` wrote.
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// The file to write (mode 0600), or the folder with --all.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue new node certificates (with --ca, a new CA too) into the
    /// secrets file, adding whatever it lacks (a file made before TLS gets
    /// its CA here). Passwords are kept.
    ///
    /// A CA rotation has an overlap: after `rotate --ca` nodes trust the old
    /// and the new CA; once every node has its new files, `rotate
    /// --finish-ca` drops the old one (deliver the files again).
    ///
    /// Examples:
    ///   nodeimg secrets rotate                 # new node certificates
    ///   nodeimg secrets rotate --ca            # new CA, both trusted
    ///   nodeimg secrets rotate --finish-ca     # only the new CA trusted
    #[command(verbatim_doc_comment)]
    Rotate {
        /// The cluster spec (which nodes get certificates).
        #[arg(long, default_value = "cluster.toml")]
        cluster: PathBuf,
        /// The full secrets file, rewritten in place (mode 0600).
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// Also replace the CA; the previous CA stays trusted.
        #[arg(long, conflicts_with = "finish_ca")]
        ca: bool,
        /// Stop trusting the previous CA (after a rotation with --ca).
        #[arg(long)]
        finish_ca: bool,
        #[command(flatten)]
        lifetimes: Lifetimes,
    },
    /// After adding or removing members in the cluster spec: issue a key
    /// and certificate for each new member (and again for members whose
    /// names changed: a proxy or the load balancer moved), drop those of
    /// members the spec no longer lists, add any password the spec now
    /// needs. Everything else is kept, so running nodes need nothing new.
    /// An s3 repository's key is taken from NODEIMG_BACKUP_S3_KEY and
    /// NODEIMG_BACKUP_S3_KEY_SECRET when set (replacing the file's).
    ///
    /// Examples:
    ///   nodeimg secrets update                         # after editing cluster.toml
    ///   nodeimg secrets for-node db-4 -o db-4.secrets.toml
    #[command(verbatim_doc_comment)]
    Update {
        /// The edited cluster spec.
        #[arg(long, default_value = "cluster.toml")]
        cluster: PathBuf,
        /// The full secrets file, rewritten in place (mode 0600).
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// Lifetime of the certificates issued, in days.
        #[arg(long, default_value_t = nodeimg::cluster::pki::NODE_DAYS, value_name = "DAYS")]
        node_days: u32,
    },
    /// List every certificate (CA, previous CAs, each node's) with its
    /// serial and expiry; warns about those with less than a third of their
    /// lifetime left.
    ///
    /// Examples:
    ///   nodeimg secrets show
    ///   nodeimg secrets show --ca > cluster-ca.crt    # for clients' sslrootcert
    ///   nodeimg secrets show --sftp-public-key        # for the backup server
    #[command(verbatim_doc_comment)]
    Show {
        /// A secrets file: the full one, or a node's.
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// Print one JSON document.
        #[arg(long, conflicts_with = "ca")]
        json: bool,
        /// Print only the trusted CA certificates (PEM): the file clients
        /// give as sslrootcert to verify the cluster.
        #[arg(long)]
        ca: bool,
        /// Print only the public key the db nodes log in to the sftp backup
        /// repository with: the line for the server's authorized_keys.
        #[arg(long, conflicts_with_all = ["ca", "json"])]
        sftp_public_key: bool,
    },
}

#[derive(clap::Args)]
struct Lifetimes {
    /// Lifetime of a new CA certificate, in days.
    #[arg(long, default_value_t = nodeimg::cluster::pki::CA_DAYS, value_name = "DAYS")]
    ca_days: u32,
    /// Lifetime of new node certificates, in days.
    #[arg(long, default_value_t = nodeimg::cluster::pki::NODE_DAYS, value_name = "DAYS")]
    node_days: u32,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// The repository's state (stanza, backups, cipher) and, on the
    /// primary, WAL archiving's (pg_stat_archiver); exits 1 when either
    /// has a problem, naming it.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: BackupNode,
    },
    /// The repository's backups, oldest first (label, type, duration,
    /// sizes, the WAL range a restore needs).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: BackupNode,
    },
    /// Restore the latest backup into a scratch directory on this node,
    /// start PostgreSQL on it with no TCP listener, check it and remove it
    /// (what the scheduled drills do); exits 1 when it failed. Needs free
    /// space for one more copy of the database on the data volume.
    Drill {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: BackupNode,
    },
    /// Take a backup now. On a replica it is a backup from this standby:
    /// the files are copied from here, and the primary (named by the DCS)
    /// only starts and stops the backup, through its pgBackRest TLS server.
    Now {
        /// full, diff (changes since the last full) or incr (since the
        /// last backup).
        #[arg(long = "type", default_value = "full", value_parser = ["full", "diff", "incr"])]
        kind: String,
        #[command(flatten)]
        node: BackupNode,
    },
}

#[derive(clap::Args)]
struct BackupNode {
    /// The node's rendered pgBackRest configuration (`nodeimg boot` writes it).
    #[arg(
        long,
        default_value = "/run/nodeimg/pgbackrest.conf",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// The node's rendered Patroni configuration: where etcd is, for the
    /// schedule's results.
    #[arg(long, default_value = "/run/nodeimg/patroni.yml", value_name = "FILE")]
    patroni: PathBuf,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Start the demo: load images/<role>.tar into Docker if needed, write
    /// the demo's spec and secrets under --state-dir, create the network,
    /// volumes and containers, wait (with progress) until a leader, two
    /// streaming replicas and PgBouncer answer, then print the psql line.
    Up {
        #[command(flatten)]
        demo: DemoArgs,
        /// The folder `nodeimg build` wrote the images to.
        #[arg(long, default_value = "images", value_name = "DIR")]
        images: PathBuf,
        /// The /24 network the nodes get (.11-.13 db, .21-.22 proxies);
        /// change it if Docker says the subnet overlaps another network.
        #[arg(long, default_value = "172.29.81.0", value_name = "ADDRESS")]
        subnet: std::net::Ipv4Addr,
        /// The port on 127.0.0.1 where proxy-1's PgBouncer is published.
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Give up waiting for a healthy cluster after this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Show the demo's containers, Patroni's members and whether PgBouncer
    /// answers.
    Status {
        #[command(flatten)]
        demo: DemoArgs,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove every container, volume and network the demo created, and
    /// its state folder.
    Down {
        #[command(flatten)]
        demo: DemoArgs,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Names the demo's network, containers and volumes (nodeimg-NAME-...).
    #[arg(long, default_value = "demo")]
    name: String,
    /// Where the demo's cluster spec, secrets (0600) and pgpass file live
    /// [default: out/demo-NAME].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Write the #cloud-config user-data of each role (out/cloud-init/<role>.yaml).
    ///
    /// One file per role, the same for every node of that role: swap off,
    /// the Hetzner volume formatted XFS only when empty and mounted
    /// noatime, sysctl/THP/logind/limits/time sync/softdog, Debian's
    /// docker.io at a pinned version, and a systemd unit running the role
    /// image by digest (the digest of images/<role>, the repository from
    /// the spec's [images]). Refuses to write anything if the spec, the
    /// secrets or a built image is missing or wrong, or if the result
    /// cannot fit Hetzner's 32 KiB.
    ///
    /// Examples:
    ///   nodeimg cloud-init cluster.toml --secrets cluster.secrets.toml
    ///   hcloud server create --user-data-from-file out/cloud-init/db.yaml ...
    ///   nodeimg cloud-init cluster.toml --nocloud out/nocloud   # seeds per node
    #[command(verbatim_doc_comment)]
    CloudInit {
        /// The cluster spec.
        cluster: PathBuf,
        /// The full secrets file (`nodeimg secrets init`); each role gets its part.
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// Where the built images are (their digests are pinned).
        #[arg(long, default_value = "images")]
        images: PathBuf,
        /// The user-data template.
        #[arg(long, default_value = "cloud-init/node.yaml.j2")]
        template: PathBuf,
        /// The folder for <role>.yaml (mode 0600: they hold the role's secrets).
        #[arg(short, long, default_value = "out/cloud-init")]
        output: PathBuf,
        /// Also write NoCloud seed folders (meta-data, user-data) per node here.
        #[arg(long, value_name = "DIR")]
        nocloud: Option<PathBuf>,
        /// The host runtime recipe: its lock pins what apt installs on the
        /// hosts (docker.io, containerd, runc, xfsprogs), from apt sources
        /// pinned to the snapshot of the lock's date (--snapshot-url).
        #[arg(
            long,
            default_value = "recipes/host-runtime.toml",
            value_name = "RECIPE"
        )]
        runtime: PathBuf,
    },

    /// Write one archive an air-gapped site installs the cluster from.
    ///
    /// It holds every role image in a single OCI layout (a blob shared by
    /// two images is stored once), their SBOMs, the cluster spec, each
    /// role's #cloud-config and the same as plain host files plus a setup
    /// script, install.sh and SHA256SUMS. The secrets go in only with
    /// --with-secrets. Same inputs, same bytes.
    ///
    /// On the target (no network needed):
    ///   mkdir -p /opt/nodeimg && tar -xf cluster-bundle.tar -C /opt/nodeimg
    ///   sh /opt/nodeimg/nodeimg-<cluster>/install.sh --node db-postgres-01 --secrets db-postgres-01.secrets.toml
    ///
    /// Examples:
    ///   nodeimg bundle cluster.toml -o cluster-bundle.tar
    ///   nodeimg bundle cluster.toml -o cluster-bundle.tar --with-secrets
    ///   nodeimg verify cluster-bundle.tar
    #[command(verbatim_doc_comment)]
    Bundle {
        /// The cluster spec.
        cluster: PathBuf,
        /// The bundle archive to write (through a temporary name, then renamed).
        #[arg(short, long, default_value = "cluster-bundle.tar")]
        output: PathBuf,
        /// The full secrets file: checked in every case, bundled only with
        /// --with-secrets.
        #[arg(long, default_value = "cluster.secrets.toml")]
        secrets: PathBuf,
        /// Put each role's secrets in the bundle (written 0600 on install).
        #[arg(long)]
        with_secrets: bool,
        /// Where the built images are.
        #[arg(long, default_value = "images")]
        images: PathBuf,
        /// The user-data template.
        #[arg(long, default_value = "cloud-init/node.yaml.j2")]
        template: PathBuf,
        /// The recipes folder: the InRelease files (inrelease/) and keys
        /// (keys/) the images' locks were made from go in the bundle.
        #[arg(long, default_value = "recipes")]
        recipes: PathBuf,
        /// Where the bundle is unpacked on the hosts: the node's unit loads
        /// the image from <DIR>/nodeimg-<cluster>/ whenever it is missing.
        #[arg(long, value_name = "DIR", default_value = "/opt/nodeimg")]
        host_dir: String,
        /// The host runtime recipe, whose lock pins the host's packages
        /// [default: host-runtime.toml in --recipes].
        #[arg(long, value_name = "RECIPE")]
        runtime: Option<PathBuf>,
    },

    /// Re-check a built image layout or a cluster bundle.
    ///
    /// For a layout: every blob against its digest and size, every layer
    /// against the config's diff_ids, the SBOM beside it
    /// (images/<role>.spdx.json) against the lock inside the image, and the
    /// signatures that lock records: each source's InRelease (kept by
    /// `nodeimg lock` in recipes/inrelease/) must hash to the lock's
    /// inrelease_sha256 and be signed by exactly the keys it names.
    /// For a bundle (the .tar or its unpacked folder): every file against
    /// SHA256SUMS first, then the same checks on every image of its
    /// images/ layout, with its sboms/ and signatures/.
    /// Any mismatch names the blob, file, package or source; exits non-zero.
    ///
    /// Examples:
    ///   nodeimg verify images/db
    ///   nodeimg verify cluster-bundle.tar
    ///   nodeimg verify nodeimg-<cluster>/
    #[command(verbatim_doc_comment)]
    Verify {
        /// An image layout (images/db), a bundle archive or a bundle folder.
        path: PathBuf,
        /// For a layout: the recipes folder whose inrelease/ and keys/
        /// re-check the signatures recorded in the image's lock (a bundle
        /// carries its own under signatures/).
        #[arg(long, default_value = "recipes")]
        recipes: PathBuf,
    },

    /// Push a built image to an OCI registry, exactly as built.
    ///
    /// Every blob is checked against its digest first (a damaged layout
    /// pushes nothing); blobs the registry already has are skipped, the
    /// others go up in one PUT, or in PATCH chunks when bigger than
    /// --chunk-size; then the manifest's own bytes are put under the tag.
    /// Prints the pushed reference by digest. Connection errors, 429 and
    /// 5xx answers are retried. Basic and Bearer (token) authentication:
    /// credentials from --username with --password-stdin, or from
    /// NODEIMG_REGISTRY_USERNAME / NODEIMG_REGISTRY_PASSWORD. Loopback
    /// registries (127.x, localhost, [::1]) are spoken to over plain HTTP,
    /// others over HTTPS unless --insecure-http is given.
    ///
    /// Examples:
    ///   nodeimg push images/db registry.example.com/pg/db:17
    ///   echo "$TOKEN" | nodeimg push images/haproxy registry.example.com/pg/haproxy:3.0 --username ci --password-stdin
    ///   nodeimg push images/db 127.0.0.1:5000/nodeimg/db:test --json
    #[command(verbatim_doc_comment)]
    Push {
        /// The built layout, e.g. images/db.
        layout: PathBuf,
        /// HOST[:PORT]/REPOSITORY:TAG
        target: String,
        /// The registry user (default: $NODEIMG_REGISTRY_USERNAME); the
        /// password comes from --password-stdin or
        /// $NODEIMG_REGISTRY_PASSWORD, and is never printed.
        #[arg(long)]
        username: Option<String>,
        /// Read the password (or token) from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Speak plain HTTP to a registry that is not on loopback.
        #[arg(long)]
        insecure_http: bool,
        /// Upload blobs bigger than this in chunks of this size
        /// (bytes, or with a KiB/MiB suffix).
        #[arg(long, value_parser = parse_size, default_value = "16MiB")]
        chunk_size: usize,
        /// Another repository of the same registry (e.g. pg/db) to mount
        /// blobs from instead of uploading them: roles share their base
        /// layer. A registry that cannot mount gets a normal upload.
        #[arg(long, value_name = "REPOSITORY")]
        mount_from: Option<String>,
        /// Print what was pushed as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print the Hetzner Cloud steps that create the cluster.
    ///
    /// As hcloud commands (network, a volume per db node, servers created
    /// stopped with the role's user-data, attached to the network at the
    /// spec's address, then started), or with --json as the request bodies
    /// of the Hetzner Cloud API. Reads out/cloud-init/<role>.yaml.
    ///
    /// Examples:
    ///   nodeimg plan cluster.toml > create-cluster.sh
    ///   nodeimg plan cluster.toml --json
    #[command(verbatim_doc_comment)]
    Plan {
        /// The cluster spec.
        cluster: PathBuf,
        /// Where `nodeimg cloud-init` wrote the user-data.
        #[arg(long, default_value = "out/cloud-init")]
        user_data: PathBuf,
        /// Print the Hetzner Cloud API calls (method, path, body) as JSON
        /// instead of hcloud commands.
        #[arg(long)]
        json: bool,
    },

    /// A local cluster on Docker from the built images: 3 db and 2 proxy
    /// nodes on a private bridge network, for trying nodeimg on one machine.
    ///
    /// Examples:
    ///   nodeimg build --all && nodeimg demo up
    ///   nodeimg demo status --json
    ///   nodeimg demo down
    #[command(subcommand, verbatim_doc_comment)]
    Demo(DemoCommand),

    /// Create and split the cluster's secrets file (never committed, never
    /// in an image).
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// The cluster's pgBackRest repository (spec `[backup]`), from inside a
    /// db node: its state, WAL archiving and the schedule's last runs, its
    /// backups, a backup now, a restore drill now.
    ///
    /// Examples:
    ///   docker exec <db container> nodeimg backup status
    ///   docker exec <db container> nodeimg backup list --json
    ///   docker exec <replica container> nodeimg backup now --type full   # from that standby
    ///   docker exec <db container> nodeimg backup drill
    #[command(subcommand, verbatim_doc_comment)]
    Backup(BackupCommand),

    /// Run a node: the image's entrypoint (PID 1 in the container).
    ///
    /// Finds out who this node is from a metadata source (the Hetzner
    /// metadata service, a NoCloud meta-data file, or NODEIMG_PRIVATE_IP /
    /// NODEIMG_NODE_NAME), finds it in the cluster spec by private IP (or
    /// name), renders its configuration 0600 under /run/nodeimg from the
    /// image's templates, and supervises the role's services: db runs etcd
    /// then Patroni (and creates the spec's users and databases on the
    /// leader), with `[backup]` also pgBackRest's TLS server and the backup
    /// schedule; haproxy runs HAProxy and PgBouncer. SIGTERM stops them in
    /// reverse order, so Patroni hands over the leader lock first.
    ///
    /// Secrets come from --secrets (default /run/secrets/nodeimg.toml when
    /// present) and NODEIMG_*_PASSWORD / NODEIMG_USER_<NAME>_SCRAM variables;
    /// services never see them in their environment.
    ///
    /// --metadata auto (the default) tries, in order, and stops at the first
    /// source that is there:
    ///   1. NODEIMG_PRIVATE_IP / NODEIMG_NODE_NAME: when either is set,
    ///      nothing else is asked (169.254.169.254 is never contacted);
    ///   2. a NoCloud meta-data file: /etc/nodeimg/meta-data, then
    ///      /var/lib/cloud/seed/nocloud/meta-data;
    ///   3. the Hetzner metadata service, http://169.254.169.254/hetzner/v1/metadata
    ///      (5 tries, no proxy).
    ///
    /// A source that is there but wrong (a bad IP, a malformed file) is an
    /// error, not a reason to try the next one.
    ///
    /// Examples (the second runs as written from the repository):
    ///   docker run --network host -v ./cluster.toml:/etc/nodeimg/cluster.toml:ro \
    ///     -v ./db.secrets.toml:/run/secrets/nodeimg.toml:ro nodeimg/db:<tag>
    ///   nodeimg secrets init --cluster examples/cluster.toml -o /tmp/example.secrets.toml
    ///   NODEIMG_PRIVATE_IP=10.0.0.120 nodeimg boot --role db --cluster examples/cluster.toml \
    ///     --secrets /tmp/example.secrets.toml --metadata env \
    ///     --templates overlays/db/usr/share/nodeimg/templates --render-only /tmp/rendered
    #[command(verbatim_doc_comment)]
    Boot {
        /// The cluster spec.
        #[arg(
            long,
            env = "NODEIMG_CLUSTER",
            default_value = "/etc/nodeimg/cluster.toml"
        )]
        cluster: PathBuf,

        /// The secrets file (TOML) [default: /run/secrets/nodeimg.toml when
        /// present].
        #[arg(long, env = "NODEIMG_SECRETS", value_name = "FILE")]
        secrets: Option<PathBuf>,

        /// Where the node's identity comes from: auto, env, hetzner,
        /// hetzner:URL or nocloud:PATH.
        #[arg(long, env = "NODEIMG_METADATA", default_value = "auto")]
        metadata: nodeimg::agent::identity::MetadataSource,

        /// The role (db or haproxy) [default: read from /usr/share/nodeimg/role].
        #[arg(long)]
        role: Option<String>,

        /// The configuration templates (in the image; in the repository they
        /// are overlays/<role>/usr/share/nodeimg/templates).
        #[arg(
            long,
            env = "NODEIMG_TEMPLATES",
            default_value = "/usr/share/nodeimg/templates"
        )]
        templates: PathBuf,

        /// Write the rendered files into DIR and exit, starting nothing.
        #[arg(long, value_name = "DIR")]
        render_only: Option<PathBuf>,
    },

    /// Resolve a recipe into a lock of exact package versions and SHA-256s.
    ///
    /// Downloads each source's InRelease, checks its OpenPGP signature
    /// against the recipe's key files, checks the Packages indexes against
    /// the signed hashes, resolves the dependency closure and writes
    /// recipes/<role>.lock. The same indexes always give the same bytes.
    ///
    /// Examples:
    ///   nodeimg lock recipes/db.toml
    ///   nodeimg lock recipes/db.toml --check     # CI: fail if the lock is stale
    ///   nodeimg lock recipes/db.toml --offline   # use cached indexes only
    ///   nodeimg lock recipes/db.toml --param pg_major=16   # writes recipes/db.pg_major-16.lock
    #[command(verbatim_doc_comment)]
    Lock {
        /// The recipe to resolve, e.g. recipes/db.toml.
        recipe: PathBuf,

        /// Set a recipe parameter, e.g. --param pg_major=16 (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,

        /// Write the lock here instead of beside the recipe.
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,

        /// Write nothing; exit non-zero if the lock differs from what the
        /// recipe and the current indexes give.
        #[arg(long)]
        check: bool,

        /// Use only cached indexes; fail instead of downloading.
        #[arg(long)]
        offline: bool,
    },

    /// List the locked packages that have newer versions in their
    /// recipe's sources now, security updates marked.
    ///
    /// Reads each source's signed indexes as `lock` does (a cached index
    /// costs one freshness check) and compares every package of the lock
    /// with the newest version of the same architecture there. Exits
    /// non-zero when a package is behind, so CI or a timer can alert;
    /// re-lock (`nodeimg lock`, scripts/relock.sh) to take the updates.
    ///
    /// Examples:
    ///   nodeimg outdated --all                     # every recipe in recipes/
    ///   nodeimg outdated recipes/haproxy.toml --json
    #[command(verbatim_doc_comment)]
    Outdated {
        /// Recipes whose locks to check, e.g. recipes/db.toml.
        recipes: Vec<PathBuf>,

        /// Check every recipe in recipes/ (the host runtime too).
        #[arg(long, conflicts_with = "recipes")]
        all: bool,

        /// Set a recipe parameter, as given to `lock` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,

        /// Compare with the cached indexes only; download nothing.
        #[arg(long)]
        offline: bool,

        /// Print one JSON document (on stdout) instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Build OCI images from locks: images/<role>/ and images/<role>.tar.
    ///
    /// Uses only the lock (refused if its recipe changed), the verified
    /// package cache and the recipe: no index, no container engine, no
    /// maintainer scripts. Timestamps come from the lock's
    /// source_date_epoch (SOURCE_DATE_EPOCH in the environment wins), so
    /// rebuilding gives the same digest. Prints `<role> <manifest digest>`.
    ///
    /// Examples:
    ///   nodeimg build recipes/db.toml
    ///   nodeimg build --all --offline
    ///   docker load -i images/db.tar
    #[command(verbatim_doc_comment)]
    Build {
        /// Recipes to build, e.g. recipes/db.toml.
        recipes: Vec<PathBuf>,

        /// Build every recipe in recipes/.
        #[arg(long, conflicts_with = "recipes")]
        all: bool,

        /// Set a recipe parameter, as given to `lock` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,

        /// Use only the package cache; fail instead of downloading.
        #[arg(long)]
        offline: bool,

        /// Where images are written.
        #[arg(short, long, value_name = "DIR", default_value = "images")]
        output: PathBuf,

        /// The agent binary laid into images whose recipe sets
        /// `[image] agent` (default: this nodeimg; use a release build).
        #[arg(long, value_name = "FILE", env = "NODEIMG_AGENT")]
        agent: Option<PathBuf>,
    },

    /// Show what an image holds: digest, layers, packages largest first.
    ///
    /// Examples:
    ///   nodeimg inspect images/db
    ///   nodeimg inspect images/db --json | jq .package_count
    #[command(verbatim_doc_comment)]
    Inspect {
        /// An image layout written by `nodeimg build`, e.g. images/db.
        layout: PathBuf,

        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,

        /// How many of the largest packages to list.
        #[arg(long, default_value_t = 10, value_name = "N")]
        top: usize,
    },

    /// Download and verify every package a lock names into the cache.
    ///
    /// Each .deb is checked against the size and SHA-256 in the lock; a
    /// damaged cached copy is removed and fetched again. Refuses a lock whose
    /// recipe changed since. Run it on a connected machine, then build with
    /// --offline from the same cache (or copy the cache).
    ///
    /// Examples:
    ///   nodeimg fetch recipes/db.toml
    ///   nodeimg fetch recipes/db.toml --offline   # verify the cache only
    ///   nodeimg fetch recipes/db.toml --from-dir /media/debs
    ///   nodeimg build recipes/db.toml --offline   # then, with no network
    #[command(verbatim_doc_comment)]
    Fetch {
        /// The recipe whose lock to fetch, e.g. recipes/db.toml.
        recipe: PathBuf,

        /// Set a recipe parameter, as given to `lock` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,

        /// The lock to read instead of the one beside the recipe.
        #[arg(long, value_name = "PATH")]
        lock: Option<PathBuf>,

        /// Download nothing: fail if a package is missing from the cache.
        #[arg(long)]
        offline: bool,

        /// Take the packages from this folder of .deb files (searched at
        /// any depth, matched to the lock by SHA-256) instead of the
        /// network; fails naming every locked package it lacks.
        #[arg(long, value_name = "DIR")]
        from_dir: Option<PathBuf>,
    },
}

/// `1048576`, `512KiB`, `16MiB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let factor = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        other => return Err(format!("unknown unit {other:?}: use bytes, KiB or MiB")),
    };
    number
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n * factor)
        .ok_or_else(|| format!("{text:?} is not a positive size"))
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Every `recipes/*.toml`, sorted.
fn all_recipes() -> anyhow::Result<Vec<PathBuf>> {
    let dir = std::fs::read_dir("recipes")
        .map_err(|err| anyhow::anyhow!("--all reads recipes/ in the current folder: {err}"))?;
    let mut recipes: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    recipes.sort();
    Ok(recipes)
}

fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("nodeimg");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("nodeimg"),
        None => PathBuf::from(".cache/nodeimg"),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NODEIMG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("nodeimg={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let cache_dir = cli.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let backoff = std::env::var("NODEIMG_BACKOFF_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(1));
    let fetcher = Fetcher::new(cli.attempts, backoff).with_snapshot_base(&cli.snapshot_url);
    let result = match cli.command {
        Command::Bundle {
            cluster,
            output,
            secrets,
            with_secrets,
            images,
            template,
            recipes,
            host_dir,
            runtime,
        } => commands::bundle::run(&commands::bundle::BundleOptions {
            cluster,
            secrets,
            images,
            template,
            output,
            with_secrets,
            runtime: runtime.unwrap_or_else(|| recipes.join("host-runtime.toml")),
            recipes,
            host_dir,
            cache_dir,
            snapshot_url: cli.snapshot_url.clone(),
        }),
        Command::Push {
            layout,
            target,
            username,
            password_stdin,
            insecure_http,
            chunk_size,
            mount_from,
            json,
        } => commands::push::run(&commands::push::PushOptions {
            layout,
            target,
            username,
            password_stdin,
            insecure_http,
            chunk_size: Some(chunk_size),
            mount_from,
            json,
        }),
        Command::Verify { path, recipes } => {
            commands::verify::run(&commands::verify::VerifyOptions {
                path,
                recipes,
                cache_dir,
            })
        }
        Command::Plan {
            cluster,
            user_data,
            json,
        } => commands::plan::run(&commands::plan::PlanOptions {
            cluster,
            user_data,
            json,
        }),
        Command::CloudInit {
            cluster,
            secrets,
            images,
            template,
            output,
            nocloud,
            runtime,
        } => commands::cloud_init::run(&commands::cloud_init::CloudInitOptions {
            cluster,
            secrets,
            images,
            template,
            output,
            nocloud,
            runtime,
            snapshot_url: cli.snapshot_url.clone(),
        }),
        Command::Demo(command) => {
            let which = |args: DemoArgs| nodeimg::ship::demo::Demo {
                state_dir: args
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from(format!("out/demo-{}", args.name))),
                name: args.name,
            };
            commands::demo::run(&match command {
                DemoCommand::Up {
                    demo,
                    images,
                    subnet,
                    port,
                    timeout,
                } => commands::demo::Action::Up(nodeimg::ship::demo::UpOptions {
                    demo: which(demo),
                    images,
                    subnet,
                    port,
                    timeout: Duration::from_secs(timeout),
                }),
                DemoCommand::Status { demo, json } => commands::demo::Action::Status {
                    demo: which(demo),
                    json,
                },
                DemoCommand::Down { demo } => commands::demo::Action::Down(which(demo)),
            })
        }
        Command::Secrets(SecretsCommand::Init {
            cluster,
            output,
            force,
            backup_cipher_from,
            lifetimes,
        }) => commands::secrets::init(
            &cluster,
            &output,
            force,
            backup_cipher_from.as_deref(),
            lifetimes.ca_days,
            lifetimes.node_days,
        ),
        Command::Secrets(SecretsCommand::ForNode {
            node,
            all: _,
            cluster,
            secrets,
            output,
            force,
        }) => commands::secrets::for_node(&cluster, &secrets, node.as_deref(), &output, force),
        Command::Secrets(SecretsCommand::Rotate {
            cluster,
            secrets,
            ca,
            finish_ca,
            lifetimes,
        }) => commands::secrets::rotate(&commands::secrets::RotateOptions {
            cluster: &cluster,
            secrets: &secrets,
            ca,
            finish_ca,
            ca_days: lifetimes.ca_days,
            node_days: lifetimes.node_days,
        }),
        Command::Secrets(SecretsCommand::Update {
            cluster,
            secrets,
            node_days,
        }) => commands::secrets::update(&cluster, &secrets, node_days),
        Command::Secrets(SecretsCommand::Show {
            secrets,
            json,
            ca,
            sftp_public_key,
        }) => {
            restore_sigpipe();
            if sftp_public_key {
                commands::secrets::show_sftp_public_key(&secrets)
            } else {
                commands::secrets::show(&secrets, json, ca)
            }
        }
        Command::Backup(command) => {
            restore_sigpipe();
            let code = match command {
                BackupCommand::Status { json, node } => {
                    commands::backup::status(&node.config, &node.patroni, json)
                }
                BackupCommand::Drill { json, node } => {
                    commands::backup::drill(&node.config, &node.patroni, json)
                }
                BackupCommand::List { json, node } => commands::backup::list(&node.config, json),
                BackupCommand::Now { kind, node } => {
                    commands::backup::now(&node.config, &node.patroni, &kind)
                }
            };
            return match code {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Boot {
            cluster,
            secrets,
            metadata,
            role,
            templates,
            render_only,
        } => {
            return match commands::boot::run(&commands::boot::BootOptions {
                cluster,
                secrets,
                metadata,
                role,
                templates,
                render_only,
            }) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Lock {
            recipe,
            params,
            output,
            check,
            offline,
        } => commands::lock::run(&commands::lock::LockOptions {
            recipe,
            params,
            output,
            check,
            offline,
            cache_dir,
            fetcher,
        }),
        Command::Build {
            recipes,
            all,
            params,
            offline,
            output,
            agent,
        } => match if all { all_recipes() } else { Ok(recipes) } {
            Ok(recipes) => commands::build::run(&commands::build::BuildOptions {
                recipes,
                params,
                offline,
                output,
                cache_dir,
                fetcher,
                agent,
            }),
            Err(err) => Err(err),
        },
        Command::Outdated {
            recipes,
            all,
            params,
            offline,
            json,
        } => match if all { all_recipes() } else { Ok(recipes) } {
            Ok(recipes) => commands::outdated::run(&commands::outdated::OutdatedOptions {
                recipes,
                params,
                offline,
                json,
                cache_dir,
                fetcher,
            }),
            Err(err) => Err(err),
        },
        Command::Inspect { layout, json, top } => {
            commands::inspect::run(&commands::inspect::InspectOptions { layout, json, top })
        }
        Command::Fetch {
            recipe,
            params,
            lock,
            offline,
            from_dir,
        } => commands::fetch::run(&commands::fetch::FetchOptions {
            recipe,
            params,
            lock,
            offline,
            from_dir,
            cache_dir,
            fetcher,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for.
    #[test]
    fn every_option_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "nodeimg", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
