//! `POST /admin/tenants/{slug}/backup`: the tenant's rows, read in one REPEATABLE READ snapshot
//! and streamed as they are read (memory stays at a few chunks whatever the tenant's size). A
//! failure half-way ends the stream without a trailer: the partial archive cannot be restored.
//! Media files kept in the object store are read from it into their rows, so the archive holds
//! every file's bytes.

use super::archive::{
    ArchiveWriter, ArchivedSender, ArchivedTenant, CONTENT_TYPE, FORMAT, Header, VERSION,
};
use super::tables::{TABLES, names};
use crate::engine::auth::Admin;
use crate::engine::error::ApiError;
use crate::engine::media::blobs::MediaBlobs;
use crate::engine::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use sqlx::{Postgres, Transaction};
use tokio::sync::mpsc;

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for a slow client before reading pauses.
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Vec<u8>, std::io::Error>;

#[utoipa::path(post, path = "/admin/tenants/{slug}/backup", tag = "admin", params(("slug" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 200, content_type = "application/x-ndjson", description = "the archive, streamed: header line, one line per row, trailer with row counts and SHA-256"),
              (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn backup(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    if !crate::engine::tenants::is_valid_slug(&slug) {
        return Err(ApiError::invalid_field(
            "slug",
            "must be a DNS-1123 label of at most 40 characters",
        ));
    }
    let mut tx = state.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let header = header_in_snapshot(&mut tx, &slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant `{slug}`")))?;
    let (chunks, receiver) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let blobs = state.settings.media.blobs.clone();
    tokio::spawn(async move {
        let tenant = header.tenant.slug.clone();
        match stream_rows(tx, header, &blobs, &chunks).await {
            Ok((rows, bytes)) => tracing::info!(%tenant, rows, bytes, "tenant backup streamed"),
            Err(error) => {
                tracing::warn!(%tenant, %error, "tenant backup aborted");
                chunks
                    .send(Err(std::io::Error::other("backup aborted")))
                    .await
                    .ok();
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }));
    let file_name = format!(
        "attachment; filename=\"{slug}-{}.flomastr-backup.jsonl\"",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
            (header::CONTENT_DISPOSITION, file_name),
        ],
        body,
    )
        .into_response())
}

#[derive(sqlx::FromRow)]
struct TenantHeaderRow {
    #[sqlx(flatten)]
    tenant: ArchivedTenant,
    senders: sqlx::types::Json<Vec<ArchivedSender>>,
    schema_version: Option<i64>,
}

/// The header, read in the snapshot the rows are read in; the snapshot's tenant for RLS.
async fn header_in_snapshot(
    tx: &mut Transaction<'static, Postgres>,
    slug: &str,
) -> Result<Option<Header>, sqlx::Error> {
    let row: Option<TenantHeaderRow> = sqlx::query_as(include_str!("sql/tenant.sql"))
        .bind(slug)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    sqlx::query("SELECT set_config('app.tenant_id', $1::text, true)")
        .bind(row.tenant.id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        schema_version: row.schema_version.unwrap_or_default(),
        created_at: chrono::Utc::now(),
        tenant: row.tenant,
        senders: row.senders.0,
    }))
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the client went away")]
    ClientGone,
    #[error(transparent)]
    Media(#[from] crate::engine::media::blobs::BlobError),
}

/// Every table's rows into the stream, then the trailer. Returns rows and bytes written.
async fn stream_rows(
    mut tx: Transaction<'static, Postgres>,
    header: Header,
    blobs: &MediaBlobs,
    chunks: &mpsc::Sender<Chunk>,
) -> Result<(u64, u64), StreamError> {
    let tenant = header.tenant.id;
    let mut writer = ArchiveWriter::new(&header, &names());
    for table in TABLES {
        let mut rows = sqlx::query_scalar::<_, String>(table.export)
            .bind(tenant)
            .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let row = if table.name == "media" {
                with_object_bytes(blobs, row).await?
            } else {
                row
            };
            writer.row(table.name, &row);
            if writer.buffered() >= CHUNK {
                send(chunks, writer.take()).await?;
            }
        }
    }
    let (manifest, bytes) = writer.finish();
    send(chunks, writer.take()).await?;
    // Read only: ending the snapshot is all a commit does.
    tx.commit().await?;
    Ok((manifest.rows.values().sum(), bytes))
}

/// A media row whose file is in the object store, with the file's bytes added (`bytes`, hex as
/// PostgreSQL renders bytea): the archive must restore without the store it was taken from. A
/// file whose object is gone (or an engine without a store) keeps its key alone; a store that
/// fails aborts the backup rather than leave the file out unnoticed.
async fn with_object_bytes(blobs: &MediaBlobs, row: String) -> Result<String, StreamError> {
    // Most rows name no object (PostgreSQL renders `"key": null` so): no need to parse them.
    if row.contains(r#""object_key": null"#) {
        return Ok(row);
    }
    let Ok(mut object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&row)
    else {
        return Ok(row);
    };
    let Some(key) = object
        .get("object_key")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
    else {
        return Ok(row);
    };
    let Some(bytes) = blobs.object(&key).await? else {
        tracing::warn!(
            key,
            "a media file's object is gone: archived without its bytes"
        );
        return Ok(row);
    };
    object.insert(
        "bytes".into(),
        serde_json::Value::String(format!("\\x{}", hex::encode(bytes))),
    );
    Ok(serde_json::to_string(&object).expect("a row serializes"))
}

async fn send(chunks: &mpsc::Sender<Chunk>, bytes: Vec<u8>) -> Result<(), StreamError> {
    chunks
        .send(Ok(bytes))
        .await
        .map_err(|_| StreamError::ClientGone)
}
