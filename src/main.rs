//! The `flomastr` command line: one binary, one subcommand per program.

mod allocator;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "flomastr",
    version,
    about = "Control plane for multi-tenant WhatsApp automation"
)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "FLOMASTR_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CrdKind {
    Tenant,
    TenantRollout,
}

#[derive(Subcommand)]
enum Command {
    /// Print a CustomResourceDefinition as YAML: the Tenant's (what `crds/tenant.yaml` holds) or
    /// the TenantRollout's (`crds/tenantrollout.yaml`).
    Crd {
        #[arg(value_enum, default_value = "tenant")]
        kind: CrdKind,
    },
    /// Run the engine: webhooks in, the tenant job queue, the admin API.
    Engine(Box<flomastr::engine::config::EngineArgs>),
    /// Run the operator: reconcile Tenants into namespaces, n8n, routes, DNS and engine registrations.
    Operator(Box<flomastr::operator::config::OperatorArgs>),
    /// Apply the database migrations and exit; with --admin-url, first the one-time privileged
    /// set-up (logins, database, extension).
    Migrate(Box<flomastr::db::MigrateArgs>),
    /// Run local stand-ins for the InfoBip, Meta and Twilio send APIs.
    Sandbox(Box<flomastr::sandbox::SandboxArgs>),
    /// Bring up the whole stack on loopback (PostgreSQL, a Kubernetes API server, engine,
    /// operator, sandbox) with a sample tenant; Ctrl-C tears it down.
    Up(Box<flomastr::up::UpArgs>),
    /// Load-test a running engine as one tenant: its provider's webhooks in, its workers'
    /// next-job and complete, bounded in count and time; prints throughput, pickup latency and
    /// errors by code, and exits non-zero when anything failed.
    Load(Box<flomastr::loadtest::LoadArgs>),
    /// Take, list and restore tenant backups (the engine's data) in a volume or an S3 bucket.
    Backup(Box<flomastr::operator::backup::cli::BackupArgs>),
    /// Inside a tenant's n8n-data Job (the operator runs it): hold the pod, pack n8n's volume
    /// to stdout or unpack it from stdin.
    N8nData(flomastr::operator::backup::volume_archive::DataArgs),
}

#[global_allocator]
static ALLOCATOR: allocator::ByProgram = allocator::ByProgram;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Crd { kind } => {
            print!(
                "{}",
                match kind {
                    CrdKind::Tenant => flomastr::tenant::crd_yaml(),
                    CrdKind::TenantRollout => flomastr::tenant::rollout_crd_yaml(),
                }
            );
            Ok(())
        }
        Command::Engine(args) => Ok(flomastr::engine::run(*args).await?),
        Command::Operator(args) => Ok(flomastr::operator::run(*args).await?),
        Command::Migrate(args) => {
            flomastr::db::run_migrate(&args).await.context("migrate")?;
            tracing::info!(
                migrations = flomastr::db::MIGRATOR.iter().count(),
                "database is up to date"
            );
            Ok(())
        }
        Command::Sandbox(args) => Ok(flomastr::sandbox::run(*args).await?),
        Command::Up(args) => Ok(flomastr::up::run(*args).await?),
        Command::Load(args) => {
            let summary = flomastr::loadtest::run(*args).await?;
            print!("{}", summary.table());
            anyhow::ensure!(summary.passed(), "the load test saw errors (see the table)");
            Ok(())
        }
        Command::Backup(args) => flomastr::operator::backup::cli::run(*args).await,
        Command::N8nData(args) => flomastr::operator::backup::volume_archive::run(args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
