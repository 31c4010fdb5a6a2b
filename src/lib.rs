//! flomastr: the control plane of a multi-tenant WhatsApp automation platform.
//!
//! One crate, two programs: the Kubernetes operator that reconciles `Tenant` resources, and the
//! engine that queues WhatsApp traffic durably in PostgreSQL for each tenant's n8n workers.

pub mod ai;
pub mod db;
pub mod engine;
pub mod loadtest;
pub mod operator;
pub mod s3;
pub mod sandbox;
pub mod tenant;
pub mod up;
