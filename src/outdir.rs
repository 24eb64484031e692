//! The tool's own output folder (`.dockception/` next to the manifest unless told otherwise).
//! Each run writes into a fresh folder under `runs/`; only a successful run replaces `last/`, so
//! a failed build never destroys the previous good output, and a failed or interrupted run
//! leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A run's private folder; removed on drop unless promoted.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    out_dir: PathBuf,
    promoted: bool,
}

impl RunDir {
    /// Create `<out_dir>/runs/<unique>/output`.
    pub fn create(out_dir: &Path) -> Result<RunDir> {
        let runs = out_dir.join("runs");
        std::fs::create_dir_all(&runs)
            .map_err(|e| Error::io("creating output folder", &runs, e))?;
        ignore_in_git(out_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let root = runs.join(format!("{}-{nanos}", std::process::id()));
        let output = root.join("output");
        std::fs::create_dir_all(&output)
            .map_err(|e| Error::io("creating output folder", &output, e))?;
        Ok(RunDir {
            root,
            out_dir: out_dir.to_path_buf(),
            promoted: false,
        })
    }

    /// The folder mounted as the builder's output.
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    /// Make this run's output the `last/` one; returns its new path.
    pub fn promote(mut self) -> Result<PathBuf> {
        let last = self.out_dir.join("last");
        let old = self.root.with_extension("old");
        // Move the previous output aside first so `last/` is only missing for an instant.
        let had_old = match std::fs::rename(&last, &old) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("replacing previous output", &last, e)),
        };
        std::fs::rename(self.output(), &last)
            .map_err(|e| Error::io("keeping the build output in", &last, e))?;
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        let _ = std::fs::remove_dir_all(&self.root);
        self.promoted = true;
        Ok(last)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.promoted {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A `.gitignore` of `*` keeps the output folder out of the user's commits.
fn ignore_in_git(out_dir: &Path) {
    let gitignore = out_dir.join(".gitignore");
    if !gitignore.exists() {
        let _ = std::fs::write(
            gitignore,
            "# Made by dockception: its outputs are not sources.\n*\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_run_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = RunDir::create(dir.path()).expect("create");
        std::fs::write(run.output().join("app"), "x").expect("write");
        drop(run);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
            .expect("runs")
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn a_promoted_run_replaces_the_last_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = RunDir::create(dir.path()).expect("create");
        std::fs::write(first.output().join("app"), "one").expect("write");
        first.promote().expect("promote");
        let failed = RunDir::create(dir.path()).expect("create");
        std::fs::write(failed.output().join("app"), "broken").expect("write");
        drop(failed);
        let last = dir.path().join("last/app");
        assert_eq!(std::fs::read_to_string(&last).expect("read"), "one");
        let second = RunDir::create(dir.path()).expect("create");
        std::fs::write(second.output().join("app"), "two").expect("write");
        second.promote().expect("promote");
        assert_eq!(std::fs::read_to_string(&last).expect("read"), "two");
        assert!(dir.path().join(".gitignore").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("runs"))
                .expect("runs")
                .count(),
            0
        );
    }
}
