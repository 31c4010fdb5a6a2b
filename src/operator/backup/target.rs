//! Where tenant backups are kept: a directory (a mounted volume) or an S3-compatible bucket,
//! behind one interface. Archives are written as a stream (multipart, a few parts in flight),
//! so memory stays bounded whatever their size; an upload that fails leaves no object behind.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Parts of an upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Where a tenant's backups go.
#[derive(Clone)]
pub enum BackupTarget {
    /// A directory, e.g. a PersistentVolume mounted into the operator. It must exist.
    Volume { path: PathBuf },
    /// An S3-compatible bucket.
    S3(S3Target),
}

#[derive(Clone)]
pub struct S3Target {
    /// `https://host[:port]`; `None`: AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Keys under this prefix (no leading or trailing `/`); empty: the bucket's root.
    pub prefix: String,
}

impl std::fmt::Debug for BackupTarget {
    /// Never the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl BackupTarget {
    /// For people (status, logs): where, never credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Volume { path } => format!("volume {}", path.display()),
            Self::S3(s3) => format!(
                "s3 bucket `{}` at {}",
                s3.bucket,
                s3.endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the backup target ({target}) cannot be reached: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("the backup target ({target}) is full: {reason}")]
    Full { target: String, reason: String },
    #[error("the backup target ({target}) refused access: {reason}")]
    Denied { target: String, reason: String },
    #[error("no backup `{name}` in the target ({target})")]
    NotFound { target: String, name: String },
    #[error("the backup target ({target}) is misconfigured: {reason}")]
    Config { target: String, reason: String },
    #[error("the backup target ({target}) failed: {reason}")]
    Failed { target: String, reason: String },
}

impl TargetError {
    /// A short reason for a status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "TargetUnreachable",
            Self::Full { .. } => "TargetFull",
            Self::Denied { .. } => "TargetDenied",
            Self::NotFound { .. } => "BackupNotFound",
            Self::Config { .. } => "TargetMisconfigured",
            Self::Failed { .. } => "TargetFailed",
        }
    }
}

/// One archive in a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    /// The name to restore it by (`{slug}/{slug}-{time}.flomastr-backup.jsonl`).
    pub name: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
}

