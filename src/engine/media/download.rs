//! Downloads one media file from the tenant's provider with the tenant's credentials.
//!
//! Where a download may go is never up to the webhook: the first URL and every redirect must be
//! on the channel's API base URL (the allow-listed origin sends use, see
//! `outbound::base_url`) or on one of the provider's documented media hosts; the connection
//! goes through the same destination-checked resolver as sends (`outbound::destination`), so a
//! name resolving to a private address is refused too. Credentials go only to the API origin
//! (and, for Meta, to its media host, which requires the token); redirects are followed by hand,
//! each hop checked, at most [`MAX_REDIRECTS`].

use crate::engine::outbound::base_url::{BaseUrl, BaseUrlAllowList};
use crate::engine::outbound::destination::{Destinations, GuardedResolver, refused_by_policy};
use crate::engine::providers::Provider;
use crate::engine::secret::Secret;
use crate::engine::tenants::Channel;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

pub const MAX_REDIRECTS: usize = 3;
/// Longest Content-Type kept.
const MAX_CONTENT_TYPE: usize = 255;
/// Meta's media host: its download URLs (`lookaside.fbsbx.com`) need the same bearer token.
const META_MEDIA_HOST: &str = "lookaside.fbsbx.com";
/// Twilio redirects media URLs to its CDN; the CDN URL is signed, so no credentials go there.
const TWILIO_CDN_SUFFIX: &str = ".twiliocdn.com";

/// Why a download did not give a file. Messages never carry a URL (Meta's are signed) or a secret.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the media URL is not on the provider's API host; not fetched")]
    OffHost,
    #[error("the channel's API base URL or the media host is not one the engine may connect to")]
    Destination,
    #[error("the media is larger than the tenant's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the provider refused the tenant's credentials (HTTP {0})")]
    Refused(u16),
    #[error("the provider has no such media (HTTP {0})")]
    Gone(u16),
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the sender has no {0} to fetch media with")]
    NoCredentials(&'static str),
    #[error("the provider's answer does not fit its documented API: {0}")]
    Malformed(&'static str),
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("the download failed: {0}")]
    Transport(&'static str),
}

impl FetchError {
    /// Whether another try may succeed: the provider's 5xx and throttling, and the network.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status(status) => *status == 429 || *status == 408 || *status >= 500,
            Self::Transport(_) => true,
            _ => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::OffHost => "off_provider_host",
            Self::Destination => "destination_refused",
            Self::TooLarge { .. } => "too_large",
            Self::Refused(_) => "credentials_refused",
            Self::Gone(_) => "not_found",
            Self::Status(_) => "provider_error",
            Self::NoCredentials(_) => "no_credentials",
            Self::Malformed(_) => "malformed_answer",
            Self::Redirects => "too_many_redirects",
            Self::Transport(_) => "transport",
        }
    }
}

/// The downloaded file.
#[derive(Debug)]
pub struct Fetched {
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// How a request proves who is asking.
enum Auth<'a> {
    Bearer(&'a Secret),
    App(&'a Secret),
    Basic(&'a str, &'a Secret),
}

impl Auth<'_> {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Bearer(token) => request.bearer_auth(token.expose()),
            Self::App(key) => request.header(
                reqwest::header::AUTHORIZATION,
                format!("App {}", key.expose()),
            ),
            Self::Basic(user, password) => request.basic_auth(user, Some(password.expose())),
        }
    }
}

/// Whether a URL may be fetched, and with the credentials or without.
#[derive(Debug, PartialEq, Eq)]
enum Trust {
    WithCredentials,
    WithoutCredentials,
}

pub struct Downloader {
    http: reqwest::Client,
    base_urls: Arc<BaseUrlAllowList>,
    destinations: Arc<Destinations>,
    meta_version: String,
}

