//! The worker side: long-poll next-job, complete this run's jobs, hand back any other.

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
                let stop_all = || {
                    producing.cancel();
                    working.cancel();
                };
                while !working.is_cancelled() {
                    if let Err(Stop) = work_one(&client, &plan, &tally).await {
                        stop_all();
                    }
                }
            })
        })
        .collect()
}

/// The run cannot go on (a foreign job, a refused worker token).
struct Stop;

async fn work_one(client: &reqwest::Client, plan: &Plan, tally: &Tally) -> Result<(), Stop> {
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
            return Ok(());
        }
    };
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NO_CONTENT => return Ok(()),
        status => {
            tally.error(format!("next-job {}", status.as_u16()));
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                return Err(Stop);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
    }
    let job: Value = match response.json().await {
        Ok(job) => job,
        Err(_) => {
            tally.error("next-job unreadable body".into());
            return Ok(());
        }
    };
    let id = job["job_id"].as_str().unwrap_or_default();
    let lease = &job["lease_token"];
    let message_id = job["payload"]["message_id"].as_str().unwrap_or_default();
    let Some(seq) = webhook::sequence_of(plan, message_id) else {
        hand_back(client, plan, tally, id, lease).await;
        return Err(Stop);
    };
    tally.picked_up(seq);
    let completed = client
        .post(endpoint(plan, &format!("/queue/jobs/{id}/complete")))
        .bearer_auth(&plan.worker_token)
        .json(&json!({"lease_token": lease}))
        .send()
        .await;
    match completed {
        Ok(r) if r.status() == StatusCode::OK => tally.complete(),
        Ok(r) => tally.error(format!("complete {}", r.status().as_u16())),
        Err(error) => tally.error(format!("complete {}", transport_error(&error))),
    }
    Ok(())
}

/// A job this run did not queue belongs to the tenant's real traffic: it goes back to the queue
/// at once (runnable now), and the run stops.
async fn hand_back(client: &reqwest::Client, plan: &Plan, tally: &Tally, id: &str, lease: &Value) {
    tally.found_foreign_job();
    tally.error("foreign job handed back".into());
    let body = json!({"lease_token": lease, "retry_after_seconds": 0,
                      "error": "handed back by flomastr load: not a load-test job"});
    let returned = client
        .post(endpoint(plan, &format!("/queue/jobs/{id}/fail")))
        .bearer_auth(&plan.worker_token)
        .json(&body)
        .send()
        .await;
    if !returned.is_ok_and(|r| r.status().is_success()) {
        tally.error("foreign job not handed back (its lease expires instead)".into());
    }
}
