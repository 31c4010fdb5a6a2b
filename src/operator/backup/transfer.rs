//! Moves archives between the engine's backup API and a [`BackupStore`]: the engine's stream
//! goes straight into the target (and back), never whole in memory.

use super::target::{BackupStore, TargetError, UploadError, archive_name};
use futures::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the engine is unreachable: {0}")]
    EngineUnreachable(String),
    #[error("the engine refused ({status} {code}): {message}")]
    EngineRefused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the engine's archive stream broke off: {0}")]
    StreamBroken(String),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// A backup taken.
#[derive(Debug, Clone)]
pub struct TakenBackup {
    pub name: String,
    pub size: u64,
    pub taken_at: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
}

/// The engine's backup API, for archives that take longer than one request timeout.
pub struct BackupClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl BackupClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stream may last long; it may not stall.
            .read_timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Takes a backup of `slug` into `store`; returns its name and size.
    pub async fn backup(
        &self,
        store: &BackupStore,
        slug: &str,
    ) -> Result<TakenBackup, TransferError> {
        let started = Instant::now();
        let taken_at = chrono::Utc::now();
        let name = archive_name(slug, taken_at);
        let (size, _) = self.export_as(store, slug, &name).await?;
        Ok(TakenBackup {
            name,
            size,
            taken_at,
            duration: started.elapsed(),
        })
    }

    /// Streams the engine's archive of `slug` into `store` as `name`; returns its size and
    /// SHA-256 (hex).
    pub async fn export_as(
        &self,
        store: &BackupStore,
        slug: &str,
        name: &str,
    ) -> Result<(u64, String), TransferError> {
        let response = self
            .http
            .post(format!("{}/admin/tenants/{slug}/backup", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| TransferError::EngineUnreachable(e.to_string()))?;
        let response = refused(response).await?;
        let hasher = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
        let hashing = hasher.clone();
        let stream = response
            .bytes_stream()
            .inspect_ok(move |chunk| hashing.lock().unwrap().update(chunk));
        let size = store
            .upload(name, stream)
            .await
            .map_err(|error| match error {
                UploadError::Target(target) => TransferError::Target(target),
                UploadError::Source(reason) => TransferError::StreamBroken(reason),
            })?;
        let digest = hasher.lock().unwrap().clone().finalize();
        Ok((size, hex::encode(digest)))
    }

    /// Restores the archive `name` of `store` into the tenant `into`; returns the engine's report.
    pub async fn restore(
        &self,
        store: &BackupStore,
        name: &str,
        into: &str,
    ) -> Result<Value, TransferError> {
        let archive = store.download(name).await?;
        let response = self
            .http
            .post(format!("{}/admin/tenants/{into}/restore", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(
                archive.map_err(|e| e.to_string()),
            ))
            .send()
            .await
            .map_err(|e| TransferError::EngineUnreachable(e.to_string()))?;
        refused(response)
            .await?
            .json()
            .await
            .map_err(|e| TransferError::EngineUnreachable(e.to_string()))
    }
}

async fn refused(response: reqwest::Response) -> Result<reqwest::Response, TransferError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Err(TransferError::EngineRefused {
        status,
        code: body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        message: body["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    })
}
