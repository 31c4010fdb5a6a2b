//! The one-time privileged set-up of a flomastr database: what the engine's own login may not do
//! (`flomastr migrate --admin-url`). Idempotent; safe to run before every upgrade.
//!
//! - the engine's login: LOGIN, no superuser, no CREATEROLE/CREATEDB, no BYPASSRLS; it owns the
//!   database and everything the migrations create;
//! - the natural-language query login: LOGIN, nothing else, a member of the read-only group
//!   `flomastr_ai_readonly` (which can read the views of `ai_views` and nothing more), never of the
//!   engine's role, with tight server-side limits;
//! - the pgvector extension (not a trusted extension: creating it needs the administrator);
//! - objects an earlier, privileged engine login created are handed to the engine's login.
//!
//! Passwords are sent as SCRAM verifiers, never in clear text.

use super::scram;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;

/// The NOLOGIN group the views of `ai_views` are granted to (created by migration 0007 when the
/// engine was a superuser; here otherwise).
pub const READONLY_GROUP: &str = "flomastr_ai_readonly";

/// Server-side limits of the natural-language query login. They apply from its first statement;
/// the engine sets the same ones again per transaction.
const NL_QUERY_SETTINGS: &[(&str, &str)] = &[
    ("statement_timeout", "3s"),
    ("lock_timeout", "500ms"),
    ("idle_in_transaction_session_timeout", "10s"),
    ("work_mem", "4MB"),
    ("temp_file_limit", "16MB"),
    ("max_parallel_workers_per_gather", "0"),
    ("default_transaction_read_only", "on"),
    ("search_path", "ai_views"),
];

