//! The `flomastr` binary as users run it.

use crate::common::empty_db;
use std::process::Command;

fn flomastr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flomastr"))
}

#[test]
fn crd_subcommand_prints_the_checked_in_crd() {
    let out = flomastr().arg("crd").output().unwrap();
    assert!(out.status.success());
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tenant.yaml")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        on_disk,
        "regenerate crds/tenant.yaml"
    );
}

#[tokio::test]
async fn migrate_subcommand_migrates_a_fresh_database() {
    let db = empty_db().await;
    let out = flomastr()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename IN ('jobs', 'tenants')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tables, 2);
}

#[test]
fn migrate_never_prints_the_database_password() {
    let secret = "s3cr3t-Pa55word";
    for url in [
        format!("postgres://flomastr:{secret}@127.0.0.1:1/flomastr"),
        format!("postgres://flomastr:{secret}@127.0.0.1:1/flomastr?sslmode=bogus"),
        format!("not a url {secret}"),
    ] {
        let out = flomastr()
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "migrating against {url} cannot succeed"
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!printed.contains(secret), "the password leaked: {printed}");
        assert!(!printed.is_empty(), "a failure must say why");
    }
}

/// The README's configuration reference names every flag and environment variable of every
/// program, so it cannot fall behind the code.
#[test]
fn readme_documents_every_flag_and_environment_variable() {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Engine {
        #[command(flatten)]
        args: flomastr::engine::config::EngineArgs,
    }
    #[derive(clap::Parser)]
    struct Operator {
        #[command(flatten)]
        args: flomastr::operator::config::OperatorArgs,
    }
    #[derive(clap::Parser)]
    struct Sandbox {
        #[command(flatten)]
        args: flomastr::sandbox::SandboxArgs,
    }
    #[derive(clap::Parser)]
    struct Up {
        #[command(flatten)]
        args: flomastr::up::UpArgs,
    }
    #[derive(clap::Parser)]
    struct Backup {
        #[command(flatten)]
        args: flomastr::operator::backup::cli::BackupArgs,
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for (program, command) in [
        ("engine", Engine::command()),
        ("operator", Operator::command()),
        ("sandbox", Sandbox::command()),
        ("up", Up::command()),
        ("backup", Backup::command()),
    ] {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long()
                && !readme.contains(&format!("`--{long}`"))
            {
                missing.push(format!("{program}: --{long}"));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !readme.contains(&format!("`{env}`")) {
                    missing.push(format!("{program}: {env}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
}

/// `flomastr migrate --admin-url` on a server with nothing yet: logins, database, extension, then
/// the migrations as the engine's login; a second run changes nothing and works.
#[tokio::test]
async fn migrate_with_an_administrator_sets_up_a_new_database() {
    let admin = crate::common::require_env(crate::common::PG_URL_VAR);
    let name = crate::common::unique("setup").replace('-', "_");
    let login = |user: &str, password: &str| {
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    };
    let engine_url = login(&format!("{name}_engine"), "Engine-pass-1");
    let nl_url = login(&format!("{name}_nlq"), "Query-pass-1");
    for _ in 0..2 {
        let out = flomastr()
            .arg("migrate")
            .env("DATABASE_URL", &engine_url)
            .env("FLOMASTR_DATABASE_ADMIN_URL", &admin)
            .env("FLOMASTR_NL_QUERY_DATABASE_URL", &nl_url)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{printed}");
        assert!(
            !printed.contains("pass-1"),
            "a password was printed: {printed}"
        );
    }
    // The passwords work (they were sent as SCRAM verifiers), and each login is what it should be.
    let engine = sqlx::PgPool::connect(&engine_url).await.unwrap();
    let (superuser, owner): (bool, String) = sqlx::query_as(
        "SELECT r.rolsuper, pg_get_userbyid(d.datdba)::text FROM pg_roles r, pg_database d
         WHERE r.rolname = current_user AND d.datname = current_database()",
    )
    .fetch_one(&engine)
    .await
    .unwrap();
    assert_eq!((superuser, owner), (false, format!("{name}_engine")));
    let nl = sqlx::PgPool::connect(&nl_url).await.unwrap();
    let groups: Vec<String> = sqlx::query_scalar(
        "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_all(&nl)
    .await
    .unwrap();
    assert_eq!(groups, vec!["flomastr_ai_readonly".to_owned()]);
}

/// A database an earlier superuser engine migrated is handed to the engine's new login.
#[tokio::test]
async fn migrate_with_an_administrator_adopts_a_superusers_objects() {
    let db = empty_db().await;
    flomastr::db::migrate(&db.pool)
        .await
        .expect("migrated as the superuser, as before");
    let out = flomastr()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("FLOMASTR_DATABASE_ADMIN_URL", &db.admin_url)
        .env("FLOMASTR_NL_QUERY_DATABASE_URL", &db.nl_query_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'ai_views') AND c.relkind IN ('r', 'v')
           AND pg_get_userbyid(c.relowner) <> $1",
    )
    .bind(crate::common::ENGINE_ROLE)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(foreign, 0);
}
