//! SCRAM-SHA-256 password verifiers (RFC 5802/7677, as PostgreSQL stores them). Roles get a
//! verifier rather than the password, so the password never appears in a statement the server
//! could log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
pub const ITERATIONS: u32 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("database passwords must be printable ASCII (PostgreSQL would normalise others first)")]
pub struct NotAscii;

/// The verifier PostgreSQL keeps for `password`, with a random salt.
pub fn verifier(password: &str) -> Result<String, NotAscii> {
    verifier_with(password, &rand::random::<[u8; 16]>(), ITERATIONS)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> Result<String, NotAscii> {
    // SASLprep (which the server applies) is the identity on printable ASCII only.
    if !password.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(NotAscii);
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = keyed(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = keyed(&salted, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    ))
}

fn keyed(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_computation() {
        // RFC 7677's example password and salt; the expected value computed with Python's
        // hashlib/hmac. (That PostgreSQL accepts a login with it is tested against the server.)
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            verifier_with("pencil", &salt, 4096).unwrap(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn refuses_what_the_server_would_normalise() {
        assert_eq!(verifier("pässword"), Err(NotAscii));
        assert_eq!(verifier("tab\there"), Err(NotAscii));
        assert!(verifier("Str0ng-and_printable!").is_ok());
    }
}