impl Downloader {
    pub fn new(
        timeout: Duration,
        meta_version: String,
        base_urls: Arc<BaseUrlAllowList>,
        destinations: Arc<Destinations>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            // Redirects are followed by hand, each hop checked (see the module's comment).
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(destinations.clone())))
            .build()
            .expect("an HTTP client with static settings builds");
        Self {
            http,
            base_urls,
            destinations,
            meta_version,
        }
    }

    /// Downloads the file `reference` names (Meta: a media id; InfoBip, Twilio: a URL), at most
    /// `limit` bytes.
    pub async fn download(
        &self,
        channel: &Channel,
        reference: &str,
        limit: u64,
    ) -> Result<Fetched, FetchError> {
        let base = self
            .base_urls
            .resolve(channel.provider, channel.base_url.as_deref())
            .map_err(|_| FetchError::Destination)?;
        let secrets = &channel.secrets;
        match channel.provider {
            Provider::Meta => {
                let token = secrets
                    .access_token
                    .as_ref()
                    .ok_or(FetchError::NoCredentials("access token"))?;
                let auth = Auth::Bearer(token);
                let url = self.meta_media_url(&base, reference, &auth, limit).await?;
                self.fetch(&base, channel.provider, url, &auth, limit).await
            }
            Provider::Infobip => {
                let key = secrets
                    .api_key
                    .as_ref()
                    .ok_or(FetchError::NoCredentials("API key"))?;
                let url = Url::parse(reference).map_err(|_| FetchError::OffHost)?;
                self.fetch(&base, channel.provider, url, &Auth::App(key), limit)
                    .await
            }
            Provider::Twilio => {
                let (Some(sid), Some(token)) = (&secrets.account_sid, &secrets.auth_token) else {
                    return Err(FetchError::NoCredentials("account SID and auth token"));
                };
                let url = Url::parse(reference).map_err(|_| FetchError::OffHost)?;
                self.fetch(
                    &base,
                    channel.provider,
                    url,
                    &Auth::Basic(sid, token),
                    limit,
                )
                .await
            }
            Provider::Seed => Err(FetchError::NoCredentials("provider")),
        }
    }

    /// Meta: `GET /{version}/{media-id}` answers `{url, mime_type, sha256, file_size, id}`.
    async fn meta_media_url(
        &self,
        base: &BaseUrl,
        media_id: &str,
        auth: &Auth<'_>,
        limit: u64,
    ) -> Result<Url, FetchError> {
        if media_id.is_empty() || media_id.contains(['/', '?', '#']) {
            return Err(FetchError::Malformed("the media id is not an id"));
        }
        let url = base.url_with_segments(&[&self.meta_version, media_id]);
        let response = self.send(base, auth, url).await?;
        check_status(response.status().as_u16())?;
        let body: Value = response
            .json()
            .await
            .map_err(|_| FetchError::Malformed("the media lookup is not JSON"))?;
        if body["file_size"].as_u64().is_some_and(|size| size > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let url = body["url"]
            .as_str()
            .ok_or(FetchError::Malformed("the media lookup has no url"))?;
        Url::parse(url).map_err(|_| FetchError::Malformed("the media lookup's url is not a URL"))
    }

    /// GETs `url`, following redirects that stay where media may be, and reads at most `limit`
    /// bytes of the answer.
    async fn fetch(
        &self,
        base: &BaseUrl,
        provider: Provider,
        mut url: Url,
        auth: &Auth<'_>,
        limit: u64,
    ) -> Result<Fetched, FetchError> {
        for _ in 0..=MAX_REDIRECTS {
            let trust = self.trust(base, provider, &url)?;
            let mut request = self.http.get(url.clone());
            if trust == Trust::WithCredentials {
                request = auth.apply(request);
            }
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Malformed("a redirect without a Location"))?;
                url = url
                    .join(location)
                    .map_err(|_| FetchError::Malformed("a redirect to no URL"))?;
                continue;
            }
            check_status(status.as_u16())?;
            return read_body(response, limit).await;
        }
        Err(FetchError::Redirects)
    }

    /// A request to the API origin, with the credentials (the lookup step).
    async fn send(
        &self,
        base: &BaseUrl,
        auth: &Auth<'_>,
        url: Url,
    ) -> Result<reqwest::Response, FetchError> {
        self.check_literal(base.host())?;
        auth.apply(self.http.get(url))
            .send()
            .await
            .map_err(transport)
    }

    /// Where `url` stands: on the API origin (credentials), on the provider's media host, or
    /// off limits.
    fn trust(&self, base: &BaseUrl, provider: Provider, url: &Url) -> Result<Trust, FetchError> {
        let host = url.host().ok_or(FetchError::OffHost)?;
        let no_user_info = url.username().is_empty() && url.password().is_none();
        if !no_user_info || !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::OffHost);
        }
        if url.origin().ascii_serialization() == base.origin() {
            self.check_literal(host)?;
            return Ok(Trust::WithCredentials);
        }
        let https_default = url.scheme() == "https" && url.port_or_known_default() == Some(443);
        let domain = match host {
            Host::Domain(domain) if https_default => domain,
            _ => return Err(FetchError::OffHost),
        };
        match provider {
            Provider::Meta if domain == META_MEDIA_HOST => Ok(Trust::WithCredentials),
            Provider::Twilio
                if domain
                    .strip_suffix(TWILIO_CDN_SUFFIX)
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')) =>
            {
                Ok(Trust::WithoutCredentials)
            }
            _ => Err(FetchError::OffHost),
        }
    }

    /// IP-literal hosts never reach the guarded resolver: checked here.
    fn check_literal(&self, host: Host<&str>) -> Result<(), FetchError> {
        let ip = match host {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            Host::Domain(_) => return Ok(()),
        };
        if self.destinations.permits(ip) {
            Ok(())
        } else {
            Err(FetchError::Destination)
        }
    }
}

