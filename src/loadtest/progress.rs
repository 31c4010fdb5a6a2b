//! A progress line on stderr while the run goes: every second on a terminal (rewritten in
//! place), every five seconds in a log.

use super::tally::Tally;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn spawn(tally: Arc<Tally>, started: Instant, done: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let terminal = std::io::stderr().is_terminal();
        let period = Duration::from_secs(if terminal { 1 } else { 5 });
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = done.cancelled() => break,
            }
            let line = line(&tally, started.elapsed());
            let mut err = std::io::stderr().lock();
            let _ = if terminal {
                write!(err, "\r{line}")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
        }
        if terminal {
            let _ = writeln!(std::io::stderr());
        }
    })
}

fn line(tally: &Tally, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let (acknowledged, completed) = (tally.acknowledged(), tally.completed());
    format!(
        "[{:>5.0}s] acknowledged {acknowledged} ({:.0}/s)  completed {completed} ({:.0}/s)  errors {}",
        seconds,
        acknowledged as f64 / seconds,
        completed as f64 / seconds,
        tally.error_count()
    )
}
