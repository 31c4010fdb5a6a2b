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
    Contact, Content, DeliveryStatus, InboundMessage, Location, MediaRef, MediaSource, ParseError,
    Provider, Reply, SignatureError, StatusReport, WebhookEvent,
};

type HmacSha1 = Hmac<Sha1>;

const WHATSAPP_PREFIX: &str = "whatsapp:";
const SHA1_LEN: usize = 20;
/// Most form fields a webhook may carry. Twilio sends a few dozen (MediaUrl0..9 and
/// MediaContentType0..9 included); more is refused before anything is decoded.
pub const MAX_FORM_FIELDS: usize = 256;

/// The `X-Twilio-Signature` Twilio computes for a request (reference 3.2):
/// `Base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...))` with the form
/// parameters sorted by name, and a repeated name's values de-duplicated and sorted, as Twilio's
/// SDKs do (twilio-python `RequestValidator.compute_signature`: `sorted(set(values))`; twilio-node
/// `toFormUrlEncodedParam`: `Array.from(new Set(values)).sort()`). Where the two differ (Python
/// sorts by code point, Node by UTF-16 unit: only for characters above U+FFFF) this follows Python.
///
/// `url` must be the exact public URL Twilio requested, query string and percent-encoding included.
/// For a GET, pass no params: the query is already part of `url`.
pub fn expected_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    signature_bytes(auth_token, url, params)
        .map(|digest| BASE64.encode(digest))
        .unwrap_or_default()
}

/// Decodes the `X-Twilio-Signature` header: Base64 of 20 bytes, or an error that says whether it
/// is missing or malformed. Needs nothing from the body, so it is checked before the body is read.
pub fn decode_signature(header: Option<&str>) -> Result<[u8; SHA1_LEN], SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    BASE64
        .decode(header.trim())
        .ok()
        .and_then(|bytes| <[u8; SHA1_LEN]>::try_from(bytes).ok())
        .ok_or(SignatureError::Malformed)
}

/// Checks the `X-Twilio-Signature` header in constant time, as Twilio's validators do: against
/// `url` with its port removed and with its port (the scheme's default, 443 or 80, when it has
/// none), because Twilio has not always signed the same form (twilio-python `validate`, twilio-node
/// `validateRequest`). twilio-node's last resort, re-encoding the URL the way Node's URL parser
/// does, is not followed: `url` is rebuilt from the request line as it arrived.
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let given = decode_signature(header)?;
    let mut matched = subtle::Choice::from(0);
    for candidate in url_variants(url) {
        let expected =
            signature_bytes(auth_token, &candidate, params).ok_or(SignatureError::Mismatch)?;
        matched |= expected.as_slice().ct_eq(&given);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// HMAC takes keys of any length, so `None` cannot happen; it is handled rather than unwrapped.
fn signature_bytes(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<Vec<u8>> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // Tuples order by name, then value: byte order, which equals code-point order.
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// `url` without its port, and with it (the scheme's default port added when there is none).
/// A URL without `scheme://` is returned as it is, twice.
fn url_variants(url: &str) -> [String; 2] {
    let Some(parts) = UrlParts::split(url) else {
        return [url.to_owned(), url.to_owned()];
    };
    let UrlParts {
        scheme,
        user_info,
        host,
        port,
        rest,
    } = parts;
    let without_port = format!("{scheme}{user_info}{host}{rest}");
    let with_port = if port.is_empty() {
        let default = if scheme.eq_ignore_ascii_case("https://") {
            ":443"
        } else {
            ":80"
        };
        format!("{scheme}{user_info}{host}{default}{rest}")
    } else {
        url.to_owned()
    };
    [without_port, with_port]
}

/// A URL cut at its authority without normalising anything, so the path and query keep the
/// exact characters Twilio signed.
struct UrlParts<'a> {
    /// `https://`
    scheme: &'a str,
    /// `user:password@`, or empty
    user_info: &'a str,
    host: &'a str,
    /// `:8443`, or empty
    port: &'a str,
    /// path, query and fragment
    rest: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")? + 3;
        let scheme = &url[..scheme_end];
        let name = &scheme[..scheme_end - 3];
        let valid_scheme = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
        if !valid_scheme {
            return None;
        }
        let authority_end = url[scheme_end..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |offset| scheme_end + offset);
        let authority = &url[scheme_end..authority_end];
        let host_start = authority.rfind('@').map_or(0, |at| at + 1);
        let host_and_port = &authority[host_start..];
        // A colon starts the port only after the closing bracket of an IPv6 literal.
        let after_bracket = host_and_port.rfind(']').map_or(0, |bracket| bracket + 1);
        let port_start = host_and_port[after_bracket..]
            .find(':')
            .map_or(host_and_port.len(), |colon| after_bracket + colon);
        Some(Self {
            scheme,
            user_info: &authority[..host_start],
            host: &host_and_port[..port_start],
            port: &host_and_port[port_start..],
            rest: &url[authority_end..],
        })
    }
}