fn check_status(status: u16) -> Result<(), FetchError> {
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(FetchError::Refused(status)),
        404 | 410 => Err(FetchError::Gone(status)),
        _ => Err(FetchError::Status(status)),
    }
}

fn transport(error: reqwest::Error) -> FetchError {
    if refused_by_policy(&error) {
        FetchError::Destination
    } else if error.is_timeout() {
        FetchError::Transport("timed out")
    } else if error.is_connect() {
        FetchError::Transport("cannot connect")
    } else {
        FetchError::Transport("the connection failed")
    }
}

/// Reads the answer, refusing it as soon as it is known to exceed `limit` (a declared
/// Content-Length, or the bytes read so far).
async fn read_body(mut response: reqwest::Response, limit: u64) -> Result<Fetched, FetchError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CONTENT_TYPE)
        .map(str::to_owned);
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        content_type,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downloader() -> Downloader {
        Downloader::new(
            Duration::from_secs(1),
            "v21.0".into(),
            Arc::new(BaseUrlAllowList::new(&["infobip=http://127.0.0.1:9000"]).unwrap()),
            Arc::new(Destinations::new(&["127.0.0.1/32"]).unwrap()),
        )
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn media_stays_on_the_api_origin_or_the_providers_media_hosts() {
        let d = downloader();
        let allow = BaseUrlAllowList::new(&["infobip=http://127.0.0.1:9000"]).unwrap();
        let infobip = allow
            .resolve(Provider::Infobip, Some("http://127.0.0.1:9000"))
            .unwrap();
        let meta = allow.resolve(Provider::Meta, None).unwrap();
        let twilio = allow.resolve(Provider::Twilio, None).unwrap();
        let ok = |base: &BaseUrl, provider, text: &str| d.trust(base, provider, &url(text));
        assert_eq!(
            ok(
                &infobip,
                Provider::Infobip,
                "http://127.0.0.1:9000/whatsapp/1/senders/1/media/2"
            )
            .unwrap(),
            Trust::WithCredentials
        );
        for refused in [
            "http://127.0.0.1:9001/media",
            "http://127.0.0.2:9000/media",
            "http://localhost:9000/media",
            "http://user:pw@127.0.0.1:9000/media",
            "file:///etc/passwd",
            "https://lookaside.fbsbx.com/x",
        ] {
            assert!(
                ok(&infobip, Provider::Infobip, refused).is_err(),
                "{refused}"
            );
        }
        assert_eq!(
            ok(
                &meta,
                Provider::Meta,
                "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
            )
            .unwrap(),
            Trust::WithCredentials
        );
        assert!(ok(&meta, Provider::Meta, "http://lookaside.fbsbx.com/x").is_err());
        assert!(ok(&meta, Provider::Meta, "https://evil.example/x").is_err());
        assert_eq!(
            ok(
                &twilio,
                Provider::Twilio,
                "https://mms.twiliocdn.com/AC1/abc"
            )
            .unwrap(),
            Trust::WithoutCredentials
        );
        for refused in [
            "https://a.b.twiliocdn.com/x",
            "https://twiliocdn.com/x",
            "https://eviltwiliocdn.com/x",
            "https://mms.twiliocdn.com:8443/x",
        ] {
            assert!(ok(&twilio, Provider::Twilio, refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(FetchError::Status(500).retryable());
        assert!(FetchError::Status(429).retryable());
        assert!(FetchError::Transport("x").retryable());
        for permanent in [
            FetchError::Status(400),
            FetchError::Refused(401),
            FetchError::Gone(404),
            FetchError::TooLarge { limit: 1 },
            FetchError::OffHost,
        ] {
            assert!(!permanent.retryable(), "{permanent}");
        }
    }
}
