//! The server's autovacuum interval, checked at start-up. The jobs table churns (every job is
//! updated twice and deleted later): each claim walks the index entries of rows that changed
//! since the table was last vacuumed, so under load a claim's cost grows with the time between
//! vacuums. PostgreSQL's default `autovacuum_naptime` of 60 s let claims of 33 jobs take 1–4 s
//! in the full-cycle benchmark; at 1 s the claims stayed in the milliseconds.

use sqlx::PgPool;
use std::time::Duration;

/// The longest `autovacuum_naptime` under which the queue keeps its claim cost flat.
pub const RECOMMENDED_NAPTIME: Duration = Duration::from_secs(10);

/// Logs a warning when the server vacuums less often than the queue needs.
pub async fn warn_if_slow(pool: &PgPool) {
    // pg_settings gives the value in seconds whatever unit it was set in.
    let seconds: Result<i64, _> = sqlx::query_scalar(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'autovacuum_naptime'",
    )
    .fetch_one(pool)
    .await;
    match seconds {
        Ok(naptime) if naptime > RECOMMENDED_NAPTIME.as_secs() as i64 => tracing::warn!(
            naptime_seconds = naptime,
            "the database server's autovacuum_naptime is over 10 s: under load, job claims slow down as the queue's dead rows pile up between vacuums; set autovacuum_naptime = '1s' (see the README's Production database)"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the server's autovacuum_naptime"),
    }
}
