//! Which provider API base URLs a tenant's channel may use. A base URL decides where the engine
//! connects with the tenant's provider credentials, so tenant input never chooses it freely: it
//! must match the allow-list of its provider, which holds the providers' public APIs and whatever
//! the platform adds with `--provider-base-url-allow` (a sandbox, a private deployment).
//!
//! URLs are parsed with the `url` crate (never compared by string prefix) and must be an origin
//! only: scheme, host and port. No user info, path, query or fragment, so nothing in the URL can
//! reroute a request or hide a second host.

use crate::engine::providers::Provider;
use std::fmt;
use url::{Host, Url};

/// Longest base URL accepted (the Tenant CRD allows the same).
const MAX_LENGTH: usize = 2048;

/// The providers' own APIs. InfoBip gives each account its own host under `api.infobip.com`.
const DEFAULTS: &[(Provider, &str)] = &[
    (Provider::Infobip, "https://*.api.infobip.com"),
    (Provider::Infobip, "https://api.infobip.com"),
    (Provider::Meta, "https://graph.facebook.com"),
    (Provider::Twilio, "https://api.twilio.com"),
];

/// A base URL that passed the allow-list: an origin, ready to have API paths appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    /// `scheme://host[:port]`, without a trailing slash (how it is stored and shown).
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    pub fn host(&self) -> Host<&str> {
        self.0.host().expect("checked when parsed")
    }

    /// The URL of an API path given as segments, each percent-encoded (a `/`, `?` or `#` in a
    /// tenant's sender or account id stays inside its segment; `.` and `..` are dropped).
    pub fn url_with_segments(&self, segments: &[&str]) -> Url {
        let mut url = self.0.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .clear()
            .extend(segments);
        url
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error(
        "must be an absolute http(s) URL of scheme, host and optional port only (no user info, path, query or fragment)"
    )]
    NotAnOrigin,
    #[error(
        "is not an allowed {provider} API base URL: use the provider's API ({defaults}) or one the platform allows with --provider-base-url-allow"
    )]
    NotAllowed {
        provider: &'static str,
        defaults: String,
    },
}

/// One allowed origin; the host may start with `*.` (exactly one DNS label in its place).
#[derive(Clone, Debug, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(Host<String>),
    /// `*.suffix`: one label, then the suffix.
    AnyLabelUnder(String),
}

