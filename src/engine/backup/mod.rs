//! Tenant backups of the engine's data: `POST /admin/tenants/{slug}/backup` streams a versioned
//! archive of the tenant's rows, taken in one snapshot; `POST /admin/tenants/{slug}/restore`
//! checks a whole archive before it writes anything, then replaces the tenant's data in one
//! transaction.
//!
//! What an archive holds, and what it does not (on purpose):
//! - every table of the tenant's data ([`tables::TABLES`]): jobs not yet done (queued, in
//!   flight, dead-lettered) with their media files, uploaded files not yet expired (with their
//!   bytes, also those kept in the object store), blocked conversations, outbound messages with their events and
//!   the providers' status reports, contact windows, knowledge documents and chunks with their
//!   embeddings, conversation memory, AI usage (the month's budget) and audit, templates and
//!   their events, send policy, contact time zones and marketing limits, consent and its
//!   history, campaigns with runs, recipients and segments;
//! - the tenant's settings and its senders' ids and addresses (the header), to create a tenant
//!   restored into a slug that is not registered and to map references to senders;
//! - not the registration the operator owns and sends again from the Tenant and its
//!   credentials Secret: worker token hashes, sender credentials, the webhook secret, AI
//!   settings. Sealed credentials are bound to the tenant's id and the engine's master key, so
//!   they would not open in another tenant or engine anyway: an archive carries no secret.
//! - not completed jobs (history the retention removes) nor natural-language query scopes
//!   (per connection).

pub mod archive;
pub mod export;
pub mod restore;
pub mod restore_objects;
pub mod tables;
pub mod validate;
