//! The command line of `flomastr load`, checked into a plan before anything is sent.

use super::LoadError;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The most messages one run may send: the run keeps one timestamp per message.
const MAX_MESSAGES: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadProvider {
    /// `POST /webhook/infobip/{tenant}`: the secret header, or an HMAC signature with
    /// `--infobip-signature`.
    Infobip,
    /// `POST /webhook/meta/{tenant}`: `X-Hub-Signature-256` with the tenant's app secret.
    Meta,
    /// `POST /webhook/twilio/{tenant}`: `X-Twilio-Signature` with the tenant's auth token.
    Twilio,
}

#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The engine's URL as the provider reaches it, e.g. `https://engine.example.com`.
    #[arg(long, env = "FLOMASTR_LOAD_ENGINE_URL")]
    pub engine_url: Url,
    /// The tenant's slug (the last part of its webhook path).
    #[arg(long, env = "FLOMASTR_LOAD_TENANT")]
    pub tenant: String,
    /// Which provider's webhook to post.
    #[arg(long, value_enum, default_value = "infobip")]
    pub provider: LoadProvider,
    /// The tenant's number on that provider, as the provider names it: InfoBip's `to`, Meta's
    /// `phone_number_id`, Twilio's `To` (`whatsapp:+…`).
    #[arg(long, env = "FLOMASTR_LOAD_SENDER")]
    pub sender: String,
    /// The tenant's webhook credential: InfoBip's secret header value (or HMAC key with
    /// `--infobip-signature`), Meta's app secret, Twilio's auth token. Read from the environment
    /// rather than the command line where it would show in the process list.
    #[arg(long, env = "FLOMASTR_LOAD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: String,
    /// The header InfoBip's secret goes in.
    #[arg(long, default_value = "x-webhook-secret")]
    pub infobip_header: String,
    /// Sign InfoBip webhooks with this HMAC algorithm instead of sending the secret header.
    #[arg(long, value_parser = ["sha1", "sha256", "sha512"])]
    pub infobip_signature: Option<String>,
    /// The header InfoBip's signature goes in.
    #[arg(long, default_value = "x-hub-signature")]
    pub infobip_signature_header: String,
    /// The URL Twilio signs: the engine's public URL of the tenant's webhook, when it differs from
    /// `--engine-url` + the path (a proxy in between).
    #[arg(long)]
    pub twilio_signed_url: Option<String>,
    /// The `AccountSid` Twilio sends, when the tenant registered its account.
    #[arg(long)]
    pub twilio_account_sid: Option<String>,
    /// A worker token of the tenant (required unless --ingest-only).
    #[arg(long, env = "FLOMASTR_LOAD_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// Work each job with two calls (next-job, then complete), as the shipped n8n workflow does,
    /// instead of complete-and-next.
    #[arg(long)]
    pub two_calls: bool,
    /// Only post webhooks; leave the jobs to the tenant's own workers.
    #[arg(long)]
    pub ingest_only: bool,
    /// Messages to send at most.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Seconds to keep sending at most.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds to wait, after sending stopped, for the workers to finish the queued jobs.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Concurrent webhook senders.
    #[arg(long, default_value_t = 16)]
    pub producers: usize,
    /// Concurrent workers (each long-polls next-job and completes what it gets).
    #[arg(long, default_value_t = 50)]
    pub workers: usize,
    /// Messages per webhook (InfoBip `results[]`, Meta `messages[]`; Twilio sends one).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Distinct customers the messages come from (jobs of one customer run one at a time).
    #[arg(long, default_value_t = 1000)]
    pub contacts: u64,
    /// Offered load in messages per second (all producers together); unlimited when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Also write the summary table (Markdown) to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The checked settings a run works from.
