//! The example manifests a user applies as they are: every one is accepted by the real API
//! server (kubectl, server-side dry run), and every credentials Secret has what the operator
//! needs to register its Tenant with the engine.

use crate::common::{KUBECONFIG_VAR, admin_client, install_tenant_crd, require_env};
use flomastr::operator::config::DEFAULT_CREDENTIALS_NAMESPACE;
use flomastr::operator::credentials;
use flomastr::tenant::Tenant;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

const EXAMPLES: [&str; 4] = [
    "manifests/examples/tenant-infobip.yaml",
    "manifests/examples/tenant-meta.yaml",
    "manifests/examples/tenant-twilio.yaml",
    "manifests/examples/tenant-multi.yaml",
];

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

#[test]
fn every_example_secret_registers_its_tenant() {
    let mut providers = Vec::new();
    for path in EXAMPLES {
        let docs = documents(path);
        let find = |kind: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind)
                .cloned()
                .unwrap_or_else(|| panic!("{path} has a {kind}"))
        };
        let tenant: Tenant = serde_json::from_value(find("Tenant")).unwrap();
        let mut secrets = Vec::new();
        for (field, sender) in tenant.spec.whatsapp.senders() {
            let reference = &sender.credentials_secret_ref;
            // The API server turns stringData into data; the operator reads either.
            let secret: Secret = docs
                .iter()
                .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == reference.name.as_str())
                .map(|d| serde_json::from_value(d.clone()).unwrap())
                .unwrap_or_else(|| panic!("{path}: {field} names a Secret of the file"));
            // Where and as whose the operator accepts it.
            assert_eq!(
                secret.metadata.namespace.as_deref(),
                Some(reference.namespace.as_str()),
                "{path}"
            );
            assert_eq!(
                credentials::namespace_refusal(&field, reference, DEFAULT_CREDENTIALS_NAMESPACE),
                None,
                "{path}"
            );
            assert_eq!(
                credentials::ownership_refusal(&tenant, reference, &secret),
                None,
                "{path}"
            );
            secrets.push(secret);
        }
        let registration = flomastr::operator::registration::build(&tenant, &secrets, "token")
            .unwrap_or_else(|missing| panic!("{path}: the Secret lacks {missing:?}"));
        let senders = tenant.spec.whatsapp.senders();
        assert_eq!(registration.senders.len(), senders.len(), "{path}");
        for (registered, (_, sender)) in registration.senders.iter().zip(&senders) {
            assert_eq!(registered.sender, sender.sender, "{path}");
            providers.push(registered.provider);
        }
    }
    providers.sort_unstable();
    assert_eq!(
        providers,
        ["infobip", "infobip", "meta", "meta", "meta", "twilio"]
    );
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    for name in ["flomastr-system", DEFAULT_CREDENTIALS_NAMESPACE] {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        Api::<Namespace>::all(client.clone())
            .patch(
                name,
                &PatchParams::apply("flomastr-tests"),
                &Patch::Apply(&namespace),
            )
            .await
            .unwrap();
    }
    let kubeconfig = require_env(KUBECONFIG_VAR);
    for path in EXAMPLES {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            // Dry run: nothing is written. Forced, because the sample of a concurrent
            // `flomastr up` (e2e_up, same API server) may own the same Secret's fields.
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
            ])
            .arg(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
            .output()
            .expect("kubectl is installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let documents = documents(path).len();
        assert_eq!(
            stdout.matches("(server dry run)").count(),
            documents,
            "{path}: {stdout}"
        );
    }
}

/// `manifests/caddy/Caddyfile` run by the real Caddy: it serves the engine's public paths only
/// (not the admin API, metrics, probes or `/`), and takes the routes the operator inserts into
/// `srv0`.
#[tokio::test]
async fn the_caddyfile_fronts_the_engine_and_takes_operator_routes() {
    use crate::common::free_port;
    use flomastr::operator::caddy::{CaddyClient, route};
    let engine = crate::engine_harness::start_engine().await;
    let upstream = engine.url.trim_start_matches("http://").to_owned();
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut caddy = std::process::Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(format!(
            "{}/manifests/caddy/Caddyfile",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env("FLOMASTR_API_HOST", format!("http://127.0.0.1:{port}"))
        .env("FLOMASTR_ENGINE_UPSTREAM", &upstream)
        .env("FLOMASTR_CADDY_ADMIN", format!("127.0.0.1:{admin_port}"))
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("caddy is installed (scripts/system-deps installs it)");
    let edge = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = crate::common::eventually("Caddy serves the engine", || async {
        let response = http
            .get(format!("{edge}/routes/health"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(response)
    })
    .await;
    assert_eq!(health.status(), 200);
    // Only the public paths reach the engine, however the others are spelled.
    for hidden in [
        "/admin/tenants/acme",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/%61dmin/tenants/acme",
        "/ADMIN/tenants/acme",
        "//admin/tenants/acme",
        "/routes/../admin/tenants/acme",
        "/webhook/%2e%2e/admin/tenants/acme",
        "/metrics?x=/webhook/",
    ] {
        let answer = raw_get(port, hidden).await;
        assert!(
            answer.starts_with("HTTP/1.1 404") && !answer.contains("\"error\""),
            "{hidden} is not public: {answer}"
        );
    }
    for public in ["/routes/health", "/openapi.json"] {
        let status = http
            .get(format!("{edge}{public}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{public} is public");
    }
    let webhook = http
        .post(format!("{edge}/webhook/infobip/nobody"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 404);
    let error: serde_json::Value = webhook.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found", "the engine answered");
    // A signed media link reaches the engine (403: this one is forged), so do worker uploads.
    let link = http
        .get(format!(
            "{edge}/public/media/0b0e6c1e-5d4f-4a51-9d1b-2f0c3f1f7a11?exp=1&sig=00"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 403);
    let error: serde_json::Value = link.json().await.unwrap();
    assert_eq!(
        error["error"]["code"], "invalid_signature",
        "the engine answered"
    );
    let upload = http
        .post(format!("{edge}/media"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401, "the engine asks for the worker token");
    // The operator's route for a tenant's n8n host lands in front of the site's route.
    let client = CaddyClient::new(&format!("http://127.0.0.1:{admin_port}"), "srv0");
    let id = "tenant-demo-n8n";
    client
        .upsert(id, &route(id, "demo.n8n.localhost", &upstream, "demo"))
        .await
        .expect("the operator can add its route to srv0");
    // Caddy serves a tenant's host over TLS (on this port, which is not its HTTP port), with
    // a certificate of its own CA for `.localhost` names (a public name gets an ACME one).
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("demo.n8n.localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let answer = crate::common::eventually("the tenant host is routed over TLS", || async {
        let response = tls
            .get(format!("https://demo.n8n.localhost:{port}/"))
            .send()
            .await
            .ok()?;
        Some((response.status(), response.text().await.ok()?))
    })
    .await;
    assert_eq!(answer.0, 200, "the engine answered: {}", answer.1);
    caddy.kill().unwrap();
    caddy.wait().unwrap();
}

/// A GET of `path` exactly as written (no client-side normalisation), its answer as text.
async fn raw_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
