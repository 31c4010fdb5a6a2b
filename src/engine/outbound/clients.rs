//! The providers' send APIs. Each call ends in one of a few outcomes the dispatcher acts on;
//! the classification follows the providers' documented error codes (reference section 4).

use super::base_url::{BaseUrl, BaseUrlAllowList};
use super::destination::{Destinations, GuardedResolver, refused_by_policy};
use super::provider_error;
use crate::engine::providers::Provider;
use crate::engine::secret::Secret;
use crate::engine::tenants::{Channel, normalize_address};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Host;

/// What to send, as stored.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub message_id: uuid::Uuid,
    pub recipient: String,
    pub content: Value,
    pub reply_to: Option<String>,
    /// Where the provider should post status reports (our webhook), when known.
    pub callback_url: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum SendOutcome {
    /// Accepted; the provider's id of the message.
    Accepted { provider_message_id: String },
    /// Worth retrying later (throttling, 5xx, connection refused).
    Retry {
        code: String,
        message: String,
        after: Option<Duration>,
    },
    /// The customer service window is closed: only a template can be sent.
    WindowClosed { code: String },
    /// Retrying cannot help (bad request, bad credentials, unknown recipient).
    Permanent { code: String, message: String },
    /// The request went out and no answer came back: it may or may not have been sent.
    Unknown { message: String },
}

pub struct Clients {
    http: reqwest::Client,
    meta_version: String,
    base_urls: Arc<BaseUrlAllowList>,
    destinations: Arc<Destinations>,
}

/// Where sends may go: the allowed base URLs and the addresses they may connect to.
#[derive(Clone, Debug)]
pub struct SendPolicy {
    pub base_urls: Arc<BaseUrlAllowList>,
    pub destinations: Arc<Destinations>,
}

impl Clients {
    pub fn new(timeout: Duration, meta_version: String, policy: &SendPolicy) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            // A redirect would carry the tenant's credentials to a host nobody checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect in our place, past the destination check.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.destinations.clone())))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            meta_version,
            base_urls: policy.base_urls.clone(),
            destinations: policy.destinations.clone(),
        }
    }

    pub async fn send(&self, channel: &Channel, message: &Outgoing) -> SendOutcome {
        let secret = |s: &Option<Secret>| {
            s.as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default()
        };
        if channel.provider == Provider::Seed {
            return SendOutcome::Permanent {
                code: "no_channel".into(),
                message: "the seed format cannot send".into(),
            };
        }
        let base = match self.destination(channel) {
            Ok(base) => base,
            Err(refused) => return refused,
        };
        let request = match channel.provider {
            Provider::Meta => self.meta(
                &base,
                channel,
                message,
                &secret(&channel.secrets.access_token),
            ),
            Provider::Twilio => self.twilio(
                &base,
                channel,
                message,
                &secret(&channel.secrets.auth_token),
            ),
            _ => self.infobip(&base, channel, message, &secret(&channel.secrets.api_key)),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if refused_by_policy(&error) => {
                return destination_refused(
                    "the provider's host resolves only to addresses sends may not connect to",
                );
            }
            Err(error) if error.is_connect() => {
                return SendOutcome::Retry {
                    code: "connect".into(),
                    message: "cannot connect to the provider".into(),
                    after: None,
                };
            }
            Err(error) if channel.provider == Provider::Infobip => {
                // Our messageId makes an InfoBip retry safe: it will not send twice.
                return SendOutcome::Retry {
                    code: "transport".into(),
                    message: transport_message(&error),
                    after: None,
                };
            }
            Err(error) => {
                return SendOutcome::Unknown {
                    message: transport_message(&error),
                };
            }
        };
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return SendOutcome::Permanent {
                code: "redirect_refused".into(),
                message: format!(
                    "the provider answered HTTP {status} (a redirect); redirects are not followed"
                ),
            };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = provider_error::read_json(response).await;
        match channel.provider {
            Provider::Infobip => classify_infobip(status, &body, message, retry_after),
            Provider::Meta => classify_meta(status, &body, retry_after),
            _ => classify_twilio(status, &body, retry_after),
        }
    }

    /// The guarded HTTP client (no redirects, no proxy, destination-checked DNS).
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(super) fn meta_version(&self) -> &str {
        &self.meta_version
    }

    /// [`Self::destination`] for other calls than sends.
    pub(super) fn destination_for(&self, channel: &Channel) -> Result<BaseUrl, SendOutcome> {
        self.destination(channel)
    }

    /// The channel's base URL, if the allow-list takes it and an IP-literal host is one sends may
    /// connect to (host names are checked when they are resolved). Checked on every send: the
    /// stored URL may predate the allow-list, or the allow-list may have shrunk since.
    fn destination(&self, channel: &Channel) -> Result<BaseUrl, SendOutcome> {
        let base = self
            .base_urls
            .resolve(channel.provider, channel.base_url.as_deref())
            .map_err(|_| {
                destination_refused("the channel's base URL is not on the engine's allow-list")
            })?;
        let literal = match base.host() {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        };
        if literal.is_some_and(|ip| !self.destinations.permits(ip)) {
            return Err(destination_refused(
                "the channel's base URL is an address sends may not connect to",
            ));
        }
        Ok(base)
    }

    fn infobip(
        &self,
        base: &BaseUrl,
        channel: &Channel,
        message: &Outgoing,
        api_key: &str,
    ) -> reqwest::RequestBuilder {
        let (path, body) = super::wire::infobip::request(&channel.sender, message);
        let mut segments = vec!["whatsapp", "1", "message"];
        segments.extend(path);
        self.http
            .post(base.url_with_segments(&segments))
            .header("Authorization", format!("App {api_key}"))
            .json(&body)
    }

    fn meta(
        &self,
        base: &BaseUrl,
        channel: &Channel,
        message: &Outgoing,
        token: &str,
    ) -> reqwest::RequestBuilder {
        let body = super::wire::meta::body(message);
        let url = base.url_with_segments(&[&self.meta_version, &channel.sender, "messages"]);
        self.http.post(url).bearer_auth(token).json(&body)
    }

    fn twilio(
        &self,
        base: &BaseUrl,
        channel: &Channel,
        message: &Outgoing,
        auth_token: &str,
    ) -> reqwest::RequestBuilder {
        let account = channel.secrets.account_sid.clone().unwrap_or_default();
        let to = format!("whatsapp:+{}", normalize_address(&message.recipient));
        let mut form: Vec<(&str, String)> = vec![("To", to)];
        if channel.sender.starts_with("MG") {
            form.push(("MessagingServiceSid", channel.sender.clone()));
        } else {
            form.push((
                "From",
                format!("whatsapp:+{}", normalize_address(&channel.sender)),
            ));
        }
        form.extend(super::wire::twilio::content(&message.content));
        if let Some(url) = &message.callback_url {
            form.push(("StatusCallback", url.clone()));
        }
        let url = base.url_with_segments(&["2010-04-01", "Accounts", &account, "Messages.json"]);
        self.http
            .post(url)
            .basic_auth(account, Some(auth_token))
            .form(&form)
    }
}