/// How many fields a form body holds, counted from its separators without decoding anything.
pub fn field_count(body: &[u8]) -> usize {
    if body.is_empty() {
        0
    } else {
        memchr::memchr_iter(b'&', body).count() + 1
    }
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
        content: content(form).boxed(),
        raw: form.to_json(),
    })
}

/// Most attachments Twilio sends on one message.
const MAX_MEDIA: usize = 10;

/// The typed content (reference 3.1): `MediaUrlN`/`MediaContentTypeN` for N below `NumMedia`,
/// `Latitude`/`Longitude`/`Address`/`Label` of a location, `ButtonText`/`ButtonPayload` of a
/// button tap. Lenient: an unreadable count or coordinate leaves the part out.
fn content(form: &Form) -> Content {
    let mut content = Content::default();
    let count: usize = form
        .get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for index in 0..count.min(MAX_MEDIA) {
        let Some(url) = form.get(&format!("MediaUrl{index}")) else {
            continue;
        };
        let mime_type = form.owned(&format!("MediaContentType{index}"));
        content.media.push(MediaRef {
            kind: media_kind(mime_type.as_deref().unwrap_or_default()).to_owned(),
            source: MediaSource::Url(url.to_owned()),
            mime_type,
            sha256: None,
            caption: if index == 0 { form.owned("Body") } else { None },
            filename: None,
        });
    }
    let coordinate = |name: &str| form.get(name).and_then(|v| v.parse::<f64>().ok());
    if let (Some(latitude), Some(longitude)) = (coordinate("Latitude"), coordinate("Longitude")) {
        content.location = Some(Location {
            latitude,
            longitude,
            name: form.owned("Label"),
            address: form.owned("Address"),
            url: None,
        });
    }
    if form.get("ButtonText").is_some() || form.get("ButtonPayload").is_some() {
        content.reply = Some(Reply {
            kind: "button".to_owned(),
            id: None,
            title: form.owned("ButtonText"),
            description: None,
            payload: form.owned("ButtonPayload"),
        });
    }
    content
}

