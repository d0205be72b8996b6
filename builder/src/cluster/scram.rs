//! SCRAM-SHA-256 verifiers in the exact format PostgreSQL stores in
//! `pg_authid.rolpassword` and PgBouncer reads from its userlist:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802,
//! RFC 7677). The primitives come from the RustCrypto crates.
//!
//! Passwords: PostgreSQL normalizes a password with SASLprep (RFC 4013)
//! before hashing it, and leaves a pure-ASCII password as it is. nodeimg
//! does not implement SASLprep, so it takes printable ASCII only (space to
//! `~`, what `nodeimg secrets init` generates) and refuses anything else
//! with [`ScramError::NonAscii`], rather than make a verifier PostgreSQL
//! might not match. Control characters are refused too: they pass SASLprep
//! unchanged but rarely survive the config files and shells a password
//! travels through.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error(
        "not a SCRAM-SHA-256 verifier (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
    )]
    Format,
    #[error("the iteration count {0:?} is not a positive number")]
    Iterations(String),
    #[error("the {0} is not valid base64 of the right length")]
    Encoding(&'static str),
    #[error("the salt is empty: SCRAM needs a random salt (PostgreSQL uses 16 bytes)")]
    EmptySalt,
    #[error(
        "passwords must be printable ASCII (space to '~'): PostgreSQL normalizes other characters with SASLprep, which nodeimg does not implement"
    )]
    NonAscii,
}

fn hmac_of(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    hmac_of(key, message).finalize().into_bytes().into()
}

/// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations).
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    salted
}

/// SASLprep leaves printable ASCII unchanged, so for such passwords the
/// bytes are the normalized form; anything else is refused rather than
/// risk a verifier PostgreSQL would not match.
fn check_password(password: &str) -> Result<(), ScramError> {
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(ScramError::NonAscii)
    }
}

