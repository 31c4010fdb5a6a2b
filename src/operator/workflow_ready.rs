//! WorkflowReady (pure): whether the tenant's worker workflow really runs, judged by the one
//! thing that proves it: the engine saw the tenant's worker ask for a job recently. The shipped
//! workflow long-polls without pause while it runs and starts again every 30 s, so a worker
//! silent for minutes is not polling (deactivated, broken by an edit, or n8n unwell).

use crate::operator::status::Finding;
use crate::tenant::ConditionType;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Silence longer than this means the workflow does not poll.
pub const SILENCE: Duration = Duration::from_secs(120);

/// What the reconcile knows when it judges.
pub struct Seen {
    /// n8n is meant to run (not suspended, replicas > 0).
    pub n8n_wanted: bool,
    /// n8n's pods are available, and since when (N8nReady's last transition to True).
    pub n8n_available_since: Option<DateTime<Utc>>,
    /// The engine's record of the worker's last poll (`Err`: the engine could not say).
    pub last_poll: Result<Option<DateTime<Utc>>, String>,
    pub now: DateTime<Utc>,
}

pub fn finding(seen: &Seen) -> Finding {
    let kind = ConditionType::WorkflowReady;
    if !seen.n8n_wanted {
        return Finding::ok(kind, "ScaledToZero", "n8n is not running, so nothing polls");
    }
    let Some(available_since) = seen.n8n_available_since else {
        return Finding::failed(kind, "Progressing", "waiting for n8n to be available");
    };
    let last = match &seen.last_poll {
        Ok(last) => *last,
        Err(error) => return Finding::failed(kind, "EngineError", error.clone()),
    };
    let silence = |since: DateTime<Utc>| (seen.now - since).to_std().unwrap_or_default();
    match last {
        Some(at) if silence(at) <= SILENCE => Finding::ok(
            kind,
            "Polling",
            format!("the worker workflow last asked the engine for a job at {at}"),
        ),
        _ if silence(available_since) <= SILENCE => Finding::failed(
            kind,
            "Progressing",
            "n8n is available; waiting for the worker workflow's first poll",
        ),
        Some(at) => Finding::failed(
            kind,
            "NotPolling",
            format!(
                "the worker workflow last polled the engine at {at}: check that the workflow \
                 \"flomastr WhatsApp worker\" is active in n8n and see its executions"
            ),
        ),
        None => Finding::failed(
            kind,
            "NotPolling",
            format!(
                "n8n has been available since {available_since} but the worker workflow never \
                 polled the engine: see the n8n pod's provision container log"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn seen(available: Option<i64>, last: Option<i64>, now: i64) -> Seen {
        Seen {
            n8n_wanted: true,
            n8n_available_since: available.map(at),
            last_poll: Ok(last.map(at)),
            now: at(now),
        }
    }

    #[test]
    fn a_recent_poll_is_ready_and_silence_is_not() {
        assert_eq!(finding(&seen(Some(0), Some(290), 300)).reason, "Polling");
        assert!(finding(&seen(Some(0), Some(290), 300)).ok);
        let silent = finding(&seen(Some(0), Some(10), 300));
        assert_eq!((silent.ok, silent.reason.as_str()), (false, "NotPolling"));
    }

    #[test]
    fn a_new_n8n_gets_time_for_its_first_poll() {
        assert_eq!(finding(&seen(None, None, 0)).reason, "Progressing");
        assert_eq!(finding(&seen(Some(0), None, 60)).reason, "Progressing");
        assert_eq!(finding(&seen(Some(0), None, 300)).reason, "NotPolling");
    }

    #[test]
    fn n8n_scaled_to_zero_needs_no_poll_and_engine_errors_show() {
        let mut s = seen(None, None, 0);
        s.n8n_wanted = false;
        assert!(finding(&s).ok);
        let mut s = seen(Some(0), None, 10);
        s.last_poll = Err("the engine is unreachable".into());
        assert_eq!(finding(&s).reason, "EngineError");
    }
}