/// Connections the natural-language query login may hold at once, server-wide.
const NL_QUERY_CONNECTION_LIMIT: i32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the {0} URL is not a valid PostgreSQL URL")]
    InvalidUrl(&'static str),
    #[error("the {0} URL names no user")]
    NoUser(&'static str),
    #[error("the natural-language query login must differ from the engine's login")]
    SameLogin,
    #[error("the natural-language query URL must name the engine's database `{0}`")]
    OtherDatabase(String),
    #[error(transparent)]
    Password(#[from] scram::NotAscii),
    #[error("cannot connect as the administrator")]
    Connect(#[source] sqlx::Error),
    #[error("the set-up failed")]
    Database(#[from] sqlx::Error),
}

/// A login as a URL names it.
#[derive(Clone)]
pub struct Login {
    pub role: String,
    password: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("role", &self.role).finish()
    }
}

/// What to set up, read from the engine's URLs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub database: String,
    pub engine: Login,
    pub nl_query: Option<Login>,
}

fn options(url: &str, which: &'static str) -> Result<PgConnectOptions, BootstrapError> {
    PgConnectOptions::from_str(url).map_err(|_| BootstrapError::InvalidUrl(which))
}

fn login(
    options: &PgConnectOptions,
    url: &str,
    which: &'static str,
) -> Result<Login, BootstrapError> {
    let role = options.get_username().to_owned();
    if role.is_empty() {
        return Err(BootstrapError::NoUser(which));
    }
    // PgConnectOptions keeps the password private; read it from the URL (percent-decoded).
    let password = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .map(|p| {
            percent_encoding::percent_decode_str(&p)
                .decode_utf8_lossy()
                .into_owned()
        });
    Ok(Login { role, password })
}

impl Plan {
    pub fn from_urls(engine_url: &str, nl_query_url: Option<&str>) -> Result<Self, BootstrapError> {
        let engine_options = options(engine_url, "database")?;
        let database = engine_options
            .get_database()
            .unwrap_or(engine_options.get_username())
            .to_owned();
        let engine = login(&engine_options, engine_url, "database")?;
        let nl_query = match nl_query_url {
            None => None,
            Some(url) => {
                let nl_options = options(url, "natural-language query database")?;
                let nl = login(&nl_options, url, "natural-language query database")?;
                if nl.role == engine.role {
                    return Err(BootstrapError::SameLogin);
                }
                if nl_options
                    .get_database()
                    .unwrap_or(nl_options.get_username())
                    != database
                {
                    return Err(BootstrapError::OtherDatabase(database));
                }
                Some(nl)
            }
        };
        Ok(Self {
            database,
            engine,
            nl_query,
        })
    }
}

/// Runs every privileged step: roles, the database, then what is set up inside it.
pub async fn run(admin_url: &str, plan: &Plan) -> Result<(), BootstrapError> {
    let admin = options(admin_url, "administrator")?;
    let mut server = PgConnection::connect_with(&admin)
        .await
        .map_err(BootstrapError::Connect)?;
    ensure_roles(&mut server, plan).await?;
    ensure_database(&mut server, plan).await?;
    server.close().await.ok();
    let mut database = PgConnection::connect_with(&admin.database(&plan.database))
        .await
        .map_err(BootstrapError::Connect)?;
    prepare_database(&mut database, plan).await?;
    database.close().await.ok();
    Ok(())
}

/// `"name"` with inner quotes doubled: role and database names go into DDL, which takes no
/// parameters.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn role_exists(conn: &mut PgConnection, role: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(conn)
        .await
}

async fn execute(conn: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::query(statement).execute(conn).await.map(|_| ())
}

/// Roles are server-wide: one transaction, serialised with other set-ups by an advisory lock
/// (concurrent role updates would fail with "tuple concurrently updated").
pub async fn ensure_roles(server: &mut PgConnection, plan: &Plan) -> Result<(), BootstrapError> {
    let mut tx = server.begin().await?;
    execute(
        &mut tx,
        "SELECT pg_advisory_xact_lock(hashtext('flomastr bootstrap roles'))",
    )
    .await?;
    ensure_engine_role(&mut tx, &plan.engine).await?;
    if !role_exists(&mut tx, READONLY_GROUP).await? {
        execute(
            &mut tx,
            &format!("CREATE ROLE {READONLY_GROUP} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT"),
        )
        .await?;
    }
    if let Some(nl) = &plan.nl_query {
        ensure_nl_query_role(&mut tx, nl, &plan.engine.role).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn password_clause(login: &Login) -> Result<String, BootstrapError> {
    Ok(match &login.password {
        Some(password) => format!(" PASSWORD {}", quote_literal(&scram::verifier(password)?)),
        None => String::new(),
    })
}

async fn ensure_engine_role(conn: &mut PgConnection, engine: &Login) -> Result<(), BootstrapError> {
    let role = quote_ident(&engine.role);
    let password = password_clause(engine)?;
    if role_exists(conn, &engine.role).await? {
        // An existing login keeps its attributes (it may be an account the platform uses for
        // more than flomastr); only its password follows the URL.
        execute(conn, &format!("ALTER ROLE {role} LOGIN{password}")).await?;
        let (superuser, bypass): (bool, bool) =
            sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
                .bind(&engine.role)
                .fetch_one(&mut *conn)
                .await?;
        if superuser || bypass {
            tracing::warn!(role = %engine.role, "the engine's database login is a superuser or bypasses row-level security; give it a login of its own");
        }
    } else {
        execute(
            conn,
            &format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT{password}"
            ),
        )
        .await?;
    }
    Ok(())
}

async fn ensure_nl_query_role(
    conn: &mut PgConnection,
    nl: &Login,
    engine_role: &str,
) -> Result<(), BootstrapError> {
    let role = quote_ident(&nl.role);
    let password = password_clause(nl)?;
    // The role is flomastr's alone: its attributes are enforced on every run.
    let attributes = format!(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT {NL_QUERY_CONNECTION_LIMIT}{password}"
    );
    let verb = if role_exists(conn, &nl.role).await? {
        "ALTER"
    } else {
        "CREATE"
    };
    execute(conn, &format!("{verb} ROLE {role} {attributes}")).await?;
    // Memberships other than the read-only group could give it a way back to more.
    let memberships: Vec<String> = sqlx::query_scalar(
        "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 AND g.rolname <> $2",
    )
    .bind(&nl.role)
    .bind(READONLY_GROUP)
    .fetch_all(&mut *conn)
    .await?;
    for group in memberships {
        tracing::warn!(role = %nl.role, %group, "removing a membership of the natural-language query login");
        execute(conn, &format!("REVOKE {} FROM {role}", quote_ident(&group))).await?;
    }
    execute(conn, &format!("GRANT {READONLY_GROUP} TO {role}")).await?;
    if nl.role != engine_role {
        for (name, value) in NL_QUERY_SETTINGS {
            execute(
                conn,
                &format!("ALTER ROLE {role} SET {name} = {}", quote_literal(value)),
            )
            .await?;
        }
    }
    Ok(())
}

/// Creates the database owned by the engine's login, or lets that login create objects in an
/// existing one.
pub async fn ensure_database(server: &mut PgConnection, plan: &Plan) -> Result<(), BootstrapError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&plan.database)
    .fetch_optional(&mut *server)
    .await?;
    let database = quote_ident(&plan.database);
    let engine = quote_ident(&plan.engine.role);
    match owner {
        None => {
            // CREATE DATABASE cannot run inside a transaction block.
            let created = execute(
                server,
                &format!("CREATE DATABASE {database} OWNER {engine}"),
            )
            .await;
            if let Err(error) = created {
                // Another set-up created it first.
                let duplicate = matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P04"));
                if !duplicate {
                    return Err(error.into());
                }
            }
        }
        Some(owner) if owner == plan.engine.role => {}
        Some(_) => {
            execute(
                server,
                &format!("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {database} TO {engine}"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Inside the database: the extension, schema rights, and objects an earlier login owns.
pub async fn prepare_database(conn: &mut PgConnection, plan: &Plan) -> Result<(), BootstrapError> {
    let engine = quote_ident(&plan.engine.role);
    let mut tx = conn.begin().await?;
    execute(
        &mut tx,
        "SELECT pg_advisory_xact_lock(hashtext('flomastr bootstrap database'))",
    )
    .await?;
    execute(
        &mut tx,
        "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public",
    )
    .await?;
    // Only the engine works in `public`: the query login sees nothing there, not even names.
    execute(&mut tx, "REVOKE ALL ON SCHEMA public FROM PUBLIC").await?;
    execute(
        &mut tx,
        &format!("GRANT USAGE, CREATE ON SCHEMA public TO {engine}"),
    )
    .await?;
    adopt_objects(&mut tx, &plan.engine.role).await?;
    tx.commit().await?;
    Ok(())
}

/// Hands flomastr's schema objects (not those of extensions) to the engine's login: a database
/// that an earlier superuser engine migrated keeps working under the new login.
async fn adopt_objects(conn: &mut PgConnection, engine_role: &str) -> Result<(), BootstrapError> {
    let statements: Vec<String> = sqlx::query_scalar(include_str!("sql/adopt_objects.sql"))
        .bind(engine_role)
        .fetch_all(&mut *conn)
        .await?;
    for statement in statements {
        execute(conn, &statement).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_reads_logins_from_the_urls_without_printing_passwords() {
        let plan = Plan::from_urls(
            "postgres://flomastr:s3cr%40t@db:5432/flomastr",
            Some("postgres://flomastr_nlq:other@db:5432/flomastr"),
        )
        .unwrap();
        assert_eq!(plan.database, "flomastr");
        assert_eq!(plan.engine.role, "flomastr");
        assert_eq!(plan.engine.password.as_deref(), Some("s3cr@t"));
        assert_eq!(plan.nl_query.as_ref().unwrap().role, "flomastr_nlq");
        assert!(!format!("{plan:?}").contains("s3cr"));
    }

    #[test]
    fn plan_refuses_a_shared_login_or_another_database() {
        assert!(matches!(
            Plan::from_urls("postgres://a:x@h/db", Some("postgres://a:y@h/db")),
            Err(BootstrapError::SameLogin)
        ));
        assert!(matches!(
            Plan::from_urls("postgres://a:x@h/db", Some("postgres://b:y@h/other")),
            Err(BootstrapError::OtherDatabase(_))
        ));
        assert!(matches!(
            Plan::from_urls("not a url", None),
            Err(BootstrapError::InvalidUrl(_))
        ));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
