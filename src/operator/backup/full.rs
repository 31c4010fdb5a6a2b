//! Full tenant backups: a directory `{slug}/{time}/` in the tenant's target holding the n8n
//! encryption key sealed with the platform backup key, the Tenant (its spec with Secret
//! *references*, never Secret values), the engine's archive, n8n's volume (`n8n_data`) and,
//! written last, the manifest. Restoring checks every part (format version, SHA-256, the
//! platform key, the n8n key's fingerprint) before it touches anything of the live tenant.

use super::manifest::{
    ENGINE_PART, FORMAT, FORMAT_VERSION, KEY_PART, MANIFEST, Manifest, N8N_PART, OLDEST_READABLE,
    Part, TENANT_PART, backup_name, part_path,
};
use super::n8n_data::{self, DataRestored};
use super::seal::{BackupKey, SealError};
use super::target::{BackupStore, BackupTarget, S3Target, TargetError};
use super::transfer::{BackupClient, TransferError};
use crate::operator::children::{self, ENCRYPTION_KEY, ENCRYPTION_SECRET};
use crate::operator::config::OperatorArgs;
use crate::operator::encryption;
use crate::operator::plan::{MANAGER, plan};
use crate::operator::registration::secret_value;
use crate::tenant::{BackupSpec, Tenant};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const S3_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const S3_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Manifests and sealed keys are small; anything bigger is not ours.
const SMALL_PART_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FullBackupError {
    #[error("the Tenant has no spec.backup.target")]
    NoTarget,
    #[error("the operator has no valid platform backup key (FLOMASTR_BACKUP_KEY: 64 hex digits)")]
    KeyMissing,
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("the engine: {0}")]
    Engine(TransferError),
    #[error("the tenant's n8n encryption key Secret {0} is missing or empty")]
    N8nKeyMissing(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the backup is corrupt: {0}; nothing was restored")]
    Corrupt(String),
    #[error("{0}; nothing was restored")]
    Version(String),
    #[error("{0}; nothing was restored")]
    WrongKey(String),
    #[error(
        "the tenant's live n8n encryption key ({live}) is not the backup's ({backup}); restore \
         into a new Tenant, or delete the Secret n8n-encryption of this one first; nothing was \
         restored"
    )]
    KeyDiffers { live: String, backup: String },
    #[error("`{0}` is not a backup name (`<slug>/<time>`)")]
    BadName(String),
    #[error("n8n's volume: {0}")]
    N8nData(String),
}

impl FullBackupError {
    /// A short reason for a status (the BackupReady condition, lastRequest, restore).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoTarget => "NoTarget",
            Self::KeyMissing => "BackupKeyMissing",
            Self::Target(target) => target.reason(),
            Self::Engine(TransferError::Target(target)) => target.reason(),
            Self::Engine(TransferError::EngineRefused { code, .. }) => match code.as_str() {
                "backup_corrupt" | "backup_truncated" | "backup_format" => "BackupCorrupt",
                "backup_version" => "BackupVersion",
                "backup_schema_mismatch" => "BackupSchemaMismatch",
                _ => "EngineRefused",
            },
            Self::Engine(_) => "EngineFailed",
            Self::N8nKeyMissing(_) => "N8nKeyMissing",
            Self::Kube(_) => "ApiError",
            Self::Corrupt(_) => "BackupCorrupt",
            Self::Version(_) => "BackupVersion",
            Self::WrongKey(_) => "BackupKeyWrong",
            Self::KeyDiffers { .. } => "KeyDiffers",
            Self::BadName(_) => "BackupNotFound",
            Self::N8nData(_) => "N8nDataFailed",
        }
    }
}

/// A full backup taken.
#[derive(Debug, Clone)]
pub struct FullBackup {
    /// `{slug}/{time}`: what `flomastr.io/restore-from` takes.
    pub name: String,
    pub size_bytes: u64,
    pub taken_at: DateTime<Utc>,
    pub duration: Duration,
    /// Older backups deleted to keep `spec.backup.retention`.
    pub pruned: Vec<String>,
    /// n8n's volume in it (`None`: the volume held nothing yet).
    pub n8n_data: Option<Part>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub n8n_key_fingerprint: String,
    pub key_secret_created: bool,
    pub engine_report: serde_json::Value,
    /// `None`: the backup holds no n8n volume.
    pub n8n_data: Option<DataRestored>,
}

