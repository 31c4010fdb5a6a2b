//! The campaign runner, one per engine replica: starts due runs, sends their recipients in paced
//! batches through the send policy, and completes them. Replicas share the work through row
//! locks (SKIP LOCKED); a recipient's message and its `queued` mark commit together, so a
//! contact gets exactly one message per run whatever is killed when.

use super::pause;
use crate::ai::pulse::{self, Kind, PulseResult};
use crate::engine::policy::category::Category;
use crate::engine::policy::gate;
use crate::engine::state::AppState;
use serde_json::{Value, json};
use sqlx::PgConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the runner looks for due runs and batches.
const TICK: Duration = Duration::from_millis(200);
/// Runs batched per tick on one replica at most.
const RUNS_PER_TICK: i64 = 16;

pub struct Runner {
    state: AppState,
}

#[derive(sqlx::FromRow)]
struct DueCampaign {
    id: Uuid,
    tenant_id: Uuid,
    audience: Value,
    template_name: Option<String>,
    template_language: Option<String>,
    next_run_at: chrono::DateTime<chrono::Utc>,
    schedule_kind: Option<String>,
    weekly_day: Option<i16>,
    weekly_time: Option<chrono::NaiveTime>,
    time_zone: String,
}

#[derive(sqlx::FromRow)]
struct Batch {
    run_id: Uuid,
    campaign_id: Uuid,
    tenant_id: Uuid,
    template_name: Option<String>,
    template_language: Option<String>,
    template_params: Value,
    /// Personalized campaigns: the brief and language of each contact's own message.
    brief: Option<String>,
    content_language: Option<String>,
    category: String,
    per_minute: i32,
}

impl Runner {
    pub fn spawn(state: AppState, shutdown: CancellationToken) {
        let runner = Self { state };
        tokio::spawn(async move { runner.run(shutdown).await });
    }

