//! Reading real `.deb` files built by dpkg-deb with each compression Debian
//! uses, and refusing damaged ones.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use nodeimg::debian::deb::{Compression, Deb, DebError};

fn build_deb(dir: &Path, compression: &str) -> Vec<u8> {
    let root = dir.join(format!("pkg-{compression}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: hello-test\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.invalid>\nDescription: test\n",
    )
    .unwrap();
    let postinst = root.join("DEBIAN/postinst");
    std::fs::write(&postinst, "#!/bin/sh\necho never run\n").unwrap();
    std::fs::set_permissions(
        &postinst,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("usr/bin/hello"), "hello\n").unwrap();
    let out = dir.join(format!("hello-{compression}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .expect("dpkg-deb is installed by scripts/test.sh");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read(out).unwrap()
}

fn data_paths(deb: &Deb) -> Vec<String> {
    let mut archive = tar::Archive::new(deb.data_reader().unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn reads_gzip_xz_and_zstd_debs() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, expected) in [
        ("gzip", Compression::Gzip),
        ("xz", Compression::Xz),
        ("zstd", Compression::Zstd),
    ] {
        let bytes = build_deb(dir.path(), flag);
        let deb = Deb::parse(&bytes).unwrap();
        assert_eq!(deb.data_compression(), expected);
        assert!(
            deb.control_text()
                .unwrap()
                .contains("Package: hello-test\n")
        );
        assert!(
            data_paths(&deb).contains(&"./usr/bin/hello".to_string()),
            "{flag}"
        );
        // The file content streams out of the data archive.
        let mut archive = tar::Archive::new(deb.data_reader().unwrap());
        let mut entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().ends_with("usr/bin/hello"))
            .unwrap();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello\n");
    }
}

#[test]
fn refuses_damaged_debs() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_deb(dir.path(), "xz");
    let truncated = &bytes[..bytes.len() - 10];
    assert!(matches!(Deb::parse(truncated), Err(DebError::Format(m)) if m.contains("truncated")));
    assert!(
        matches!(Deb::parse(b"PK\x03\x04 a zip"), Err(DebError::Format(m)) if m.contains("ar magic"))
    );

    // An unknown compression: rename data.tar.xz to data.tar.bz2 in place.
    let mut renamed = bytes.clone();
    let at = renamed
        .windows(11)
        .position(|w| w == b"data.tar.xz")
        .unwrap();
    renamed[at..at + 12].copy_from_slice(b"data.tar.bz2");
    match Deb::parse(&renamed) {
        Err(err @ DebError::UnknownCompression { .. }) => {
            assert!(err.to_string().contains("data.tar.bz2"))
        }
        other => panic!("expected UnknownCompression, got {:?}", other.err()),
    }
}
