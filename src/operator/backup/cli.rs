//! `flomastr backup`: take, list and restore tenant backups from the command line (or a
//! Kubernetes CronJob) until the operator schedules them itself.

use super::target::{BackupStore, BackupTarget, S3Target};
use super::transfer::BackupClient;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct BackupArgs {
    /// The engine's base URL.
    #[arg(long, env = "FLOMASTR_ENGINE_URL")]
    pub engine_url: String,
    /// The engine's admin token.
    #[arg(long, env = "FLOMASTR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(subcommand)]
    pub action: BackupAction,
}

/// Where backups are kept: `--volume`, or `--s3-bucket` with its settings.
#[derive(Args)]
pub struct TargetArgs {
    /// A directory (a mounted volume).
    #[arg(long, env = "FLOMASTR_BACKUP_VOLUME", conflicts_with = "s3_bucket")]
    pub volume: Option<PathBuf>,
    /// An S3-compatible bucket.
    #[arg(long, env = "FLOMASTR_BACKUP_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The S3 endpoint (`https://host[:port]`); absent: AWS.
    #[arg(long, env = "FLOMASTR_BACKUP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "FLOMASTR_BACKUP_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Keys under this prefix.
    #[arg(long, env = "FLOMASTR_BACKUP_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    #[arg(
        long,
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true,
        default_value = ""
    )]
    pub s3_access_key_id: String,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub s3_secret_access_key: String,
}

#[derive(Subcommand)]
pub enum BackupAction {
    /// Take a backup of a tenant's engine data; prints its name, size and duration as JSON.
    Take {
        #[arg(long)]
        tenant: String,
        /// Then keep only this many of the tenant's newest backups.
        #[arg(long)]
        keep: Option<usize>,
    },
    /// List a tenant's backups, oldest first (JSON lines).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Restore a backup into a tenant (the archived one or another slug).
    Restore {
        /// The backup's name, as `take` and `list` print it.
        #[arg(long)]
        name: String,
        #[arg(long)]
        into: String,
    },
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<BackupTarget> {
        Ok(match (&self.volume, &self.s3_bucket) {
            (Some(path), _) => BackupTarget::Volume { path: path.clone() },
            (None, None) => anyhow::bail!("give the target: --volume PATH or --s3-bucket NAME"),
            (None, Some(bucket)) => BackupTarget::S3(S3Target {
                endpoint: self.s3_endpoint.clone(),
                bucket: bucket.clone(),
                region: self.s3_region.clone(),
                access_key_id: self.s3_access_key_id.clone(),
                secret_access_key: self.s3_secret_access_key.clone(),
                prefix: self.s3_prefix.trim_matches('/').to_owned(),
            }),
        })
    }
}

pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let store = BackupStore::open(&args.target.target()?)?;
    let client = BackupClient::new(&args.engine_url, &args.admin_token);
    match args.action {
        BackupAction::Take { tenant, keep } => {
            let taken = client.backup(&store, &tenant).await?;
            let pruned = match keep {
                Some(keep) => store.prune(&tenant, keep.max(1)).await?,
                None => Vec::new(),
            };
            println!(
                "{}",
                json!({"name": taken.name, "size": taken.size, "taken_at": taken.taken_at,
                       "duration_ms": taken.duration.as_millis() as u64, "pruned": pruned})
            );
        }
        BackupAction::List { tenant } => {
            for backup in store.list(&tenant).await? {
                println!(
                    "{}",
                    json!({"name": backup.name, "size": backup.size, "last_modified": backup.last_modified})
                );
            }
        }
        BackupAction::Restore { name, into } => {
            println!("{}", client.restore(&store, &name, &into).await?);
        }
    }
    Ok(())
}
