//! Reads a whole archive before anything is written: the format and its version, the engine
//! schema it was taken on, every line's shape and table order, each row belonging to the
//! archived tenant, the row counts and the SHA-256 of the trailer.

use super::archive::{FORMAT, Header, OLDEST_VERSION, Trailer, VERSION};
use super::tables::{TABLES, position};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest line an archive may have (a row, whatever its table: a media file in hex, up to
/// 100 MiB of file in 200 MiB of hex).
pub const MAX_LINE: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("this is not a flomastr tenant backup ({0})")]
    NotAnArchive(String),
    #[error(
        "the archive is format version {found}; this engine reads versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version { found: u64 },
    #[error(
        "the archive was taken on engine schema {archive}; this engine's database is at {engine}: restore it with an engine of the same version"
    )]
    Schema { archive: i64, engine: i64 },
    #[error("the archive is truncated: {0}")]
    Truncated(&'static str),
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    fn corrupt(line: u64, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt(format!("line {line}: {reason}"))
    }
}

/// What a valid archive holds.
#[derive(Debug)]
pub struct Summary {
    pub header: Header,
    pub rows: BTreeMap<String, u64>,
    pub bytes: u64,
}

/// One line into `buffer` (with its newline). `Ok(false)` at the end of the input.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
) -> Result<bool, ArchiveError> {
    buffer.clear();
    let read = (&mut *reader)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buffer)
        .await?;
    if read == 0 {
        return Ok(false);
    }
    if buffer.last() != Some(&b'\n') {
        return Err(if buffer.len() > MAX_LINE {
            ArchiveError::Corrupt(format!("a line is longer than {MAX_LINE} bytes"))
        } else {
            ArchiveError::Truncated("the last line is cut short")
        });
    }
    Ok(true)
}

/// The header of the first line, checked for format, version and schema.
pub fn parse_header(line: &[u8], engine_schema: i64) -> Result<Header, ArchiveError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|_| ArchiveError::NotAnArchive("the first line is not JSON".into()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(ArchiveError::NotAnArchive(format!(
            "the first line does not name the format `{FORMAT}`"
        )));
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if !(u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&version) {
        return Err(ArchiveError::Version { found: version });
    }
    let header: Header = serde_json::from_value(value).map_err(|e| ArchiveError::corrupt(1, e))?;
    if header.schema_version != engine_schema {
        return Err(ArchiveError::Schema {
            archive: header.schema_version,
            engine: engine_schema,
        });
    }
    if !crate::engine::tenants::is_valid_slug(&header.tenant.slug) {
        return Err(ArchiveError::corrupt(1, "the tenant's slug is not valid"));
    }
    Ok(header)
}

/// A row line: its table's position and the row.
pub fn parse_row(
    line: &[u8],
    number: u64,
    header: &Header,
) -> Result<(usize, serde_json::Map<String, serde_json::Value>), ArchiveError> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ArchiveError::corrupt(number, e))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(ArchiveError::corrupt(number, "not a JSON object"));
    };
    let table = object
        .remove("table")
        .and_then(|t| t.as_str().map(str::to_owned))
        .ok_or_else(|| ArchiveError::corrupt(number, "no table"))?;
    let index = position(&table)
        .ok_or_else(|| ArchiveError::corrupt(number, format!("unknown table `{table}`")))?;
    let Some(serde_json::Value::Object(row)) = object.remove("row") else {
        return Err(ArchiveError::corrupt(number, "no row object"));
    };
    // A row of another tenant never goes in, whatever the archive says.
    if let Some(owner) = row.get("tenant_id")
        && owner.as_str() != Some(header.tenant.id.to_string().as_str())
    {
        return Err(ArchiveError::corrupt(
            number,
            "a row belongs to another tenant than the archive's",
        ));
    }
    Ok((index, row))
}

