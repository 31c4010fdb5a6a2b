//! Tenant backups on the operator's side: where archives are kept ([`target`]) and moving them
//! between the engine's backup API and a target ([`transfer`]), full backups of a tenant
//! ([`full`]) with n8n's volume ([`n8n_data`]).

pub mod cli;
pub mod data_job;
pub mod full;
pub mod manifest;
pub mod n8n_data;
pub mod operate;
pub mod schedule;
pub mod seal;
pub mod target;
pub mod transfer;
pub mod volume_archive;

pub use full::{restore_tenant_backup, take_tenant_backup};
