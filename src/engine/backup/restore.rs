//! `POST /admin/tenants/{slug}/restore`: the archive is spooled to a temporary file (memory stays
//! bounded), checked whole ([`super::validate`]), and only then written, in one transaction that
//! replaces the target tenant's data. Any refusal or failure leaves the live tenant as it was.

use super::archive::Header;
use super::restore_objects::RestoredObjects;
use super::tables::TABLES;
use super::validate::{ArchiveError, Summary, next_line, parse_row};
use crate::engine::auth::Admin;
use crate::engine::error::ApiError;
use crate::engine::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

/// The largest archive a restore takes.
pub const MAX_ARCHIVE_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Rows (or bytes of rows) written per statement.
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Serialize, utoipa::ToSchema)]
pub struct RestoreReport {
    /// The tenant written to.
    pub slug: String,
    /// Whether the restore created it (the slug was not registered).
    pub created: bool,
    /// The tenant the archive was taken of.
    pub source_slug: String,
    /// Whether row ids were kept (restored under the archived tenant's id) or derived anew.
    pub ids_kept: bool,
    pub archive_created_at: chrono::DateTime<chrono::Utc>,
    pub bytes: u64,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
}

#[utoipa::path(post, path = "/admin/tenants/{slug}/restore", tag = "admin", params(("slug" = String, Path, description = "the tenant to restore into: the archive's or another")),
    request_body(content = String, content_type = "application/x-ndjson", description = "an archive of POST /admin/tenants/{slug}/backup"),
    security(("admin_token" = [])),
    responses((status = 200, body = RestoreReport, description = "the tenant's data replaced by the archive's"),
              (status = 400, description = "`backup_format`, `backup_version`, `backup_corrupt`, `backup_truncated`: nothing written"),
              (status = 401), (status = 403), (status = 409, description = "`backup_schema_mismatch`: taken on another engine schema; nothing written"), (status = 413)))]
pub async fn restore(
    State(state): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
    body: Body,
) -> Result<Json<RestoreReport>, ApiError> {
    if !crate::engine::tenants::is_valid_slug(&slug) {
        return Err(ApiError::invalid_field(
            "slug",
            "must be a DNS-1123 label of at most 40 characters",
        ));
    }
    let mut file = spool(body).await?;
    let engine_schema: Option<i64> = sqlx::query_scalar(include_str!("sql/schema_version.sql"))
        .fetch_one(&state.pool)
        .await?;
    let summary =
        super::validate::check(BufReader::new(&mut file), engine_schema.unwrap_or_default())
            .await
            .map_err(refusal)?;
    file.rewind().await.map_err(spool_failed)?;
    let (target, created) = write(&state, &slug, &summary.header, &mut file).await?;
    state.tenants.invalidate(&slug);
    state.queue.wake(&[target]);
    tracing::info!(tenant = %slug, source = %summary.header.tenant.slug, bytes = summary.bytes, "tenant restored");
    Ok(Json(report(slug, created, target, summary)))
}

fn report(slug: String, created: bool, target: Uuid, summary: Summary) -> RestoreReport {
    RestoreReport {
        slug,
        created,
        ids_kept: target == summary.header.tenant.id,
        source_slug: summary.header.tenant.slug,
        archive_created_at: summary.header.created_at,
        bytes: summary.bytes,
        rows: summary.rows,
    }
}

fn refusal(error: ArchiveError) -> ApiError {
    let code = match &error {
        ArchiveError::NotAnArchive(_) => "backup_format",
        ArchiveError::Version { .. } => "backup_version",
        ArchiveError::Schema { .. } => {
            return ApiError::conflict("backup_schema_mismatch", error.to_string());
        }
        ArchiveError::Truncated(_) => "backup_truncated",
        ArchiveError::Corrupt(_) => "backup_corrupt",
        ArchiveError::Io(_) => return spool_failed(error),
    };
    ApiError::bad_request(code, error.to_string())
}

fn spool_failed(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "spooling a restore's archive failed");
    ApiError::internal()
}

/// The request body into an anonymous temporary file, at most [`MAX_ARCHIVE_BYTES`].
async fn spool(body: Body) -> Result<tokio::fs::File, ApiError> {
    let file = tempfile::tempfile().map_err(spool_failed)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                "backup_truncated",
                format!("the archive did not arrive whole: {error}"),
            )
        })?;
        size += chunk.len() as u64;
        if size > MAX_ARCHIVE_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("an archive may have at most {MAX_ARCHIVE_BYTES} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(spool_failed)?;
    }
    file.flush().await.map_err(spool_failed)?;
    file.rewind().await.map_err(spool_failed)?;
    Ok(file)
}

#[derive(sqlx::FromRow)]
struct Target {
    id: Uuid,
    created: bool,
}

/// The checked archive into the tenant, in one transaction, and the media objects settled after
/// it ([`RestoredObjects`]). Returns the tenant's id and whether it was created.
async fn write(
    state: &AppState,
    slug: &str,
    header: &Header,
    file: &mut tokio::fs::File,
) -> Result<(Uuid, bool), ApiError> {
    let mut objects = RestoredObjects::default();
    let mut target_id = None;
    let written = write_all(state, (slug, &mut target_id), header, file, &mut objects).await;
    let blobs = &state.settings.media.blobs;
    match (&written, target_id) {
        (Ok((target, _)), _) => objects.committed(&state.pool, blobs, *target).await,
        (Err(_), Some(target)) => objects.rolled_back(&state.pool, blobs, target).await,
        (Err(_), None) => {}
    }
    written
}

