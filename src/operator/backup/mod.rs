//! Tenant backups on the operator's side: where archives are kept ([`target`]) and moving them
//! between the engine's backup API and a target ([`transfer`]).

pub mod cli;
pub mod target;
pub mod transfer;
