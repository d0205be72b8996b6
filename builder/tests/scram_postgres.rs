//! nodeimg's SCRAM-SHA-256 verifiers against a real PostgreSQL server:
//! the verifiers PostgreSQL makes are recomputed byte for byte, a verifier
//! nodeimg makes lets `psql` log in over TCP under a `pg_hba.conf` that
//! admits only `scram-sha-256`, and the seeds' hash recipe is no verifier.
//!
//! The server is Debian's (`apt-get install postgresql` when no
//! `/usr/lib/postgresql/*/bin/initdb` is found), runs as an unprivileged
//! user in a temporary folder, listens on 127.0.0.1 and a socket in that
//! folder only, and is stopped when the test ends, failed or not.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};
use nodeimg::cluster::scram::{ScramError, Verifier};
use sha2::{Digest, Sha256};

/// Where the newest installed PostgreSQL keeps initdb, postgres and psql.
fn installed_bin_dir() -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "postgres", "psql"]
                .iter()
                .all(|tool| bin.join(tool).exists())
                .then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

/// The PostgreSQL binaries, installed with apt-get on first use (once per
/// test process; apt's own lock orders concurrent processes).
fn bin_dir() -> &'static Path {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR.get_or_init(|| {
        if let Some(bin) = installed_bin_dir() {
            return bin;
        }
        eprintln!("no /usr/lib/postgresql/*/bin/initdb: installing postgresql with apt-get");
        // Debian's postinst would otherwise create a "main" cluster and
        // start it on port 5432: this test only wants the binaries.
        let script = r#"set -e
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/nodeimg-tests.conf
install() { apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postgresql postgresql-client; }
install || { apt-get -o DPkg::Lock::Timeout=600 update && install; }
"#;
        let mut command = if Uid::effective().is_root() {
            Command::new("sh")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "sh"]);
            sudo
        };
        let status = command.args(["-c", script]).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "installing postgresql failed ({status:?}): run `apt-get install postgresql` as root"
        );
        installed_bin_dir().expect("postgresql was installed but has no bin/initdb")
    })
}

/// The postmaster; stopped on drop (fast shutdown, a kill after 10 s).
struct Server(Child);

impl Server {
    fn has_exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PostgreSQL server of its own in a temporary folder. Fields drop in
/// declaration order: the server stops before its folder is removed.
struct Postgres {
    server: Server,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        // initdb and postgres refuse to run as root: run them as nobody.
        let owner = Uid::effective()
            .is_root()
            .then(|| User::from_name("nobody").unwrap().expect("a nobody user"));
        if let Some(user) = &owner {
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .unwrap();
        }
        let unprivileged = |program: &Path| -> Command {
            match &owner {
                Some(user) => {
                    let mut command = Command::new("setpriv");
                    command
                        .arg(format!("--reuid={}", user.uid))
                        .arg(format!("--regid={}", user.gid))
                        .args(["--clear-groups", "--"])
                        .arg(program);
                    command
                }
                None => Command::new(program),
            }
        };
        let data = dir.path().join("data");
        let initdb = unprivileged(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {initdb:?}");
        // Administration over the socket in the temporary folder only;
        // everything else over loopback TCP with SCRAM-SHA-256 and nothing
        // weaker, so a login that works proves the verifier works.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let log_path = dir.path().join("postgres.log");
        // The port is free when asked; should another process take it
        // before the server binds it, try another.
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = File::create(&log_path).unwrap();
            let mut server = Server(
                unprivileged(&bin.join("postgres"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-k")
                    .arg(dir.path())
                    .args(["-p", &port.to_string()])
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            );
            if wait_ready(&mut server, dir.path(), port) {
                return Postgres { server, dir, port };
            }
            drop(server);
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                log.contains("could not bind") || log.contains("could not create any TCP"),
                "PostgreSQL did not start:\n{log}"
            );
        }
        panic!("PostgreSQL found no free loopback port in 5 attempts");
    }

