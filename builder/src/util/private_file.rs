//! Files that hold secrets or private keys (a secrets file, a TLS key)
//! must be readable and writable by their owner only. One check, made on
//! the open file (so what is checked is what is read), called wherever
//! such a file is read.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Permission bits that let someone other than the owner read or change
/// the file.
const OTHERS: u32 = 0o077;

/// Reads a file that must be private (mode 0600 or stricter). A file that
/// group or others may read or write is refused with the `chmod 600` to
/// run; the error is an `io::Error` of kind `PermissionDenied`, so callers
/// report it as they report an unreadable file.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    ensure_private(path, file.metadata()?.permissions().mode())?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// The bytes of a private file, checked as [`read_to_string`] checks.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    ensure_private(path, file.metadata()?.permissions().mode())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn ensure_private(path: &Path, mode: u32) -> std::io::Result<()> {
    if mode & OTHERS == 0 {
        return Ok(());
    }
    let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "mode {:04o} lets {who} read or change it, and it holds secrets: run `chmod 600 {}` and try again",
            mode & 0o7777,
            path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, mode: u32) -> std::path::PathBuf {
        let path = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&path, "k = \"v\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn owner_only_files_are_read_others_are_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let path = file_with_mode(dir.path(), mode);
            assert_eq!(read_to_string(&path).unwrap(), "k = \"v\"\n");
            assert_eq!(read(&path).unwrap(), b"k = \"v\"\n");
        }
        for (mode, who) in [
            (0o644, "its group and others"),
            (0o640, "its group"),
            (0o620, "its group"),
            (0o604, "others"),
            (0o602, "others"),
        ] {
            let path = file_with_mode(dir.path(), mode);
            let err = read_to_string(&path).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
            let text = err.to_string();
            assert!(
                text.contains(&format!("mode {mode:04o} lets {who}")),
                "{text}"
            );
            assert!(
                text.contains(&format!("`chmod 600 {}`", path.display())),
                "{text}"
            );
            assert!(read(&path).is_err());
        }
        // A missing file is the usual "not found".
        let err = read_to_string(&dir.path().join("absent")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
