//! Inbound media (issue 14 part 3): the typed content of a message in its job's payload, the
//! fetcher that downloads each file after the job's commit with the tenant's credentials, the
//! `media` table that keeps it, and `GET /media/{id}` that serves it to the tenant's workers.

pub mod api;
pub mod blobs;
pub mod download;
pub mod fetcher;
pub mod files;
pub mod kinds;
pub mod new_rows;
pub mod pacing;
pub mod payload;
pub mod public;
pub mod public_url;
pub mod recorder;
pub mod retention;
pub mod settings;
pub mod store;
pub mod upload;
