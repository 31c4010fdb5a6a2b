//! What `flomastr up` tells when the stack is ready: printed for people, and `stack.env` in the
//! state directory for scripts and tests (present only while the stack is up and ready).
//! Secret values stay in their own 0600 files; the summary names the files.

use crate::up::UpError;
use crate::up::secrets::{ADMIN_TOKEN_FILE, WEBHOOK_SECRET_FILE, write_private};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const STACK_ENV: &str = "stack.env";
const WORKER_TOKEN_FILE: &str = "worker-token";
const INBOUND_EXAMPLE_FILE: &str = "inbound-example.json";
const N8N_PASSWORD_FILE: &str = "n8n-owner-password";

pub struct Summary {
    pub engine_url: String,
    pub sandbox_url: String,
    pub operator_url: String,
    /// The sample tenant's n8n, relayed to loopback.
    pub n8n_url: String,
    /// The n8n owner's email, once the operator minted the owner (Secret `n8n-owner`).
    pub n8n_owner_email: Option<String>,
    pub database_url: String,
    pub pgbin: Option<String>,
    /// `None` when the cluster in `KUBECONFIG` is used.
    pub kubeconfig: Option<PathBuf>,
    pub local_cluster: bool,
    pub slug: String,
    pub sender: String,
    pub inbound_example: Value,
}

/// Writes `stack.env`, the worker token and the n8n owner's password, then prints the summary.
pub fn publish(
    state: &Path,
    info: &Summary,
    worker_token: &str,
    n8n_password: Option<&str>,
) -> Result<(), UpError> {
    write_private(&state.join(WORKER_TOKEN_FILE), worker_token)?;
    let password_file = state.join(N8N_PASSWORD_FILE);
    match n8n_password {
        Some(password) => write_private(&password_file, password)?,
        // A password of an earlier stack would not open this one's n8n.
        None => {
            let _ = std::fs::remove_file(&password_file);
        }
    }
    let example = serde_json::to_string_pretty(&info.inbound_example).unwrap_or_default();
    let example_path = state.join(INBOUND_EXAMPLE_FILE);
    std::fs::write(&example_path, example).map_err(|source| UpError::Io {
        path: example_path.clone(),
        source,
    })?;
    let file = |name: &str| state.join(name).display().to_string();
    let kubeconfig = info
        .kubeconfig
        .as_ref()
        .map(|p| p.display().to_string())
        .or_else(|| std::env::var("KUBECONFIG").ok())
        .unwrap_or_default();
    let lines = [
        ("FLOMASTR_ENGINE_URL", info.engine_url.clone()),
        ("FLOMASTR_SANDBOX_URL", info.sandbox_url.clone()),
        ("FLOMASTR_OPERATOR_URL", info.operator_url.clone()),
        ("FLOMASTR_N8N_URL", info.n8n_url.clone()),
        ("FLOMASTR_TENANT", info.slug.clone()),
        ("FLOMASTR_SENDER", info.sender.clone()),
        ("DATABASE_URL", info.database_url.clone()),
        ("KUBECONFIG", kubeconfig.clone()),
        ("FLOMASTR_ADMIN_TOKEN_FILE", file(ADMIN_TOKEN_FILE)),
        ("FLOMASTR_WORKER_TOKEN_FILE", file(WORKER_TOKEN_FILE)),
        ("FLOMASTR_WEBHOOK_SECRET_FILE", file(WEBHOOK_SECRET_FILE)),
        (
            "FLOMASTR_INBOUND_EXAMPLE",
            example_path.display().to_string(),
        ),
    ];
    let env: String = lines
        .iter()
        .map(|(name, value)| format!("{name}='{value}'\n"))
        .collect();
    // Written last and atomically: its presence means "ready".
    write_private(&state.join(STACK_ENV), env.trim_end())?;
    print(state, info, &kubeconfig);
    Ok(())
}

/// Removes `stack.env`: the stack is no longer (or not yet) ready.
pub fn forget(state: &Path) {
    let _ = std::fs::remove_file(state.join(STACK_ENV));
}

fn print(state: &Path, info: &Summary, kubeconfig: &str) {
    let state = state.display();
    let engine = &info.engine_url;
    let slug = &info.slug;
    let psql = info
        .pgbin
        .as_deref()
        .map_or_else(|| "psql".to_owned(), |bin| format!("{bin}/psql"));
    let cluster_note = if info.local_cluster {
        "local API server and node: the tenants' n8n are real pods"
    } else {
        "the cluster in KUBECONFIG"
    };
    let n8n_login = match &info.n8n_owner_email {
        Some(email) => {
            format!("log in as {email}, password in {state}/{N8N_PASSWORD_FILE}")
        }
        None => "n8n asks for its owner account on the first visit".to_owned(),
    };
    println!(
        r#"
flomastr is up. Everything listens on 127.0.0.1; state, logs and secrets are in {state}

  n8n        {n8n}/   (tenant {slug}'s own n8n, a pod on the node; {n8n_login})
  Engine     {engine}/   API: {engine}/openapi.json   metrics: {engine}/metrics
  Operator   {operator}/metrics  (health: /healthz)
  Sandbox    {sandbox}/_sandbox/messages  (what the "provider" received; InfoBip, Meta, Twilio)
  Database   {psql} "$DATABASE_URL"   (set -a; . {state}/stack.env; set +a — sets DATABASE_URL, KUBECONFIG, ...)
  Kubernetes KUBECONFIG={kubeconfig} kubectl get tenants    ({cluster_note})
  Tenant     {slug}: Ready; its n8n worker token is in {state}/worker-token

Send a test WhatsApp message (InfoBip webhook format) to tenant {slug} (the same file again is a
redelivery: deduplicated; change its messageId for a new message):

  curl -sS -X POST {engine}/webhook/infobip/{slug} \
    -H 'Content-Type: application/json' -H "X-Webhook-Secret: $(cat {state}/webhook-secret)" \
    --data @{state}/inbound-example.json

Take it as the tenant's n8n worker would, and reply (manifests/n8n/whatsapp-worker.json does this):

  curl -sS -H "Authorization: Bearer $(cat {state}/worker-token)" '{engine}/queue/next-job?wait=5'
  curl -sS -X POST {engine}/messages/send -H "Authorization: Bearer $(cat {state}/worker-token)" \
    -H 'Content-Type: application/json' -d '{{"to":"447700900001","message":"Hi Ana!"}}'
  curl -sS -X POST {engine}/queue/jobs/<job_id>/complete -H "Authorization: Bearer $(cat {state}/worker-token)" \
    -H 'Content-Type: application/json' -d '{{"lease_token":"<lease_token>"}}'
  curl -sS {sandbox}/_sandbox/messages

Press Ctrl-C to stop everything."#,
        operator = info.operator_url,
        sandbox = info.sandbox_url,
        n8n = info.n8n_url,
    );
}
