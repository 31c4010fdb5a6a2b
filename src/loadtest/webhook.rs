//! One inbound webhook as the tenant's provider would post it, signed with the tenant's own
//! credentials, carrying the run's messages: text from a customer, received now.

use super::args::{LoadProvider, Plan};
use crate::engine::providers::{infobip, meta, twilio};
use serde_json::{Value, json};
use std::ops::Range;

const TEXT: &str = "Hola, ¿tenéis pan sin gluten hoy? (flomastr load test)";

/// The path, headers and body of one webhook.
pub struct Webhook {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The provider message id of message `seq` of this run; workers read the number back.
pub fn message_id(plan: &Plan, seq: u64) -> String {
    format!("{}-{seq}", plan.run_id)
}

/// The run's sequence number in a job's provider message id, if the job is this run's.
pub fn sequence_of(plan: &Plan, message_id: &str) -> Option<u64> {
    message_id
        .strip_prefix(plan.run_id.as_str())?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The customer of message `seq`: spread over `--contacts` customers, in E.164 digits.
fn customer(plan: &Plan, seq: u64) -> String {
    format!("447{:09}", seq % plan.contacts)
}

pub fn build(plan: &Plan, messages: Range<u64>) -> Webhook {
    match plan.provider {
        LoadProvider::Infobip => infobip_webhook(plan, messages),
        LoadProvider::Meta => meta_webhook(plan, messages),
        LoadProvider::Twilio => twilio_webhook(plan, messages.start),
    }
}

fn infobip_webhook(plan: &Plan, messages: Range<u64>) -> Webhook {
    let received_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    let results: Vec<Value> = messages
        .map(|seq| {
            json!({"from": customer(plan, seq), "to": plan.sender, "integrationType": "WHATSAPP",
                   "receivedAt": received_at, "messageId": message_id(plan, seq),
                   "message": {"type": "TEXT", "text": TEXT},
                   "contact": {"name": "Load Test"}, "price": {"pricePerMessage": 0, "currency": "EUR"}})
        })
        .collect();
    let count = results.len();
    let body = serde_json::to_vec(
        &json!({"results": results, "messageCount": count, "pendingMessageCount": 0}),
    )
    .unwrap_or_default();
    let header = match plan.infobip_signature {
        Some(algorithm) => (
            plan.infobip_signature_header.clone(),
            infobip::sign(algorithm, plan.secret.as_bytes(), &body),
        ),
        None => (plan.infobip_header.clone(), plan.secret.clone()),
    };
    Webhook {
        path: format!("/webhook/infobip/{}", plan.tenant),
        headers: vec![header],
        content_type: "application/json",
        body,
    }
}

fn meta_webhook(plan: &Plan, messages: Range<u64>) -> Webhook {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let (contacts, messages): (Vec<Value>, Vec<Value>) = messages
        .map(|seq| {
            let from = customer(plan, seq);
            (
                json!({"profile": {"name": "Load Test"}, "wa_id": from}),
                json!({"from": from, "id": message_id(plan, seq), "timestamp": timestamp,
                       "type": "text", "text": {"body": TEXT}}),
            )
        })
        .unzip();
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": plan.sender, "phone_number_id": plan.sender},
            "contacts": contacts, "messages": messages}}]}]
    }))
    .unwrap_or_default();
    Webhook {
        path: format!("/webhook/meta/{}", plan.tenant),
        headers: vec![(
            "x-hub-signature-256".to_owned(),
            meta::sign(plan.secret.as_bytes(), &body),
        )],
        content_type: "application/json",
        body,
    }
}