impl BackupStore {
    pub fn open(target: &BackupTarget) -> Result<Self, TargetError> {
        let description = target.describe();
        let config = |reason: String| TargetError::Config {
            target: description.clone(),
            reason,
        };
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match target {
            BackupTarget::Volume { path } => {
                if !path.is_dir() {
                    return Err(TargetError::Unreachable {
                        target: description,
                        reason: "the directory does not exist (is the volume mounted?)".into(),
                    });
                }
                let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| config(e.to_string()))?;
                (Arc::new(local), String::new())
            }
            BackupTarget::S3(s3) => (Arc::new(s3_store(s3).map_err(config)?), s3.prefix.clone()),
        };
        Ok(Self {
            store,
            prefix,
            description,
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn error(&self, error: object_store::Error) -> TargetError {
        classify(&self.description, error)
    }

    /// Writes `archive` as `name`. Nothing is left when the stream or the target fails.
    pub async fn upload<E: std::fmt::Display>(
        &self,
        name: &str,
        mut archive: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<u64, UploadError> {
        let upload = self
            .store
            .put_multipart(&self.path(name))
            .await
            .map_err(|e| UploadError::Target(self.error(e)))?;
        let mut writer = WriteMultipart::new(upload);
        let mut size = 0u64;
        let outcome = async {
            while let Some(chunk) = archive.next().await {
                let chunk = chunk.map_err(|e| UploadError::Source(e.to_string()))?;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| UploadError::Target(self.error(e)))?;
                size += chunk.len() as u64;
                writer.write(&chunk);
            }
            Ok::<_, UploadError>(())
        }
        .await;
        match outcome {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| UploadError::Target(self.error(e)))?;
                Ok(size)
            }
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "aborting a failed backup upload");
                }
                Err(error)
            }
        }
    }

    /// The archive `name` as a stream.
    pub async fn download(
        &self,
        name: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, TargetError>> + Send + 'static + use<>, TargetError>
    {
        let description = self.description.clone();
        let found = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => TargetError::NotFound {
                    target: self.description.clone(),
                    name: name.to_owned(),
                },
                other => self.error(other),
            })?;
        Ok(found
            .into_stream()
            .map_err(move |e| classify(&description, e)))
    }

    /// Writes a small object (a manifest, a sealed key).
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<u64, TargetError> {
        let one = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        self.upload(name, one).await.map_err(|error| match error {
            UploadError::Target(target) => target,
            UploadError::Source(reason) => TargetError::Failed {
                target: self.description.clone(),
                reason,
            },
        })
    }

    /// A small object whole; more than `limit` bytes is refused (TargetFailed).
    pub async fn read_small(&self, name: &str, limit: usize) -> Result<Vec<u8>, TargetError> {
        let mut stream = std::pin::pin!(self.download(name).await?);
        let mut body = Vec::new();
        while let Some(chunk) = stream.try_next().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(TargetError::Failed {
                    target: self.description.clone(),
                    reason: format!("`{name}` is larger than {limit} bytes"),
                });
            }
        }
        Ok(body)
    }

    /// Size and SHA-256 (hex) of an object, read as a stream.
    pub async fn digest(&self, name: &str) -> Result<(u64, String), TargetError> {
        use sha2::Digest as _;
        let mut stream = std::pin::pin!(self.download(name).await?);
        let (mut hasher, mut size) = (sha2::Sha256::new(), 0u64);
        while let Some(chunk) = stream.try_next().await? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// Deletes one object (absent is fine).
    pub async fn delete(&self, name: &str) -> Result<(), TargetError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(error)),
        }
    }

    /// The tenant's archives, oldest first.
    pub async fn list(&self, slug: &str) -> Result<Vec<StoredBackup>, TargetError> {
        let prefix = self.path(slug);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut found: Vec<StoredBackup> = self
            .store
            .list(Some(&prefix))
            .map_err(|e| self.error(e))
            .map_ok(|meta| StoredBackup {
                name: meta
                    .location
                    .as_ref()
                    .strip_prefix(&strip)
                    .unwrap_or(meta.location.as_ref())
                    .to_owned(),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .try_collect()
            .await?;
        // Names carry their time: they sort in the order they were taken.
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Deletes all but the newest `keep` archives of the tenant; returns the names deleted.
    pub async fn prune(&self, slug: &str, keep: usize) -> Result<Vec<String>, TargetError> {
        let all = self.list(slug).await?;
        let excess = all.len().saturating_sub(keep);
        let mut deleted = Vec::new();
        for old in all.into_iter().take(excess) {
            self.store
                .delete(&self.path(&old.name))
                .await
                .map_err(|e| self.error(e))?;
            deleted.push(old.name);
        }
        Ok(deleted)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("the archive stream failed: {0}")]
    Source(String),
}

/// The name of a new archive of `slug` taken at `at`.
pub fn archive_name(slug: &str, at: DateTime<Utc>) -> String {
    format!(
        "{slug}/{slug}-{}.flomastr-backup.jsonl",
        at.format("%Y%m%dT%H%M%S%.3fZ")
    )
}

fn s3_store(s3: &S3Target) -> Result<object_store::aws::AmazonS3, String> {
    let connection = crate::s3::S3Connection {
        endpoint: s3.endpoint.as_deref(),
        bucket: &s3.bucket,
        region: &s3.region,
        access_key_id: &s3.access_key_id,
        secret_access_key: &s3.secret_access_key,
    };
    crate::s3::client(&connection, Duration::from_secs(120))
}

/// A target's error, by what the platform engineer must do about it.
fn classify(target: &str, error: object_store::Error) -> TargetError {
    let target = target.to_owned();
    let chain = error_chain(&error);
    let reason = chain.join(": ");
    let lower = reason.to_ascii_lowercase();
    let io_kind = io_kind(&error);
    if matches!(
        io_kind,
        Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    ) || [
        "insufficient storage",
        "quotaexceeded",
        "no space left",
        "entitytoolarge",
    ]
    .iter()
    .any(|m| lower.contains(m))
    {
        return TargetError::Full { target, reason };
    }
    let denied_text = [
        "403 forbidden",
        "accessdenied",
        "signaturedoesnotmatch",
        "invalidaccesskeyid",
    ]
    .iter()
    .any(|m| lower.contains(m));
    match error {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => TargetError::Denied { target, reason },
        _ if denied_text => TargetError::Denied { target, reason },
        _ if is_unreachable(&lower, io_kind) => TargetError::Unreachable { target, reason },
        _ => TargetError::Failed { target, reason },
    }
}

fn is_unreachable(lower: &str, io_kind: Option<std::io::ErrorKind>) -> bool {
    matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
        )
    ) || [
        "connect",
        "connection refused",
        "timed out",
        "dns error",
        "nosuchbucket",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !chain.iter().any(|seen| seen.contains(&text)) {
            chain.push(text);
        }
        source = next.source();
    }
    chain
}

fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(next) = source {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = next.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_full() {
        let error = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        };
        assert_eq!(classify("volume /b", error).reason(), "TargetFull");
    }

    #[test]
    fn names_sort_in_time_order_and_describe_never_shows_the_secret() {
        let early = archive_name("acme", "2026-01-02T03:04:05.006Z".parse().unwrap());
        let late = archive_name("acme", "2026-01-02T03:04:05.010Z".parse().unwrap());
        assert!(early < late);
        assert_eq!(
            early,
            "acme/acme-20260102T030405.006Z.flomastr-backup.jsonl"
        );
        let target = BackupTarget::S3(S3Target {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "AK".into(),
            secret_access_key: "very-secret".into(),
            prefix: String::new(),
        });
        assert!(!format!("{target:?}").contains("very-secret"));
    }
}