/// The target named in `spec`; S3 keys come from the Secret in the credentials namespace.
pub async fn open_target(
    client: &kube::Client,
    config: &OperatorArgs,
    spec: &BackupSpec,
) -> Result<BackupStore, FullBackupError> {
    let target = if let Some(volume) = &spec.target.volume {
        BackupTarget::Volume {
            path: config
                .backup_volumes_dir
                .join(&volume.claim_name)
                .join(&volume.path),
        }
    } else if let Some(s3) = &spec.target.s3 {
        let misconfigured = |reason: String| TargetError::Config {
            target: format!("s3 bucket `{}`", s3.bucket),
            reason,
        };
        let reference = &s3.credentials_secret_ref;
        if reference.namespace != config.credentials_namespace {
            return Err(misconfigured(format!(
                "credentialsSecretRef must be in the credentials namespace {}",
                config.credentials_namespace
            ))
            .into());
        }
        let secret = Api::<Secret>::namespaced(client.clone(), &reference.namespace)
            .get_opt(&reference.name)
            .await?
            .ok_or_else(|| misconfigured(format!("no Secret {}", reference.name)))?;
        let value = |key: &str| {
            secret_value(&secret, key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| misconfigured(format!("Secret {} has no {key}", reference.name)))
        };
        BackupTarget::S3(S3Target {
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            access_key_id: value(S3_KEY_ID)?,
            secret_access_key: value(S3_SECRET_KEY)?,
            prefix: s3.prefix.clone(),
        })
    } else {
        return Err(FullBackupError::NoTarget);
    };
    Ok(BackupStore::open(&target)?)
}

fn backup_key(config: &OperatorArgs) -> Result<BackupKey, FullBackupError> {
    config
        .backup_key
        .as_deref()
        .and_then(|hex| BackupKey::from_hex(hex).ok())
        .ok_or(FullBackupError::KeyMissing)
}

fn engine(config: &OperatorArgs) -> BackupClient {
    BackupClient::new(&config.engine_url, &config.engine_admin_token)
}

/// Takes a full backup of `tenant` to its `spec.backup.target`, then deletes the oldest beyond
/// `spec.backup.retention`. A failed backup leaves no part behind. Other operator code (the
/// Snapshot deletion, upgrade waves) calls this.
pub async fn take_tenant_backup(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
) -> Result<FullBackup, FullBackupError> {
    let spec = tenant
        .spec
        .backup
        .as_ref()
        .ok_or(FullBackupError::NoTarget)?;
    let key = backup_key(config)?;
    let store = open_target(client, config, spec).await?;
    let (started, taken_at) = (Instant::now(), Utc::now());
    let slug = tenant.slug();
    let name = backup_name(slug, taken_at);
    let n8n_key = read_n8n_key(client, config, tenant).await?;
    let written = write_parts(
        client, &store, config, tenant, &key, &n8n_key, &name, taken_at,
    )
    .await;
    let (size_bytes, n8n_data) = match written {
        Ok(written) => written,
        Err(error) => {
            for part in [KEY_PART, TENANT_PART, ENGINE_PART, N8N_PART, MANIFEST] {
                if let Err(left) = store.delete(&part_path(&name, part)).await {
                    tracing::warn!(%left, "cannot remove a part of a failed backup");
                }
            }
            return Err(error);
        }
    };
    let pruned = prune(&store, slug, spec.retention.max(1) as usize).await?;
    Ok(FullBackup {
        name,
        size_bytes,
        taken_at,
        duration: started.elapsed(),
        pruned,
        n8n_data,
    })
}

async fn read_n8n_key(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
) -> Result<String, FullBackupError> {
    let namespace = plan(tenant, config).namespace;
    let missing = || FullBackupError::N8nKeyMissing(format!("{namespace}/{ENCRYPTION_SECRET}"));
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(ENCRYPTION_SECRET)
        .await?
        .ok_or_else(missing)?;
    secret_value(&secret, ENCRYPTION_KEY)
        .filter(|key| !key.is_empty())
        .ok_or_else(missing)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn put_part(
    store: &BackupStore,
    name: &str,
    part: &str,
    bytes: Vec<u8>,
) -> Result<Part, FullBackupError> {
    let sha256 = sha256_hex(&bytes);
    let size = store
        .put(&part_path(name, part), Bytes::from(bytes))
        .await?;
    Ok(Part {
        name: part.to_owned(),
        sha256,
        size,
    })
}

/// The Tenant as it can be applied again: name, labels, spec (Secret references only).
fn tenant_yaml(tenant: &Tenant) -> Vec<u8> {
    let document = serde_json::json!({
        "apiVersion": "flomastr.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": tenant.slug(), "labels": tenant.metadata.labels},
        "spec": tenant.spec,
    });
    serde_yaml::to_string(&document)
        .expect("a Tenant serialises to YAML")
        .into_bytes()
}

