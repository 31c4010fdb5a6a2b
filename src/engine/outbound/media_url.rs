//! Media URLs a worker gives in a send. The provider downloads them, so a URL is checked like
//! every tenant-supplied URL: parsed with the `url` crate, `https` only, no user info (it would
//! hand credentials to the provider, and `user@host` hides the real host), and no loopback,
//! private, link-local or other non-public address unless the platform allows that network
//! (`--provider-private-networks`, the sandbox override). Host names are not resolved here: the
//! provider resolves them from its own network, where ours is not reachable; names that always
//! mean this machine (`localhost`) are refused.

use super::destination::Destinations;
use std::net::IpAddr;
use url::{Host, Url};

/// InfoBip's and Twilio's limit on a media URL.
pub const MAX_URL_CHARS: usize = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlError {
    #[error("must be an absolute https URL of at most {MAX_URL_CHARS} characters")]
    NotHttps,
    #[error("must not carry user info (user:password@)")]
    UserInfo,
    #[error("must point to a public host, not a loopback, private or link-local address")]
    NotPublic,
}

/// The URL, normalised, if a provider may be told to download it.
pub fn check(text: &str, destinations: &Destinations) -> Result<String, MediaUrlError> {
    if text.len() > MAX_URL_CHARS || text.trim() != text {
        return Err(MediaUrlError::NotHttps);
    }
    let url = Url::parse(text).map_err(|_| MediaUrlError::NotHttps)?;
    if url.scheme() != "https" {
        return Err(MediaUrlError::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MediaUrlError::UserInfo);
    }
    let allowed = match url.host() {
        None => return Err(MediaUrlError::NotHttps),
        Some(Host::Ipv4(ip)) => destinations.permits(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => destinations.permits(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => !is_local_name(name),
    };
    if allowed {
        Ok(url.to_string())
    } else {
        Err(MediaUrlError::NotPublic)
    }
}

/// Names that resolve to this machine or the local network by convention (RFC 6761, mDNS).
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
        || !name.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_urls_pass_normalised() {
        let none = Destinations::default();
        assert_eq!(
            check("https://cdn.example.com/a b.jpg?x=1", &none).unwrap(),
            "https://cdn.example.com/a%20b.jpg?x=1"
        );
        assert!(check("https://8.8.8.8/x.png", &none).is_ok());
        assert!(check("https://[2606:4700::1111]/x.png", &none).is_ok());
    }

    #[test]
    fn other_schemes_user_info_and_private_hosts_are_refused() {
        let none = Destinations::default();
        for (url, error) in [
            ("http://cdn.example.com/a.jpg", MediaUrlError::NotHttps),
            ("ftp://cdn.example.com/a.jpg", MediaUrlError::NotHttps),
            ("cdn.example.com/a.jpg", MediaUrlError::NotHttps),
            ("https://", MediaUrlError::NotHttps),
            (" https://cdn.example.com/a.jpg", MediaUrlError::NotHttps),
            (
                "https://user:pw@cdn.example.com/a.jpg",
                MediaUrlError::UserInfo,
            ),
            (
                "https://user@cdn.example.com/a.jpg",
                MediaUrlError::UserInfo,
            ),
            ("https://127.0.0.1/a.jpg", MediaUrlError::NotPublic),
            ("https://2130706433/a.jpg", MediaUrlError::NotPublic),
            ("https://10.0.0.7/a.jpg", MediaUrlError::NotPublic),
            ("https://169.254.169.254/latest", MediaUrlError::NotPublic),
            ("https://[::1]/a.jpg", MediaUrlError::NotPublic),
            (
                "https://[::ffff:192.168.0.1]/a.jpg",
                MediaUrlError::NotPublic,
            ),
            ("https://localhost/a.jpg", MediaUrlError::NotPublic),
            ("https://api.localhost/a.jpg", MediaUrlError::NotPublic),
            (
                "https://metadata.google.internal/a",
                MediaUrlError::NotPublic,
            ),
            ("https://intranet/a.jpg", MediaUrlError::NotPublic),
        ] {
            assert_eq!(check(url, &none), Err(error), "{url}");
        }
        let long = format!("https://cdn.example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(check(&long, &none), Err(MediaUrlError::NotHttps));
    }

    #[test]
    fn the_platform_override_allows_its_private_networks_only() {
        let sandbox = Destinations::new(&["127.0.0.1/32"]).unwrap();
        assert!(check("https://127.0.0.1:8443/a.jpg", &sandbox).is_ok());
        assert_eq!(
            check("https://10.0.0.7/a.jpg", &sandbox),
            Err(MediaUrlError::NotPublic)
        );
        assert_eq!(
            check("http://127.0.0.1/a.jpg", &sandbox),
            Err(MediaUrlError::NotHttps)
        );
    }
}
