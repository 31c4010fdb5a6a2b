//! The operator's external state against real peers: Caddy's admin API (Caddy from Debian's
//! packages), a local server speaking DigitalOcean's DNS API v2, and external-dns DNSEndpoints.

use crate::common::{admin_client, free_port, install_tenant_crd, unique};
use crate::engine_harness::start_engine;
use crate::operator::{
    context, create_tenant, credentials, operator_args, operator_client, reconcile_now,
};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use flomastr::operator::config::DnsProviderKind;
use flomastr::tenant::Tenant;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Caddy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    admin: String,
    http: String,
    config: Value,
}

impl Caddy {
    async fn start() -> Self {
        let (admin_port, http_port) = (free_port(), free_port());
        let config = json!({
            "admin": {"listen": format!("127.0.0.1:{admin_port}")},
            "apps": {"http": {"servers": {"srv0": {
                "listen": [format!("127.0.0.1:{http_port}")],
                "automatic_https": {"disable": true},
                // A catch-all, as a real edge has: tenant routes must go in front of it.
                "routes": [{"handle": [{"handler": "static_response", "status_code": 404, "body": "catch-all"}]}]
            }}}}
        });
        let mut caddy = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            admin: format!("http://127.0.0.1:{admin_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
            config,
        };
        caddy.run().await;
        caddy
    }

    async fn run(&mut self) {
        let file = self.dir.path().join("caddy.json");
        std::fs::write(&file, self.config.to_string()).unwrap();
        let child = Command::new("caddy")
            .args(["run", "--config"])
            .arg(&file)
            .env("XDG_DATA_HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("HOME", self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy is installed (scripts/system-deps installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{}/config/", self.admin))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "caddy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills Caddy and starts it again with only its base config (it forgets API changes).
    async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn get(&self, host: &str) -> String {
        reqwest::Client::new()
            .get(&self.http)
            .header("host", host)
            .header("x-tenant-slug", "spoofed-by-client")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn route_ids(&self) -> Vec<String> {
        let routes: Value = reqwest::get(format!(
            "{}/config/apps/http/servers/srv0/routes",
            self.admin
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        routes
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["@id"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers with the tenant header it received, so a test sees what Caddy forwarded.
async fn echo_server() -> String {
    let app = Router::new().fallback(|headers: HeaderMap| async move {
        format!(
            "upstream saw X-Tenant-Slug={}",
            headers
                .get("x-tenant-slug")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    address
}

#[tokio::test]
async fn caddy_routes_are_idempotent_heal_after_a_restart_and_go_on_suspend_and_delete() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let mut caddy = Caddy::start().await;
    let upstream = echo_server().await;
    let mut args = operator_args(&engine);
    args.caddy_admin_url = Some(caddy.admin.clone());
    args.caddy_frontend_upstream = upstream.clone();
    args.caddy_n8n_upstream = upstream;
    let ctx = context(operator_client(&client).await, args).await;
    let slug = unique("edge");
    credentials(&client, &slug).await;
    let (front, n8n) = (
        format!("{slug}.example.test"),
        format!("{slug}.n8n.example.test"),
    );
    create_tenant(&client, &slug, json!({})).await;

    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(
        caddy.get(&front).await,
        format!("upstream saw X-Tenant-Slug={slug}"),
        "set, not added: the client's value is replaced"
    );
    assert_eq!(
        caddy.get(&n8n).await,
        format!("upstream saw X-Tenant-Slug={slug}")
    );
    assert_eq!(caddy.get("unknown.example.test").await, "catch-all");
    let _ = reconcile_now(&client, &ctx, &slug).await;
    let ids = caddy.route_ids().await;
    assert_eq!(
        ids.iter().filter(|id| id.contains(&slug)).count(),
        2,
        "re-asserting does not duplicate: {ids:?}"
    );

    caddy.restart().await;
    assert_eq!(
        caddy.get(&front).await,
        "catch-all",
        "a restarted Caddy forgot the route"
    );
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(
        caddy.get(&front).await,
        format!("upstream saw X-Tenant-Slug={slug}"),
        "the next resync heals it"
    );

    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspended": true}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(
        caddy.get(&front).await,
        "catch-all",
        "a suspended tenant has no routes"
    );
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspended": false}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(
        caddy.get(&front).await,
        format!("upstream saw X-Tenant-Slug={slug}")
    );

    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert!(
        caddy.route_ids().await.iter().all(|id| !id.contains(&slug)),
        "deleted with the tenant"
    );
    assert!(tenants.get_opt(&slug).await.unwrap().is_none());
}

/// DigitalOcean's DNS API v2, as much as the operator uses: list (by type and fully qualified
/// name, paginated), create, update, delete; Bearer auth.
#[derive(Clone, Default)]
struct FakeDo {
    records: Arc<Mutex<HashMap<i64, Value>>>,
    next: Arc<Mutex<i64>>,
    token: String,
}

async fn do_server(token: &str) -> (String, FakeDo) {
    let state = FakeDo {
        token: token.to_owned(),
        ..FakeDo::default()
    };
    let authorized = |state: &FakeDo, headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", state.token))
    };
    let app = Router::new()
        .route("/v2/domains/{zone}/records", get(move |State(s): State<FakeDo>, Path(zone): Path<String>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
            if !authorized(&s, &headers) { return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"id": "unauthorized", "message": "Unable to authenticate you."}))); }
            let records = s.records.lock().unwrap();
            let fqdn = |r: &Value| { let n = r["name"].as_str().unwrap(); if n == "@" { zone.clone() } else { format!("{n}.{zone}") } };
            let list: Vec<Value> = records.values().filter(|r| q.get("type").is_none_or(|t| r["type"] == *t) && q.get("name").is_none_or(|n| fqdn(r) == *n)).cloned().collect();
            (axum::http::StatusCode::OK, Json(json!({"domain_records": list, "links": {}, "meta": {"total": list.len()}})))
        }).post(|State(s): State<FakeDo>, headers: HeaderMap, Json(body): Json<Value>| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {}", s.token)) { return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({}))); }
            let id = { let mut n = s.next.lock().unwrap(); *n += 1; *n };
            let record = json!({"id": id, "type": body["type"], "name": body["name"], "data": body["data"], "ttl": body["ttl"], "priority": null, "port": null, "weight": null, "flags": null, "tag": null});
            s.records.lock().unwrap().insert(id, record.clone());
            (axum::http::StatusCode::CREATED, Json(json!({"domain_record": record})))
        }))
        .route("/v2/domains/{zone}/records/{id}", axum::routing::put(|State(s): State<FakeDo>, Path((_, id)): Path<(String, i64)>, Json(body): Json<Value>| async move {
            let mut records = s.records.lock().unwrap();
            let Some(record) = records.get_mut(&id) else { return (axum::http::StatusCode::NOT_FOUND, Json(json!({}))) };
            for key in ["type", "name", "data", "ttl"] { record[key] = body[key].clone(); }
            (axum::http::StatusCode::OK, Json(json!({"domain_record": record})))
        }).delete(|State(s): State<FakeDo>, Path((_, id)): Path<(String, i64)>| async move {
            if s.records.lock().unwrap().remove(&id).is_some() { axum::http::StatusCode::NO_CONTENT } else { axum::http::StatusCode::NOT_FOUND }
        }))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, state)
}