/// Writes every part, the manifest last; the bytes written and n8n's volume's part.
#[allow(clippy::too_many_arguments)]
async fn write_parts(
    client: &kube::Client,
    store: &BackupStore,
    config: &OperatorArgs,
    tenant: &Tenant,
    key: &BackupKey,
    n8n_key: &str,
    name: &str,
    taken_at: DateTime<Utc>,
) -> Result<(u64, Option<Part>), FullBackupError> {
    let mut parts = vec![
        put_part(store, name, KEY_PART, key.seal(n8n_key.as_bytes())).await?,
        put_part(store, name, TENANT_PART, tenant_yaml(tenant)).await?,
    ];
    let (size, sha256) = engine(config)
        .export_as(store, tenant.slug(), &part_path(name, ENGINE_PART))
        .await
        .map_err(FullBackupError::Engine)?;
    parts.push(Part {
        name: ENGINE_PART.to_owned(),
        sha256,
        size,
    });
    // n8n's volume after the engine's rows: n8n is stopped for it, the engine is not.
    let plan = plan(tenant, config);
    let n8n_data = n8n_data::back_up(
        client,
        config,
        tenant,
        &plan,
        store,
        &part_path(name, N8N_PART),
    )
    .await?;
    parts.extend(n8n_data.clone());
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        flomastr_version: env!("CARGO_PKG_VERSION").to_owned(),
        slug: tenant.slug().to_owned(),
        taken_at: taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        parts,
        n8n_key_fingerprint: encryption::fingerprint(n8n_key),
        backup_key_fingerprint: key.fingerprint().to_owned(),
    };
    let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    let manifest_size = body.len() as u64;
    store
        .put(&part_path(name, MANIFEST), Bytes::from(body))
        .await?;
    Ok((
        manifest.parts.iter().map(|p| p.size).sum::<u64>() + manifest_size,
        n8n_data,
    ))
}

/// The tenant's complete backups (those with a manifest), oldest first.
pub async fn list_tenant_backups(
    store: &BackupStore,
    slug: &str,
) -> Result<Vec<String>, TargetError> {
    let suffix = format!("/{MANIFEST}");
    Ok(store
        .list(slug)
        .await?
        .into_iter()
        .filter_map(|object| object.name.strip_suffix(&suffix).map(str::to_owned))
        .filter(|name| name.matches('/').count() == 1)
        .collect())
}

/// Deletes every object of the tenant's complete backups beyond the newest `keep`.
async fn prune(store: &BackupStore, slug: &str, keep: usize) -> Result<Vec<String>, TargetError> {
    let backups = list_tenant_backups(store, slug).await?;
    let old = &backups[..backups.len().saturating_sub(keep)];
    if old.is_empty() {
        return Ok(Vec::new());
    }
    for object in store.list(slug).await? {
        if old
            .iter()
            .any(|b| object.name.starts_with(&format!("{b}/")))
        {
            store.delete(&object.name).await?;
        }
    }
    Ok(old.to_vec())
}

fn valid_name(name: &str) -> bool {
    let Some((slug, time)) = name.split_once('/') else {
        return false;
    };
    !slug.is_empty()
        && slug.len() <= 40
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !time.is_empty()
        && time
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'.'))
}

