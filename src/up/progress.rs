//! What `flomastr up` shows while it works: one line per step, a spinner with the elapsed time
//! on a terminal (slow steps like the first API-server build show their latest output line), and
//! plain lines when the output is a file or a pipe.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One step of the bring-up.
pub struct Step {
    title: String,
    bar: ProgressBar,
    started: Instant,
}

impl Step {
    pub fn start(title: impl Into<String>) -> Self {
        let title = title.into();
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix} [{elapsed}] {wide_msg:.dim}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(title.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            eprintln!("[flomastr] {title} ...");
            ProgressBar::hidden()
        };
        Self {
            title,
            bar,
            started: Instant::now(),
        }
    }

    /// The latest thing the step printed (shown dimmed beside the spinner).
    pub fn detail(&self, line: &str) {
        let line: String = line.chars().take(120).collect();
        self.bar.set_message(line);
    }

    pub fn done(self) {
        self.finish("✓", "");
    }

    pub fn done_with(self, note: &str) {
        self.finish("✓", note);
    }

    pub fn failed(self) {
        self.finish("✗", "failed");
    }

    fn finish(self, mark: &str, note: &str) {
        self.bar.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(" — {note}")
        };
        eprintln!("{mark} {} ({seconds:.1} s){note}", self.title);
    }
}

/// Runs `work` as a step: shown while it runs, marked done or failed after.
pub async fn step<T, E>(
    title: impl Into<String>,
    work: impl AsyncFnOnce(&Step) -> Result<T, E>,
) -> Result<T, E> {
    let step = Step::start(title);
    match work(&step).await {
        Ok(value) => {
            step.done();
            Ok(value)
        }
        Err(error) => {
            step.failed();
            Err(error)
        }
    }
}
