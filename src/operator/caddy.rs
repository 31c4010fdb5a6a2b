//! Caddy admin API: one route per tenant host, addressed by `@id`. Idempotent (GET by id, then
//! PATCH or insert at the front), re-asserted on every resync (a restarted Caddy forgets routes),
//! removed on delete or suspend (404 counts as gone).

use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CaddyError {
    #[error("Caddy's admin API is unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("Caddy answered {status} to {action}: {body}")]
    Refused {
        action: &'static str,
        status: u16,
        body: String,
    },
}

pub struct CaddyClient {
    http: reqwest::Client,
    admin: String,
    server: String,
}

/// A route: exact host match, reverse proxy, `X-Tenant-Slug` set (replacing what a client sent).
pub fn route(id: &str, host: &str, upstream: &str, slug: &str) -> Value {
    json!({
        "@id": id,
        "match": [{"host": [host]}],
        "handle": [{
            "handler": "reverse_proxy",
            "headers": {"request": {"set": {"X-Tenant-Slug": [slug]}}},
            "upstreams": [{"dial": upstream}]
        }],
        "terminal": true
    })
}

impl CaddyClient {
    pub fn new(admin: &str, server: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            admin: admin.trim_end_matches('/').to_owned(),
            server: server.to_owned(),
        }
    }

    /// Makes the route with this `@id` exactly `route`.
    pub async fn upsert(&self, id: &str, route: &Value) -> Result<(), CaddyError> {
        for _ in 0..5 {
            let current = self
                .http
                .get(format!("{}/id/{id}", self.admin))
                .send()
                .await
                .map_err(CaddyError::Unreachable)?;
            match current.status().as_u16() {
                200 => {
                    let existing: Value = current.json().await.unwrap_or(Value::Null);
                    if &existing == route {
                        return Ok(());
                    }
                    let patched = self
                        .http
                        .patch(format!("{}/id/{id}", self.admin))
                        .json(route)
                        .send()
                        .await
                        .map_err(CaddyError::Unreachable)?;
                    return ok_or(patched, "PATCH route").await;
                }
                // Older Caddy answers 500 for an unknown @id.
                404 | 500 => {
                    if self.insert(route).await? {
                        return Ok(());
                    }
                }
                status => {
                    return Err(CaddyError::Refused {
                        action: "GET route",
                        status,
                        body: current.text().await.unwrap_or_default(),
                    });
                }
            }
        }
        Err(CaddyError::Refused {
            action: "insert route",
            status: 412,
            body: "the routes kept changing".into(),
        })
    }

    /// Inserts at the front of the server's routes (before catch-alls). False: lost a race, retry.
    async fn insert(&self, route: &Value) -> Result<bool, CaddyError> {
        let routes_url = format!(
            "{}/config/apps/http/servers/{}/routes",
            self.admin, self.server
        );
        let current = self
            .http
            .get(&routes_url)
            .send()
            .await
            .map_err(CaddyError::Unreachable)?;
        let etag = current.headers().get("etag").cloned();
        let existing: Value = current.json().await.unwrap_or(Value::Null);
        let request = match existing {
            // In front of existing routes, so catch-alls do not shadow it.
            Value::Array(ref routes) if !routes.is_empty() => {
                self.http.put(format!("{routes_url}/0")).json(route)
            }
            // An empty list: append.
            Value::Array(_) => self.http.post(&routes_url).json(route),
            // No list yet: create it.
            _ => self.http.put(&routes_url).json(&json!([route])),
        };
        let request = match etag {
            Some(etag) => request.header("If-Match", etag),
            None => request,
        };
        let response = request.send().await.map_err(CaddyError::Unreachable)?;
        if response.status().as_u16() == 412 {
            return Ok(false);
        }
        ok_or(response, "insert route").await.map(|()| true)
    }

    pub async fn remove(&self, id: &str) -> Result<(), CaddyError> {
        let response = self
            .http
            .delete(format!("{}/id/{id}", self.admin))
            .send()
            .await
            .map_err(CaddyError::Unreachable)?;
        let status = response.status().as_u16();
        if status == 200 || status == 404 {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        // Older Caddy answers 500 for an unknown @id; gone is gone.
        if status == 500 && body.contains("unknown object ID") {
            return Ok(());
        }
        Err(CaddyError::Refused {
            action: "DELETE route",
            status,
            body,
        })
    }
}

async fn ok_or(response: reqwest::Response, action: &'static str) -> Result<(), CaddyError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(CaddyError::Refused {
            action,
            status,
            body: response.text().await.unwrap_or_default(),
        })
    }
}