    async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "campaign runner: tick failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn tick(&self) -> Result<(), sqlx::Error> {
        while self.start_one_due().await? {}
        let runs: Vec<Batch> = sqlx::query_as(include_str!("sql/claim_batches.sql"))
            .bind(RUNS_PER_TICK)
            .fetch_all(&self.state.pool)
            .await?;
        for run in runs {
            self.send_batch(&run).await?;
        }
        Ok(())
    }

    /// Starts one due campaign's run (planning its recipients); whether one was started.
    async fn start_one_due(&self) -> Result<bool, sqlx::Error> {
        let mut tx = self.state.pool.begin().await?;
        let due: Option<DueCampaign> = sqlx::query_as(
            "SELECT id, tenant_id, audience, template_name, template_language, next_run_at, schedule_kind,
                    weekly_day, weekly_time, time_zone
             FROM campaigns WHERE state = 'scheduled' AND next_run_at <= now()
             ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(due) = due else { return Ok(false) };
        let template = due
            .template_name
            .as_deref()
            .zip(due.template_language.as_deref());
        if !paused_for_template(&mut tx, due.tenant_id, due.id, template).await? {
            start_run(&mut tx, &due).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One paced batch of a run: each pending recipient through the policy, then queued or
    /// skipped with the reason, all in one transaction.
    async fn send_batch(&self, run: &Batch) -> Result<(), sqlx::Error> {
        let mut tx = self.state.pool.begin().await?;
        let template = run
            .template_name
            .as_deref()
            .zip(run.template_language.as_deref());
        if paused_for_template(&mut tx, run.tenant_id, run.campaign_id, template).await? {
            return tx.commit().await;
        }
        let mut size = i64::from((run.per_minute / 60).max(1));
        if run.brief.is_some() {
            // Each contact of the batch may cost a model call, made while the batch holds its
            // recipients: at most one pulse-content request's worth.
            size = size.min(pulse::MAX_CONTACTS as i64);
        }
        let contacts: Vec<String> = sqlx::query_scalar(
            "SELECT contact FROM campaign_recipients WHERE run_id = $1 AND state = 'pending'
             ORDER BY contact LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(run.run_id)
        .bind(size)
        .fetch_all(&mut *tx)
        .await?;
        let category = if run.category == "utility" {
            Category::Utility
        } else {
            Category::Marketing
        };
        match (&run.template_name, &run.template_language, &run.brief) {
            (Some(name), Some(language), _) => {
                let content = json!({"template": {"name": name, "language": language,
                                                  "params": run.template_params}});
                for contact in &contacts {
                    send_one(&mut tx, run, contact, category, &content).await?;
                }
            }
            (_, _, Some(brief)) => {
                self.send_personalized(&mut tx, run, &contacts, category, brief)
                    .await?;
            }
            _ => {
                tracing::error!(campaign = %run.campaign_id, "campaign without content; skipped");
                return Ok(());
            }
        }
        complete_if_done(&mut tx, run).await?;
        tx.commit().await?;
        if !contacts.is_empty() {
            self.state.dispatcher.wake();
        }
        Ok(())
    }

    /// A personalized batch. The policy is asked first on a connection of its own, rolled
    /// back at once: a contact it refuses costs no model call, and no policy lock is held while
    /// the model is asked. Each admitted contact's message is then generated by the
    /// pulse-content logic and queued through the policy again, in the batch's transaction
    /// (the policy may have changed meanwhile: an opt-out still wins).
    async fn send_personalized(
        &self,
        tx: &mut PgConnection,
        run: &Batch,
        contacts: &[String],
        category: Category,
        brief: &str,
    ) -> Result<(), sqlx::Error> {
        let mut admitted = Vec::with_capacity(contacts.len());
        let mut check = self.state.pool.begin().await?;
        for contact in contacts {
            match gate::admit(&mut check, &policy_send(run, contact, category)).await? {
                Ok(_) => admitted.push(contact.clone()),
                Err(refusal) => {
                    mark(
                        tx,
                        run.run_id,
                        contact,
                        "skipped",
                        Some(refusal.reason()),
                        None,
                    )
                    .await?
                }
            }
        }
        check.rollback().await?;
        if admitted.is_empty() {
            return Ok(());
        }
        let results = pulse::for_campaign(
            &self.state,
            run.tenant_id,
            &admitted,
            brief,
            run.content_language.as_deref(),
        )
        .await?;
        for result in &results {
            match personal_content(result) {
                Ok(content) => send_one(tx, run, &result.contact, category, &content).await?,
                Err(reason) => {
                    mark(
                        tx,
                        run.run_id,
                        &result.contact,
                        "skipped",
                        Some(reason),
                        None,
                    )
                    .await?
                }
            }
        }
        Ok(())
    }
}

/// The message the pulse-content logic chose for a contact, as an outbound message's content;
/// or why there is none (`no_approved_template`, `not_sendable`).
fn personal_content(result: &PulseResult) -> Result<Value, &'static str> {
    let Some(send) = &result.send else {
        return Err(result.reason.unwrap_or("no_approved_template"));
    };
    match (result.kind, &send.template, &send.message) {
        (Kind::Template, Some(template), _) => Ok(json!({"template": template})),
        (Kind::Text, _, Some(text)) => Ok(json!({"text": text})),
        _ => Err("no_approved_template"),
    }
}

fn policy_send<'a>(run: &Batch, contact: &'a str, category: Category) -> gate::Send<'a> {
    gate::Send {
        tenant: run.tenant_id,
        contact,
        category,
        opt_out_confirmation: false,
    }
}

/// The run row and its recipients, and the campaign's next run (weekly) or none (once).
async fn start_run(tx: &mut PgConnection, due: &DueCampaign) -> Result<(), sqlx::Error> {
    let run: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO campaign_runs (campaign_id, tenant_id, scheduled_for, state, planned)
         VALUES ($1, $2, $3, 'sending', 0) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(due.id)
    .bind(due.tenant_id)
    .bind(due.next_run_at)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run) = run {
        super::plan(tx, run, due.tenant_id, &due.audience).await?;
    }
    let next: Option<chrono::DateTime<chrono::Utc>> = match (
        due.schedule_kind.as_deref(),
        due.weekly_day,
        due.weekly_time,
    ) {
        (Some("weekly"), Some(day), Some(time)) => {
            sqlx::query_scalar("SELECT flomastr_next_weekly($1, $2, $3, now())")
                .bind(&due.time_zone)
                .bind(i32::from(day))
                .bind(time)
                .fetch_one(&mut *tx)
                .await?
        }
        _ => None,
    };
    sqlx::query("UPDATE campaigns SET state = 'running', next_run_at = $2, updated_at = now() WHERE id = $1")
        .bind(due.id)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// One recipient: refused by the policy → skipped with the reason; else its message is queued
