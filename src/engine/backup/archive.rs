//! The archive format (version 2): JSON lines. The first line is the header (format name,
//! version, engine schema version, the tenant, when it was taken), then one line per row
//! (`{"table": ..., "row": {...}}`, tables in [`super::tables::TABLES`] order), then the trailer
//! (`{"end": {"rows": {table: count}, "sha256": ...}}`) with the SHA-256 of every byte before
//! it. A stream cut short has no trailer, so it cannot pass for a whole archive.
//!
//! Version 2 carries the bytes of media files kept in the engine's object store in their rows
//! (`bytes`, as PostgreSQL renders bytea, beside the `object_key`), so an archive restores
//! without the store it was taken from; version 1 carried only the key. Both are read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The `format` of every archive's header.
pub const FORMAT: &str = "flomastr-tenant-backup";
/// The version this engine writes (and the newest it reads).
pub const VERSION: u32 = 2;
/// The oldest version this engine reads.
pub const OLDEST_VERSION: u32 = 1;
/// The media type of an archive.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The engine's latest migration when the archive was taken: a restore needs the same.
    pub schema_version: i64,
    pub created_at: DateTime<Utc>,
    pub tenant: ArchivedTenant,
    pub senders: Vec<ArchivedSender>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ArchivedTenant {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub status: String,
    pub max_attempts: i32,
    pub max_concurrency: i32,
    pub created_at: DateTime<Utc>,
}

/// A sender as archived: enough to find the same number in the tenant a restore writes to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ArchivedSender {
    pub id: Uuid,
    pub provider: String,
    pub address: String,
}

/// One row line.
#[derive(Serialize, Deserialize)]
pub struct RowLine<R> {
    pub table: String,
    pub row: R,
}

/// The last line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Trailer {
    pub end: Manifest,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Rows per table (every table of the format, zero included).
    pub rows: BTreeMap<String, u64>,
    /// SHA-256 (hex) of every byte before the trailer line.
    pub sha256: String,
}

/// Writes archive lines into a buffer, hashing and counting them.
pub struct ArchiveWriter {
    hasher: Sha256,
    rows: BTreeMap<String, u64>,
    buffer: Vec<u8>,
    bytes: u64,
}

impl ArchiveWriter {
    pub fn new(header: &Header, tables: &[&str]) -> Self {
        let mut writer = Self {
            hasher: Sha256::new(),
            rows: tables.iter().map(|t| ((*t).to_owned(), 0)).collect(),
            buffer: Vec::new(),
            bytes: 0,
        };
        let line = serde_json::to_vec(header).expect("a header serializes");
        writer.hashed_line(&line);
        writer
    }

    /// A row of `table`, as PostgreSQL rendered it (`to_jsonb(t)::text`: one line, no newline).
    pub fn row(&mut self, table: &str, row_json: &str) {
        let mut line = Vec::with_capacity(row_json.len() + table.len() + 24);
        line.extend_from_slice(b"{\"table\":");
        line.extend_from_slice(&serde_json::to_vec(table).expect("a name serializes"));
        line.extend_from_slice(b",\"row\":");
        line.extend_from_slice(row_json.as_bytes());
        line.push(b'}');
        self.hashed_line(&line);
        *self.rows.entry(table.to_owned()).or_default() += 1;
    }

    fn hashed_line(&mut self, line: &[u8]) {
        self.hasher.update(line);
        self.hasher.update(b"\n");
        self.buffer.extend_from_slice(line);
        self.buffer.push(b'\n');
        self.bytes += line.len() as u64 + 1;
    }

    /// What was written since the last take.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Appends the trailer; returns the manifest and the archive's size.
    pub fn finish(&mut self) -> (Manifest, u64) {
        let manifest = Manifest {
            rows: self.rows.clone(),
            sha256: hex::encode(self.hasher.clone().finalize()),
        };
        let mut line = serde_json::to_vec(&Trailer {
            end: manifest.clone(),
        })
        .expect("a trailer serializes");
        line.push(b'\n');
        self.bytes += line.len() as u64;
        self.buffer.extend_from_slice(&line);
        (manifest, self.bytes)
    }
}
