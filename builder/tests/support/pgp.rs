//! Throwaway OpenPGP keys for tests, and cleartext signing the way Debian
//! signs InRelease files (several signatures on one message).

#![allow(dead_code)]

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey,
};
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, Password, Timestamp};

pub enum KeyKind {
    Rsa2048,
    Ed25519,
}

pub struct TestKey {
    secret: SignedSecretKey,
}

pub fn generate_key(kind: KeyKind, user_id: &str) -> TestKey {
    let key_type = match kind {
        KeyKind::Rsa2048 => KeyType::Rsa(2048),
        KeyKind::Ed25519 => KeyType::Ed25519Legacy,
    };
    let params = SecretKeyParamsBuilder::default()
        .key_type(key_type)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(user_id.into())
        .passphrase(None)
        .build()
        .expect("key parameters");
    let secret = params.generate(rand::thread_rng()).expect("key generation");
    TestKey { secret }
}

impl TestKey {
    pub fn public_armored(&self) -> String {
        self.secret
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .expect("armor public key")
    }

    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.secret.fingerprint())
    }

    pub fn sign_cleartext(&self, text: &str) -> String {
        sign_cleartext_many(&[self], text)
    }
}

/// A complete cleartext-signed message carrying one signature per key.
pub fn sign_cleartext_many(keys: &[&TestKey], text: &str) -> String {
    let message = CleartextSignedMessage::new_many(text, |normalized| {
        keys.iter()
            .map(|key| {
                let mut config = SignatureConfig::from_key(
                    rand::thread_rng(),
                    &key.secret.primary_key,
                    SignatureType::Text,
                )?;
                config.hashed_subpackets = vec![
                    Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
                    Subpacket::regular(SubpacketData::IssuerFingerprint(key.secret.fingerprint()))?,
                ];
                config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
                    key.secret.legacy_key_id(),
                ))?];
                config.sign(
                    &key.secret.primary_key,
                    &Password::empty(),
                    normalized.as_bytes(),
                )
            })
            .collect()
    })
    .expect("cleartext signing");
    message
        .to_armored_string(ArmorOptions::default())
        .expect("armor signed message")
}
