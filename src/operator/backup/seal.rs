//! The tenant's n8n encryption key in a backup: sealed with the platform backup key
//! (AES-256-GCM, a random nonce per seal), so the bucket never holds it in clear and a backup
//! restored with another platform key is refused instead of yielding a wrong n8n key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bound into every seal: a sealed n8n key cannot be passed off as anything else.
const PURPOSE: &[u8] = b"flomastr backup: n8n encryption key v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("the platform backup key must be 64 hex digits (32 bytes)")]
    BadKey,
    #[error(
        "the sealed n8n encryption key does not open with this platform backup key (another \
         key, or the backup was altered)"
    )]
    WrongKey,
}

/// The platform backup key. Its Debug never shows it.
#[derive(Clone)]
pub struct BackupKey(Aes256Gcm, String);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.1)
    }
}

impl BackupKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SealError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        let digest = Sha256::digest([b"flomastr backup key\0".as_slice(), &bytes].concat());
        Ok(Self(
            cipher,
            format!("sha256:{}", &hex::encode(digest)[..16]),
        ))
    }

    /// Tells keys apart (recorded in each manifest), gives nothing away about the key.
    pub fn fingerprint(&self) -> &str {
        &self.1
    }

    /// `nonce || ciphertext+tag`.
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: PURPOSE,
                },
            )
            .expect("AES-GCM seals any message of this size");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError::WrongKey);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: PURPOSE,
                },
            )
            .map_err(|_| SealError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_the_same_platform_key_and_unaltered() {
        let key = BackupKey::from_hex(&"11".repeat(32)).unwrap();
        let other = BackupKey::from_hex(&"22".repeat(32)).unwrap();
        let n8n_key = b"0123456789abcdef0123456789abcdef";
        let sealed = key.seal(n8n_key);
        assert!(
            !sealed.windows(16).any(|w| w == &n8n_key[..16]),
            "not in clear"
        );
        assert_ne!(sealed, key.seal(n8n_key), "a new nonce each time");
        assert_eq!(key.open(&sealed).unwrap(), n8n_key);
        assert_eq!(other.open(&sealed), Err(SealError::WrongKey));
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(key.open(&flipped), Err(SealError::WrongKey));
        assert_eq!(key.open(&sealed[..10]), Err(SealError::WrongKey));
        assert_ne!(key.fingerprint(), other.fingerprint());
        assert!(!key.fingerprint().contains("1111"));
        assert!(!format!("{key:?}").contains("1111"));
    }

    #[test]
    fn a_malformed_platform_key_is_refused() {
        for bad in ["", "zz", &"11".repeat(16), &"11".repeat(33)] {
            assert_eq!(BackupKey::from_hex(bad).unwrap_err(), SealError::BadKey);
        }
    }
}
