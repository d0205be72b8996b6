//! OpenPGP verification of Debian `InRelease` files against the key files a
//! recipe trusts (rpgp does the cryptography).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("{path}: cannot read the key file: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an OpenPGP public key file: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("no key files given: a source must name at least one signing key")]
    EmptyKeyring,
    #[error(
        "the file is not an OpenPGP cleartext-signed message ({reason}): refusing unsigned data"
    )]
    NotSigned { reason: String },
    #[error(
        "BAD signature from trusted key {fingerprint}: the data was altered after signing (or the mirror is broken); refusing it"
    )]
    BadSignature { fingerprint: String },
    #[error(
        "no signature from a trusted key: signed by {}, but the recipe trusts {}; add the right key file under recipes/keys/ to the source's `keys`",
        .issuers.join(", "),
        .trusted.join(", ")
    )]
    UntrustedSigner {
        issuers: Vec<String>,
        trusted: Vec<String>,
    },
}

/// The result of a good verification.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed text, dash-unescaped, with `\n` line endings. Only this
    /// text was covered by a signature.
    pub text: String,
    /// Primary fingerprints (uppercase hex) of the trusted keys that made a
    /// good signature, sorted.
    pub signers: Vec<String>,
}

pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Loads every public key from `.asc` (armored) or `.gpg` (binary) files.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Keyring, SignatureError> {
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let bytes = std::fs::read(path).map_err(|source| SignatureError::ReadKey {
                path: path.to_path_buf(),
                source,
            })?;
            let bad = |reason: String| SignatureError::BadKey {
                path: path.to_path_buf(),
                reason,
            };
            let armored = bytes
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'-');
            let parsed: Vec<SignedPublicKey> = if armored {
                let (keys, _headers) = SignedPublicKey::from_armor_many(Cursor::new(&bytes))
                    .map_err(|e| bad(e.to_string()))?;
                keys.collect::<Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?
            } else {
                SignedPublicKey::from_bytes_many(Cursor::new(&bytes))
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?
            };
            if parsed.is_empty() {
                return Err(bad("it holds no public key".into()));
            }
            keys.extend(parsed);
        }
        if keys.is_empty() {
            return Err(SignatureError::EmptyKeyring);
        }
        Ok(Keyring { keys })
    }

    pub fn fingerprints(&self) -> Vec<String> {
        let mut all: Vec<String> = self.keys.iter().map(fingerprint).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Verifies a cleartext-signed message: at least one good signature by
    /// a trusted key, and no bad one by a trusted key.
    pub fn verify_cleartext(&self, signed: &[u8]) -> Result<Verified, SignatureError> {
        let text = std::str::from_utf8(signed).map_err(|_| SignatureError::NotSigned {
            reason: "not UTF-8 text".into(),
        })?;
        if !text
            .trim_start()
            .starts_with("-----BEGIN PGP SIGNED MESSAGE-----")
        {
            return Err(SignatureError::NotSigned {
                reason: "no `-----BEGIN PGP SIGNED MESSAGE-----` header".into(),
            });
        }
        let (message, _headers) =
            CleartextSignedMessage::from_string(text).map_err(|e| SignatureError::NotSigned {
                reason: e.to_string(),
            })?;
        let signed_text = message.signed_text();
        let mut signers = Vec::new();
        let mut issuers = Vec::new();
        for signature in message.signatures() {
            match self.check(signature, signed_text.as_bytes()) {
                Check::Good(primary) => signers.push(primary),
                Check::Bad(primary) => {
                    return Err(SignatureError::BadSignature {
                        fingerprint: primary,
                    });
                }
                Check::Unknown(issuer) => issuers.push(issuer),
            }
        }
        if signers.is_empty() {
            return Err(SignatureError::UntrustedSigner {
                issuers: if issuers.is_empty() {
                    vec!["nobody".into()]
                } else {
                    issuers
                },
                trusted: self.fingerprints(),
            });
        }
        signers.sort();
        signers.dedup();
        Ok(Verified {
            text: signed_text.replace("\r\n", "\n"),
            signers,
        })
    }

    /// Finds the trusted key (primary or subkey) that issued `signature`
    /// and verifies it.
    fn check(&self, signature: &Signature, data: &[u8]) -> Check {
        let fingerprints: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|f| format!("{f:X}"))
            .collect();
        let key_ids: Vec<String> = signature
            .issuer_key_id()
            .iter()
            .map(|id| key_id_hex(id))
            .collect();
        let issued = |fp: String, id: String| fingerprints.contains(&fp) || key_ids.contains(&id);
        for key in &self.keys {
            let primary = fingerprint(key);
            if issued(
                format!("{:X}", key.primary_key.fingerprint()),
                key_id_hex(&key.primary_key.legacy_key_id()),
            ) {
                return match signature.verify(&key.primary_key, data) {
                    Ok(()) => Check::Good(primary),
                    Err(_) => Check::Bad(primary),
                };
            }
            // A subkey counts only when the primary key's binding signature
            // on it verifies: otherwise anyone could attach a subkey.
            for subkey in &key.public_subkeys {
                if subkey.verify_bindings(&key.primary_key).is_ok()
                    && issued(
                        format!("{:X}", subkey.key.fingerprint()),
                        key_id_hex(&subkey.key.legacy_key_id()),
                    )
                {
                    return match signature.verify(&subkey.key, data) {
                        Ok(()) => Check::Good(primary),
                        Err(_) => Check::Bad(primary),
                    };
                }
            }
        }
        Check::Unknown(
            fingerprints
                .into_iter()
                .chain(key_ids)
                .next()
                .unwrap_or_else(|| "an unnamed key".into()),
        )
    }
}

enum Check {
    Good(String),
    Bad(String),
    Unknown(String),
}

fn fingerprint(key: &SignedPublicKey) -> String {
    format!("{:X}", key.primary_key.fingerprint())
}

fn key_id_hex(id: &pgp::types::KeyId) -> String {
    hex::encode_upper(id.as_ref())
}
