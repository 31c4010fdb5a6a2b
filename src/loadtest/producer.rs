//! The webhook side: producers post the run's messages as the provider would, until every
//! message is sent, the duration is up, or the run is stopped.

use super::args::Plan;
use super::tally::Tally;
use super::webhook;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn spawn_all(
    client: &reqwest::Client,
    plan: &Arc<Plan>,
    tally: &Arc<Tally>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..plan.producers)
        .map(|_| {
            let (client, plan, tally, stop) =
                (client.clone(), plan.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move { produce(&client, &plan, &tally, &stop).await })
        })
        .collect()
}

/// Waits for every producer; safe to cancel and call again (a handle is dropped only once its
/// task has finished).
pub async fn join(producers: &mut Vec<JoinHandle<()>>) {
    while let Some(last) = producers.last_mut() {
        let _ = last.await;
        producers.pop();
    }
}

async fn produce(client: &reqwest::Client, plan: &Plan, tally: &Tally, stop: &CancellationToken) {
    let mut pace = plan.producer_interval.map(|period| {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    while !stop.is_cancelled() {
        if let Some(pace) = pace.as_mut() {
            tokio::select! {
                _ = pace.tick() => {}
                _ = stop.cancelled() => return,
            }
        }
        let messages = tally.take_messages(plan.batch);
        if messages.is_empty() {
            return;
        }
        let hook = webhook::build(plan, messages.clone());
        let mut request = client
            .post(endpoint(plan, &hook.path))
            .header(reqwest::header::CONTENT_TYPE, hook.content_type)
            .body(hook.body);
        for (name, value) in &hook.headers {
            request = request.header(name, value);
        }
        let started = Instant::now();
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                tally.acknowledge(messages, started.elapsed());
            }
            Ok(response) => {
                let status = response.status();
                tally.error(format!("webhook {}", status.as_u16()));
                // Refused credentials or a missing tenant refuse every later webhook too.
                if matches!(
                    status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                ) {
                    stop.cancel();
                }
            }
            Err(error) => tally.error(format!("webhook {}", transport_error(&error))),
        }
    }
}

pub fn endpoint(plan: &Plan, path: &str) -> String {
    format!("{}{path}", plan.engine_url.as_str().trim_end_matches('/'))
}

/// A transport failure by kind (the error's text names the URL and varies per request).
pub fn transport_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection refused or unreachable"
    } else {
        "transport error"
    }
}
