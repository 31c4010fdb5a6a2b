//! How inbound media is fetched: how many downloads at once, the largest file, retries.

use super::blobs::{MediaBlobs, S3Settings};
use super::public_url::PublicMedia;
use std::time::Duration;

#[derive(clap::Args, Clone, PartialEq, Eq)]
pub struct MediaArgs {
    /// Media downloads running at once (all tenants together).
    #[arg(long, env = "FLOMASTR_MEDIA_FETCH_CONCURRENCY", default_value_t = MediaArgs::DEFAULT.media_fetch_concurrency)]
    pub media_fetch_concurrency: usize,

    /// Largest media file fetched, in bytes, for tenants that set no limit of their own
    /// (`media_max_bytes`). Larger files are refused and marked failed; the message is kept.
    #[arg(long, env = "FLOMASTR_MEDIA_MAX_BYTES", default_value_t = MediaArgs::DEFAULT.media_max_bytes)]
    pub media_max_bytes: u64,

    /// Tries of a media download before it is marked failed (transient errors only: a refusal,
    /// a missing file or an oversized one fails at once).
    #[arg(long, env = "FLOMASTR_MEDIA_FETCH_ATTEMPTS", default_value_t = MediaArgs::DEFAULT.media_fetch_attempts)]
    pub media_fetch_attempts: i32,

    /// Seconds before the first retry of a failed download; doubled on each retry.
    #[arg(long, env = "FLOMASTR_MEDIA_RETRY_SECONDS", default_value_t = MediaArgs::DEFAULT.media_retry_seconds)]
    pub media_retry_seconds: u64,

    /// Seconds one download may take, answer and body.
    #[arg(long, env = "FLOMASTR_MEDIA_FETCH_TIMEOUT_SECONDS", default_value_t = MediaArgs::DEFAULT.media_fetch_timeout_seconds)]
    pub media_fetch_timeout_seconds: u64,

    /// Keep media files in this bucket of an S3-compatible object store instead of the
    /// database (the rows stay in the database as the index).
    #[arg(long, env = "FLOMASTR_MEDIA_S3_BUCKET")]
    pub media_s3_bucket: Option<String>,

    /// The S3-compatible server's URL (e.g. http://127.0.0.1:9000); absent: AWS.
    #[arg(long, env = "FLOMASTR_MEDIA_S3_ENDPOINT")]
    pub media_s3_endpoint: Option<String>,

    #[arg(long, env = "FLOMASTR_MEDIA_S3_REGION", default_value = "us-east-1")]
    pub media_s3_region: String,

    #[arg(long, env = "FLOMASTR_MEDIA_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub media_s3_access_key_id: Option<String>,

    #[arg(
        long,
        env = "FLOMASTR_MEDIA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub media_s3_secret_access_key: Option<String>,
}

impl std::fmt::Debug for MediaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The object store's keys stay out of every debug print.
        f.debug_struct("MediaArgs")
            .field("media_fetch_concurrency", &self.media_fetch_concurrency)
            .field("media_max_bytes", &self.media_max_bytes)
            .field("media_s3_bucket", &self.media_s3_bucket)
            .field("media_s3_endpoint", &self.media_s3_endpoint)
            .finish_non_exhaustive()
    }
}

impl MediaArgs {
    pub const DEFAULT: Self = Self {
        media_fetch_concurrency: 8,
        // Meta's own limit for documents is 100 MB; most tenants want far less in their database.
        media_max_bytes: 16 * 1024 * 1024,
        media_fetch_attempts: 5,
        media_retry_seconds: 5,
        media_fetch_timeout_seconds: 60,
        media_s3_bucket: None,
        media_s3_endpoint: None,
        media_s3_region: String::new(),
        media_s3_access_key_id: None,
        media_s3_secret_access_key: None,
    };

    /// The object store, when a bucket is configured (then both keys are required).
    fn blobs(&self) -> Result<MediaBlobs, String> {
        let Some(bucket) = self.media_s3_bucket.clone().filter(|b| !b.is_empty()) else {
            return Ok(MediaBlobs::database());
        };
        let (Some(access_key_id), Some(secret_access_key)) = (
            self.media_s3_access_key_id.clone(),
            self.media_s3_secret_access_key.clone(),
        ) else {
            return Err(
                "a media S3 bucket needs --media-s3-access-key-id and --media-s3-secret-access-key"
                    .into(),
            );
        };
        let region = if self.media_s3_region.is_empty() {
            "us-east-1".to_owned()
        } else {
            self.media_s3_region.clone()
        };
        MediaBlobs::s3(&S3Settings {
            bucket,
            region,
            endpoint: self.media_s3_endpoint.clone(),
            access_key_id,
            secret_access_key,
        })
    }

    pub fn settings(&self) -> Result<MediaSettings, String> {
        for (name, value) in [
            (
                "media fetch concurrency",
                self.media_fetch_concurrency as u64,
            ),
            ("media max bytes", self.media_max_bytes),
            (
                "media fetch attempts",
                self.media_fetch_attempts.max(0) as u64,
            ),
            ("media fetch timeout", self.media_fetch_timeout_seconds),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(MediaSettings {
            concurrency: self.media_fetch_concurrency,
            max_bytes: self.media_max_bytes,
            attempts: self.media_fetch_attempts,
            retry: Duration::from_secs(self.media_retry_seconds),
            timeout: Duration::from_secs(self.media_fetch_timeout_seconds),
            blobs: self.blobs()?,
            public: PublicMedia::new(None, ""),
        })
    }
}

impl Default for MediaArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Clone, Debug)]
pub struct MediaSettings {
    pub concurrency: usize,
    pub max_bytes: u64,
    pub attempts: i32,
    pub retry: Duration,
    pub timeout: Duration,
    /// Where the bytes go.
    pub blobs: MediaBlobs,
    /// Signed public URLs (set up by the engine's settings: base URL and key).
    pub public: PublicMedia,
}

impl MediaSettings {
    /// Wait before the retry that follows attempt `attempt` (1-based): doubling, at most an hour.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.clamp(1, 16) as u32 - 1);
        self.retry
            .saturating_mul(factor)
            .min(Duration::from_secs(3600))
    }
}
