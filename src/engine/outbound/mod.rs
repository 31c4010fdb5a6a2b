//! Outbound sending: workers' replies are stored first (202 after commit), then a dispatcher
//! sends them through the tenant's provider, paced per sender and per recipient, retried on
//! throttling and transient errors, and moved forward only by the providers' reports.

pub mod api;
pub mod base_url;
pub mod capabilities;
pub mod clients;
pub mod content;
pub mod content_checks;
pub mod destination;
pub mod dispatcher;
pub mod in_flight;
pub mod media_limits;
pub mod media_url;
pub mod meta_upload;
pub mod pacing;
pub mod provider_error;
pub mod report_lock;
pub mod stored_media;
pub mod template_api;
pub mod wire;
