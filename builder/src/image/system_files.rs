//! Files a maintainer script or an installer would have written, generated
//! from the recipe instead: accounts, /tmp, the dpkg database, and the
//! recipe and lock the image was built from.

use crate::image::rootfs::{Entry, Rootfs, RootfsError};
use crate::lock::recipe::Accounts;

/// `/etc/passwd`, `/etc/group` and `/etc/shadow` from the recipe's
/// accounts, root first. Passwords are locked: nobody logs in by password.
pub fn add_accounts(
    rootfs: &mut Rootfs,
    accounts: &Accounts,
    mtime: u64,
) -> Result<(), RootfsError> {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut shadow = String::from("root:*:0:0:99999:7:::\n");
    let mut group = String::from("root:x:0:\n");
    for user in &accounts.users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            user.name, user.uid, user.gid, user.gecos, user.home, user.shell
        ));
        shadow.push_str(&format!("{}:!:0:0:99999:7:::\n", user.name));
    }
    for g in &accounts.groups {
        group.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
    }
    // These replace whatever a package shipped (base-passwd is not run).
    for (path, text, mode) in [
        ("etc/passwd", passwd, 0o644),
        ("etc/group", group, 0o644),
        ("etc/shadow", shadow, 0o640),
    ] {
        rootfs.entries.insert(
            path.to_string(),
            Entry::file(text.into_bytes(), mode, mtime),
        );
    }
    rootfs.insert("root".into(), Entry::directory(0o700, mtime))?;
    rootfs.insert("tmp".into(), Entry::directory(0o1777, mtime))?;
    for user in &accounts.users {
        let home = user.home.trim_start_matches('/');
        if !home.is_empty() && user.home != "/nonexistent" {
            let entry = Entry {
                uid: u64::from(user.uid),
                gid: u64::from(user.gid),
                ..Entry::directory(0o755, mtime)
            };
            rootfs.entries.insert(home.to_string(), entry);
        }
    }
    Ok(())
}

/// `/var/lib/dpkg/status` from each package's own control file, so that
/// `dpkg-query --admindir` and vulnerability scanners see every package.
pub fn add_dpkg_status(rootfs: &mut Rootfs, controls: &[String], mtime: u64) {
    let mut status = String::new();
    for control in controls {
        let mut lines = control.trim_end().lines();
        if let Some(first) = lines.next() {
            status.push_str(first);
            status.push_str("\nStatus: install ok installed\n");
        }
        for line in lines {
            status.push_str(line);
            status.push('\n');
        }
        status.push('\n');
    }
    rootfs.entries.insert(
        "var/lib/dpkg/status".into(),
        Entry::file(status.into_bytes(), 0o644, mtime),
    );
    rootfs.entries.insert(
        "var/lib/dpkg/available".into(),
        Entry::file(Vec::new(), 0o644, mtime),
    );
}

/// The recipe and lock, read-only, under /usr/share/nodeimg/.
pub fn add_provenance(rootfs: &mut Rootfs, recipe: &[u8], lock: &[u8], mtime: u64) {
    for (name, bytes) in [("recipe.toml", recipe), ("recipe.lock", lock)] {
        rootfs.entries.insert(
            format!("usr/share/nodeimg/{name}"),
            Entry::file(bytes.to_vec(), 0o444, mtime),
        );
    }
}

/// `/etc/ssl/certs/ca-certificates.crt`, as ca-certificates' postinst
/// (update-ca-certificates) would make it: every shipped certificate, in
/// path order. Nothing when no package ships certificates.
pub fn add_ca_bundle(rootfs: &mut Rootfs, certificates: &[&(String, String)], mtime: u64) {
    if certificates.is_empty() {
        return;
    }
    let mut bundle = String::new();
    for (_, pem) in certificates {
        bundle.push_str(pem.trim_end());
        bundle.push('\n');
    }
    rootfs.entries.insert(
        "etc/ssl/certs/ca-certificates.crt".into(),
        Entry::file(bundle.into_bytes(), 0o644, mtime),
    );
}
