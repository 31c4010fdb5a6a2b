//! The database layer of natural-language queries, which holds on its own, whatever SQL reaches it:
//!
//! - a login of its own that can read the views of `ai_views` and nothing else (not a member of
//!   the engine's role, so no `SET ROLE` or `set_config('role', ...)` leads back to it);
//! - a fresh connection per query, closed after it: no setting, advisory lock or temporary object
//!   a query leaves behind survives it;
//! - the tenant bound to that connection by the engine (`nl_query_scopes`, keyed by the server's
//!   backend pid), which no setting the query can change moves;
//! - a read-only transaction, rolled back, with time, lock and memory limits;
//! - at most 200 rows, each at most 64 KiB and 1 MiB in all, read as they arrive.

use crate::db::login::{LoginReach, can_act_as};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection, Row};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

pub const ROW_LIMIT: usize = 200;
/// Largest row (as JSON text) returned.
pub const MAX_ROW_BYTES: i64 = 64 * 1024;
/// Largest result returned.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
pub const STATEMENT_TIMEOUT_MS: u64 = 3000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the natural-language query database URL is not valid")]
    InvalidUrl,
    #[error("cannot connect with the natural-language query login")]
    Connect(#[source] sqlx::Error),
    #[error(
        "the natural-language query login `{0}` can reach more than the views (superuser, BYPASSRLS, CREATEROLE, CREATEDB, replication or a predefined data role); give it a login of its own (flomastr migrate --admin-url)"
    )]
    PrivilegedLogin(String),
    #[error(
        "the natural-language query login `{0}` is, or can become, the engine's own login; give it a login of its own (flomastr migrate --admin-url)"
    )]
    EngineLogin(String),
    #[error("the query ran longer than 3 seconds")]
    Timeout,
    #[error("the query's result is larger than the limit")]
    TooLarge,
    #[error("the query failed in the database")]
    Query(#[source] sqlx::Error),
    #[error("the engine's database failed")]
    Engine(#[source] sqlx::Error),
}

/// Where natural-language queries run.
pub struct Envelope {
    options: PgConnectOptions,
}

impl Envelope {
    pub fn new(url: &str) -> Result<Self, EnvelopeError> {
        let options = PgConnectOptions::from_str(url).map_err(|_| EnvelopeError::InvalidUrl)?;
        Ok(Self { options })
    }

    async fn connect(&self) -> Result<PgConnection, EnvelopeError> {
        tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options))
            .await
            .map_err(|_| EnvelopeError::Connect(sqlx::Error::PoolTimedOut))?
            .map_err(EnvelopeError::Connect)
    }

    /// Refuses a login that could reach more than the views: checked once at engine start.
    pub async fn verify_login(&self, engine: &PgPool) -> Result<(), EnvelopeError> {
        let engine_role: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(engine)
            .await
            .map_err(EnvelopeError::Engine)?;
        let mut conn = self.connect().await?;
        let reach = LoginReach::of(&mut conn)
            .await
            .map_err(EnvelopeError::Connect)?;
        let engine_reachable = can_act_as(&mut conn, &engine_role)
            .await
            .map_err(EnvelopeError::Connect)?;
        conn.close().await.ok();
        if reach.is_privileged() {
            return Err(EnvelopeError::PrivilegedLogin(reach.role));
        }
        if engine_reachable {
            return Err(EnvelopeError::EngineLogin(reach.role));
        }
        Ok(())
    }

    /// Runs `sql` for `tenant` on a connection of its own; the rows as JSON objects.
    ///
    /// This is the database layer alone: callers check the SQL first (`sql_guard`). Tests call
    /// it directly to prove the layer holds without that check.
    pub async fn run(
        &self,
        engine: &PgPool,
        tenant: Uuid,
        sql: &str,
    ) -> Result<Vec<Value>, EnvelopeError> {
        let mut conn = self.connect().await?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(EnvelopeError::Connect)?;
        bind_scope(engine, pid, tenant).await?;
        // The statement timeout bounds the query; this bounds a server that stopped answering.
        let deadline = Duration::from_millis(STATEMENT_TIMEOUT_MS) + CONNECT_TIMEOUT;
        let rows = tokio::time::timeout(deadline, execute(&mut conn, tenant, sql))
            .await
            .unwrap_or(Err(EnvelopeError::Timeout));
        // Ending the session ends everything it held (locks, settings, temporary objects).
        conn.close().await.ok();
        if let Err(error) = unbind_scope(engine, pid).await {
            // The connection is closed: its pid can only come back on a connection the engine
            // binds again before using it.
            tracing::warn!(%error, pid, "could not remove a natural-language query scope");
        }
        rows
    }
}

