//! DigitalOcean DNS API v2: list by name and type, create, update, delete duplicates.
//! Records are always re-listed (ids in status are hints); rate-limit headers are respected.

use super::{DnsError, record_type_name};
use crate::operator::plan::DnsPlan;
use crate::tenant::{DnsRecordStatus, DnsRecordType};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

const TYPES: [&str; 3] = ["A", "AAAA", "CNAME"];

pub struct DoClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Deserialize, Debug, Clone)]
struct Record {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    data: String,
    ttl: Option<i64>,
}

#[derive(Deserialize)]
struct Page {
    domain_records: Vec<Record>,
    #[serde(default)]
    links: serde_json::Value,
}

impl DoClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub async fn ensure(
        &self,
        zone: &str,
        plan: &DnsPlan,
    ) -> Result<Vec<DnsRecordStatus>, DnsError> {
        let kind = record_type_name(plan);
        // CNAME data is a fully qualified name with a trailing dot.
        let data = if plan.record_type == DnsRecordType::CNAME {
            format!("{}.", plan.target.trim_end_matches('.'))
        } else {
            plan.target.clone()
        };
        let mut owned = Vec::new();
        for fqdn in &plan.names {
            // A name changing type (A -> CNAME) must not keep the old record.
            for other in TYPES.iter().filter(|t| **t != kind) {
                for stale in self.list(zone, other, fqdn).await? {
                    self.delete(zone, stale.id).await?;
                }
            }
            let existing = self.list(zone, kind, fqdn).await?;
            let id = self
                .converge(zone, kind, fqdn, &data, plan.ttl, existing)
                .await?;
            owned.push(DnsRecordStatus {
                name: fqdn.clone(),
                record_type: plan.record_type,
                target: plan.target.clone(),
                provider: "digitalocean".to_owned(),
                id: Some(id.to_string()),
            });
        }
        Ok(owned)
    }

    /// One record with the right data and TTL: create, update, or keep; extras deleted.
    async fn converge(
        &self,
        zone: &str,
        kind: &str,
        fqdn: &str,
        data: &str,
        ttl: i32,
        mut existing: Vec<Record>,
    ) -> Result<i64, DnsError> {
        existing.sort_by_key(|r| (r.data != data, r.id));
        let mut records = existing.into_iter();
        let id = match records.next() {
            None => {
                self.create(zone, kind, &relative(fqdn, zone), data, ttl)
                    .await?
            }
            Some(record) if record.data == data && record.ttl == Some(i64::from(ttl)) => record.id,
            Some(record) => {
                self.update(zone, record.id, kind, &relative(fqdn, zone), data, ttl)
                    .await?;
                record.id
            }
        };
        for duplicate in records {
            self.delete(zone, duplicate.id).await?;
        }
        Ok(id)
    }

    pub async fn remove(&self, zone: &str, names: &[String]) -> Result<(), DnsError> {
        for fqdn in names {
            for kind in TYPES {
                for record in self.list(zone, kind, fqdn).await? {
                    self.delete(zone, record.id).await?;
                }
            }
        }
        Ok(())
    }

    async fn list(&self, zone: &str, kind: &str, fqdn: &str) -> Result<Vec<Record>, DnsError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let response = self
                .http
                .get(format!("{}/v2/domains/{zone}/records", self.base))
                .query(&[
                    ("type", kind),
                    ("name", fqdn),
                    ("per_page", "200"),
                    ("page", &page.to_string()),
                ])
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(DnsError::Unreachable)?;
            let response = checked(response, "list records").await?;
            let body: Page = response.json().await.map_err(DnsError::Unreachable)?;
            out.extend(body.domain_records.into_iter().filter(|r| r.kind == kind));
            if body.links["pages"]["next"].is_null() {
                return Ok(out);
            }
            page += 1;
        }
    }

    async fn create(
        &self,
        zone: &str,
        kind: &str,
        name: &str,
        data: &str,
        ttl: i32,
    ) -> Result<i64, DnsError> {
        let response = self
            .http
            .post(format!("{}/v2/domains/{zone}/records", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"type": kind, "name": name, "data": data, "ttl": ttl}))
            .send()
            .await
            .map_err(DnsError::Unreachable)?;
        let body: serde_json::Value = checked(response, "create record")
            .await?
            .json()
            .await
            .map_err(DnsError::Unreachable)?;
        body["domain_record"]["id"]
            .as_i64()
            .ok_or(DnsError::Refused {
                action: "create record",
                status: 200,
            })
    }

    async fn update(
        &self,
        zone: &str,
        id: i64,
        kind: &str,
        name: &str,
        data: &str,
        ttl: i32,
    ) -> Result<(), DnsError> {
        let response = self
            .http
            .put(format!("{}/v2/domains/{zone}/records/{id}", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"type": kind, "name": name, "data": data, "ttl": ttl}))
            .send()
            .await
            .map_err(DnsError::Unreachable)?;
        checked(response, "update record").await.map(|_| ())
    }

    async fn delete(&self, zone: &str, id: i64) -> Result<(), DnsError> {
        let response = self
            .http
            .delete(format!("{}/v2/domains/{zone}/records/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(DnsError::Unreachable)?;
        if response.status() == 404 {
            return Ok(());
        }
        checked(response, "delete record").await.map(|_| ())
    }
}

/// `acme.n8n.example.com` in zone `example.com` is `acme.n8n`; the apex is `@`.
fn relative(fqdn: &str, zone: &str) -> String {
    let fqdn = fqdn.trim_end_matches('.');
    match fqdn
        .strip_suffix(zone)
        .and_then(|rest| rest.strip_suffix('.'))
    {
        Some(rest) => rest.to_owned(),
        None if fqdn == zone => "@".to_owned(),
        None => fqdn.to_owned(),
    }
}

async fn checked(
    response: reqwest::Response,
    action: &'static str,
) -> Result<reqwest::Response, DnsError> {
    let status = response.status().as_u16();
    if status == 429
        || response
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0")
            && status >= 400
    {
        let reset = response
            .headers()
            .get("ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return Err(DnsError::RateLimited {
            retry_after_seconds: reset.saturating_sub(now).clamp(1, 3600),
        });
    }
    if (200..300).contains(&status) {
        Ok(response)
    } else {
        Err(DnsError::Refused { action, status })
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn names_are_relative_to_the_zone() {
        assert_eq!(relative("acme.n8n.example.com", "example.com"), "acme.n8n");
        assert_eq!(relative("example.com", "example.com"), "@");
        assert_eq!(relative("acme.example.com.", "example.com"), "acme");
        assert_eq!(relative("acme.other.org", "example.com"), "acme.other.org");
    }
}
