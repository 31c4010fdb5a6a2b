//! The repository's scripts (`scripts/postgres`, `scripts/apiserver`, ...) run by `flomastr up`:
//! they hold the install and start logic shared with `scripts/test`, so there is one way to get
//! each server.

use crate::up::UpError;
use crate::up::progress::Step;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How many lines of a failed script's output the error keeps.
const TAIL_LINES: usize = 20;

pub struct Scripts {
    dir: PathBuf,
}

impl Scripts {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("scripts"),
        }
    }

    /// Runs a script; its stderr lines feed the step's detail; returns its stdout.
    pub async fn run(&self, step: &Step, name: &str, args: &[&str]) -> Result<String, UpError> {
        let mut child = Command::new(self.dir.join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The servers a script starts must not see the terminal's Ctrl-C: `up` stops them
            // after the programs that use them.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| UpError::Spawn {
                what: format!("scripts/{name}"),
                source,
            })?;
        let stderr = child.stderr.take().map(BufReader::new);
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        if let Some(stderr) = stderr {
            let mut lines = stderr.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                step.detail(&strip_ansi(&line));
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| UpError::Spawn {
                what: format!("scripts/{name}"),
                source,
            })?;
        if !output.status.success() {
            return Err(UpError::Script {
                script: format!("scripts/{name} {}", args.join(" ")),
                status: output.status.to_string(),
                tail: Vec::from(tail).join("\n"),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Scripts {
    /// Runs a script that answers by its exit status (`scripts/node check`): whether it
    /// succeeded, and its output.
    pub async fn ask(&self, name: &str, args: &[&str]) -> Result<(bool, String), UpError> {
        let output = Command::new(self.dir.join(name))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| UpError::Spawn {
                what: format!("scripts/{name}"),
                source,
            })?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), text.trim().to_owned()))
    }
}

/// The `export NAME='value'` lines the server scripts print, as a map.
pub fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| {
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_read_with_and_without_quotes() {
        let vars = parse_exports(
            "export FLOMASTR_PG_URL='postgres://postgres:p@127.0.0.1:5/postgres'\nexport PGBIN=/x/bin\nnoise\n",
        );
        assert_eq!(
            vars["FLOMASTR_PG_URL"],
            "postgres://postgres:p@127.0.0.1:5/postgres"
        );
        assert_eq!(vars["PGBIN"], "/x/bin");
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn colour_codes_are_removed_from_progress_lines() {
        assert_eq!(
            strip_ansi("\u{1b}[1m[flomastr]\u{1b}[0m building etcd"),
            "[flomastr] building etcd"
        );
    }
}