impl OriginPattern {
    fn parse(text: &str) -> Result<Self, BaseUrlError> {
        let (text, wildcard) = match text.split_once("://*.") {
            Some((scheme, rest)) => (format!("{scheme}://{rest}"), true),
            None => (text.to_owned(), false),
        };
        let url = parse_origin(&text)?;
        let host = match (wildcard, url.host()) {
            (true, Some(Host::Domain(domain))) => HostPattern::AnyLabelUnder(domain.to_owned()),
            (false, Some(host)) if !host.to_string().contains('*') => {
                HostPattern::Exact(host.to_owned())
            }
            _ => return Err(BaseUrlError::NotAnOrigin),
        };
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host,
            port: url
                .port_or_known_default()
                .ok_or(BaseUrlError::NotAnOrigin)?,
        })
    }

    fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.port_or_known_default() != Some(self.port) {
            return false;
        }
        match (&self.host, url.host()) {
            (HostPattern::Exact(host), Some(candidate)) => candidate.to_owned() == *host,
            (HostPattern::AnyLabelUnder(suffix), Some(Host::Domain(domain))) => domain
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(is_dns_label),
            _ => false,
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Exact(host) => host.to_string(),
            HostPattern::AnyLabelUnder(suffix) => format!("*.{suffix}"),
        };
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default_port {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Parses an origin-only URL: http(s), a host, nothing after it but an optional `/`.
fn parse_origin(text: &str) -> Result<Url, BaseUrlError> {
    if text.len() > MAX_LENGTH {
        return Err(BaseUrlError::NotAnOrigin);
    }
    let url = Url::parse(text).map_err(|_| BaseUrlError::NotAnOrigin)?;
    let origin_only = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if origin_only {
        Ok(url)
    } else {
        Err(BaseUrlError::NotAnOrigin)
    }
}

/// The allow-list of every provider: the defaults plus the platform's additions.
#[derive(Clone, Debug)]
pub struct BaseUrlAllowList {
    entries: Vec<(Provider, OriginPattern)>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--provider-base-url-allow: `{entry}` is not `provider=origin` (provider infobip, meta or twilio; origin like https://host[:port], host may start with `*.`)"
)]
pub struct AllowEntryError {
    entry: String,
}

impl BaseUrlAllowList {
    /// The defaults plus `entries` (`provider=origin`, e.g. `infobip=http://127.0.0.1:8090`).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowEntryError> {
        let mut list = Self::defaults();
        for entry in entries.iter().map(AsRef::as_ref).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let invalid = || AllowEntryError {
                entry: entry.to_owned(),
            };
            let (provider, origin) = entry.split_once('=').ok_or_else(invalid)?;
            let provider = match provider.trim() {
                "infobip" => Provider::Infobip,
                "meta" => Provider::Meta,
                "twilio" => Provider::Twilio,
                _ => return Err(invalid()),
            };
            let pattern = OriginPattern::parse(origin.trim()).map_err(|_| invalid())?;
            list.entries.push((provider, pattern));
        }
        Ok(list)
    }

    pub fn defaults() -> Self {
        let entries = DEFAULTS
            .iter()
            .map(|(provider, text)| {
                let pattern = OriginPattern::parse(text).expect("the defaults parse");
                (*provider, pattern)
            })
            .collect();
        Self { entries }
    }

    /// The base URL a channel of `provider` connects to: `configured`, or the provider's
    /// public API when there is none. Refused unless it is on the allow-list.
    pub fn resolve(
        &self,
        provider: Provider,
        configured: Option<&str>,
    ) -> Result<BaseUrl, BaseUrlError> {
        let text = match configured {
            Some(text) => text,
            None => self.default_of(provider)?,
        };
        let url = parse_origin(text)?;
        if self
            .entries
            .iter()
            .any(|(p, pattern)| *p == provider && pattern.matches(&url))
        {
            Ok(BaseUrl(url))
        } else {
            Err(self.not_allowed(provider))
        }
    }

    /// The first exact default of the provider (its generic public API).
    fn default_of(&self, provider: Provider) -> Result<&'static str, BaseUrlError> {
        DEFAULTS
            .iter()
            .filter(|(p, text)| *p == provider && !text.contains('*'))
            .map(|(_, text)| *text)
            .next()
            .ok_or_else(|| self.not_allowed(provider))
    }

    fn not_allowed(&self, provider: Provider) -> BaseUrlError {
        let defaults: Vec<&str> = DEFAULTS
            .iter()
            .filter(|(p, _)| *p == provider)
            .map(|(_, text)| *text)
            .collect();
        BaseUrlError::NotAllowed {
            provider: provider.as_str(),
            defaults: if defaults.is_empty() {
                "none".to_owned()
            } else {
                defaults.join(", ")
            },
        }
    }

    /// Every allowed origin as `provider=origin`, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(provider, pattern)| format!("{}={pattern}", provider.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(extra: &[&str]) -> BaseUrlAllowList {
        BaseUrlAllowList::new(extra).unwrap()
    }

    #[test]
    fn the_providers_public_apis_are_allowed_and_normalised() {
        let allow = list(&[]);
        for (provider, url, origin) in [
            (
                Provider::Infobip,
                "https://abc12.api.infobip.com",
                "https://abc12.api.infobip.com",
            ),
            (
                Provider::Infobip,
                "https://API.infobip.com/",
                "https://api.infobip.com",
            ),
            (
                Provider::Infobip,
                "https://api.infobip.com:443",
                "https://api.infobip.com",
            ),
            (
                Provider::Meta,
                "https://graph.facebook.com",
                "https://graph.facebook.com",
            ),
            (
                Provider::Twilio,
                "https://api.twilio.com",
                "https://api.twilio.com",
            ),
        ] {
            let resolved = allow.resolve(provider, Some(url)).unwrap();
            assert_eq!(resolved.origin(), origin, "{url}");
        }
        assert_eq!(
            allow.resolve(Provider::Meta, None).unwrap().origin(),
            "https://graph.facebook.com"
        );
        let twilio = allow.resolve(Provider::Twilio, None).unwrap();
        assert_eq!(
            twilio
                .url_with_segments(&["2010-04-01", "Accounts", "AC1", "Messages.json"])
                .as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
        );
        assert_eq!(
            twilio
                .url_with_segments(&["v1", "../x?y#z/w", ".."])
                .as_str(),
            "https://api.twilio.com/v1/..%2Fx%3Fy%23z%2Fw",
            "tenant input stays inside its segment"
        );
    }

    #[test]
    fn tricks_that_reroute_a_request_are_not_origins() {
        let allow = list(&["infobip=http://127.0.0.1:8090"]);
        for url in [
            "https://api.infobip.com/whatsapp#",
            "https://api.infobip.com#",
            "https://api.infobip.com/?x=1",
            "https://api.infobip.com?",
            "https://user@api.infobip.com",
            "https://api.infobip.com:pass@evil.example",
            "https://evil.example\\@api.infobip.com",
            "https://api.infobip.com/proxy/",
            "http://127.0.0.1:8090/x",
            "ftp://api.infobip.com",
            "api.infobip.com",
            "//api.infobip.com",
            "",
            "https://",
        ] {
            assert_eq!(
                allow.resolve(Provider::Infobip, Some(url)),
                Err(BaseUrlError::NotAnOrigin),
                "{url}"
            );
        }
    }

    #[test]
    fn hosts_ports_schemes_and_providers_outside_the_list_are_refused() {
        let allow = list(&["infobip=http://127.0.0.1:8090"]);
        for (provider, url) in [
            (Provider::Infobip, "http://api.infobip.com"),
            (Provider::Infobip, "https://api.infobip.com:8443"),
            (Provider::Infobip, "https://a.b.api.infobip.com"),
            (Provider::Infobip, "https://-a.api.infobip.com"),
            (Provider::Infobip, "https://evilapi.infobip.com"),
            (Provider::Infobip, "https://api.infobip.com.evil.example"),
            (Provider::Infobip, "https://api.infobip.com."),
            (Provider::Infobip, "https://localhost"),
            (Provider::Infobip, "http://127.0.0.1:8091"),
            (Provider::Infobip, "http://127.0.0.2:8090"),
            (Provider::Infobip, "http://[::1]:8090"),
            (Provider::Infobip, "http://169.254.169.254"),
            (Provider::Infobip, "http://2130706434:8090"),
            (Provider::Meta, "http://127.0.0.1:8090"),
            (Provider::Meta, "https://graph.facebook.com.evil.example"),
            (Provider::Twilio, "https://api.infobip.com"),
            (Provider::Seed, "https://api.infobip.com"),
        ] {
            let refused = allow.resolve(provider, Some(url));
            assert!(
                matches!(refused, Err(BaseUrlError::NotAllowed { .. })),
                "{provider:?} {url}: {refused:?}"
            );
        }
        assert!(allow.resolve(Provider::Seed, None).is_err());
    }

    #[test]
    fn the_platform_adds_origins_per_provider() {
        let allow = list(&[
            "infobip=http://127.0.0.1:8090",
            " meta = http://sandbox.internal:8090 ",
            "twilio=https://*.proxy.example",
        ]);
        assert_eq!(
            allow
                .resolve(Provider::Infobip, Some("http://127.0.0.1:8090/"))
                .unwrap()
                .origin(),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            allow
                .resolve(Provider::Infobip, Some("http://2130706433:8090"))
                .unwrap()
                .origin(),
            "http://127.0.0.1:8090",
            "the same address written as a number"
        );
        assert!(
            allow
                .resolve(Provider::Meta, Some("http://sandbox.internal:8090"))
                .is_ok()
        );
        assert!(
            allow
                .resolve(Provider::Twilio, Some("https://eu.proxy.example"))
                .is_ok()
        );
        assert_eq!(
            allow.describe().last().map(String::as_str),
            Some("twilio=https://*.proxy.example")
        );
        for bad in [
            "infobip",
            "whatsapp=https://x.example",
            "infobip=https://x.example/path",
            "infobip=https://x.example?q",
            "infobip=https://*.",
            "infobip=ftp://x.example",
            "infobip=https://a.*.example",
        ] {
            assert!(BaseUrlAllowList::new(&[bad]).is_err(), "{bad}");
        }
    }
}
