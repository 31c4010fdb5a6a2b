//! The stack's secrets, minted once per state directory and kept there (mode 0600), so a
//! restarted stack opens what the previous run sealed and the sample tenant keeps its keys.

use crate::up::UpError;
use base64::Engine as _;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct Secrets {
    pub admin_token: String,
    /// `k1:<base64 of 32 bytes>`, the engine's `FLOMASTR_MASTER_KEY` format.
    pub master_key: String,
    /// The sample tenant's InfoBip API key, which the sandbox expects.
    pub infobip_api_key: String,
    /// The secret InfoBip (the sandbox) sends on the sample tenant's webhooks.
    pub webhook_secret: String,
    /// Passwords of the engine's database login and of the natural-language query login.
    pub engine_db_password: String,
    pub nl_query_db_password: String,
}

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";

impl Secrets {
    pub fn load_or_mint(state: &Path) -> Result<Self, UpError> {
        Ok(Self {
            admin_token: load_or_mint(state, ADMIN_TOKEN_FILE, || token(32))?,
            master_key: load_or_mint(state, "master-key", || format!("k1:{}", base64(32)))?,
            infobip_api_key: load_or_mint(state, "infobip-api-key", || token(24))?,
            webhook_secret: load_or_mint(state, WEBHOOK_SECRET_FILE, || token(32))?,
            engine_db_password: load_or_mint(state, "engine-db-password", || token(24))?,
            nl_query_db_password: load_or_mint(state, "nl-query-db-password", || token(24))?,
        })
    }
}

fn load_or_mint(state: &Path, name: &str, mint: impl Fn() -> String) -> Result<String, UpError> {
    let path = state.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(UpError::Io { path, source }),
    }
    let value = mint();
    write_private(&path, &value)?;
    Ok(value)
}

/// Writes a file only its owner can read, replacing it atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), UpError> {
    let io = |source| UpError::Io {
        path: path.to_owned(),
        source,
    };
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

fn random(bytes: usize) -> Vec<u8> {
    let mut buffer = vec![0; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer
}

fn token(bytes: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(bytes))
}

fn base64(bytes: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(random(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_minted_once_and_private() {
        let dir = std::env::temp_dir().join(format!("flomastr-up-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = Secrets::load_or_mint(&dir).unwrap();
        let again = Secrets::load_or_mint(&dir).unwrap();
        assert_eq!(first.admin_token, again.admin_token);
        assert_eq!(first.master_key, again.master_key);
        assert_ne!(first.admin_token, first.webhook_secret);
        crate::engine::crypto::Keyring::parse(&first.master_key).expect("the engine takes the key");
        let mode = std::fs::metadata(dir.join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