#[derive(Debug)]
pub struct Plan {
    pub engine_url: Url,
    pub tenant: String,
    pub provider: LoadProvider,
    pub sender: String,
    pub secret: String,
    pub infobip_header: String,
    pub infobip_signature: Option<crate::engine::providers::infobip::SignatureAlgorithm>,
    pub infobip_signature_header: String,
    pub twilio_signed_url: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub worker_token: String,
    pub ingest_only: bool,
    pub two_calls: bool,
    pub messages: u64,
    pub duration: Duration,
    pub drain_timeout: Duration,
    pub producers: usize,
    pub workers: usize,
    pub batch: usize,
    pub contacts: u64,
    /// Time between two webhooks of one producer, when the load is paced.
    pub producer_interval: Option<Duration>,
    pub output: Option<PathBuf>,
    /// Marks this run's messages (their provider message ids start with it).
    pub run_id: String,
}

impl LoadArgs {
    pub fn plan(self) -> Result<Plan, LoadError> {
        let invalid = |text: &str| Err(LoadError::Invalid(text.to_owned()));
        if !matches!(self.engine_url.scheme(), "http" | "https") {
            return invalid("--engine-url must be an http(s) URL");
        }
        if self.tenant.is_empty() || !self.tenant.bytes().all(slug_byte) {
            return invalid("--tenant must be a tenant slug (lowercase letters, digits, '-')");
        }
        if self.sender.trim().is_empty() {
            return invalid("--sender is required");
        }
        if self.webhook_secret.is_empty() {
            return invalid("the webhook secret must not be empty");
        }
        let worker_token = match (self.ingest_only, self.worker_token) {
            (true, _) => String::new(),
            (false, Some(token)) if !token.is_empty() => token,
            (false, _) => return invalid("--worker-token is required unless --ingest-only"),
        };
        if !(1..=MAX_MESSAGES).contains(&self.messages) {
            return invalid("--messages must be between 1 and 10000000");
        }
        let duration = seconds("--duration", self.duration)?;
        let drain_timeout = seconds("--drain-timeout", self.drain_timeout)?;
        if !(1..=1000).contains(&self.producers) || !(1..=1000).contains(&self.workers) {
            return invalid("--producers and --workers must be between 1 and 1000");
        }
        let batch_limit = if self.provider == LoadProvider::Twilio {
            1
        } else {
            100
        };
        if !(1..=batch_limit).contains(&self.batch) {
            return invalid("--batch must be between 1 and 100 (1 for Twilio)");
        }
        if self.contacts == 0 || self.contacts > 100_000_000 {
            return invalid("--contacts must be between 1 and 100000000");
        }
        let producer_interval = match self.rate {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(Duration::from_secs_f64(
                self.producers as f64 * self.batch as f64 / rate,
            )),
            Some(_) => return invalid("--rate must be a positive number of messages per second"),
        };
        let infobip_signature = self.infobip_signature.as_deref().map(|name| {
            use crate::engine::providers::infobip::SignatureAlgorithm;
            match name {
                "sha256" => SignatureAlgorithm::Sha256,
                "sha512" => SignatureAlgorithm::Sha512,
                _ => SignatureAlgorithm::Sha1,
            }
        });
        Ok(Plan {
            engine_url: self.engine_url,
            tenant: self.tenant,
            provider: self.provider,
            sender: self.sender,
            secret: self.webhook_secret,
            infobip_header: self.infobip_header,
            infobip_signature,
            infobip_signature_header: self.infobip_signature_header,
            twilio_signed_url: self.twilio_signed_url,
            twilio_account_sid: self.twilio_account_sid,
            worker_token,
            ingest_only: self.ingest_only,
            two_calls: self.two_calls,
            messages: self.messages,
            duration,
            drain_timeout,
            producers: self.producers,
            workers: self.workers,
            batch: self.batch,
            contacts: self.contacts,
            producer_interval,
            output: self.output,
            run_id: format!("flomastr-load-{}", uuid::Uuid::new_v4().simple()),
        })
    }
}

fn slug_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn seconds(name: &str, value: f64) -> Result<Duration, LoadError> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(LoadError::Invalid(format!(
            "{name} must be a number of seconds between 0 and 86400"
        )))
    }
}
