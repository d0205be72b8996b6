//! A local, signed Debian archive for tests: real deb822 indexes, a Release
//! with SHA-256s, an InRelease signed with throwaway OpenPGP keys, served
//! over HTTP on loopback by a small server that can be told to fail.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::{Digest, Sha256};

use super::pgp::TestKey;

/// One binary package as the index describes it.
#[derive(Clone, Debug, Default)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub depends: String,
    pub pre_depends: String,
    pub provides: String,
    pub conflicts: String,
    pub breaks: String,
    pub priority: String,
    /// Serve a real `.deb` (control and data archives, readable by
    /// `nodeimg build` and dpkg-deb) instead of stand-in bytes.
    pub real: bool,
    /// Files of a real `.deb`'s data archive: path and content.
    pub files: Vec<(String, String)>,
    /// Pool folder below `pool/` (`main`, or `updates/main` as the
    /// security archive has it).
    pub pool: String,
}

impl Pkg {
    pub fn new(name: &str, version: &str) -> Pkg {
        Pkg {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            priority: "optional".into(),
            ..Pkg::default()
        }
    }
    pub fn depends(mut self, text: &str) -> Pkg {
        self.depends = text.into();
        self
    }
    pub fn pre_depends(mut self, text: &str) -> Pkg {
        self.pre_depends = text.into();
        self
    }
    pub fn provides(mut self, text: &str) -> Pkg {
        self.provides = text.into();
        self
    }
    pub fn conflicts(mut self, text: &str) -> Pkg {
        self.conflicts = text.into();
        self
    }
    pub fn breaks(mut self, text: &str) -> Pkg {
        self.breaks = text.into();
        self
    }
    pub fn arch(mut self, arch: &str) -> Pkg {
        self.arch = arch.into();
        self
    }
    /// A real `.deb` holding `/usr/share/<name>/version` and `files`.
    pub fn real(mut self, files: &[(&str, &str)]) -> Pkg {
        self.real = true;
        self.files = files
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect();
        self
    }
    pub fn pool(mut self, pool: &str) -> Pkg {
        self.pool = pool.into();
        self
    }

    pub fn filename(&self) -> String {
        let first = &self.name[..1];
        let version = self.version.replace(':', "%3a");
        let pool = if self.pool.is_empty() {
            "main"
        } else {
            &self.pool
        };
        format!(
            "pool/{pool}/{first}/{}/{}_{version}_{}.deb",
            self.name, self.name, self.arch
        )
    }

    /// The `.deb` the archive serves: stand-in bytes (locks never open
    /// them, but their size and hash are the real ones of the file), or a
    /// real, reproducible package.
    pub fn deb_bytes(&self) -> Vec<u8> {
        if !self.real {
            return format!("!<arch>\nnot a real deb: {} {}\n", self.name, self.version)
                .into_bytes();
        }
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: nodeimg tests <tests@example.invalid>\nInstalled-Size: 1\n",
            self.name, self.version, self.arch
        );
        if !self.depends.is_empty() {
            control.push_str(&format!("Depends: {}\n", self.depends));
        }
        control.push_str(&format!("Description: test package {}\n", self.name));
        let mut data = vec![(
            format!("usr/share/{}/version", self.name),
            format!("{}\n", self.version),
        )];
        data.extend(self.files.iter().cloned());
        let mut deb = b"!<arch>\n".to_vec();
        for (name, bytes) in [
            ("debian-binary", b"2.0\n".to_vec()),
            (
                "control.tar.gz",
                tar_gz(&[("control".to_string(), control)]),
            ),
            ("data.tar.gz", tar_gz(&data)),
        ] {
            deb.extend_from_slice(
                format!(
                    "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    0,
                    0,
                    0,
                    "100644",
                    bytes.len()
                )
                .as_bytes(),
            );
            deb.extend_from_slice(&bytes);
            if bytes.len() % 2 == 1 {
                deb.push(b'\n');
            }
        }
        deb
    }
}

