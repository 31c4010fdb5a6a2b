//! Where media bytes live: in the `media` row (the default: the embedded PostgreSQL) or, when the
//! engine is configured with a bucket, in an S3-compatible object store under
//! `media/{tenant}/{id}` (the row keeps the key). Rows are the index either way: a file exists
//! when its row does, and the retention deletes the object after its row.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The object store's settings (platform configuration).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible server's URL; absent: AWS.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never reaches a log.
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default)]
pub struct MediaBlobs {
    objects: Option<Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for MediaBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.objects.is_some() {
            "s3"
        } else {
            "postgres"
        };
        f.write_str(kind)
    }
}

/// Where [`MediaBlobs::put`] put a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the row's `bytes`: the caller writes them with the row.
    Row,
    /// In the object store under this key.
    Object(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("media object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl MediaBlobs {
    /// Bytes in the rows.
    pub fn database() -> Self {
        Self::default()
    }

    pub fn s3(settings: &S3Settings) -> Result<Self, String> {
        let connection = crate::s3::S3Connection {
            endpoint: settings.endpoint.as_deref(),
            bucket: &settings.bucket,
            region: &settings.region,
            access_key_id: &settings.access_key_id,
            secret_access_key: &settings.secret_access_key,
        };
        let store = crate::s3::client(&connection, Duration::from_secs(60))
            .map_err(|e| format!("media S3 store: {e}"))?;
        Ok(Self {
            objects: Some(Arc::new(store)),
        })
    }

    pub fn is_object_store(&self) -> bool {
        self.objects.is_some()
    }

    pub fn key(tenant: Uuid, id: Uuid) -> String {
        format!("media/{tenant}/{id}")
    }

    /// Puts the file in the object store when there is one; else the row keeps it.
    pub async fn put(&self, tenant: Uuid, id: Uuid, bytes: &[u8]) -> Result<Placement, BlobError> {
        let Some(objects) = &self.objects else {
            return Ok(Placement::Row);
        };
        let key = Self::key(tenant, id);
        objects
            .put(
                &ObjectPath::from(key.as_str()),
                PutPayload::from(bytes.to_vec()),
            )
            .await?;
        Ok(Placement::Object(key))
    }

    /// The bytes of a stored file: from the object store when the row names an object.
    pub async fn get(
        &self,
        pool: &PgPool,
        (tenant, id): (Uuid, Uuid),
        object_key: Option<&str>,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        match object_key {
            // An object but no store configured (any more): nothing to serve.
            Some(key) => self.object(key).await,
            None => Ok(super::files::row_bytes(pool, tenant, id).await?),
        }
    }

    /// The object under `key`; `None` when it is gone or there is no object store.
    pub async fn object(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(objects) = &self.objects else {
            return Ok(None);
        };
        match objects.get(&ObjectPath::from(key)).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Copies the object `from` to `to`; `false` when there is none to copy (or no store). Read
    /// and written again rather than copied server-side: every S3-compatible server can.
    pub async fn copy(&self, from: &str, to: &str) -> Result<bool, BlobError> {
        let (Some(objects), Some(bytes)) = (&self.objects, self.object(from).await?) else {
            return Ok(false);
        };
        objects
            .put(&ObjectPath::from(to), PutPayload::from(bytes))
            .await?;
        Ok(true)
    }

    /// Removes a put whose row was not written.
    pub async fn delete_placed(&self, placement: &Placement) {
        if let Placement::Object(key) = placement {
            self.delete(std::slice::from_ref(key)).await;
        }
    }

    /// Deletes objects whose rows are gone (a failure is logged: the object is orphaned, not
    /// served, since no row names it).
    pub async fn delete(&self, keys: &[String]) {
        let Some(objects) = &self.objects else {
            return;
        };
        for key in keys {
            match objects.delete(&ObjectPath::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(%error, key, "could not delete a media object"),
            }
        }
    }
}
