//! Twilio WhatsApp webhooks: `X-Twilio-Signature`, the form body, inbound messages and status
//! callbacks.
//!
//! Twilio says its parameter set may change without notice (reference 3.1), so the signature covers
//! whatever arrived and parsing reads only the few parameters it needs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::time::parse_timestamp;
use super::{
    Contact, DeliveryStatus, InboundMessage, ParseError, Provider, SignatureError, StatusReport,
    WebhookEvent,
};

type HmacSha1 = Hmac<Sha1>;

const WHATSAPP_PREFIX: &str = "whatsapp:";
const SHA1_LEN: usize = 20;

/// The `X-Twilio-Signature` Twilio computes for a request (reference 3.2):
/// `Base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...))` with the form
/// parameters sorted by name, and repeated names by value (as Twilio's SDKs do).
///
/// `url` must be the exact public URL Twilio requested, query string and percent-encoding included.
/// For a GET, pass no params: the query is already part of `url`.
pub fn expected_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    signature_bytes(auth_token, url, params)
        .map(|digest| BASE64.encode(digest))
        .unwrap_or_default()
}

/// Checks the `X-Twilio-Signature` header in constant time.
///
/// Twilio's SDKs also retry with the port added or removed from `url`, because Twilio has not
/// always signed the same form; callers that see such mismatches should pass the URL form Twilio
/// was configured with.
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let given = BASE64
        .decode(header.trim())
        .map_err(|_| SignatureError::Malformed)?;
    if given.len() != SHA1_LEN {
        return Err(SignatureError::Malformed);
    }
    let expected = signature_bytes(auth_token, url, params).ok_or(SignatureError::Mismatch)?;
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// HMAC takes keys of any length, so `None` cannot happen; it is handled rather than unwrapped.
fn signature_bytes(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<Vec<u8>> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Tuples order by name, then value: byte order, which equals the SDKs' code-point order.
    sorted.sort();
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// Decodes an `application/x-www-form-urlencoded` body, keeping every pair in order, repeated
/// names included (the signature covers all of them).
///
/// Invalid UTF-8 in a percent-decoded value is replaced with U+FFFD, which makes the signature
/// check fail rather than the parse: Twilio always sends UTF-8.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|error| ParseError::new("body", format!("is not a form body: {error}")))
}

/// Parses one Twilio webhook: a status callback when `MessageStatus` is present and not
/// `received`, else an inbound message. Always zero or one event.
///
/// Twilio sends no time of its own in these webhooks, so times are `Utc::now()`: the only place
/// the provider parsers read the clock. A status value not listed in reference 3.1 yields no event.
pub fn parse(params: &[(String, String)]) -> Result<Vec<WebhookEvent>, ParseError> {
    let form = Form(params);
    match form.get("MessageStatus") {
        Some(status) if !status.eq_ignore_ascii_case("received") => {
            Ok(status_report(&form, status)?
                .map(WebhookEvent::Status)
                .into_iter()
                .collect())
        }
        _ => Ok(vec![WebhookEvent::Message(inbound(&form)?)]),
    }
}

/// The form pairs, looked up by name.
struct Form<'a>(&'a [(String, String)]);

impl Form<'_> {
    /// The first non-empty value of `name`: Twilio sends each of these parameters once, and an
    /// empty value carries nothing.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, ParseError> {
        self.get(name)
            .ok_or_else(|| ParseError::new(name, "is required"))
    }

    /// `whatsapp:+14155238886` → `+14155238886`.
    fn address(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| strip_channel(value).to_owned())
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// All pairs as one JSON object; a repeated name becomes an array of its values, in order.
    fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.0 {
            let value = Value::String(value.clone());
            match object.get_mut(name) {
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    object.insert(name.clone(), value);
                }
            }
        }
        Value::Object(object)
    }
}

fn strip_channel(address: &str) -> &str {
    address.strip_prefix(WHATSAPP_PREFIX).unwrap_or(address)
}