/// A gzip'd tar of `./<path>` files (and their folders), all stamped 0.
fn tar_gz(files: &[(String, String)]) -> Vec<u8> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_path_buf());
            parent = dir.parent();
        }
    }
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header
    };
    for dir in dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, Path::new(".").join(&dir), std::io::empty())
            .unwrap();
    }
    for (path, text) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        tar.append_data(&mut h, Path::new(".").join(path), text.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

pub struct Archive {
    pub root: PathBuf,
}

impl Archive {
    pub fn new(root: &Path) -> Archive {
        std::fs::create_dir_all(root).unwrap();
        Archive {
            root: root.to_path_buf(),
        }
    }

    /// Writes `dists/<suite>` with a main/binary-amd64 index (plain, .gz and
    /// .xz-free), a Release and an InRelease signed by `signers`.
    pub fn write_suite(&self, suite: &str, packages: &[Pkg], signers: &[&TestKey]) {
        let dists = self.root.join("dists").join(suite);
        let binary = dists.join("main/binary-amd64");
        std::fs::create_dir_all(&binary).unwrap();
        let mut index = String::new();
        for pkg in packages {
            let deb = pkg.deb_bytes();
            let path = self.root.join(pkg.filename());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &deb).unwrap();
            let mut fields = BTreeMap::new();
            fields.insert("Depends", &pkg.depends);
            fields.insert("Pre-Depends", &pkg.pre_depends);
            fields.insert("Provides", &pkg.provides);
            fields.insert("Conflicts", &pkg.conflicts);
            fields.insert("Breaks", &pkg.breaks);
            index.push_str(&format!(
                "Package: {}\nVersion: {}\nArchitecture: {}\nPriority: {}\n",
                pkg.name, pkg.version, pkg.arch, pkg.priority
            ));
            for (field, value) in fields {
                if !value.is_empty() {
                    index.push_str(&format!("{field}: {value}\n"));
                }
            }
            index.push_str(&format!(
                "Filename: {}\nSize: {}\nSHA256: {}\nDescription: test package {}\n\n",
                pkg.filename(),
                deb.len(),
                hex(&Sha256::digest(&deb)),
                pkg.name
            ));
        }
        let plain = index.into_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(binary.join("Packages"), &plain).unwrap();
        std::fs::write(binary.join("Packages.gz"), &gz).unwrap();
        let mut release = format!(
            "Origin: nodeimg-test\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 12 Sep 2026 07:55:41 UTC\n\
             Architectures: amd64\nComponents: main\nSHA256:\n"
        );
        for (name, bytes) in [("Packages", &plain), ("Packages.gz", &gz)] {
            release.push_str(&format!(
                " {} {} main/binary-amd64/{name}\n",
                hex(&Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        std::fs::write(dists.join("Release"), &release).unwrap();
        let signed = super::pgp::sign_cleartext_many(signers, &release);
        std::fs::write(dists.join("InRelease"), signed).unwrap();
    }

    pub fn file(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the server does with the next requests.
#[derive(Default)]
pub struct Behaviour {
    /// Answer this many requests with HTTP 503 before serving again.
    pub fail_next: u32,
    /// Answer every request with HTTP 503.
    pub fail_always: bool,
}

/// A minimal HTTP/1.1 file server on 127.0.0.1 (GET only, one request per
/// connection), with `Last-Modified`/`If-Modified-Since` support.
pub struct Server {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Every request path seen, with the status answered.
    pub log: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (root, behaviour, log, stop) = (
                root.to_path_buf(),
                behaviour.clone(),
                log.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let _ = serve(stream, &root, &behaviour, &log);
                    }
                }
            })
        };
        Server {
            addr,
            behaviour,
            log,
            stop,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<(String, u16)> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// apt quotes `+`, `~` and others in its request paths (`%2b`).
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(
    mut stream: TcpStream,
    root: &Path,
    behaviour: &Mutex<Behaviour>,
    log: &Mutex<Vec<(String, u16)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut if_modified_since = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("if-modified-since")
        {
            if_modified_since = Some(value.trim().to_string());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let failing = {
        let mut b = behaviour.lock().unwrap();
        if b.fail_always {
            true
        } else if b.fail_next > 0 {
            b.fail_next -= 1;
            true
        } else {
            false
        }
    };
    let (status, body, last_modified) = if failing {
        (503, b"unavailable".to_vec(), None)
    } else {
        let file = root.join(percent_decoded(&path).trim_start_matches('/'));
        match std::fs::read(&file) {
            Ok(bytes) => {
                // A stand-in date derived from the content: equal bytes give
                // an equal validator, which is all a client compares (and a
                // valid HTTP date, which apt insists on).
                let digest = Sha256::digest(&bytes);
                let offset = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
                let stamp =
                    time::OffsetDateTime::from_unix_timestamp(1_767_225_600 + i64::from(offset))
                        .unwrap()
                        .format(&time::format_description::well_known::Rfc2822)
                        .unwrap()
                        .replace("+0000", "GMT");
                if if_modified_since.as_deref() == Some(stamp.as_str()) {
                    (304, Vec::new(), Some(stamp))
                } else {
                    (200, bytes, Some(stamp))
                }
            }
            Err(_) => (404, b"not found".to_vec(), None),
        }
    };
    log.lock().unwrap().push((path, status));
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(stamp) = last_modified {
        head.push_str(&format!("Last-Modified: {stamp}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}