fn twilio_webhook(plan: &Plan, seq: u64) -> Webhook {
    let path = format!("/webhook/twilio/{}", plan.tenant);
    let to = if plan.sender.starts_with("whatsapp:") {
        plan.sender.clone()
    } else {
        format!("whatsapp:{}", plan.sender)
    };
    let from = customer(plan, seq);
    let mut params: Vec<(String, String)> = vec![
        ("MessageSid".into(), message_id(plan, seq)),
        ("SmsMessageSid".into(), message_id(plan, seq)),
        ("From".into(), format!("whatsapp:+{from}")),
        ("To".into(), to),
        ("Body".into(), TEXT.into()),
        ("NumMedia".into(), "0".into()),
        ("NumSegments".into(), "1".into()),
        ("ProfileName".into(), "Load Test".into()),
        ("WaId".into(), from),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(account) = &plan.twilio_account_sid {
        params.push(("AccountSid".into(), account.clone()));
    }
    let signed_url = plan
        .twilio_signed_url
        .clone()
        .unwrap_or_else(|| format!("{}{path}", plan.engine_url.as_str().trim_end_matches('/')));
    let signature = twilio::expected_signature(&plan.secret, &signed_url, &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish()
        .into_bytes();
    Webhook {
        path,
        headers: vec![("x-twilio-signature".to_owned(), signature)],
        content_type: "application/x-www-form-urlencoded",
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::args::LoadArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn plan(extra: &[&str]) -> Plan {
        plan_with("441134960000", extra)
    }

    fn plan_with(sender: &str, extra: &[&str]) -> Plan {
        let mut argv = vec![
            "load",
            "--engine-url",
            "http://127.0.0.1:8080/",
            "--tenant",
            "acme",
            "--sender",
            sender,
            "--webhook-secret",
            "s3cret",
            "--worker-token",
            "w",
        ];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).load.plan().unwrap()
    }

    #[test]
    fn message_ids_carry_the_run_and_nothing_else_is_taken_for_ours() {
        let plan = plan(&[]);
        let id = message_id(&plan, 42);
        assert_eq!(sequence_of(&plan, &id), Some(42));
        assert_eq!(sequence_of(&plan, "ABEGkZZ"), None);
        assert_eq!(sequence_of(&plan, &format!("{}42", plan.run_id)), None);
        let other = super::super::args::Plan {
            run_id: "flomastr-load-other".into(),
            ..plan
        };
        assert_eq!(sequence_of(&other, &id), None);
    }

    #[test]
    fn each_provider_parses_its_own_webhook_and_accepts_its_signature() {
        let infobip_plan = plan(&["--batch", "3"]);
        let hook = build(&infobip_plan, 0..3);
        assert_eq!(
            hook.headers,
            vec![("x-webhook-secret".into(), "s3cret".into())]
        );
        assert_eq!(infobip::parse(&hook.body).unwrap().len(), 3);

        let signed = plan(&["--infobip-signature", "sha256"]);
        let hook = build(&signed, 0..1);
        let (name, value) = &hook.headers[0];
        assert_eq!(name, "x-hub-signature");
        infobip::verify_signature(
            infobip::SignatureAlgorithm::Sha256,
            b"s3cret",
            Some(value),
            &hook.body,
        )
        .unwrap();

        let meta_plan = plan(&["--provider", "meta", "--batch", "2"]);
        let hook = build(&meta_plan, 5..7);
        assert_eq!(meta::parse(&hook.body).unwrap().len(), 2);
        meta::verify_signature(b"s3cret", Some(&hook.headers[0].1), &hook.body).unwrap();

        let twilio_plan = plan_with("whatsapp:+14155238886", &["--provider", "twilio"]);
        let hook = build(&twilio_plan, 9..10);
        assert_eq!(hook.path, "/webhook/twilio/acme");
        let params: Vec<(String, String)> = url::form_urlencoded::parse(&hook.body)
            .into_owned()
            .collect();
        twilio::verify_signature(
            "s3cret",
            "http://127.0.0.1:8080/webhook/twilio/acme",
            &params,
            Some(&hook.headers[0].1),
        )
        .unwrap();
        assert_eq!(twilio::parse(&params).unwrap().len(), 1);
    }
}
