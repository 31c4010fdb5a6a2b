//! When a tenant's next scheduled backup is due: `spec.backup.schedule`, five-field cron in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr;

/// The first time after `after` the schedule names, or why the schedule is not valid.
pub fn next_after(schedule: &str, after: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if schedule.split_whitespace().count() != 5 {
        return Err(format!(
            "spec.backup.schedule `{schedule}` must have five fields: minute hour day-of-month month day-of-week"
        ));
    }
    let cron =
        Cron::from_str(schedule).map_err(|e| format!("spec.backup.schedule `{schedule}`: {e}"))?;
    cron.find_next_occurrence(&after, false)
        .map_err(|e| format!("spec.backup.schedule `{schedule}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_next_time_is_in_utc_and_strictly_after() {
        let daily = "0 3 * * *";
        assert_eq!(
            next_after(daily, at("2026-12-03T02:59:59Z")).unwrap(),
            at("2026-12-03T03:00:00Z")
        );
        assert_eq!(
            next_after(daily, at("2026-12-03T03:00:00Z")).unwrap(),
            at("2026-12-04T03:00:00Z")
        );
        // Day of week 0 is Sunday, as in Kubernetes CronJobs.
        assert_eq!(
            next_after("30 1 * * 0", at("2026-12-03T00:00:00Z")).unwrap(),
            at("2026-12-06T01:30:00Z")
        );
        assert_eq!(
            next_after("*/15 * * * *", at("2026-12-03T00:07:00Z")).unwrap(),
            at("2026-12-03T00:15:00Z")
        );
    }

    #[test]
    fn a_bad_schedule_says_why() {
        for bad in ["0 3 * *", "0 0 3 * * *", "61 * * * *", "x y z w v"] {
            let error = next_after(bad, Utc::now()).unwrap_err();
            assert!(error.contains("spec.backup.schedule"), "{bad}: {error}");
        }
    }
}
