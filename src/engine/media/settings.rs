//! How inbound media is fetched: how many downloads at once, the largest file, retries.

use std::time::Duration;

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
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
}

impl MediaArgs {
    pub const DEFAULT: Self = Self {
        media_fetch_concurrency: 8,
        // Meta's own limit for documents is 100 MB; most tenants want far less in their database.
        media_max_bytes: 16 * 1024 * 1024,
        media_fetch_attempts: 5,
        media_retry_seconds: 5,
        media_fetch_timeout_seconds: 60,
    };

    pub fn settings(&self) -> Result<MediaSettings, &'static str> {
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
                return Err(name);
            }
        }
        Ok(MediaSettings {
            concurrency: self.media_fetch_concurrency,
            max_bytes: self.media_max_bytes,
            attempts: self.media_fetch_attempts,
            retry: Duration::from_secs(self.media_retry_seconds),
            timeout: Duration::from_secs(self.media_fetch_timeout_seconds),
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
