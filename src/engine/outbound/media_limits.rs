//! The largest file each provider accepts per kind of media. Checked where the size is known
//! (the worker gives `media.size`); otherwise a URL's size is only learnt by the provider that
//! downloads it, which refuses an oversized file asynchronously (Meta 131053, a failed status).
//!
//! Meta: image 5 MB, video and audio 16 MB, document 100 MB, sticker 100 KB static / 500 KB
//! animated (the larger is taken: whether a WebP is animated is not known here). Twilio: 5 MB
//! images, 16 MB for everything else. InfoBip passes WhatsApp's (Meta's) limits on.

use super::content::MediaKind;
use crate::engine::providers::Provider;

const MB: u64 = 1024 * 1024;
const KB: u64 = 1024;

pub fn max_bytes(provider: Provider, kind: MediaKind) -> u64 {
    match (provider, kind) {
        (_, MediaKind::Image) => 5 * MB,
        (Provider::Twilio, MediaKind::Document) => 16 * MB,
        (_, MediaKind::Document) => 100 * MB,
        (Provider::Twilio, MediaKind::Sticker) => 16 * MB,
        (_, MediaKind::Sticker) => 500 * KB,
        (_, MediaKind::Audio | MediaKind::Video) => 16 * MB,
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{provider} takes {kind} files of at most {limit} bytes; this one has {size}")]
pub struct TooLarge {
    pub provider: &'static str,
    pub kind: &'static str,
    pub limit: u64,
    pub size: u64,
}

/// Refuses a file of `size` bytes the provider would not take.
pub fn check(provider: Provider, kind: MediaKind, size: u64) -> Result<(), TooLarge> {
    let limit = max_bytes(provider, kind);
    if size > limit {
        return Err(TooLarge {
            provider: provider.as_str(),
            kind: kind.as_str(),
            limit,
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_providers() {
        assert!(check(Provider::Meta, MediaKind::Image, 5 * MB).is_ok());
        assert!(check(Provider::Meta, MediaKind::Image, 5 * MB + 1).is_err());
        assert!(check(Provider::Meta, MediaKind::Video, 16 * MB).is_ok());
        assert!(check(Provider::Meta, MediaKind::Audio, 16 * MB + 1).is_err());
        assert!(check(Provider::Meta, MediaKind::Document, 100 * MB).is_ok());
        assert!(check(Provider::Twilio, MediaKind::Document, 16 * MB + 1).is_err());
        assert!(check(Provider::Meta, MediaKind::Sticker, 500 * KB).is_ok());
        let refused = check(Provider::Infobip, MediaKind::Sticker, 500 * KB + 1).unwrap_err();
        assert_eq!(refused.limit, 500 * KB);
        assert!(refused.to_string().contains("sticker"));
    }
}