/// (the idempotency key names the run and contact, a second guard against a double send).
async fn send_one(
    tx: &mut PgConnection,
    run: &Batch,
    contact: &str,
    category: Category,
    content: &Value,
) -> Result<(), sqlx::Error> {
    let admitted = match gate::admit(tx, &policy_send(run, contact, category)).await? {
        Ok(admitted) => admitted,
        Err(refusal) => {
            return mark(
                tx,
                run.run_id,
                contact,
                "skipped",
                Some(refusal.reason()),
                None,
            )
            .await;
        }
    };
    let key = format!("campaign:{}:{contact}", run.run_id);
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO outbound_messages (tenant_id, idempotency_key, request_sha256, recipient, content, category,
                                        next_attempt_at, expires_at)
         VALUES ($1, $2, sha256(convert_to($2, 'UTF8')), $3, $4, $5, COALESCE(LEAST($6, $7), now()), $7)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(run.tenant_id)
    .bind(&key)
    .bind(contact)
    .bind(content)
    .bind(category.as_str())
    .bind(admitted.hold_until)
    .bind(admitted.expires_at)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = id {
        sqlx::query(
            "INSERT INTO outbound_events (message_id, status, detail) VALUES ($1, 'queued', $2)",
        )
        .bind(id)
        .bind(json!({"category": category.as_str(), "campaign_run": run.run_id}))
        .execute(&mut *tx)
        .await?;
    }
    let id =
        match id {
            Some(id) => id,
            None => sqlx::query_scalar(
                "SELECT id FROM outbound_messages WHERE tenant_id = $1 AND idempotency_key = $2",
            )
            .bind(run.tenant_id)
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?,
        };
    mark(tx, run.run_id, contact, "queued", None, Some(id)).await
}

async fn mark(
    tx: &mut PgConnection,
    run: Uuid,
    contact: &str,
    state: &str,
    reason: Option<&str>,
    message: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE campaign_recipients SET state = $3, reason = $4, message_id = $5, updated_at = now()
         WHERE run_id = $1 AND contact = $2",
    )
    .bind(run)
    .bind(contact)
    .bind(state)
    .bind(reason)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// No recipient left pending: the run is completed, and the campaign too unless it recurs.
async fn complete_if_done(tx: &mut PgConnection, run: &Batch) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE campaign_runs SET state = 'completed', finished_at = now()
         WHERE id = $1 AND state = 'sending'
           AND NOT EXISTS (SELECT 1 FROM campaign_recipients WHERE run_id = $1 AND state = 'pending')",
    )
    .bind(run.run_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        sqlx::query(
            "UPDATE campaigns SET state = CASE WHEN next_run_at IS NULL THEN 'completed' ELSE 'scheduled' END,
                    updated_at = now()
             WHERE id = $1 AND state = 'running'",
        )
        .bind(run.campaign_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Pauses the campaign when its template (if it has one) is in the catalog and not APPROVED;
/// whether it did. Personalized campaigns choose among approved templates for each contact.
async fn paused_for_template(
    tx: &mut PgConnection,
    tenant: Uuid,
    campaign: Uuid,
    template: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let Some((name, language)) = template else {
        return Ok(false);
    };
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM message_templates
         WHERE tenant_id = $1 AND name = $2 AND replace(language, '-', '_') = replace($3, '-', '_')
           AND status <> 'APPROVED'",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(status) = status else {
        return Ok(false);
    };
    pause::campaign(tx, campaign, &format!("template {name} is {status}")).await?;
    Ok(true)
}
