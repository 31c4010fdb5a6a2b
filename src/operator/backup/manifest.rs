//! A full backup is a directory `{slug}/{time}/` in the target; its `manifest.json`, written
//! last, lists the parts with their SHA-256 and size. A directory without a manifest is an
//! unfinished backup: never listed, never restored.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "flomastr-full-backup";
/// The layout this version writes: 2 may hold n8n's volume (`n8n-data.tar`), which an
/// operator that reads only 1 would silently leave out, so it refuses it (BackupVersion).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this version still restores (1: no n8n volume).
pub const OLDEST_READABLE: u32 = 1;

pub const MANIFEST: &str = "manifest.json";
pub const ENGINE_PART: &str = "engine.jsonl";
pub const TENANT_PART: &str = "tenant.yaml";
pub const KEY_PART: &str = "n8n-encryption-key.sealed";
/// n8n's volume as a tar (format 2; absent when the tenant's volume held nothing yet).
pub const N8N_PART: &str = "n8n-data.tar";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The flomastr that wrote it.
    pub flomastr_version: String,
    /// The tenant backed up.
    pub slug: String,
    /// RFC 3339.
    pub taken_at: String,
    pub parts: Vec<Part>,
    /// The n8n encryption key's fingerprint (`encryption::fingerprint`), checked after opening.
    pub n8n_key_fingerprint: String,
    /// Which platform backup key sealed it (`BackupKey::fingerprint`).
    pub backup_key_fingerprint: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Part {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

impl Manifest {
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// The directory of a backup of `slug` started at `at`: names sort in time order.
pub fn backup_name(slug: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{slug}/{}", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// `{name}/{part}`.
pub fn part_path(name: &str, part: &str) -> String {
    format!("{name}/{part}")
}
