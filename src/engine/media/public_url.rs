//! Expiring, signed public URLs of media files (`GET /public/media/{id}?t=&exp=&sig=`): how
//! InfoBip and Twilio, which send media by URL only, download a file the engine keeps. No worker
//! token: the HMAC-SHA256 signature over the tenant, the id and the expiry is the permission.
//! The tenant is in the link because a media id is unique only within its tenant (a backup
//! restored into a new slug keeps its files' ids); links of the first format (no `t`, signed over
//! the id and the expiry) are still accepted until they expire.
//!
//! The key is derived from the admin token (HMAC under a fixed label), so every replica of the
//! engine signs and checks alike and no other secret needs distributing; the admin token itself
//! never leaves the engine.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const KEY_LABEL: &[u8] = b"flomastr/public-media-url/v1";

/// Signs and checks public media URLs. Debug never prints the key.
#[derive(Clone)]
pub struct PublicMedia {
    /// The engine's public base URL (`--public-url`); without it no URL can be given out.
    base: Option<String>,
    key: [u8; 32],
}

impl std::fmt::Debug for PublicMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicMedia")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the link's signature is missing or wrong")]
    Signature,
    #[error("the link has expired")]
    Expired,
}

impl PublicMedia {
    pub fn new(base: Option<String>, admin_token: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(admin_token.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(KEY_LABEL);
        Self {
            base,
            key: mac.finalize().into_bytes().into(),
        }
    }

    pub fn has_base(&self) -> bool {
        self.base.is_some()
    }

    /// The MAC of a link: over `{tenant}.{id}.{expires}`; links without a tenant (the first
    /// format) over `{id}.{expires}`.
    fn mac(&self, tenant: Option<Uuid>, id: Uuid, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        let signed = match tenant {
            Some(tenant) => format!("{tenant}.{id}.{expires}"),
            None => format!("{id}.{expires}"),
        };
        mac.update(signed.as_bytes());
        mac
    }

    /// The public URL of the tenant's media `id`, valid until `expires`; `None` without a public
    /// base URL.
    pub fn url(&self, tenant: Uuid, id: Uuid, expires: DateTime<Utc>) -> Option<String> {
        let base = self.base.as_ref()?;
        let exp = expires.timestamp();
        let sig = hex::encode(self.mac(Some(tenant), id, exp).finalize().into_bytes());
        Some(format!(
            "{base}/public/media/{id}?t={tenant}&exp={exp}&sig={sig}"
        ))
    }

    /// Checks the signature (in constant time) and then the expiry.
    pub fn verify(
        &self,
        (tenant, id): (Option<Uuid>, Uuid),
        exp: i64,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Refused> {
        let sig = hex::decode(sig).map_err(|_| Refused::Signature)?;
        self.mac(tenant, id, exp)
            .verify_slice(&sig)
            .map_err(|_| Refused::Signature)?;
        if exp < now.timestamp() {
            return Err(Refused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, i64, String) {
        let query = url.split_once('?').unwrap().1;
        let value = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        (value("t"), value("exp").parse().unwrap(), value("sig"))
    }

    #[test]
    fn signed_urls_expire_and_cannot_be_forged() {
        let signer = PublicMedia::new(
            Some("https://engine.example.com".into()),
            "admin-token-0123456789",
        );
        let (tenant, id) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        let url = signer
            .url(tenant, id, now + chrono::Duration::hours(1))
            .unwrap();
        assert!(url.starts_with(&format!(
            "https://engine.example.com/public/media/{id}?t={tenant}&exp="
        )));
        let (t, exp, sig) = parts(&url);
        assert_eq!(t, tenant.to_string());
        let signed = (Some(tenant), id);
        assert_eq!(signer.verify(signed, exp, &sig, now), Ok(()));
        assert_eq!(
            signer.verify((Some(tenant), Uuid::new_v4()), exp, &sig, now),
            Err(Refused::Signature)
        );
        assert_eq!(
            signer.verify((Some(Uuid::new_v4()), id), exp, &sig, now),
            Err(Refused::Signature),
            "another tenant's link"
        );
        assert_eq!(
            signer.verify((None, id), exp, &sig, now),
            Err(Refused::Signature),
            "the tenant left out"
        );
        assert_eq!(
            signer.verify(signed, exp + 1, &sig, now),
            Err(Refused::Signature)
        );
        assert_eq!(
            signer.verify(signed, exp, "zz", now),
            Err(Refused::Signature)
        );
        assert_eq!(
            signer.verify(signed, exp, &sig, now + chrono::Duration::hours(2)),
            Err(Refused::Expired)
        );
        let other = PublicMedia::new(
            Some("https://engine.example.com".into()),
            "another-admin-token-xyz",
        );
        assert_eq!(
            other.verify(signed, exp, &sig, now),
            Err(Refused::Signature)
        );
        assert!(
            PublicMedia::new(None, "admin-token-0123456789")
                .url(tenant, id, now)
                .is_none()
        );
        assert!(!format!("{signer:?}").contains("key"));
    }

    #[test]
    fn links_of_the_first_format_still_verify() {
        let signer = PublicMedia::new(None, "admin-token-0123456789");
        let id = Uuid::new_v4();
        let exp = Utc::now().timestamp() + 60;
        let sig = hex::encode(signer.mac(None, id, exp).finalize().into_bytes());
        assert_eq!(signer.verify((None, id), exp, &sig, Utc::now()), Ok(()));
    }
}
