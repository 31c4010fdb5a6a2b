//! Per-tenant controls on every AI call: a rate limit, the monthly token budget, token usage
//! and the audit row.

use crate::ai::settings::TenantAi;
use crate::engine::error::ApiError;
use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// AI calls per minute for tenants that set no limit of their own.
pub const DEFAULT_REQUESTS_PER_MINUTE: i32 = 120;

/// A token bucket per tenant (in memory: each engine replica limits on its own).
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one call from the tenant's bucket; `false` when it is empty.
    pub fn try_acquire(&self, tenant: Uuid, per_minute: i32) -> bool {
        let capacity = f64::from(per_minute.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(tenant).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * capacity / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn too_many(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
}

/// The tenant's AI calls per minute.
pub fn calls_per_minute(settings: &TenantAi) -> i32 {
    settings
        .requests_per_minute
        .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE)
}

/// Why a call was refused by the rate limit, for people.
pub fn rate_limit_reached(per_minute: i32) -> String {
    format!("the tenant's limit of {per_minute} AI calls per minute is reached; retry shortly")
}

/// Admits a request or answers 429 with the reason (rate limit, then budget). The request
/// takes one call from the rate limit: enough for an endpoint that makes at most one model
/// call; one that makes more takes another before each further call.
pub async fn admit(
    pool: &PgPool,
    rate: &RateLimiter,
    tenant: Uuid,
    settings: &TenantAi,
) -> Result<(), ApiError> {
    let per_minute = calls_per_minute(settings);
    if !rate.try_acquire(tenant, per_minute) {
        return Err(too_many("rate_limited", rate_limit_reached(per_minute)));
    }
    if let Some(budget) = settings.monthly_token_budget {
        let used = month_tokens(pool, tenant).await?;
        if used >= budget {
            return Err(too_many(
                "budget_exceeded",
                format!(
                    "the monthly AI budget of {budget} tokens is spent ({used} used this month)"
                ),
            ));
        }
    }
    Ok(())
}

/// Tokens used by the tenant in the current calendar month (UTC).
pub async fn month_tokens(pool: &PgPool, tenant: Uuid) -> Result<i64, sqlx::Error> {
    let mut tx = crate::ai::tenant_tx(pool, tenant).await?;
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(prompt_tokens + completion_tokens), 0)::bigint FROM ai_usage
         WHERE tenant_id = $1 AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(used)
}

/// Token counts of one model call; `estimated` when the model reported none.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub estimated: bool,
}

impl Tokens {
    /// What a call cost: the server's usage, or an estimate from the text when it reported none.
    pub fn of(
        messages: &[crate::ai::chat::Message],
        completion: &crate::ai::chat::Completion,
    ) -> Self {
        match completion.usage {
            Some(usage) => Self {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
                estimated: false,
            },
            None => Self {
                prompt: messages.iter().map(|m| estimate_tokens(&m.content)).sum(),
                completion: estimate_tokens(&completion.text),
                estimated: true,
            },
        }
    }
}

/// ~4 characters a token: what is charged when a server reports no usage.
pub fn estimate_tokens(text: &str) -> i64 {
    (text.chars().count() as i64 + 3) / 4
}

pub async fn record_usage(
    pool: &PgPool,
    tenant: Uuid,
    endpoint: &str,
    model: &str,
    tokens: Tokens,
) -> Result<(), sqlx::Error> {
    let mut tx = crate::ai::tenant_tx(pool, tenant).await?;
    sqlx::query(
        "INSERT INTO ai_usage (tenant_id, endpoint, model, prompt_tokens, completion_tokens, estimated)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(model)
    .bind(i32::try_from(tokens.prompt).unwrap_or(i32::MAX))
    .bind(i32::try_from(tokens.completion).unwrap_or(i32::MAX))
    .bind(tokens.estimated)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One audit row per AI call, whatever its outcome. Failing to write it is logged, not fatal:
/// the caller's answer is already decided.
pub async fn audit(
    pool: &PgPool,
    tenant: Uuid,
    endpoint: &str,
    outcome: &str,
    detail: Value,
    started: Instant,
) {
    let duration = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let written = async {
        let mut tx = crate::ai::tenant_tx(pool, tenant).await?;
        sqlx::query(
            "INSERT INTO ai_audit (tenant_id, endpoint, outcome, detail, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant)
        .bind(endpoint)
        .bind(outcome)
        .bind(&detail)
        .bind(duration)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = written {
        tracing::error!(%tenant, endpoint, %error, "cannot write the AI audit row");
    }
}

/// The outcome name of an error, for the audit row.
pub fn outcome_of(error: &ApiError) -> &'static str {
    error.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_empties_and_refuses() {
        let limiter = RateLimiter::default();
        let tenant = Uuid::new_v4();
        assert!((0..3).all(|_| limiter.try_acquire(tenant, 3)));
        assert!(!limiter.try_acquire(tenant, 3));
        assert!(limiter.try_acquire(Uuid::new_v4(), 3));
        assert_eq!(estimate_tokens("abcdefgh!"), 3);
    }
}