fn destination_refused(why: &str) -> SendOutcome {
    SendOutcome::Permanent {
        code: "destination_refused".into(),
        message: why.to_owned(),
    }
}

fn transport_message(error: &reqwest::Error) -> String {
    // The URL may carry an account id; the error's text is enough.
    if error.is_timeout() {
        "the provider did not answer in time".into()
    } else {
        "the connection to the provider failed".into()
    }
}

fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

fn classify_infobip(
    status: u16,
    body: &Value,
    message: &Outgoing,
    after: Option<Duration>,
) -> SendOutcome {
    if (200..300).contains(&status) {
        // We chose the id; InfoBip echoes it (template sends answer per message).
        let echoed = body["messageId"]
            .as_str()
            .or_else(|| body["messages"][0]["messageId"].as_str())
            .and_then(provider_error::message_id);
        return SendOutcome::Accepted {
            provider_message_id: echoed.unwrap_or_else(|| message.message_id.to_string()),
        };
    }
    let code = body["errorCode"]
        .as_str()
        .or_else(|| body["requestError"]["serviceException"]["messageId"].as_str())
        .and_then(provider_error::code)
        .unwrap_or_else(|| format!("HTTP{status}"));
    let text = provider_error::description(
        body["description"]
            .as_str()
            .or_else(|| body["requestError"]["serviceException"]["text"].as_str())
            .unwrap_or("InfoBip refused the message"),
    );
    if retryable_status(status) {
        SendOutcome::Retry {
            code,
            message: text,
            after,
        }
    } else {
        SendOutcome::Permanent {
            code,
            message: text,
        }
    }
}

