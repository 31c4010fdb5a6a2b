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
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for (program, command) in [
        ("engine", Engine::command()),
        ("operator", Operator::command()),
        ("sandbox", Sandbox::command()),
        ("up", Up::command()),
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