/// Ties the connection with backend `pid` to `tenant` (a row left by a dead connection with the
/// same pid is overwritten).
async fn bind_scope(engine: &PgPool, pid: i32, tenant: Uuid) -> Result<(), EnvelopeError> {
    sqlx::query(
        "INSERT INTO nl_query_scopes (backend_pid, tenant_id) VALUES ($1, $2)
         ON CONFLICT (backend_pid) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, created_at = now()",
    )
    .bind(pid)
    .bind(tenant)
    .execute(engine)
    .await
    .map(|_| ())
    .map_err(EnvelopeError::Engine)
}

/// Removes this scope and any left by connections that no longer exist.
async fn unbind_scope(engine: &PgPool, pid: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM nl_query_scopes s
         WHERE s.backend_pid = $1
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.backend_pid)",
    )
    .bind(pid)
    .execute(engine)
    .await
    .map(|_| ())
}

async fn execute(
    conn: &mut PgConnection,
    tenant: Uuid,
    sql: &str,
) -> Result<Vec<Value>, EnvelopeError> {
    let mut tx = conn.begin().await.map_err(EnvelopeError::Query)?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(EnvelopeError::Query)?;
    // Transaction-local; the login's own defaults (set by flomastr migrate) say the same. The
    // tenant setting only serves the row-level security of tables behind the views: the views
    // themselves are scoped by the connection.
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', '500', true),
                set_config('work_mem', '4MB', true), set_config('max_parallel_workers_per_gather', '0', true),
                set_config('search_path', 'ai_views', true), set_config('app.tenant_id', $2, true)",
    )
    .bind(STATEMENT_TIMEOUT_MS.to_string())
    .bind(tenant.to_string())
    .execute(&mut *tx)
    .await
    .map_err(EnvelopeError::Query)?;
    // The newline keeps a trailing `--` comment from swallowing the wrapper. Oversized rows come
    // back as NULL with their size, so they never cross the wire.
    let wrapped = format!(
        "SELECT CASE WHEN octet_length(j::text) <= {MAX_ROW_BYTES} THEN j END, octet_length(j::text)::bigint
         FROM (SELECT to_jsonb(r) AS j FROM (SELECT * FROM ({sql}\n) q LIMIT {ROW_LIMIT}) r) x"
    );
    let rows = read_rows(&mut tx, &wrapped).await;
    tx.rollback().await.ok();
    rows
}

/// Reads the rows as they arrive and stops at the size limit.
async fn read_rows(conn: &mut PgConnection, wrapped: &str) -> Result<Vec<Value>, EnvelopeError> {
    // Extended protocol: one statement only, even if a check before this were ever wrong.
    let mut stream = sqlx::query(wrapped).fetch(conn);
    let mut rows = Vec::new();
    let mut total = 0usize;
    while let Some(row) = stream.try_next().await.map_err(query_error)? {
        let value: Option<Value> = row.try_get(0).map_err(query_error)?;
        let size: i64 = row.try_get(1).map_err(query_error)?;
        total += usize::try_from(size).unwrap_or(usize::MAX);
        match value {
            Some(value) if total <= MAX_RESULT_BYTES => rows.push(value),
            _ => return Err(EnvelopeError::TooLarge),
        }
    }
    Ok(rows)
}

fn query_error(error: sqlx::Error) -> EnvelopeError {
    let timed_out =
        matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"));
    if timed_out {
        EnvelopeError::Timeout
    } else {
        EnvelopeError::Query(error)
    }
}
