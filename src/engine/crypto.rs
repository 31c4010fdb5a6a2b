//! Secrets at rest: AES-256-GCM under a master key, with the key id stored beside each sealed
//! value so keys can rotate (new writes use the first key, reads accept every configured key).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use std::collections::HashMap;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a master key must be given as <id>:<base64 of 32 bytes>")]
    Format,
    #[error("master key `{0}`: the key must decode from base64 to exactly 32 bytes")]
    Length(String),
    #[error("master key id `{0}` is given twice")]
    Duplicate(String),
    #[error("no master key is configured")]
    Empty,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("a sealed value does not open with its key (tampered, or sealed for another record)")]
    Corrupt,
}

/// The master keys. Debug never prints key material.
pub struct Keyring {
    current: String,
    ciphers: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Keyring {
    /// Parses `id:base64[,id:base64...]`; the first key seals, all of them open.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut ciphers = HashMap::new();
        let mut current = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, material) = entry.split_once(':').ok_or(KeyError::Format)?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyError::Format);
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(material)
                .map_err(|_| KeyError::Length(id.to_owned()))?;
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyError::Length(id.to_owned()))?;
            if ciphers.insert(id.to_owned(), cipher).is_some() {
                return Err(KeyError::Duplicate(id.to_owned()));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        Ok(Self {
            current: current.ok_or(KeyError::Empty)?,
            ciphers,
        })
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Seals `plaintext`; `context` (e.g. `tenant:<id>:channel`) is authenticated, so a value
    /// copied to another record does not open there.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> (Vec<u8>, String) {
        let cipher = &self.ciphers[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        (out, self.current.clone())
    }

    pub fn open(&self, context: &str, sealed: &[u8], key_id: &str) -> Result<Vec<u8>, SealError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn seals_and_opens_and_binds_the_context() {
        let ring = Keyring::parse(&format!("k1:{}", key(7))).unwrap();
        let (sealed, id) = ring.seal("tenant:a", b"app-secret");
        assert_eq!(id, "k1");
        assert!(!sealed.windows(10).any(|w| w == b"app-secret"));
        assert_eq!(ring.open("tenant:a", &sealed, "k1").unwrap(), b"app-secret");
        assert_eq!(
            ring.open("tenant:b", &sealed, "k1"),
            Err(SealError::Corrupt)
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            ring.open("tenant:a", &tampered, "k1"),
            Err(SealError::Corrupt)
        );
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_new_key() {
        let old = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let (sealed, id) = old.seal("c", b"x");
        let rotated = Keyring::parse(&format!("k2:{},k1:{}", key(2), key(1))).unwrap();
        assert_eq!(rotated.open("c", &sealed, &id).unwrap(), b"x");
        assert_eq!(rotated.seal("c", b"y").1, "k2");
        let without_old = Keyring::parse(&format!("k2:{}", key(2))).unwrap();
        assert_eq!(
            without_old.open("c", &sealed, &id),
            Err(SealError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn rejects_bad_key_specs_without_echoing_material() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(Keyring::parse("nokey").unwrap_err(), KeyError::Format);
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let error = Keyring::parse(&format!("k1:{short}")).unwrap_err();
        assert!(!error.to_string().contains(&short));
        assert_eq!(
            Keyring::parse(&format!("k1:{},k1:{}", key(1), key(2))).unwrap_err(),
            KeyError::Duplicate("k1".into())
        );
        assert!(
            !format!("{:?}", Keyring::parse(&format!("k1:{}", key(3))).unwrap()).contains(&key(3))
        );
    }
}
