//! n8n's volume as a tar stream: `flomastr n8n-data` runs inside the tenant's namespace, in a
//! Job pod of the operator's own image that mounts the volume as n8n's user (so it reads and
//! writes exactly what n8n can, and nothing of the node). The operator streams the archive out
//! of the pod (and back in) through the API server's exec; the pod never holds it whole.

use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a filesystem puts at the root of a fresh volume, owned by root: not n8n's data.
const NOT_DATA: &[&str] = &["lost+found"];
/// After a pack or unpack ended, the held main process waits this long before it exits (and
/// the container with it): what the exec wrote last is still on its way to the operator.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub action: DataAction,
}

#[derive(Subcommand)]
pub enum DataAction {
    /// Wait (the Job's main process) until a pack or unpack wrote `--done`, then exit 0.
    Hold {
        #[arg(long)]
        done: PathBuf,
        /// Give up (exit 1) after this long without one.
        #[arg(long, default_value_t = 1800)]
        limit_seconds: u64,
    },
    /// Write the tar of `--dir` to stdout, then `--done`.
    Pack {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        done: PathBuf,
    },
    /// Unpack the tar read from stdin into `--dir`, then write `--done`.
    Unpack {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        done: PathBuf,
    },
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.action {
        DataAction::Hold {
            done,
            limit_seconds,
        } => hold(&done, Duration::from_secs(limit_seconds)),
        DataAction::Pack { dir, done } => {
            let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let outcome = pack(&dir, out);
            finish(&done, outcome)
        }
        DataAction::Unpack { dir, done } => {
            let outcome = unpack(&dir, std::io::stdin().lock()).map(|_| ());
            finish(&done, outcome)
        }
    }
}

/// The Job ends (Complete, then collected by its TTL) whatever the outcome: the exec's exit
/// status tells the operator how it went.
fn finish(done: &Path, outcome: std::io::Result<()>) -> anyhow::Result<()> {
    std::fs::write(done, b"done")?;
    Ok(outcome?)
}

fn hold(done: &Path, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done.exists() {
        if started.elapsed() > limit {
            anyhow::bail!("no pack or unpack within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(DRAIN);
    Ok(())
}

/// Writes every entry of `dir` (not `dir` itself, whose owner and mode belong to the volume)
/// as a tar to `out`. Symbolic links are kept as links, never followed.
pub fn pack(dir: &Path, out: impl Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if NOT_DATA.iter().any(|skip| name == *skip) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    builder.into_inner()?.flush()
}

/// Unpacks the tar read from `input` into `dir`, which it empties first: a restore cut off
/// midway left part of an archive there, and the next attempt fills the volume again from
/// scratch (only volumes the operator created for a restore and marked as filling get here).
/// Entries that would land outside `dir` (`..`, absolute paths, through links) are refused by
/// the tar reader. Ownership is not restored: everything belongs to the user this runs as
/// (n8n's). Returns the number of entries.
pub fn unpack(dir: &Path, input: impl Read) -> std::io::Result<u64> {
    empty(dir)?;
    let mut archive = tar::Archive::new(input);
    archive.set_overwrite(true);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(dir)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the archive's entry {} points outside the volume",
                    entry.path()?.display()
                ),
            ));
        }
        count += 1;
    }
    Ok(count)
}

/// Removes every entry of `dir` but what the filesystem made (`NOT_DATA`); links are removed,
/// never followed.
fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if NOT_DATA.iter().any(|keep| entry.file_name() == *keep) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_packs_and_unpacks_to_the_same_files_without_its_root_or_lost_found() {
        let from = tempfile::tempdir().unwrap();
        std::fs::write(
            from.path().join("database.sqlite"),
            b"SQLite format 3\0rows",
        )
        .unwrap();
        std::fs::create_dir_all(from.path().join("binaryData/ab")).unwrap();
        std::fs::write(from.path().join("binaryData/ab/file"), vec![7u8; 70_000]).unwrap();
        std::fs::create_dir(from.path().join("lost+found")).unwrap();
        std::fs::write(from.path().join("lost+found/x"), b"fs").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.path().join("link")).unwrap();
        let mut archive = Vec::new();
        pack(from.path(), &mut archive).unwrap();

        // What a restore cut off midway left: emptied first, the filesystem's own kept.
        let into = tempfile::tempdir().unwrap();
        std::fs::write(into.path().join("database.sqlite"), b"older").unwrap();
        std::fs::create_dir_all(into.path().join("partial/dir")).unwrap();
        std::fs::write(into.path().join("partial/dir/half"), b"half").unwrap();
        std::fs::create_dir(into.path().join("lost+found")).unwrap();
        std::os::unix::fs::symlink(from.path(), into.path().join("elsewhere")).unwrap();
        assert!(unpack(into.path(), archive.as_slice()).unwrap() >= 4);
        assert!(!into.path().join("partial").exists(), "left-overs removed");
        assert!(!into.path().join("elsewhere").exists());
        assert!(
            from.path().join("database.sqlite").exists(),
            "a link is not followed"
        );
        assert_eq!(
            std::fs::read(into.path().join("database.sqlite")).unwrap(),
            b"SQLite format 3\0rows"
        );
        assert_eq!(
            std::fs::read(into.path().join("binaryData/ab/file")).unwrap(),
            vec![7u8; 70_000]
        );
        assert!(
            into.path().join("lost+found").exists(),
            "the filesystem's own directory is kept"
        );
        assert!(!into.path().join("lost+found/x").exists(), "never archived");
        assert_eq!(
            std::fs::read_link(into.path().join("link")).unwrap(),
            Path::new("/etc/passwd"),
            "a link stays a link, never the file it names"
        );
    }

    #[test]
    fn an_entry_outside_the_volume_is_refused() {
        let mut header = tar::Header::new_gnu();
        let body = b"owned";
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        // `set_path` refuses `..`; write the name bytes as a hostile archive would.
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        let mut archive = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut archive);
            builder.append(&header, &body[..]).unwrap();
            builder.finish().unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        let into = root.path().join("volume");
        std::fs::create_dir(&into).unwrap();
        let refused = unpack(&into, archive.as_slice()).unwrap_err();
        assert!(
            refused.to_string().contains("outside the volume"),
            "{refused}"
        );
        assert!(!root.path().join("escape").exists());
    }
}
