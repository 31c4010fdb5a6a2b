//! What a run measured, as a Markdown table for people and fields for callers.

use super::args::{LoadProvider, Plan};
use super::tally::Tally;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

#[derive(Debug)]
pub struct Summary {
    pub provider: LoadProvider,
    pub tenant: String,
    pub ingest_only: bool,
    pub two_calls: bool,
    pub acknowledged: u64,
    pub ingest_per_second: f64,
    pub completed: u64,
    pub completed_per_second: f64,
    /// Acknowledged messages whose jobs were not completed within the drain timeout.
    pub not_completed: u64,
    pub webhook_ms: Percentiles,
    pub pickup_ms: Percentiles,
    pub errors: BTreeMap<String, u64>,
    pub foreign_job: bool,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(sorted: &[f64]) -> Self {
        let at = |p: f64| {
            if sorted.is_empty() {
                f64::NAN
            } else {
                sorted[((sorted.len() - 1) as f64 * p).round() as usize]
            }
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl Summary {
    pub fn from_tally(plan: &Plan, tally: &Tally, ingest: Duration, total: Duration) -> Self {
        let (acknowledged, completed) = (tally.acknowledged(), tally.completed());
        Self {
            provider: plan.provider,
            tenant: plan.tenant.clone(),
            ingest_only: plan.ingest_only,
            two_calls: plan.two_calls,
            acknowledged,
            ingest_per_second: acknowledged as f64 / ingest.as_secs_f64().max(1e-3),
            completed,
            completed_per_second: completed as f64 / total.as_secs_f64().max(1e-3),
            not_completed: if plan.ingest_only {
                0
            } else {
                acknowledged.saturating_sub(completed)
            },
            webhook_ms: Percentiles::of(&tally.webhook_ms()),
            pickup_ms: Percentiles::of(&tally.pickup_ms()),
            errors: tally.errors(),
            foreign_job: tally.foreign_job(),
            elapsed: total,
        }
    }

    /// Every acknowledged message was worked, nothing failed, and no foreign job was met.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.not_completed == 0 && !self.foreign_job
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let provider = format!("{:?}", self.provider).to_lowercase();
        let _ = writeln!(
            out,
            "flomastr load: tenant {}, {provider} webhooks, {:.1} s",
            self.tenant,
            self.elapsed.as_secs_f64()
        );
        out.push_str("\n| measure | value |\n|---|---|\n");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name} | {value} |");
        };
        row(
            "webhooks acknowledged (messages)",
            format!(
                "{} ({:.0} msgs/s)",
                self.acknowledged, self.ingest_per_second
            ),
        );
        row("webhook latency p50 / p99 / max", ms(self.webhook_ms));
        if !self.ingest_only {
            row(
                "jobs completed",
                format!(
                    "{} ({:.0} jobs/s)",
                    self.completed, self.completed_per_second
                ),
            );
            row(
                "worker calls per job",
                if self.two_calls {
                    "2 (next-job, complete)".to_owned()
                } else {
                    "1 (complete-and-next)".to_owned()
                },
            );
            row(
                "pickup after acknowledgement p50 / p99 / max",
                ms(self.pickup_ms),
            );
            row(
                "not completed within the drain timeout",
                self.not_completed.to_string(),
            );
        }
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(what, count)| format!("{what}: {count}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        row("errors by code", errors);
        if self.foreign_job {
            out.push_str(
                "\nThe tenant had a job this run did not queue: it was handed back and the run \
                 stopped. Run load tests against a tenant kept for them.\n",
            );
        }
        out
    }
}

fn ms(p: Percentiles) -> String {
    if p.p50.is_nan() {
        return "no samples".to_owned();
    }
    format!("{:.1} / {:.1} / {:.1} ms", p.p50, p.p99, p.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_nothing_say_so_and_of_samples_pick_ranks() {
        assert_eq!(ms(Percentiles::of(&[])), "no samples");
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
    }
}