fn status_report(form: &Form, provider_status: &str) -> Result<Option<StatusReport>, ParseError> {
    let message_id = form.required("MessageSid")?;
    let Some(status) = status_of(provider_status) else {
        return Ok(None);
    };
    Ok(Some(StatusReport {
        provider: Provider::Twilio,
        provider_message_id: message_id.to_owned(),
        status,
        provider_status: provider_status.to_owned(),
        occurred_at: occurred_at(form),
        recipient: form.address("To"),
        // On a status callback `From` is our own sender: the business side.
        to: form.address("From"),
        account_id: form.owned("AccountSid"),
        error_code: form
            .get("ErrorCode")
            .filter(|code| *code != "0")
            .map(str::to_owned),
        error_message: form.owned("ErrorMessage"),
        permanent: false,
        raw: form.to_json(),
    }))
}

/// queued/accepted/scheduled are still on Twilio's side; canceled never left it.
fn status_of(status: &str) -> Option<DeliveryStatus> {
    match status.to_ascii_lowercase().as_str() {
        "queued" | "accepted" | "scheduled" => Some(DeliveryStatus::Queued),
        "sending" | "sent" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" => Some(DeliveryStatus::Read),
        "undelivered" | "failed" | "canceled" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// Twilio documents no time parameter for status callbacks; a `Timestamp` is used when one
/// arrives in a recognisable form, else the time of receipt. An unreadable optional time is not
/// worth refusing (and so losing) the callback over.
fn occurred_at(form: &Form) -> DateTime<Utc> {
    form.get("Timestamp")
        .and_then(|text| {
            parse_timestamp("Timestamp", text).ok().or_else(|| {
                DateTime::parse_from_rfc2822(text)
                    .ok()
                    .map(|time| time.with_timezone(&Utc))
            })
        })
        .unwrap_or_else(Utc::now)
}

fn inbound(form: &Form) -> Result<InboundMessage, ParseError> {
    let message_id = form.required("MessageSid")?;
    let from = strip_channel(form.required("From")?);
    if from.is_empty() {
        return Err(ParseError::new("From", "has no address after `whatsapp:`"));
    }
    Ok(InboundMessage {
        provider: Provider::Twilio,
        provider_message_id: message_id.to_owned(),
        contact: contact(form, from),
        to: form.address("To"),
        account_id: form.owned("AccountSid"),
        timestamp: Utc::now(),
        kind: kind_of(form),
        text: form
            .get("Body")
            .or(form.get("ButtonText"))
            .map(str::to_owned),
        reply_to: form.owned("OriginalRepliedMessageSid"),
        raw: form.to_json(),
    })
}

/// `From` is a phone number (`+…` or digits) or, for users known only by username, a BSUID
/// (reference 2.3). The phone, when known, is the conversation key; `WaId` supplies it when `From`
/// is a BSUID but Twilio still knows the number.
fn contact(form: &Form, from: &str) -> Contact {
    let is_phone = from.starts_with('+') || from.starts_with(|c: char| c.is_ascii_digit());
    let wa_id = form
        .get("WaId")
        .filter(|wa_id| wa_id.bytes().all(|byte| byte.is_ascii_digit()));
    let phone = if is_phone { Some(from) } else { wa_id };
    let user_id = (!is_phone).then_some(from);
    Contact {
        id: phone.unwrap_or(from).to_owned(),
        phone: phone.map(str::to_owned),
        user_id: user_id.map(str::to_owned),
        username: None,
        name: form.owned("ProfileName"),
    }
}

/// `MessageType` when Twilio sends it; otherwise inferred from the first attachment's MIME type,
/// or `text`. An unreadable `NumMedia` counts as no media.
fn kind_of(form: &Form) -> String {
    if let Some(message_type) = form.get("MessageType") {
        return message_type.to_lowercase();
    }
    let num_media: u32 = form
        .get("NumMedia")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    if num_media == 0 {
        return "text".to_owned();
    }
    let content_type = form.get("MediaContentType0").unwrap_or_default();
    match content_type.split('/').next() {
        Some(major @ ("image" | "video" | "audio")) => major.to_owned(),
        _ => "media".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INBOUND_BODY: &[u8] =
        b"SmsMessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&NumMedia=0&ProfileName=Ana+Horvat\
&MessageType=text&SmsSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&WaId=385916242493&SmsStatus=received\
&Body=Hello+there%21+%C4%8Cest%3D%26&To=whatsapp%3A%2B14155238886&NumSegments=1&ReferralNumMedia=0\
&MessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&AccountSid=AC0123456789abcdef0123456789abcdef\
&From=whatsapp%3A%2B385916242493&ApiVersion=2010-04-01";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn docs_params(phone: &str) -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", phone),
            ("Digits", "1234"),
            ("From", phone),
            ("To", "+18005551212"),
        ])
    }

    fn only_message(params: &[(String, String)]) -> InboundMessage {
        match parse(params).expect("valid").as_slice() {
            [WebhookEvent::Message(message)] => message.clone(),
            other => panic!("expected one message, got {other:?}"),
        }
    }

    fn only_status(params: &[(String, String)]) -> StatusReport {
        match parse(params).expect("valid").as_slice() {
            [WebhookEvent::Status(status)] => status.clone(),
            other => panic!("expected one status, got {other:?}"),
        }
    }

    const DOCS_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn twilio_documentation_vectors() {
        // The classic example from Twilio's security docs.
        let classic = docs_params("+12349013030");
        assert_eq!(
            expected_signature("12345", DOCS_URL, &classic),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // The same example with the numbers used by twilio-python's tests and the docs' snippets.
        let python = docs_params("+14158675309");
        assert_eq!(
            expected_signature("12345", DOCS_URL, &python),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        let snippet = docs_params("+14158675310");
        assert_eq!(
            expected_signature("12345", DOCS_URL, &snippet),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        assert_eq!(
            verify_signature(
                "12345",
                DOCS_URL,
                &classic,
                Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
            ),
            Ok(())
        );
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut shuffled = docs_params("+12349013030");
        shuffled.reverse();
        shuffled.swap(0, 2);
        assert_eq!(
            expected_signature("12345", DOCS_URL, &shuffled),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn repeated_names_sort_by_value() {
        // Computed independently: url + "Body" "x" + "MediaUrl" "https://a" + "MediaUrl" "https://b".
        let params = pairs(&[
            ("MediaUrl", "https://b"),
            ("Body", "x"),
            ("MediaUrl", "https://a"),
        ]);
        let url = "https://example.com/twilio/inbound";
        assert_eq!(
            expected_signature("authtoken", url, &params),
            "405S/desAMgCNF4EowcK19mQEI8="
        );
    }

    #[test]
    fn signature_failures() {
        let params = docs_params("+12349013030");
        let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert_eq!(
            verify_signature("12345", DOCS_URL, &params, None),
            Err(SignatureError::Missing)
        );
        for malformed in [
            "",
            "not base64!",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ",
            "AAAA",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=AAAA",
        ] {
            assert_eq!(
                verify_signature("12345", DOCS_URL, &params, Some(malformed)),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify_signature("54321", DOCS_URL, &params, Some(good)),
            Err(SignatureError::Mismatch)
        );
        let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert_eq!(
            verify_signature("12345", other_url, &params, Some(good)),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = params.clone();
        tampered[2].1 = "9999".to_owned();
        assert_eq!(
            verify_signature("12345", DOCS_URL, &tampered, Some(good)),
            Err(SignatureError::Mismatch)
        );
        let mut extra = params;
        extra.push(("Body".to_owned(), String::new()));
        assert_eq!(
            verify_signature("12345", DOCS_URL, &extra, Some(good)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn form_decoding_keeps_order_repeats_and_encoding() {
        let form =
            parse_form(b"Body=a+b%2Bc&MediaUrl0=x&Body=%E2%9C%93&Empty=&Flag").expect("form");
        assert_eq!(
            form,
            pairs(&[
                ("Body", "a b+c"),
                ("MediaUrl0", "x"),
                ("Body", "✓"),
                ("Empty", ""),
                ("Flag", "")
            ])
        );
        assert_eq!(parse_form(b""), Ok(vec![]));
    }

    #[test]
    fn signature_over_decoded_form() {
        let params = parse_form(INBOUND_BODY).expect("form");
        let url = "https://hooks.example.com/webhook/twilio/acme?x=1";
        let header = expected_signature("secret-token", url, &params);
        assert_eq!(
            verify_signature("secret-token", url, &params, Some(&header)),
            Ok(())
        );
    }

    #[test]
    fn inbound_text_message() {
        let params = parse_form(INBOUND_BODY).expect("form");
        let message = only_message(&params);
        assert_eq!(message.provider, Provider::Twilio);
        assert_eq!(
            message.provider_message_id,
            "SM1f0e8ae6ade43cb3c0ce4525424e404f"
        );
        assert_eq!(message.contact.id, "+385916242493");
        assert_eq!(message.contact.phone.as_deref(), Some("+385916242493"));
        assert_eq!(message.contact.user_id, None);
        assert_eq!(message.contact.name.as_deref(), Some("Ana Horvat"));
        assert_eq!(message.to.as_deref(), Some("+14155238886"));
        assert_eq!(
            message.account_id.as_deref(),
            Some("AC0123456789abcdef0123456789abcdef")
        );
        assert_eq!(message.kind, "text");
        assert_eq!(message.text.as_deref(), Some("Hello there! Čest=&"));
        assert_eq!(message.reply_to, None);
        assert_eq!(message.raw["Body"], "Hello there! Čest=&");
        assert_eq!(message.raw["From"], "whatsapp:+385916242493");
    }

    #[test]
    fn inbound_media_is_typed_from_its_content_type() {
        let base = [
            ("MessageSid", "MM1"),
            ("From", "whatsapp:+14155550100"),
            ("To", "whatsapp:+14155238886"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut params = pairs(&base);
            params.extend(pairs(extra));
            only_message(&params)
        };
        assert_eq!(
            with(&[
                ("NumMedia", "1"),
                ("MediaContentType0", "image/jpeg"),
                ("MediaUrl0", "https://api.twilio.com/x")
            ])
            .kind,
            "image"
        );
        assert_eq!(
            with(&[("NumMedia", "1"), ("MediaContentType0", "video/mp4")]).kind,
            "video"
        );
        assert_eq!(
            with(&[("NumMedia", "1"), ("MediaContentType0", "audio/ogg")]).kind,
            "audio"
        );
        assert_eq!(
            with(&[("NumMedia", "1"), ("MediaContentType0", "application/pdf")]).kind,
            "media"
        );
        assert_eq!(with(&[("NumMedia", "2")]).kind, "media");
        assert_eq!(with(&[("NumMedia", "0"), ("Body", "hi")]).kind, "text");
        assert_eq!(with(&[("NumMedia", "lots")]).kind, "text");
        let captioned = with(&[
            ("NumMedia", "1"),
            ("MediaContentType0", "image/png"),
            ("MessageType", "image"),
            ("Body", "look"),
        ]);
        assert_eq!(
            (captioned.kind.as_str(), captioned.text.as_deref()),
            ("image", Some("look"))
        );
    }

    #[test]
    fn inbound_whatsapp_specific_types() {
        let location = only_message(&pairs(&[
            ("MessageSid", "SM2"),
            ("From", "whatsapp:+14155550100"),
            ("MessageType", "location"),
            ("Latitude", "45.81"),
            ("Longitude", "15.98"),
            ("Address", "Ilica 1"),
            ("Label", "Office"),
        ]));
        assert_eq!((location.kind.as_str(), location.text), ("location", None));
        let button = only_message(&pairs(&[
            ("MessageSid", "SM3"),
            ("From", "whatsapp:+14155550100"),
            ("MessageType", "button"),
            ("Body", ""),
            ("ButtonText", "Confirm"),
            ("ButtonPayload", "CONFIRM_1"),
            ("OriginalRepliedMessageSid", "SMout1"),
            ("OriginalRepliedMessageSender", "whatsapp:+14155238886"),
        ]));
        assert_eq!(
            (button.kind.as_str(), button.text.as_deref()),
            ("button", Some("Confirm"))
        );
        assert_eq!(button.reply_to.as_deref(), Some("SMout1"));
        let interactive = only_message(&pairs(&[
            ("MessageSid", "SM4"),
            ("From", "whatsapp:+1415"),
            ("MessageType", "Interactive"),
            ("Body", "Yes"),
        ]));
        assert_eq!(
            (interactive.kind.as_str(), interactive.text.as_deref()),
            ("interactive", Some("Yes"))
        );
    }

    #[test]
    fn bsuid_sender() {
        let params = pairs(&[
            ("MessageSid", "SM5"),
            ("From", "whatsapp:CO.1047823456789"),
            ("ProfileName", "ana.codes"),
            ("Body", "hey"),
        ]);
        let message = only_message(&params);
        assert_eq!(message.contact.id, "CO.1047823456789");
        assert_eq!(message.contact.phone, None);
        assert_eq!(message.contact.user_id.as_deref(), Some("CO.1047823456789"));
        let mut with_number = params;
        with_number.push(("WaId".to_owned(), "14155550100".to_owned()));
        let message = only_message(&with_number);
        assert_eq!(message.contact.id, "14155550100");
        assert_eq!(message.contact.user_id.as_deref(), Some("CO.1047823456789"));
    }

    #[test]
    fn inbound_required_fields() {
        let field = |items: &[(&str, &str)]| parse(&pairs(items)).expect_err("refused").field;
        assert_eq!(
            field(&[("From", "whatsapp:+1"), ("Body", "x")]),
            "MessageSid"
        );
        assert_eq!(
            field(&[("MessageSid", ""), ("From", "whatsapp:+1")]),
            "MessageSid"
        );
        assert_eq!(field(&[("MessageSid", "SM1"), ("Body", "x")]), "From");
        assert_eq!(
            field(&[("MessageSid", "SM1"), ("From", "whatsapp:")]),
            "From"
        );
        assert_eq!(field(&[]), "MessageSid");
        assert_eq!(field(&[("MessageStatus", "delivered")]), "MessageSid");
    }

    #[test]
    fn status_callbacks() {
        let callback = |status: &str| {
            pairs(&[
                ("SmsSid", "SMout1"),
                ("SmsStatus", status),
                ("MessageStatus", status),
                ("To", "whatsapp:+385916242493"),
                ("MessageSid", "SMout1"),
                ("AccountSid", "AC0123"),
                ("From", "whatsapp:+14155238886"),
                ("ApiVersion", "2010-04-01"),
            ])
        };
        let expectations = [
            ("queued", DeliveryStatus::Queued),
            ("accepted", DeliveryStatus::Queued),
            ("scheduled", DeliveryStatus::Queued),
            ("sending", DeliveryStatus::Sent),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("read", DeliveryStatus::Read),
            ("undelivered", DeliveryStatus::Failed),
            ("failed", DeliveryStatus::Failed),
            ("canceled", DeliveryStatus::Failed),
        ];
        for (name, expected) in expectations {
            let report = only_status(&callback(name));
            assert_eq!(report.status, expected, "{name}");
            assert_eq!(report.provider_status, name);
            assert_eq!(report.provider_message_id, "SMout1");
            assert_eq!(report.recipient.as_deref(), Some("+385916242493"));
            assert_eq!(report.to.as_deref(), Some("+14155238886"));
            assert_eq!(report.account_id.as_deref(), Some("AC0123"));
            assert_eq!(report.error_code, None);
        }
        assert_eq!(parse(&callback("partially_delivered")), Ok(vec![]));
    }

    #[test]
    fn failed_status_carries_the_error() {
        let params = pairs(&[
            ("MessageSid", "SMout2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "63016"),
            ("ErrorMessage", "Outside the allowed window"),
            ("To", "whatsapp:+1"),
            ("Timestamp", "2026-11-25T10:00:00Z"),
        ]);
        let report = only_status(&params);
        assert_eq!(report.error_code.as_deref(), Some("63016"));
        assert_eq!(
            report.error_message.as_deref(),
            Some("Outside the allowed window")
        );
        assert_eq!(report.occurred_at.to_rfc3339(), "2026-11-25T10:00:00+00:00");
        assert!(!report.permanent);
    }

    #[test]
    fn status_time_falls_back_to_now() {
        let before = Utc::now();
        let rfc2822 = only_status(&pairs(&[
            ("MessageSid", "S"),
            ("MessageStatus", "sent"),
            ("Timestamp", "Wed, 25 Nov 2026 10:00:00 +0000"),
        ]));
        assert_eq!(
            rfc2822.occurred_at.to_rfc3339(),
            "2026-11-25T10:00:00+00:00"
        );
        let garbage = only_status(&pairs(&[
            ("MessageSid", "S"),
            ("MessageStatus", "sent"),
            ("Timestamp", "soon"),
        ]));
        assert!(garbage.occurred_at >= before);
    }

    #[test]
    fn received_status_means_inbound() {
        let params = pairs(&[
            ("MessageSid", "SM9"),
            ("MessageStatus", "received"),
            ("From", "whatsapp:+1"),
            ("Body", "hi"),
        ]);
        assert_eq!(only_message(&params).provider_message_id, "SM9");
    }

    #[test]
    fn raw_keeps_repeated_names_as_arrays() {
        let params = pairs(&[
            ("MessageSid", "SM1"),
            ("From", "whatsapp:+1"),
            ("X", "a"),
            ("X", "b"),
            ("X", "c"),
        ]);
        let raw = only_message(&params).raw;
        assert_eq!(raw["X"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(raw["MessageSid"], "SM1");
    }

    fn arb_params() -> impl Strategy<Value = Vec<(String, String)>> {
        let names = prop::sample::select(vec![
            "MessageSid",
            "From",
            "To",
            "Body",
            "ButtonText",
            "MessageStatus",
            "NumMedia",
            "MediaContentType0",
            "MessageType",
            "WaId",
            "ProfileName",
            "ErrorCode",
            "Timestamp",
            "AccountSid",
            "OriginalRepliedMessageSid",
        ]);
        let values = prop_oneof![
            ".{0,16}",
            prop::sample::select(vec![
                "whatsapp:",
                "whatsapp:+1415",
                "whatsapp:CO.1",
                "received",
                "delivered",
                "1",
                "0",
                "image/jpeg",
                "",
                "2026-11-25T10:00:00Z",
            ])
            .prop_map(str::to_owned),
        ];
        prop::collection::vec((names.prop_map(str::to_owned), values), 0..12)
    }

    proptest! {
        #[test]
        fn parse_form_never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_form(&body);
        }

        #[test]
        fn parse_never_panics(params in arb_params()) {
            let _ = parse(&params);
        }

        #[test]
        fn parse_never_panics_on_any_strings(params in prop::collection::vec((".{0,12}", ".{0,12}"), 0..8)) {
            let _ = parse(&params);
        }

        #[test]
        fn signatures_never_panic_and_round_trip(
            token in ".{0,40}", url in ".{0,60}",
            params in prop::collection::vec((".{0,10}", ".{0,10}"), 0..6),
            header in prop::option::of(".{0,40}"),
        ) {
            let _ = verify_signature(&token, &url, &params, header.as_deref());
            let signature = expected_signature(&token, &url, &params);
            prop_assert_eq!(verify_signature(&token, &url, &params, Some(&signature)), Ok(()));
            let mut reversed = params.clone();
            reversed.reverse();
            prop_assert_eq!(expected_signature(&token, &url, &reversed), signature);
        }
    }
}
