//! SPDX 2.3 JSON software bill of materials for a built image: the image
//! itself and every locked Debian package, with `pkg:deb` purls and the
//! SHA-256 of the `.deb` it was built from.

use serde_json::{Value, json};

use crate::image::oci::{canonical_json, rfc3339};
use crate::lock::Lock;

/// Percent-encodes a purl component: unreserved characters stay.
fn purl_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// SPDX ids allow letters, digits, `.` and `-` only; the index keeps
/// `libstdc++6`-like names unique once sanitized.
fn spdx_id(index: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{index}-{clean}")
}

/// Something in the image that is not a Debian package: the nodeimg agent,
/// the overlay files.
pub struct ExtraPackage {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub description: String,
}

pub fn spdx(
    role: &str,
    lock: &Lock,
    extras: &[ExtraPackage],
    manifest_digest: &str,
    created: i64,
) -> Vec<u8> {
    let digest_hex = manifest_digest.trim_start_matches("sha256:");
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": format!("nodeimg-{role}"),
        "versionInfo": manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{role}@{}", purl_encode(manifest_digest)),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, package) in lock.packages.iter().enumerate() {
        let id = spdx_id(i, &package.name);
        let source_url = lock
            .sources
            .iter()
            .find(|s| s.name == package.source)
            .map(|s| format!("{}/{}", s.url.trim_end_matches('/'), package.path))
            .unwrap_or_else(|| "NOASSERTION".into());
        packages.push(json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "supplier": "Organization: Debian",
            "downloadLocation": source_url,
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": package.sha256}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from Debian source package {}", package.source_package),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!(
                    "pkg:deb/debian/{}@{}?arch={}",
                    purl_encode(&package.name),
                    purl_encode(&package.version),
                    purl_encode(&package.architecture)
                ),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    for (i, extra) in extras.iter().enumerate() {
        let id = format!(
            "SPDXRef-Extra-{i}-{}",
            spdx_id(0, &extra.name).trim_start_matches("SPDXRef-Package-0-")
        );
        packages.push(json!({
            "SPDXID": id,
            "name": extra.name,
            "versionInfo": extra.version,
            "supplier": "Organization: nodeimg",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": extra.sha256}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "description": extra.description,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!(
                    "pkg:generic/{}@{}?checksum=sha256:{}",
                    purl_encode(&extra.name),
                    purl_encode(&extra.version),
                    extra.sha256
                ),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    canonical_json(&json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("nodeimg-{role}"),
        // Derived from content, so the SBOM is as reproducible as the image.
        "documentNamespace": format!("https://nodeimg.invalid/spdx/{role}/{digest_hex}"),
        "creationInfo": {
            "created": rfc3339(created),
            "creators": [concat!("Tool: nodeimg-", env!("CARGO_PKG_VERSION"))],
        },
        "packages": Value::Array(packages),
        "relationships": Value::Array(relationships),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_debian_versions() {
        assert_eq!(
            purl_encode("1:1.3.dfsg+really1.3.1-1"),
            "1%3A1.3.dfsg%2Breally1.3.1-1"
        );
        assert_eq!(purl_encode("4.0.7-3~deb13u1"), "4.0.7-3~deb13u1");
        assert_eq!(spdx_id(3, "libstdc++6"), "SPDXRef-Package-3-libstdc--6");
    }
}