/// The message kind of an attachment's MIME type (stickers arrive as `image/webp`).
fn media_kind(content_type: &str) -> &'static str {
    match content_type.split('/').next().unwrap_or_default() {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "document",
    }
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
    match form.get("MediaContentType0") {
        Some(content_type) => media_kind(content_type).to_owned(),
        None => "media".to_owned(),
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

    /// Vectors computed with twilio-python 9.13.0 (`RequestValidator.compute_signature` over a
    /// Flask-style MultiDict) and twilio-node 6.3.1 (`getExpectedTwilioSignature`), which agree.
    #[test]
    fn repeated_pairs_count_once_as_in_the_sdks() {
        let params = pairs(&[
            ("MediaUrl", "https://b"),
            ("Body", "x"),
            ("MediaUrl", "https://a"),
            ("MediaUrl", "https://b"),
        ]);
        let url = "https://example.com/twilio/inbound";
        assert_eq!(
            expected_signature("authtoken", url, &params),
            "405S/desAMgCNF4EowcK19mQEI8="
        );
        assert_eq!(
            verify_signature(
                "authtoken",
                url,
                &params,
                Some("405S/desAMgCNF4EowcK19mQEI8=")
            ),
            Ok(())
        );
    }

    /// (URL Twilio signed, URL the engine saw, signature): twilio-python 9.13.0 and twilio-node
    /// 6.3.1 both accept these, trying the URL with its port removed and with the default added.
    #[test]
    fn default_ports_are_optional_as_in_the_sdks() {
        let params = pairs(&[("MessageSid", "SM1"), ("Body", "hi")]);
        let accepted = [
            (
                "https://hooks.example.com/webhook/twilio/acme?x=1",
                "GCGUJhbreH8Q6XbYIMpW2kvAPvw=",
            ),
            (
                "https://hooks.example.com:443/webhook/twilio/acme?x=1",
                "NQHCR9/WEv9N5+/dDWrH8biDqNg=",
            ),
            (
                "http://hooks.example.com/webhook/twilio/acme",
                "8Halkt+0Nd770tNT4usBGPjwrak=",
            ),
            (
                "http://hooks.example.com:80/webhook/twilio/acme",
                "LmL0CeBz7yybO29aXhGl1UyqmoE=",
            ),
            (
                "https://hooks.example.com:8443/webhook/twilio/acme",
                "2j53hIcu5IlgQtIz0qR2FlJOTpw=",
            ),
        ];
        for (seen, signature) in accepted {
            assert_eq!(
                verify_signature("authtoken", seen, &params, Some(signature)),
                Ok(()),
                "{seen}"
            );
        }
        // Signed with a port that is not the default: only that port, or none, matches (the
        // SDKs refuse these two as well).
        let refused = [
            (
                "https://hooks.example.com/webhook/twilio/acme",
                "kPxbvy33wX3Soar2mw+V9FDDsT4=",
            ),
            (
                "https://hooks.example.com:8443/webhook/twilio/acme",
                "siQqqGu4L5m21kDAMZ/Sb/UJVWc=",
            ),
        ];
        for (seen, signature) in refused {
            assert_eq!(
                verify_signature("authtoken", seen, &params, Some(signature)),
                Err(SignatureError::Mismatch),
                "{seen}"
            );
        }
    }

    #[test]
    fn url_variants_keep_everything_but_the_port() {
        assert_eq!(
            url_variants("https://u:p@h.example:443/a:b?c=d:e#f"),
            [
                "https://u:p@h.example/a:b?c=d:e#f".to_owned(),
                "https://u:p@h.example:443/a:b?c=d:e#f".to_owned()
            ]
        );
        assert_eq!(
            url_variants("HTTPS://[::1]/x"),
            [
                "HTTPS://[::1]/x".to_owned(),
                "HTTPS://[::1]:443/x".to_owned()
            ]
        );
        assert_eq!(
            url_variants("http://[::1]:8080?q"),
            [
                "http://[::1]?q".to_owned(),
                "http://[::1]:8080?q".to_owned()
            ]
        );
        assert_eq!(
            url_variants("no-scheme/x:1"),
            ["no-scheme/x:1".to_owned(), "no-scheme/x:1".to_owned()]
        );
    }

    #[test]
    fn fields_are_counted_without_decoding() {
        assert_eq!(field_count(b""), 0);
        assert_eq!(field_count(b"a=1"), 1);
        assert_eq!(field_count(b"a=1&b=%26&c"), 3);
        assert_eq!(field_count(INBOUND_BODY), 15);
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
            "document"
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

    #[test]
    fn media_location_and_button_replies_are_typed() {
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
        let two = with(&[
            ("NumMedia", "2"),
            ("Body", "both"),
            (
                "MediaUrl0",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME0",
            ),
            ("MediaContentType0", "image/jpeg"),
            (
                "MediaUrl1",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            ),
            ("MediaContentType1", "application/pdf"),
        ]);
        let content = two.content.clone().unwrap_or_default();
        let kinds: Vec<&str> = content.media.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["image", "document"]);
        assert_eq!(
            two.content.clone().unwrap_or_default().media[0]
                .caption
                .as_deref(),
            Some("both")
        );
        assert_eq!(
            two.content.clone().unwrap_or_default().media[1]
                .mime_type
                .as_deref(),
            Some("application/pdf")
        );
        assert!(
            matches!(&two.content.clone().unwrap_or_default().media[1].source, MediaSource::Url(url) if url.ends_with("/ME1"))
        );
        // More than Twilio's ten attachments, or a count with no URL, is never read past.
        let bogus = with(&[
            ("NumMedia", "99999"),
            ("MediaUrl0", "https://api.twilio.com/x"),
        ]);
        assert_eq!(bogus.content.clone().unwrap_or_default().media.len(), 1);

        let location = with(&[
            ("MessageType", "location"),
            ("Latitude", "37.7879"),
            ("Longitude", "-122.4075"),
            ("Address", "375 Beale St"),
            ("Label", "Twilio"),
        ]);
        assert_eq!(location.kind, "location");
        let place = location
            .content
            .clone()
            .unwrap_or_default()
            .location
            .expect("a location");
        assert_eq!((place.latitude, place.longitude), (37.7879, -122.4075));
        assert_eq!(
            (place.name.as_deref(), place.address.as_deref()),
            (Some("Twilio"), Some("375 Beale St"))
        );

        let button = with(&[
            ("MessageType", "button"),
            ("ButtonText", "Yes"),
            ("ButtonPayload", "YES"),
        ]);
        assert_eq!(
            button.content.clone().unwrap_or_default().reply,
            Some(Reply {
                kind: "button".into(),
                id: None,
                title: Some("Yes".into()),
                description: None,
                payload: Some("YES".into()),
            })
        );
        assert!(with(&[("Body", "hi")]).content.is_none());
    }
}