impl Verifier {
    /// The verifier of `password` with a given salt and iteration count:
    /// the same bytes PostgreSQL computes from them.
    pub fn compute(password: &str, salt: &[u8], iterations: u32) -> Result<Verifier, ScramError> {
        check_password(password)?;
        if iterations == 0 {
            return Err(ScramError::Iterations(iterations.to_string()));
        }
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Ok(Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        })
    }

    /// A verifier with a fresh random salt, as PostgreSQL makes one.
    pub fn generate(password: &str) -> Result<Verifier, ScramError> {
        let mut salt = [0u8; SALT_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        Verifier::compute(password, &salt, DEFAULT_ITERATIONS)
    }

    /// Whether `password` is the one this verifier was made from. The
    /// ServerKey is compared in constant time (the HMAC crate's check), so
    /// timing tells a guesser nothing.
    pub fn verify_password(&self, password: &str) -> bool {
        if check_password(password).is_err() || self.iterations == 0 || self.salt.is_empty() {
            return false;
        }
        let salted = salted_password(password, &self.salt, self.iterations);
        let server_key_matches = hmac_of(&salted, b"Server Key")
            .verify_slice(&self.server_key)
            .is_ok();
        // Only the right password gets here, so comparing plainly leaks
        // nothing; it catches a verifier whose StoredKey was damaged.
        server_key_matches
            && <[u8; 32]>::from(Sha256::digest(hmac(&salted, b"Client Key"))) == self.stored_key
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl FromStr for Verifier {
    type Err = ScramError;

    fn from_str(text: &str) -> Result<Verifier, ScramError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::Format)?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::Format)?;
        let (iterations, salt) = params.split_once(':').ok_or(ScramError::Format)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::Format)?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| ScramError::Iterations(iterations.to_string()))?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ScramError::Encoding("salt"))?;
        let key = |text: &str, what| -> Result<[u8; 32], ScramError> {
            STANDARD
                .decode(text)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or(ScramError::Encoding(what))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
    /// 4096 iterations; its ServerSignature is checked through the keys.
    #[test]
    fn matches_the_rfc_7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = Verifier::compute("pencil", &salt, 4096).unwrap();
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac(&verifier.server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // The client proof in the RFC, checked the way a server does.
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_signature = hmac(&verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&client_key)),
            verifier.stored_key
        );
    }

    /// Verifiers PostgreSQL 15.18 stored in `pg_authid.rolpassword` for
    /// `CREATE ROLE ... PASSWORD '<password>'` with scram-sha-256:
    /// recomputed from their salt and iteration count, byte for byte.
    #[test]
    fn matches_verifiers_postgresql_made() {
        let made_by_postgres = [
            (
                "pencil",
                "SCRAM-SHA-256$4096:RC0o5HrXj03FwE5gIB91nw==$4SXE2D0bK9mDH2TuSDx5I5jNr42tTgEqJjGesWRNB2Q=:AiD0uWMHo/b6kff8bj8RZYdJbRmF8nm8Bc/u+ZcZS18=",
            ),
            (
                "nodeimg known-answer vector",
                "SCRAM-SHA-256$4096:bqCeTTxc1p+Kjrol9FyZzA==$RYQpsEOsJ2gelIjveG/MmcJWknTwGnnYwyUmSZU+D84=:xfid00cxwTEI1gmnBRI0Y1S6LTlPbRml5o6kwnTVjcY=",
            ),
        ];
        for (password, stored) in made_by_postgres {
            let parsed: Verifier = stored.parse().unwrap();
            assert_eq!(parsed.iterations, 4096);
            assert_eq!(parsed.salt.len(), 16);
            let recomputed = Verifier::compute(password, &parsed.salt, parsed.iterations).unwrap();
            assert_eq!(recomputed.to_string(), stored);
            assert!(parsed.verify_password(password));
            assert!(!parsed.verify_password("pencil2"));
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let verifier = Verifier::generate("correct horse battery staple").unwrap();
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let parsed: Verifier = text.parse().unwrap();
        assert_eq!(parsed, verifier);
        assert!(parsed.verify_password("correct horse battery staple"));
        assert!(!parsed.verify_password("wrong"));
        assert_ne!(Verifier::generate("x").unwrap().salt, verifier.salt);
    }

    #[test]
    fn a_damaged_verifier_verifies_nothing() {
        let mut verifier = Verifier::generate("pencil").unwrap();
        verifier.stored_key[0] ^= 1;
        assert!(!verifier.verify_password("pencil"));
        let mut verifier = Verifier::generate("pencil").unwrap();
        verifier.server_key[31] ^= 0x80;
        assert!(!verifier.verify_password("pencil"));
    }

    #[test]
    fn refuses_what_is_not_a_verifier() {
        // The seeds' recipe, base64(sha256(password || username)), bare
        // and with the prefix their SQL adds.
        let wrong = STANDARD.encode(Sha256::digest(b"secretapp"));
        assert_eq!(wrong.parse::<Verifier>(), Err(ScramError::Format));
        assert_eq!(
            format!("SCRAM-SHA-256${wrong}").parse::<Verifier>(),
            Err(ScramError::Format)
        );
        assert_eq!(
            "SCRAM-SHA-256$0:c2FsdA==$a:b".parse::<Verifier>(),
            Err(ScramError::Iterations("0".into()))
        );
        assert_eq!(
            "SCRAM-SHA-256$4096:$a:b".parse::<Verifier>(),
            Err(ScramError::Encoding("salt"))
        );
        assert_eq!(
            "SCRAM-SHA-256$x:c2FsdA==$a:b".parse::<Verifier>(),
            Err(ScramError::Iterations("x".into()))
        );
        assert_eq!(
            "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==".parse::<Verifier>(),
            Err(ScramError::Encoding("StoredKey"))
        );
        assert_eq!(Verifier::generate("pässword"), Err(ScramError::NonAscii));
        assert_eq!(Verifier::generate("tab\there"), Err(ScramError::NonAscii));
        assert_eq!(
            Verifier::compute("pencil", b"salt", 0),
            Err(ScramError::Iterations("0".into()))
        );
        assert_eq!(
            Verifier::compute("pencil", b"", 4096),
            Err(ScramError::EmptySalt)
        );
    }
}
