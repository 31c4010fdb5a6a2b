//! The worker side: long-poll next-job, complete this run's jobs (by default with
//! complete-and-next, one round trip per job), hand back any other.

use super::args::Plan;
use super::producer::{endpoint, transport_error};
use super::tally::Tally;
use super::webhook;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Seconds a poll waits for a job: short, so the run ends soon after it is told to.
const POLL_WAIT: &str = "1";

pub fn spawn_all(
    client: &reqwest::Client,
    plan: &Arc<Plan>,
    tally: &Arc<Tally>,
    working: &CancellationToken,
    producing: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..plan.workers)
        .map(|_| {
            let (client, plan, tally, working, producing) = (
                client.clone(),
                plan.clone(),
                tally.clone(),
                working.clone(),
                producing.clone(),
            );
            tokio::spawn(async move {
                let mut held: Option<Value> = None;
                while !working.is_cancelled() {
                    match work_one(&client, &plan, &tally, held.take()).await {
                        Ok(next) => held = next,
                        Err(Stop) => {
                            producing.cancel();
                            working.cancel();
                        }
                    }
                }
                // A job taken by the last complete-and-next goes straight back to the queue.
                if let Some(job) = held {
                    hand_back(&client, &plan, &job).await;
                }
            })
        })
        .collect()
}

/// The run cannot go on (a foreign job, a refused worker token).
struct Stop;

/// Works one job: `held` (the one the last complete-and-next gave) or one from next-job.
/// Returns the next job when complete-and-next gave one.
async fn work_one(
    client: &reqwest::Client,
    plan: &Plan,
    tally: &Tally,
    held: Option<Value>,
) -> Result<Option<Value>, Stop> {
    let job = match held {
        Some(job) => job,
        None => match poll(client, plan, tally).await? {
            Some(job) => job,
            None => return Ok(None),
        },
    };
    let message_id = job["payload"]["message_id"].as_str().unwrap_or_default();
    let Some(seq) = webhook::sequence_of(plan, message_id) else {
        tally.found_foreign_job();
        tally.error("foreign job handed back".into());
        if !hand_back(client, plan, &job).await {
            tally.error("foreign job not handed back (its lease expires instead)".into());
        }
        return Err(Stop);
    };
    tally.picked_up(seq);
    let id = job["job_id"].as_str().unwrap_or_default();
    let lease = json!({"lease_token": job["lease_token"]});
    let path = if plan.two_calls {
        format!("/queue/jobs/{id}/complete")
    } else {
        format!("/queue/jobs/{id}/complete-and-next?wait={POLL_WAIT}")
    };
    let completed = client
        .post(endpoint(plan, &path))
        .bearer_auth(&plan.worker_token)
        .json(&lease)
        .send()
        .await;
    let response = match completed {
        Ok(response) => response,
        Err(error) => {
            tally.error(format!("complete {}", transport_error(&error)));
            return Ok(None);
        }
    };
    match response.status() {
        StatusCode::OK if plan.two_calls => tally.complete(),
        StatusCode::OK => {
            tally.complete();
            return Ok(response.json().await.ok());
        }
        StatusCode::NO_CONTENT if !plan.two_calls => tally.complete(),
        status => tally.error(format!("complete {}", status.as_u16())),
    }
    Ok(None)
}

/// One long poll of next-job: the job, or none within the wait.
async fn poll(client: &reqwest::Client, plan: &Plan, tally: &Tally) -> Result<Option<Value>, Stop> {
    let poll = client
        .get(endpoint(plan, &format!("/queue/next-job?wait={POLL_WAIT}")))
        .bearer_auth(&plan.worker_token)
        .send()
        .await;
    let response = match poll {
        Ok(response) => response,
        Err(error) => {
            tally.error(format!("next-job {}", transport_error(&error)));
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(None);
        }
    };
    match response.status() {
        StatusCode::OK => match response.json().await {
            Ok(job) => Ok(Some(job)),
            Err(_) => {
                tally.error("next-job unreadable body".into());
                Ok(None)
            }
        },
        StatusCode::NO_CONTENT => Ok(None),
        status => {
            tally.error(format!("next-job {}", status.as_u16()));
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                return Err(Stop);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(None)
        }
    }
}

/// Puts a job back in the queue, runnable now: a job this run did not queue belongs to the
/// tenant's real traffic, and a job taken as the run stops is not worked. `true` when accepted.
async fn hand_back(client: &reqwest::Client, plan: &Plan, job: &Value) -> bool {
    let id = job["job_id"].as_str().unwrap_or_default();
    let body = json!({"lease_token": job["lease_token"], "retry_after_seconds": 0,
                      "error": "handed back by flomastr load"});
    client
        .post(endpoint(plan, &format!("/queue/jobs/{id}/fail")))
        .bearer_auth(&plan.worker_token)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
