//! Stored media files as a whole: uploads inserted complete, files read for serving and sending
//! (inbound ones too: a worker may forward what a customer sent), the provider ids they were
//! uploaded under, and the retention.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// A stored file's description (the bytes are read separately: in the row or the object store).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FileInfo {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub status: String,
    pub content_type: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub filename: Option<String>,
    pub object_key: Option<String>,
}

/// An upload to insert; `bytes` is `None` when they went to the object store under `object_key`.
pub struct NewUpload<'a> {
    pub tenant: Uuid,
    pub id: Uuid,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub size: i64,
    pub filename: Option<&'a str>,
    pub bytes: Option<&'a [u8]>,
    pub object_key: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_upload(pool: &PgPool, upload: &NewUpload<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO media (tenant_id, id, status, content_type, sha256, size, filename, bytes,
                            object_key, expires_at)
         VALUES ($1, $2, 'stored', $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(upload.tenant)
    .bind(upload.id)
    .bind(upload.content_type)
    .bind(upload.sha256)
    .bind(upload.size)
    .bind(upload.filename)
    .bind(upload.bytes)
    .bind(upload.object_key)
    .bind(upload.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

const INFO: &str =
    "SELECT tenant_id, id, status, content_type, sha256, size, filename, object_key FROM media";

/// The tenant's file `id`; another tenant's is `None`, like a missing one.
pub async fn info(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<FileInfo>, sqlx::Error> {
    sqlx::query_as(&format!("{INFO} WHERE tenant_id = $1 AND id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// File `id` whoever's it is (a signed public URL names no tenant). Ids are random; an id that
/// two tenants hold (one restored the other's backup) answers `None`, never a guess.
pub async fn info_by_id(pool: &PgPool, id: Uuid) -> Result<Option<FileInfo>, sqlx::Error> {
    let mut rows: Vec<FileInfo> = sqlx::query_as(&format!("{INFO} WHERE id = $1 LIMIT 2"))
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok(if rows.len() == 1 { rows.pop() } else { None })
}

/// The bytes kept in the row (`None` when they are in the object store or not fetched).
pub async fn row_bytes(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let bytes: Option<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT bytes FROM media WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(bytes.and_then(|(b,)| b))
}

/// The tenant's media settings: size limit and retention, when it set them.
#[derive(sqlx::FromRow)]
pub struct TenantMedia {
    pub media_max_bytes: Option<i64>,
    pub media_retention_seconds: Option<i64>,
}

pub async fn tenant_media(pool: &PgPool, tenant: Uuid) -> Result<TenantMedia, sqlx::Error> {
    sqlx::query_as("SELECT media_max_bytes, media_retention_seconds FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
}

/// The provider's id of file `media` uploaded with `sender`'s credentials, while it is valid for
/// at least another day (a send queued now still finds it alive).
pub async fn provider_id(
    pool: &PgPool,
    tenant: Uuid,
    media: Uuid,
    sender: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT provider_media_id FROM media_provider_ids
         WHERE tenant_id = $1 AND media_id = $2 AND sender_id = $3
           AND expires_at > now() + interval '1 day'",
    )
    .bind(tenant)
    .bind(media)
    .bind(sender)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id,)| id))
}

pub async fn remember_provider_id(
    pool: &PgPool,
    (tenant, media, sender): (Uuid, Uuid, Uuid),
    provider_media_id: &str,
    lives: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO media_provider_ids (tenant_id, media_id, sender_id, provider_media_id, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
         ON CONFLICT (tenant_id, media_id, sender_id) DO UPDATE
         SET provider_media_id = EXCLUDED.provider_media_id, expires_at = EXCLUDED.expires_at",
    )
    .bind(tenant)
    .bind(media)
    .bind(sender)
    .bind(provider_media_id)
    .bind(lives.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets the provider ids of `media` uploaded with `sender`'s credentials (the provider no
/// longer knows them: the next send uploads the files again).
pub async fn forget_provider_ids(
    pool: &PgPool,
    tenant: Uuid,
    sender: Uuid,
    media: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM media_provider_ids
         WHERE tenant_id = $1 AND sender_id = $2 AND media_id = ANY($3)",
    )
    .bind(tenant)
    .bind(sender)
    .bind(media)
    .execute(pool)
    .await?;
    Ok(())
}

/// Files past their retention: uploads at `expires_at`, inbound files when older than the
/// tenant's media retention (default: `default_retention`, the job retention). At most `limit`
/// rows; returns the object keys of those deleted (the object store's copies go next).
pub async fn delete_expired(
    pool: &PgPool,
    default_retention: Duration,
    limit: i64,
) -> Result<(u64, Vec<String>), sqlx::Error> {
    let keys: Vec<(Option<String>,)> = sqlx::query_as(
        "DELETE FROM media WHERE (tenant_id, id) IN (
             SELECT m.tenant_id, m.id FROM media m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.expires_at <= now()
                OR (m.expires_at IS NULL AND m.created_at < now() - make_interval(
                        secs => coalesce(t.media_retention_seconds::float8, $1)))
             LIMIT $2)
         RETURNING object_key",
    )
    .bind(default_retention.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let count = keys.len() as u64;
    Ok((count, keys.into_iter().filter_map(|(k,)| k).collect()))
}
