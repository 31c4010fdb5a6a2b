//! Integration tests against the real PostgreSQL and the real kube-apiserver started by
//! `scripts/test`. One test binary keeps linking cheap on a two-core machine.

mod ai_embed;
mod ai_fairness;
mod ai_knowledge;
mod ai_nl_query;
mod ai_pulse;
mod ai_stub;
mod ai_suspension;
mod ai_synthesis;
mod chart;
mod cli;
mod common;
mod e2e_up;
mod engine_admin;
mod engine_harness;
mod engine_outbound;
mod engine_queue;
mod engine_webhooks;
mod examples;
mod image;
mod isolation_edge;
mod isolation_inbound;
mod isolation_outbound;
mod n8n_workflow;
mod node;
mod operator;
mod operator_edge;
mod operator_privileges;
mod policy_caps;
mod policy_consent;
mod policy_harness;
mod policy_quiet_hours;
mod postgres;
mod reliability;
mod sandbox;
mod tenant_crd;