/// Reads the whole archive; `Ok` only when every check passes.
pub async fn check<R: AsyncBufRead + Unpin>(
    mut reader: R,
    engine_schema: i64,
) -> Result<Summary, ArchiveError> {
    let mut line = Vec::new();
    let header = match next_line(&mut reader, &mut line).await {
        Ok(false) => return Err(ArchiveError::NotAnArchive("it is empty".into())),
        Ok(true) => parse_header(&line, engine_schema)?,
        // Another format need not have lines at all: say so rather than "cut short".
        Err(cut) if memchr::memmem::find(&line, FORMAT.as_bytes()).is_some() => return Err(cut),
        Err(_) => {
            return Err(ArchiveError::NotAnArchive(
                "its first line is not a header".into(),
            ));
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(&line);
    let mut bytes = line.len() as u64;
    let mut rows: BTreeMap<String, u64> = TABLES.iter().map(|t| (t.name.to_owned(), 0)).collect();
    let mut number = 1u64;
    let mut last_table = 0;
    let trailer = loop {
        number += 1;
        if !next_line(&mut reader, &mut line).await? {
            return Err(ArchiveError::Truncated("it ends before its trailer"));
        }
        bytes += line.len() as u64;
        if line.starts_with(b"{\"end\"") {
            break serde_json::from_slice::<Trailer>(&line)
                .map_err(|e| ArchiveError::corrupt(number, e))?;
        }
        hasher.update(&line);
        let (index, _) = parse_row(&line, number, &header)?;
        if index < last_table {
            return Err(ArchiveError::corrupt(number, "tables out of order"));
        }
        last_table = index;
        *rows.entry(TABLES[index].name.to_owned()).or_default() += 1;
    };
    if next_line(&mut reader, &mut line).await? {
        return Err(ArchiveError::corrupt(number + 1, "data after the trailer"));
    }
    if hex::encode(hasher.finalize()) != trailer.end.sha256 {
        return Err(ArchiveError::Corrupt(
            "the SHA-256 of its content differs from its trailer's".into(),
        ));
    }
    if trailer.end.rows != rows {
        return Err(ArchiveError::Corrupt(
            "its row counts differ from its trailer's".into(),
        ));
    }
    Ok(Summary {
        header,
        rows,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backup::archive::{ArchiveWriter, ArchivedTenant};
    use crate::engine::backup::tables::names;

    const TENANT: &str = "6f1d2c1e-8c1a-4c8e-9b1a-3f2e1d0c9b8a";

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            schema_version: 7,
            created_at: chrono::Utc::now(),
            tenant: ArchivedTenant {
                id: TENANT.parse().unwrap(),
                slug: "acme".into(),
                display_name: "ACME".into(),
                status: "active".into(),
                max_attempts: 5,
                max_concurrency: 50,
                created_at: chrono::Utc::now(),
            },
            senders: Vec::new(),
        }
    }

    fn archive() -> Vec<u8> {
        let mut writer = ArchiveWriter::new(&header(), &names());
        writer.row("jobs", &format!(r#"{{"id":"x","tenant_id":"{TENANT}"}}"#));
        writer.row("outbound_events", r#"{"id":1,"message_id":"m"}"#);
        writer.finish();
        writer.take()
    }

    async fn checked(bytes: &[u8]) -> Result<Summary, ArchiveError> {
        check(bytes, 7).await
    }

    #[tokio::test]
    async fn a_whole_archive_passes_with_its_counts() {
        let summary = checked(&archive()).await.unwrap();
        assert_eq!(summary.rows["jobs"], 1);
        assert_eq!(summary.rows["outbound_events"], 1);
        assert_eq!(summary.header.tenant.slug, "acme");
    }

    #[tokio::test]
    async fn a_changed_byte_fails_the_checksum() {
        let mut bytes = archive();
        let at = bytes.windows(3).position(|w| w == b"\"x\"").unwrap();
        bytes[at + 1] = b'y';
        assert!(
            matches!(checked(&bytes).await, Err(ArchiveError::Corrupt(m)) if m.contains("SHA-256"))
        );
    }

    #[tokio::test]
    async fn every_cut_is_refused() {
        let bytes = archive();
        for cut in 0..bytes.len() {
            assert!(checked(&bytes[..cut]).await.is_err(), "cut at {cut} passed");
        }
    }

    #[tokio::test]
    async fn other_formats_versions_and_schemas_are_named() {
        assert!(matches!(
            checked(b"PK\x03\x04 zip\n").await,
            Err(ArchiveError::NotAnArchive(_))
        ));
        assert!(matches!(
            checked(b"{\"a\":1}\n").await,
            Err(ArchiveError::NotAnArchive(_))
        ));
        let text = String::from_utf8(archive()).unwrap();
        let version = |v: u32| {
            text.replacen(
                &format!("\"version\":{VERSION}"),
                &format!("\"version\":{v}"),
                1,
            )
        };
        assert!(matches!(
            checked(version(VERSION + 1).as_bytes()).await,
            Err(ArchiveError::Version { found }) if found == u64::from(VERSION) + 1
        ));
        assert!(matches!(
            checked(version(0).as_bytes()).await,
            Err(ArchiveError::Version { found: 0 })
        ));
        assert!(matches!(
            check(&archive()[..], 8).await,
            Err(ArchiveError::Schema {
                archive: 7,
                engine: 8
            })
        ));
    }

    #[tokio::test]
    async fn a_row_of_another_tenant_is_refused_even_with_a_matching_checksum() {
        let mut writer = ArchiveWriter::new(&header(), &names());
        writer.row(
            "jobs",
            r#"{"id":"x","tenant_id":"00000000-0000-0000-0000-000000000001"}"#,
        );
        writer.finish();
        let result = checked(&writer.take()).await;
        assert!(matches!(result, Err(ArchiveError::Corrupt(m)) if m.contains("another tenant")));
    }

    #[tokio::test]
    async fn tables_out_of_order_are_refused() {
        let mut writer = ArchiveWriter::new(&header(), &names());
        writer.row("outbound_events", r#"{"id":1}"#);
        writer.row("jobs", &format!(r#"{{"id":"x","tenant_id":"{TENANT}"}}"#));
        writer.finish();
        assert!(
            matches!(checked(&writer.take()).await, Err(ArchiveError::Corrupt(m)) if m.contains("order"))
        );
    }
}
