//! `flomastr load` against a real engine (in this process, on real PostgreSQL): each provider's
//! webhooks accepted and every job worked, refused credentials stop the run at once with the
//! code counted, and another job of the tenant is handed back untouched.

use crate::engine_harness::{TestEngine, TestTenant, start_engine};
use std::process::Output;

/// Runs `flomastr load` for `tenant` with `secret` as its webhook credential (4 producers and
/// 6 workers unless `extra` says otherwise).
async fn load(engine: &TestEngine, tenant: &TestTenant, secret: &str, extra: &[&str]) -> Output {
    let default = |name: &'static str, value: &'static str| {
        let given = extra.contains(&name);
        (!given).then_some([name, value]).into_iter().flatten()
    };
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flomastr"))
        .arg("load")
        .args(["--engine-url", &engine.url, "--tenant", &tenant.slug])
        .args(["--sender", &tenant.sender, "--duration", "60"])
        .args(["--drain-timeout", "30"])
        .args(default("--producers", "4"))
        .args(default("--workers", "6"))
        .args(extra)
        .env("FLOMASTR_LOAD_WEBHOOK_SECRET", secret)
        .env("FLOMASTR_LOAD_WORKER_TOKEN", &tenant.worker_token)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .expect("flomastr load")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn completed_jobs(engine: &TestEngine) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn load_test_posts_infobip_webhooks_and_works_every_job() {
    let engine = start_engine().await;
    let tenant = engine.tenant("load-ib", "infobip").await;
    let output = load(
        &engine,
        &tenant,
        &tenant.webhook_secret,
        &["--messages", "300", "--batch", "3", "--contacts", "40"],
    )
    .await;
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("| webhooks acknowledged (messages) | 300 ("),
        "{report}"
    );
    assert!(report.contains("| jobs completed | 300 ("), "{report}");
    assert!(
        report.contains("| worker calls per job | 1 (complete-and-next) |"),
        "{report}"
    );
    assert!(report.contains("| errors by code | none |"), "{report}");
    assert!(
        report.contains("| not completed within the drain timeout | 0 |"),
        "{report}"
    );
    assert_eq!(completed_jobs(&engine).await, 300);
}

#[tokio::test]
async fn load_test_signs_meta_and_twilio_webhooks_as_the_providers_do() {
    let engine = start_engine().await;
    let meta = engine.tenant("load-meta", "meta").await;
    let output = load(
        &engine,
        &meta,
        &meta.app_secret,
        &[
            "--provider",
            "meta",
            "--messages",
            "40",
            "--batch",
            "4",
            "--two-calls",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("| worker calls per job | 2 (next-job, complete) |"));

    let twilio = engine.tenant("load-twilio", "twilio").await;
    let output = load(
        &engine,
        &twilio,
        &twilio.auth_token,
        &[
            "--provider",
            "twilio",
            "--messages",
            "40",
            "--twilio-account-sid",
            &twilio.account_sid,
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(completed_jobs(&engine).await, 80);
}

#[tokio::test]
async fn refused_webhook_credentials_stop_the_run_with_the_code_counted() {
    let engine = start_engine().await;
    let tenant = engine.tenant("load-badkey", "infobip").await;
    let output = load(
        &engine,
        &tenant,
        "not-the-secret",
        &["--messages", "100000", "--producers", "1"],
    )
    .await;
    let report = text(&output);
    assert!(!output.status.success(), "{report}");
    assert!(
        report.contains("| errors by code | webhook 403: 1 |"),
        "{report}"
    );
    assert!(
        report.contains("| webhooks acknowledged (messages) | 0 ("),
        "{report}"
    );
    assert!(
        !report.contains("not-the-secret"),
        "the secret must not be echoed: {report}"
    );
    assert_eq!(engine.count_jobs().await, 0);
}

#[tokio::test]
async fn a_job_the_run_did_not_queue_is_handed_back_and_the_run_stops() {
    let engine = start_engine().await;
    let tenant = engine.tenant("load-busy", "infobip").await;
    let seeded = engine
        .seed(
            &tenant,
            "447700900123",
            "a real customer",
            "2026-12-02T10:00:00Z",
        )
        .await;
    assert!(seeded.status().is_success());
    let output = load(
        &engine,
        &tenant,
        &tenant.webhook_secret,
        &[
            "--messages",
            "50",
            "--producers",
            "1",
            "--workers",
            "1",
            "--rate",
            "20",
        ],
    )
    .await;
    let report = text(&output);
    assert!(!output.status.success(), "{report}");
    assert!(report.contains("foreign job handed back: 1"), "{report}");
    assert!(report.contains("kept for them"), "{report}");
    // The customer's job is queued again, runnable now, with its message intact. Load-test jobs
    // the run queued before it stopped may come first (the engine claims ahead under a backlog).
    let mut taken = Vec::new();
    while taken.len() <= 50 {
        let job = engine
            .next_job(&tenant, 5.0)
            .await
            .expect("the handed-back job is runnable");
        let message = job["payload"]["message"].clone();
        if message == "a real customer" {
            return;
        }
        assert!(
            message
                .as_str()
                .is_some_and(|m| m.contains("(flomastr load test)")),
            "{job}"
        );
        taken.push(job);
    }
    panic!(
        "the handed-back job did not come back among {} jobs",
        taken.len()
    );
}
