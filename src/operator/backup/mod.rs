//! Tenant backups on the operator's side: where archives are kept ([`target`]) and moving them
//! between the engine's backup API and a target ([`transfer`]).

pub mod cli;
pub mod full;
pub mod manifest;
pub mod operate;
pub mod schedule;
pub mod seal;
pub mod target;
pub mod transfer;

pub use full::{restore_tenant_backup, take_tenant_backup};