#[tokio::test]
async fn digitalocean_records_follow_the_spec_and_go_with_the_tenant() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let (url, fake) = do_server("do-token-secret").await;
    let mut args = operator_args(&engine);
    args.dns_provider = DnsProviderKind::Digitalocean;
    args.digitalocean_url = url;
    args.digitalocean_token = Some("do-token-secret".into());
    let ctx = context(operator_client(&client).await, args).await;
    let slug = unique("dns");
    credentials(&client, &slug).await;
    create_tenant(
        &client,
        &slug,
        json!({"dns": {"enabled": true, "target": "203.0.113.10"}}),
    )
    .await;
    let _ = reconcile_now(&client, &ctx, &slug).await;
    let data = |fake: &FakeDo| {
        let mut v: Vec<(String, String, String)> = fake
            .records
            .lock()
            .unwrap()
            .values()
            .map(|r| {
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["name"].as_str().unwrap().to_owned(),
                    r["data"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        data(&fake),
        [
            ("A".to_owned(), slug.clone(), "203.0.113.10".to_owned()),
            (
                "A".to_owned(),
                format!("{slug}.n8n"),
                "203.0.113.10".to_owned()
            ),
        ]
    );
    let tenants = Api::<Tenant>::all(client.clone());
    let status = tenants.get(&slug).await.unwrap().status.unwrap();
    assert_eq!(status.dns_records.len(), 2);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "DnsReady" && c.status == "True")
    );

    // A duplicate made by hand is removed; a new target updates in place; a CNAME replaces the A.
    let id = {
        let mut n = fake.next.lock().unwrap();
        *n += 1;
        *n
    };
    fake.records.lock().unwrap().insert(
        id,
        json!({"id": id, "type": "A", "name": slug, "data": "198.51.100.1", "ttl": 300}),
    );
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"dns": {"enabled": true, "target": "203.0.113.20"}}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert_eq!(
        data(&fake).iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["203.0.113.20", "203.0.113.20"]
    );
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"dns": {"enabled": true, "target": "lb.example.net"}}})),
        )
        .await
        .unwrap();
    let _ = reconcile_now(&client, &ctx, &slug).await;
    assert!(
        data(&fake)
            .iter()
            .all(|r| r.0 == "CNAME" && r.2 == "lb.example.net."),
        "{:?}",
        data(&fake)
    );

    tenants
        .delete(&slug, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_now(&client, &ctx, &slug).await.unwrap();
    assert!(
        data(&fake).is_empty(),
        "policy Delete removes the tenant's records"
    );
}

#[tokio::test]
async fn external_dns_mode_writes_a_dns_endpoint() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/crds/dnsendpoints.externaldns.k8s.io.yaml"
    ))
    .unwrap();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition = serde_yaml::from_str(&crd).unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "dnsendpoints.externaldns.k8s.io",
        &PatchParams::apply("flomastr-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds,
        "dnsendpoints.externaldns.k8s.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .unwrap()
        .unwrap();

    let engine = start_engine().await;
    let mut args = operator_args(&engine);
    args.dns_provider = DnsProviderKind::ExternalDns;
    let ctx = context(operator_client(&client).await, args).await;
    let slug = unique("xdns");
    credentials(&client, &slug).await;
    create_tenant(
        &client,
        &slug,
        json!({"dns": {"enabled": true, "target": "203.0.113.30", "ttl": 120}}),
    )
    .await;
    let _ = reconcile_now(&client, &ctx, &slug).await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &format!("tenant-{slug}"),
        &flomastr::operator::dns::external_dns::resource(),
    );
    let endpoint = api.get("tenant-dns").await.expect("the DNSEndpoint exists");
    let endpoints = endpoint.data["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints.iter().all(|e| e["recordType"] == "A"
        && e["targets"] == json!(["203.0.113.30"])
        && e["recordTTL"] == 120));
    assert!(endpoint.metadata.owner_references.unwrap()[0].kind == "Tenant");
    let status = Api::<Tenant>::all(client.clone())
        .get(&slug)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.dns_records[0].provider, "external-dns");
}