fn classify_meta(status: u16, body: &Value, after: Option<Duration>) -> SendOutcome {
    if (200..300).contains(&status) {
        return match body["messages"][0]["id"]
            .as_str()
            .and_then(provider_error::message_id)
        {
            Some(id) => SendOutcome::Accepted {
                provider_message_id: id,
            },
            None => SendOutcome::Unknown {
                message: "Meta accepted the request but returned no usable message id".into(),
            },
        };
    }
    let code = body["error"]["code"].as_i64().unwrap_or(0);
    let text = provider_error::description(
        body["error"]["message"]
            .as_str()
            .unwrap_or("Meta refused the message"),
    );
    match code {
        131047 => SendOutcome::WindowClosed {
            code: code.to_string(),
        },
        // Throughput, pair rate, API rate limits and transient errors; any 429/5xx.
        _ if matches!(code, 130429 | 131056 | 4 | 80007 | 131000 | 1 | 2 | 131016)
            || retryable_status(status) =>
        {
            SendOutcome::Retry {
                code: code.to_string(),
                message: text,
                after,
            }
        }
        _ => SendOutcome::Permanent {
            code: code.to_string(),
            message: text,
        },
    }
}

fn classify_twilio(status: u16, body: &Value, after: Option<Duration>) -> SendOutcome {
    if (200..300).contains(&status) {
        return match body["sid"].as_str().and_then(provider_error::message_id) {
            Some(sid) => SendOutcome::Accepted {
                provider_message_id: sid,
            },
            None => SendOutcome::Unknown {
                message: "Twilio accepted the request but returned no usable SID".into(),
            },
        };
    }
    let code = body["code"].as_i64().unwrap_or(0);
    let text = provider_error::description(
        body["message"]
            .as_str()
            .unwrap_or("Twilio refused the message"),
    );
    match code {
        63016 => SendOutcome::WindowClosed {
            code: code.to_string(),
        },
        // Throughput and queue limits; any 429/5xx.
        _ if matches!(code, 20429 | 63018) || retryable_status(status) => SendOutcome::Retry {
            code: code.to_string(),
            message: text,
            after,
        },
        _ => SendOutcome::Permanent {
            code: code.to_string(),
            message: text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outgoing() -> Outgoing {
        Outgoing {
            message_id: uuid::Uuid::nil(),
            recipient: "1".into(),
            content: json!({"text": "x"}),
            reply_to: None,
            callback_url: None,
        }
    }

    #[test]
    fn window_errors_of_both_providers_map_to_one_outcome() {
        let meta = classify_meta(
            400,
            &json!({"error": {"code": 131047, "message": "Re-engagement message"}}),
            None,
        );
        let twilio = classify_twilio(
            400,
            &json!({"code": 63016, "message": "outside window"}),
            None,
        );
        assert_eq!(
            meta,
            SendOutcome::WindowClosed {
                code: "131047".into()
            }
        );
        assert_eq!(
            twilio,
            SendOutcome::WindowClosed {
                code: "63016".into()
            }
        );
    }

    #[test]
    fn provider_text_is_stored_bounded_and_without_control_characters() {
        let hostile = format!("{}\u{0}\r\n{}", "A".repeat(10_000), "internal secret");
        let outcome = classify_infobip(
            400,
            &json!({"errorCode": format!("E400\n{}", "9".repeat(500)), "description": hostile}),
            &outgoing(),
            None,
        );
        let SendOutcome::Permanent { code, message } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(code.len(), provider_error::MAX_CODE_CHARS);
        assert!(code.chars().all(|c| c.is_ascii_graphic()));
        assert_eq!(
            message.chars().count(),
            provider_error::MAX_DESCRIPTION_CHARS
        );
        assert!(!message.chars().any(char::is_control));
        let twilio = classify_twilio(201, &json!({"sid": "x".repeat(10_000)}), None);
        assert!(matches!(twilio, SendOutcome::Unknown { .. }), "{twilio:?}");
    }

    #[test]
    fn throttling_and_server_errors_retry_bad_requests_do_not() {
        assert!(matches!(
            classify_meta(400, &json!({"error": {"code": 130429}}), None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_meta(400, &json!({"error": {"code": 100}}), None),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            classify_twilio(429, &json!({"code": 20429}), None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_twilio(400, &json!({"code": 21211}), None),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            classify_infobip(500, &json!({"errorCode": "E500"}), &outgoing(), None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_infobip(429, &json!({"errorCode": "E429"}), &outgoing(), None),
            SendOutcome::Retry { .. }
        ));
        assert_eq!(
            classify_infobip(
                400,
                &json!({"requestError": {"serviceException": {"messageId": "BAD_REQUEST", "text": "bad"}}}),
                &outgoing(),
                None
            ),
            SendOutcome::Permanent {
                code: "BAD_REQUEST".into(),
                message: "bad".into()
            }
        );
    }
}