async fn write_all(
    state: &AppState,
    (slug, target_id): (&str, &mut Option<Uuid>),
    header: &Header,
    file: &mut tokio::fs::File,
    objects: &mut RestoredObjects,
) -> Result<(Uuid, bool), ApiError> {
    let archived = &header.tenant;
    let mut tx = state.pool.begin().await?;
    let target: Target = sqlx::query_as(include_str!("sql/ensure_tenant.sql"))
        .bind(archived.id)
        .bind(slug)
        .bind(&archived.display_name)
        .bind(&archived.status)
        .bind(archived.max_attempts)
        .bind(archived.max_concurrency)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| refused_by_schema("tenant settings", error))?;
    *target_id = Some(target.id);
    sqlx::query("SELECT set_config('app.tenant_id', $1::text, true)")
        .bind(target.id)
        .execute(&mut *tx)
        .await?;
    let replaced: Vec<String> = sqlx::query_scalar(include_str!("sql/clear_tenant_data.sql"))
        .bind(target.id)
        .fetch_one(&mut *tx)
        .await?;
    objects.replacing(replaced);
    for scratch in [
        include_str!("sql/restore_senders.sql"),
        include_str!("sql/restore_events.sql"),
    ] {
        sqlx::query(scratch)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(include_str!("sql/map_senders.sql"))
        .bind(serde_json::to_string(&header.senders).expect("senders serialize"))
        .bind(target.id)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    let salt = (target.id != archived.id).then_some(target.id);
    let rows = Rows {
        tenant: target.id,
        salt,
        blobs: &state.settings.media.blobs,
    };
    write_rows(&mut tx, header, file, &rows, objects).await?;
    tx.commit().await?;
    Ok((target.id, target.created))
}

/// Where rows go: the target tenant, the id salt, the media store.
struct Rows<'a> {
    tenant: Uuid,
    salt: Option<Uuid>,
    blobs: &'a crate::engine::media::blobs::MediaBlobs,
}

/// Rows of one table gathered for one statement.
struct Batch {
    table: usize,
    json: String,
    rows: usize,
}

impl Batch {
    fn new(table: usize) -> Self {
        Self {
            table,
            json: String::from("["),
            rows: 0,
        }
    }

    fn push(&mut self, row: &serde_json::Map<String, serde_json::Value>) {
        if self.rows > 0 {
            self.json.push(',');
        }
        self.json
            .push_str(&serde_json::to_string(row).expect("a row serializes"));
        self.rows += 1;
    }

    fn full(&self) -> bool {
        self.rows >= BATCH_ROWS || self.json.len() >= BATCH_BYTES
    }
}

async fn write_rows(
    tx: &mut sqlx::PgConnection,
    header: &Header,
    file: &mut tokio::fs::File,
    rows: &Rows<'_>,
    objects: &mut RestoredObjects,
) -> Result<(), ApiError> {
    let (tenant, salt) = (rows.tenant, rows.salt);
    let media = super::tables::position("media");
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    // The header, checked already.
    next_line(&mut reader, &mut line).await.map_err(refusal)?;
    let mut batch = Batch::new(0);
    let mut number = 1;
    loop {
        number += 1;
        if !next_line(&mut reader, &mut line).await.map_err(refusal)?
            || line.starts_with(b"{\"end\"")
        {
            break;
        }
        let (table, mut row) = parse_row(&line, number, header).map_err(refusal)?;
        if Some(table) == media {
            objects.media_row(rows.blobs, tenant, &mut row).await?;
        }
        if table != batch.table || batch.full() {
            flush(tx, &batch, tenant, salt).await?;
            batch = Batch::new(table);
        }
        batch.push(&row);
    }
    flush(tx, &batch, tenant, salt).await
}

async fn flush(
    tx: &mut sqlx::PgConnection,
    batch: &Batch,
    tenant: Uuid,
    salt: Option<Uuid>,
) -> Result<(), ApiError> {
    if batch.rows == 0 {
        return Ok(());
    }
    let table = &TABLES[batch.table];
    let json = format!("{}]", batch.json);
    // Statements that read the restore's temporary tables are not kept prepared: the tables are
    // new in every restore.
    let mut query = sqlx::query(table.import)
        .bind(json)
        .bind(tenant)
        .persistent(false);
    if table.salted {
        query = query.bind(salt);
    }
    query
        .execute(&mut *tx)
        .await
        .map_err(|error| refused_by_schema(&format!("`{}` rows", table.name), error))?;
    Ok(())
}

/// Data the schema refuses (a bad value, a broken constraint) is the archive's fault: 400, and
/// the transaction rolls back. Anything else is the database's.
fn refused_by_schema(what: &str, error: sqlx::Error) -> ApiError {
    match &error {
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
        {
            tracing::warn!(%error, "a restore's {what} do not fit the schema");
            ApiError::bad_request(
                "backup_corrupt",
                format!("the archive's {what} do not fit the schema; nothing was written"),
            )
        }
        _ => ApiError::from(error),
    }
}
