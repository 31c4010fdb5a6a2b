//! The admin API: idempotent registration, no secret ever returned or stored in the clear,
//! and bad input refused with nothing written.

use crate::engine_harness::{ADMIN_TOKEN, sha256_hex, start_engine};
use serde_json::{Value, json};

fn body(token: &str) -> Value {
    json!({
        "display_name": "ACME Bakery",
        "worker_token_sha256": [sha256_hex(token)],
        "webhook_secret": "seed-webhook-secret-value",
        "channel": {"provider": "meta", "sender": "106540352242922",
                    "credentials": {"app_secret": "meta-app-secret-value", "access_token": "meta-access-token-value",
                                    "verify_token": "meta-verify-token-value"}}
    })
}

#[tokio::test]
async fn put_is_idempotent_and_get_shows_no_secrets() {
    let engine = start_engine().await;
    let first = engine.admin_put("acme", &body("tok-1")).await;
    assert_eq!(first.status(), 201);
    let again = engine.admin_put("acme", &body("tok-1")).await;
    assert_eq!(again.status(), 200);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM worker_tokens")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!((tenants, tokens), (1, 1));

    let got = engine
        .http
        .get(engine.at("/admin/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let text = got.text().await.unwrap();
    for secret in [
        "meta-app-secret-value",
        "meta-access-token-value",
        "meta-verify-token-value",
        "seed-webhook-secret-value",
    ] {
        assert!(!text.contains(secret), "GET leaked {secret}: {text}");
    }
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        view["channel"]["credentials_set"],
        json!(["access_token", "app_secret", "verify_token"])
    );
    assert_eq!(view["webhook_secret_set"], true);
    assert_eq!(view["worker_tokens"], 1);
}

#[tokio::test]
async fn no_plaintext_secret_anywhere_in_the_database() {
    let engine = start_engine().await;
    assert!(
        engine
            .admin_put("acme", &body("tok-1"))
            .await
            .status()
            .is_success()
    );
    // Every text and bytea value of every table, as the dump would show it.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&engine.db.pool)
            .await
            .unwrap();
        for row in rows {
            for secret in [
                "meta-app-secret-value",
                "meta-access-token-value",
                "seed-webhook-secret-value",
                "tok-1",
            ] {
                assert!(!row.contains(secret), "{table} holds {secret} in the clear");
                assert!(
                    !row.contains(&hex::encode(secret)),
                    "{table} holds {secret} hex-encoded"
                );
            }
        }
    }
}

#[tokio::test]
async fn admin_calls_need_the_admin_token() {
    let engine = start_engine().await;
    let url = engine.at("/admin/tenants/acme");
    let none = engine.http.put(&url).json(&body("t")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = engine
        .http
        .put(&url)
        .bearer_auth("not-the-admin-token")
        .json(&body("t"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let error: Value = wrong.json().await.unwrap();
    assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string());
    assert_eq!(engine.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(engine.http.delete(&url).send().await.unwrap().status(), 401);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(tenants, 0);
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_write_nothing() {
    let engine = start_engine().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("acme", json!({"display_name": ""}), "display_name"),
        (
            "acme",
            json!({"display_name": "x", "max_attempts": 0}),
            "max_attempts",
        ),
        (
            "acme",
            json!({"display_name": "x", "worker_token_sha256": ["abc"]}),
            "worker_token_sha256[0]",
        ),
        (
            "acme",
            json!({"display_name": "x", "unexpected": 1}),
            "unexpected",
        ),
        (
            "acme",
            json!({"display_name": "x", "channel": {"provider": "telegram", "sender": "1"}}),
            "channel.provider",
        ),
        (
            "acme",
            json!({"display_name": "x", "channel": {"provider": "meta", "sender": "1", "credentials": {"app_secrett": "x"}}}),
            "channel.credentials",
        ),
        (
            "acme",
            json!({"display_name": "x", "channel": {"provider": "meta", "sender": "1", "base_url": "ftp://x"}}),
            "channel.base_url",
        ),
        ("Not_A_Slug", json!({"display_name": "x"}), "slug"),
        ("acme", json!({"display_name": 5}), "display_name"),
    ];
    for (slug, body, field) in cases {
        let response = engine.admin_put(slug, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{body}: {message} should name {field}"
        );
    }
    let not_json = engine
        .http
        .put(engine.at("/admin/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let huge = json!({"display_name": "x".repeat(100 * 1024)});
    assert_eq!(engine.admin_put("acme", &huge).await.status(), 413);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(tenants, 0, "nothing is written on a 4xx");
}

#[tokio::test]
async fn a_worker_token_cannot_belong_to_two_tenants() {
    let engine = start_engine().await;
    assert!(
        engine
            .admin_put("acme", &body("shared"))
            .await
            .status()
            .is_success()
    );
    let taken = engine.admin_put("other", &body("shared")).await;
    assert_eq!(taken.status(), 409);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
    assert_eq!(tenants, 1, "the refused tenant was rolled back");
}

#[tokio::test]
async fn delete_removes_the_tenant_and_its_data() {
    let engine = start_engine().await;
    let tenant = engine.tenant("acme", "infobip").await;
    assert_eq!(
        engine
            .seed(&tenant, "447700900001", "hi", "2026-11-25T10:00:00Z")
            .await
            .status(),
        200
    );
    let url = engine.at("/admin/tenants/acme");
    assert_eq!(
        engine
            .http
            .delete(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        engine
            .http
            .delete(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        engine
            .http
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(engine.count_jobs().await, 0);
    let after = engine
        .http
        .get(engine.at("/queue/next-job"))
        .bearer_auth(&tenant.worker_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        401,
        "a deleted tenant's worker token no longer works"
    );
}