/// Reads and checks the backup `name` whole: manifest format and version, every part's size
/// and SHA-256, the platform key, the n8n key's fingerprint. Returns the manifest and the
/// n8n key. Touches nothing.
async fn verified(
    store: &BackupStore,
    key: &BackupKey,
    name: &str,
) -> Result<(Manifest, String), FullBackupError> {
    let raw = store
        .read_small(&part_path(name, MANIFEST), SMALL_PART_LIMIT)
        .await?;
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| FullBackupError::Corrupt(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(FullBackupError::Corrupt(format!(
            "manifest.json: format `{}`",
            manifest.format
        )));
    }
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&manifest.format_version) {
        return Err(FullBackupError::Version(format!(
            "the backup is of format version {} (written by flomastr {}); this flomastr \
             restores versions {OLDEST_READABLE} to {FORMAT_VERSION}",
            manifest.format_version, manifest.flomastr_version
        )));
    }
    // n8n's volume is optional (format 1 never has it); when listed, it is checked as well.
    for wanted in [KEY_PART, TENANT_PART, ENGINE_PART, N8N_PART] {
        let part = match manifest.part(wanted) {
            Some(part) => part,
            None if wanted == N8N_PART => continue,
            None => return Err(FullBackupError::Corrupt(format!("no part {wanted}"))),
        };
        let (size, sha256) = store.digest(&part_path(name, wanted)).await?;
        if size != part.size || sha256 != part.sha256 {
            return Err(FullBackupError::Corrupt(format!(
                "{wanted}: SHA-256 or size does not match the manifest"
            )));
        }
    }
    if manifest.backup_key_fingerprint != key.fingerprint() {
        return Err(FullBackupError::WrongKey(format!(
            "the backup was sealed with platform backup key {}, this operator has {}",
            manifest.backup_key_fingerprint,
            key.fingerprint()
        )));
    }
    let sealed = store
        .read_small(&part_path(name, KEY_PART), SMALL_PART_LIMIT)
        .await?;
    let n8n_key = key
        .open(&sealed)
        .map_err(|e: SealError| FullBackupError::WrongKey(e.to_string()))
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| FullBackupError::Corrupt("the n8n key is not text".into()))
        })?;
    if encryption::fingerprint(&n8n_key) != manifest.n8n_key_fingerprint {
        return Err(FullBackupError::Corrupt(
            "the n8n key does not match the manifest's fingerprint".into(),
        ));
    }
    Ok((manifest, n8n_key))
}

/// Restores the backup `name` (of this or another tenant) into `tenant`, from `tenant`'s
/// target: the n8n key Secret first (so n8n decrypts its credentials), then n8n's volume (a new
/// one only, filled before n8n starts), then the engine's data. The tenant's namespace must
/// exist. Nothing is touched unless the whole backup checks out.
pub async fn restore_tenant_backup(
    client: &kube::Client,
    config: &OperatorArgs,
    tenant: &Tenant,
    name: &str,
) -> Result<Restored, FullBackupError> {
    if !valid_name(name) {
        return Err(FullBackupError::BadName(name.to_owned()));
    }
    let spec = tenant
        .spec
        .backup
        .as_ref()
        .ok_or(FullBackupError::NoTarget)?;
    let key = backup_key(config)?;
    let store = open_target(client, config, spec).await?;
    let (manifest, n8n_key) = verified(&store, &key, name).await?;
    let plan = plan(tenant, config);
    if manifest.part(N8N_PART).is_none() && n8n_data::filling(client, &plan).await? {
        return Err(FullBackupError::N8nData(
            "it holds part of an earlier restore that did not finish, and this backup holds no \
             n8n volume to fill it with: restore a backup that has one, or delete the PVC \
             n8n-data (n8n then starts on an empty volume); nothing was restored"
                .into(),
        ));
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &plan.namespace);
    let key_secret_created = match secrets.get_opt(ENCRYPTION_SECRET).await? {
        Some(live) => {
            let live = secret_value(&live, ENCRYPTION_KEY).unwrap_or_default();
            if live != n8n_key {
                return Err(FullBackupError::KeyDiffers {
                    live: encryption::fingerprint(&live),
                    backup: manifest.n8n_key_fingerprint,
                });
            }
            false
        }
        None => {
            let params = PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            secrets
                .create(
                    &params,
                    &children::restored_key_secret(tenant, &plan, n8n_key),
                )
                .await?;
            true
        }
    };
    let n8n_data = match manifest.part(N8N_PART) {
        Some(part) => Some(
            n8n_data::restore(
                client,
                config,
                tenant,
                &plan,
                &store,
                &part_path(name, N8N_PART),
                part,
            )
            .await?,
        ),
        None => None,
    };
    let engine_report = engine(config)
        .restore(&store, &part_path(name, ENGINE_PART), tenant.slug())
        .await
        .map_err(FullBackupError::Engine)?;
    Ok(Restored {
        n8n_key_fingerprint: manifest.n8n_key_fingerprint,
        key_secret_created,
        engine_report,
        n8n_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backup_names_are_accepted() {
        assert!(valid_name("acme/20261203T031500.123Z"));
        for bad in [
            "acme",
            "../x/2026",
            "acme/../other",
            "acme/2026/x",
            "/2026",
            "ACME/2026",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
