//! PostgreSQL connection and schema migrations (the `migrations/` folder is the only place schema
//! lives), the one-time privileged set-up, and what a login may do.

pub mod autovacuum;
pub mod bootstrap;
pub mod login;
pub mod scram;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Every migration of `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database URL is not valid")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("migrations failed")]
    Migrate(#[from] MigrateError),
    #[error("the privileged database set-up failed")]
    Bootstrap(#[from] bootstrap::BootstrapError),
}

/// Settings of `flomastr migrate`.
#[derive(clap::Args, Clone)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the engine's login, e.g. postgres://flomastr:pass@127.0.0.1:5432/flomastr.
    /// The migrations run as this login, which owns what they create.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// PostgreSQL URL of an administrator (a superuser, or a role with CREATEROLE and CREATEDB
    /// that may create the pgvector extension). With it, the one-time privileged set-up runs
    /// first: the engine's login and the natural-language query login (created, or their
    /// passwords set to the ones in their URLs), the database owned by the engine's login, the
    /// pgvector extension. Idempotent.
    #[arg(long, env = "FLOMASTR_DATABASE_ADMIN_URL", hide_env_values = true)]
    pub admin_url: Option<String>,

    /// PostgreSQL URL of the natural-language query login (the engine's
    /// FLOMASTR_NL_QUERY_DATABASE_URL), set up with --admin-url.
    #[arg(long, env = "FLOMASTR_NL_QUERY_DATABASE_URL", hide_env_values = true)]
    pub nl_query_database_url: Option<String>,
}

impl std::fmt::Debug for MigrateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateArgs").finish_non_exhaustive()
    }
}

/// `flomastr migrate`: the privileged set-up when given an administrator, then the migrations as
/// the engine's login.
pub async fn run_migrate(args: &MigrateArgs) -> Result<(), DbError> {
    if let Some(admin_url) = &args.admin_url {
        let plan =
            bootstrap::Plan::from_urls(&args.database_url, args.nl_query_database_url.as_deref())?;
        bootstrap::run(admin_url, &plan).await?;
        tracing::info!(engine = %plan.engine.role, database = %plan.database, "privileged set-up done");
    }
    let pool = connect(&args.database_url, 2).await?;
    migrate(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Opens a pool. The URL is parsed here so a password in it never reaches an error message.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl(redact(e)))?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Applies every pending migration. Safe to run concurrently: sqlx takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

fn redact(error: sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::Configuration(_) => {
            sqlx::Error::Configuration("malformed database URL (value not shown)".into())
        }
        other => other,
    }
}

/// Logs a warning when the engine's own login is more than a database owner: a superuser or a
/// login that bypasses row-level security turns every mistake into a cross-tenant one.
pub async fn warn_if_privileged(pool: &PgPool) {
    let reach = async {
        let mut conn = pool.acquire().await?;
        login::LoginReach::of(&mut conn).await
    }
    .await;
    match reach {
        Ok(reach) if reach.is_privileged() => tracing::warn!(
            role = %reach.role,
            "the engine's database login is privileged (superuser, BYPASSRLS, CREATEROLE, CREATEDB, replication or a predefined data role); run it as a login of its own (flomastr migrate --admin-url)"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the engine's database login"),
    }
}

/// A transaction that row-level security scopes to one tenant (the AI tables, the template
/// catalog). `set_config(.., true)` ends with the transaction, so the tenant never leaks to the
/// next user of the pooled connection.
pub async fn tenant_tx(
    pool: &PgPool,
    tenant: uuid::Uuid,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