    /// Runs `sql` as the superuser over the private socket; its output.
    fn admin(&self, sql: &str) -> String {
        let output = admin_output(self.dir.path(), self.port, sql);
        assert!(
            output.status.success(),
            "{sql}\nfailed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `rolpassword` as PostgreSQL stores it.
    fn stored_secret(&self, role: &str) -> String {
        self.admin(&format!(
            "select rolpassword from pg_authid where rolname = {}",
            literal(role)
        ))
    }

    /// Logs in as `role` with `password` over TCP on 127.0.0.1 and asks
    /// who it is; Err holds psql's message.
    fn login(&self, role: &str, password: &str) -> Result<String, String> {
        let output = Command::new(bin_dir().join("psql"))
            .env_clear()
            .env("PGPASSWORD", password)
            // No password file of the caller's may answer instead.
            .env("PGPASSFILE", self.dir.path().join("no-pgpass"))
            .arg(format!(
                "host=127.0.0.1 port={} dbname=postgres user={role} connect_timeout=10",
                self.port
            ))
            .args(["-X", "-w", "-q", "-tA", "-c", "select current_user"])
            .output()
            .unwrap();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A failed assertion, or a server that died under the test: its
        // log says why.
        if std::thread::panicking() || self.server.has_exited() {
            let log = std::fs::read_to_string(self.dir.path().join("postgres.log"));
            eprintln!("PostgreSQL's log:\n{}", log.unwrap_or_default());
        }
    }
}

/// `psql` as the superuser over the socket in `socket_dir`.
fn admin_output(socket_dir: &Path, port: u16, sql: &str) -> Output {
    Command::new(bin_dir().join("psql"))
        .env_clear()
        .arg(format!(
            "host={} port={port} dbname=postgres user=postgres",
            socket_dir.display()
        ))
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap()
}

/// Whether the server answers before it exits or 60 s pass.
fn wait_ready(server: &mut Server, socket_dir: &Path, port: u16) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if server.has_exited() {
            return false;
        }
        if admin_output(socket_dir, port, "select 1").status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn verifiers_postgresql_makes_are_recomputed_byte_for_byte() {
    let postgres = Postgres::start();
    let passwords = [
        "pencil",
        "Tr0ub4dor&3 with spaces",
        "quotes ' and \" and \\ backslash",
        "punctuation !#$%&()*+,-./:;<=>?@[]^_`{|}~",
        "a-rather-long-password-of-sixty-four-characters-for-good-measure",
    ];
    for (i, password) in passwords.iter().enumerate() {
        let role = format!("made_by_postgres_{i}");
        postgres.admin(&format!(
            "set password_encryption = 'scram-sha-256'; create role {role} login password {}",
            literal(password)
        ));
        let stored = postgres.stored_secret(&role);
        let parsed: Verifier = stored
            .parse()
            .unwrap_or_else(|err| panic!("{stored:?}: {err}"));
        assert_eq!(parsed.iterations, 4096, "PostgreSQL's default");
        assert_eq!(parsed.salt.len(), 16, "PostgreSQL's salt length");
        let recomputed = Verifier::compute(password, &parsed.salt, parsed.iterations).unwrap();
        assert_eq!(recomputed.to_string(), stored, "password {password:?}");
        assert!(parsed.verify_password(password));
        assert!(!parsed.verify_password(&format!("{password}x")));
        // And the server takes the password the verifier was made from.
        assert_eq!(
            postgres.login(&role, password).as_deref(),
            Ok(role.as_str())
        );
    }
    // PostgreSQL 16 and later make the iteration count a setting: a
    // verifier with another count is recomputed just the same.
    let has_iterations_setting =
        postgres.admin("select current_setting('scram_iterations', true) is not null") == "t";
    if has_iterations_setting {
        postgres.admin(
            "set password_encryption = 'scram-sha-256'; set scram_iterations = 10000; create role more_iterations login password 'pencil'",
        );
        let stored = postgres.stored_secret("more_iterations");
        let parsed: Verifier = stored.parse().unwrap();
        assert_eq!(parsed.iterations, 10000);
        assert_eq!(
            Verifier::compute("pencil", &parsed.salt, 10000)
                .unwrap()
                .to_string(),
            stored
        );
    }
}

#[test]
fn a_nodeimg_verifier_lets_psql_log_in_over_tcp_and_a_wrong_password_is_refused() {
    let postgres = Postgres::start();
    // The rule that admits TCP clients really is SCRAM and nothing else.
    assert_eq!(
        postgres.admin(
            "select string_agg(auth_method, ',') from pg_hba_file_rules where type = 'host'"
        ),
        "scram-sha-256"
    );
    let password = "app password with spaces & symbols";
    let verifier = Verifier::generate(password).unwrap().to_string();
    postgres.admin("create role app login");
    postgres.admin(&format!("alter role app password {}", literal(&verifier)));
    // PostgreSQL recognised a verifier and stored it as given, rather than
    // hashing the text as if it were a password.
    assert_eq!(postgres.stored_secret("app"), verifier);
    assert_eq!(postgres.login("app", password).as_deref(), Ok("app"));
    let refused = postgres.login("app", "not the password").unwrap_err();
    assert!(
        refused.contains("password authentication failed for user \"app\""),
        "{refused}"
    );
    // The verifier is no password: knowing it does not let anyone in.
    assert!(postgres.login("app", &verifier).is_err());
}

#[test]
fn the_seeds_hash_recipe_is_not_a_verifier() {
    // The operators' documents build PgBouncer's userlist entry with
    // `'SCRAM-SHA-256$' || encode(digest('password' || username, 'sha256'), 'base64')`.
    let (password, username) = ("password", "kb_admin");
    let digest = STANDARD.encode(Sha256::digest(format!("{password}{username}")));
    let seeds_entry = format!("SCRAM-SHA-256${digest}");
    assert_eq!(seeds_entry.parse::<Verifier>(), Err(ScramError::Format));
    assert_eq!(digest.parse::<Verifier>(), Err(ScramError::Format));

    // PostgreSQL does not take it for a verifier either: it hashes the
    // string as a plaintext password, so the real password is refused and
    // the "hash" itself has become the password.
    let postgres = Postgres::start();
    postgres.admin(&format!(
        "set password_encryption = 'scram-sha-256'; create role {username} login password {}",
        literal(&seeds_entry)
    ));
    let stored = postgres.stored_secret(username);
    assert_ne!(stored, seeds_entry);
    let parsed: Verifier = stored.parse().unwrap();
    assert!(parsed.verify_password(&seeds_entry));
    assert!(postgres.login(username, password).is_err());
    assert_eq!(
        postgres.login(username, &seeds_entry).as_deref(),
        Ok(username)
    );
}
