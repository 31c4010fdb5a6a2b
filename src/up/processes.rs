//! The stack's own programs (engine, operator, sandbox): this binary started again with another
//! subcommand, its output in a log file, stopped with SIGTERM and a grace period.

use crate::up::UpError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running program of the stack.
pub struct Program {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
}

impl Program {
    /// Starts `flomastr <args>` with `env`, logging to `<state>/<name>.log`.
    pub fn start(
        name: &'static str,
        state: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Self, UpError> {
        let exe = std::env::current_exe().map_err(|source| UpError::Spawn {
            what: "the flomastr binary".into(),
            source,
        })?;
        let log = state.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|source| UpError::Io {
            path: log.clone(),
            source,
        })?;
        let stderr = file.try_clone().map_err(|source| UpError::Io {
            path: log.clone(),
            source,
        })?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            // Own process group: a Ctrl-C in the terminal reaches `up` alone, which then stops
            // the stack in order (operator, engine, sandbox, then the servers).
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        // Why: the stack must not outlive `up` even when `up` itself is killed with SIGKILL.
        // (The signal follows the thread that spawned: a tokio worker, alive as long as `up`.)
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|source| UpError::Spawn {
            what: format!("flomastr {}", args.first().map_or("", String::as_str)),
            source,
        })?;
        Ok(Self { name, log, child })
    }

    /// `Some(status)` when the program has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(error.to_string()),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
            tracing::warn!(program = self.name, "did not stop in time; killing it");
        }
        let _ = self.child.kill().await;
    }
}

/// Waits until `url` answers 2xx, the program exits, or `timeout` passes.
pub async fn wait_http(program: &mut Program, url: &str, timeout: Duration) -> Result<(), UpError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| UpError::NotReady {
            what: program.name.into(),
            detail: e.to_string(),
        })?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = program.exited() {
            return Err(UpError::Exited {
                program: program.name,
                status,
                log: program.log.clone(),
            });
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UpError::NotReady {
                what: program.name.into(),
                detail: format!(
                    "{url} did not answer within {} s (log: {})",
                    timeout.as_secs(),
                    program.log.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails early with a clear message when a port the stack needs is taken.
pub fn ensure_free(port: u16, flag: &str) -> Result<(), UpError> {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|_| UpError::PortInUse {
            port,
            flag: flag.to_owned(),
        })
}
