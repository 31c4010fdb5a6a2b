//! Media files of the object store in a restore. Every restored file ends up under the target
//! tenant's own key (`media/{tenant}/{id}`), so a tenant restored into a new slug beside its
//! source shares no object with it, and deleting one never deletes the other's files.
//!
//! - A row with its bytes (format 2) puts them under the target's key; on an engine without an
//!   object store the bytes stay in the row.
//! - A row with a key alone (format 1, or a file whose object was gone when the backup was
//!   taken) has its object copied to the target's key when the key differs.
//! - Once the restore committed, the objects of the target's replaced files that no restored
//!   row names are deleted; when it fails, the objects it put that no row names are.

use crate::engine::error::ApiError;
use crate::engine::media::blobs::{BlobError, MediaBlobs, Placement};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// The objects a restore put, and those of the files it replaced.
#[derive(Default)]
pub struct RestoredObjects {
    placed: Vec<String>,
    replaced: Vec<String>,
}

fn corrupt(reason: &str) -> ApiError {
    ApiError::bad_request(
        "backup_corrupt",
        format!("the archive's `media` rows do not fit the schema ({reason}); nothing was written"),
    )
}

fn store_failed(error: BlobError) -> ApiError {
    tracing::error!(%error, "a restore could not write a media file to the object store");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the media store is unavailable; nothing was restored",
    )
}

/// PostgreSQL's bytea text (`\x0a0b`) as bytes.
fn bytea(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.strip_prefix("\\x")?).ok()
}

impl RestoredObjects {
    /// The object keys of the target's files the restore deletes.
    pub fn replacing(&mut self, keys: Vec<String>) {
        self.replaced = keys;
    }

    /// Makes an archived `media` row the target's (see the module's notes).
    pub async fn media_row(
        &mut self,
        blobs: &MediaBlobs,
        target: Uuid,
        row: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        let Some(key) = row
            .get("object_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let id: Uuid = row
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| corrupt("a file without an id"))?;
        let own_key = MediaBlobs::key(target, id);
        match row.get("bytes").and_then(Value::as_str) {
            Some(text) if blobs.is_object_store() => {
                let bytes = bytea(text).ok_or_else(|| corrupt("bytes that are not bytea"))?;
                if let Placement::Object(placed) =
                    blobs.put(target, id, &bytes).await.map_err(store_failed)?
                {
                    self.placed.push(placed);
                }
                row.insert("bytes".into(), Value::Null);
                row.insert("object_key".into(), Value::String(own_key));
            }
            // No object store here: the file is kept in its row.
            Some(_) => {
                row.insert("object_key".into(), Value::Null);
            }
            None if blobs.is_object_store() && key != own_key => {
                if blobs.copy(&key, &own_key).await.map_err(store_failed)? {
                    self.placed.push(own_key.clone());
                } else {
                    tracing::warn!(
                        key,
                        "a restored media file's object is gone; it answers 404"
                    );
                }
                row.insert("object_key".into(), Value::String(own_key));
            }
            None => {}
        }
        Ok(())
    }

    /// After the commit: the replaced files' objects that no restored row names go.
    pub async fn committed(self, pool: &PgPool, blobs: &MediaBlobs, target: Uuid) {
        delete_unnamed(pool, blobs, target, self.replaced).await;
    }

    /// After a failure: the objects the restore put that no row names go (the rolled-back
    /// rows named none, a live file of the same id keeps its object: same id, same bytes).
    pub async fn rolled_back(self, pool: &PgPool, blobs: &MediaBlobs, target: Uuid) {
        delete_unnamed(pool, blobs, target, self.placed).await;
    }
}

/// Deletes the objects of `keys` (all the target's) that no media row names.
async fn delete_unnamed(pool: &PgPool, blobs: &MediaBlobs, target: Uuid, keys: Vec<String>) {
    if keys.is_empty() {
        return;
    }
    let named: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT object_key FROM media WHERE tenant_id = $1 AND object_key = ANY($2)",
    )
    .bind(target)
    .bind(&keys)
    .fetch_all(pool)
    .await;
    match named {
        Ok(named) => {
            let named: std::collections::HashSet<String> = named.into_iter().collect();
            let unnamed: Vec<String> = keys.into_iter().filter(|k| !named.contains(k)).collect();
            blobs.delete(&unnamed).await;
        }
        // Left in place: an orphan costs storage, a wrong delete would lose a file.
        Err(error) => tracing::warn!(%error, "could not check a restore's media objects"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_text_decodes_and_anything_else_does_not() {
        assert_eq!(bytea("\\x0a0bff"), Some(vec![0x0a, 0x0b, 0xff]));
        assert_eq!(bytea("\\x"), Some(Vec::new()));
        assert_eq!(bytea("0a0b"), None);
        assert_eq!(bytea("\\xzz"), None);
    }
}
