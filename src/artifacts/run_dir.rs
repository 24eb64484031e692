//! The tool's own output folder (`.dockception/` next to the manifest unless told otherwise).
//! Each run writes into a fresh folder under `runs/`; only a successful run replaces `last/`, so
//! a failed build never destroys the previous good output, and a failed or interrupted run
//! leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::artifacts::{Error, Result};
use crate::fsutil::FromIo as _;

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
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // `<pid>-…`: `dockception clean` tells a dead run's folder from a live one by the pid.
        let root = runs.join(format!(
            "{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
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
    ///
    /// The switch is one atomic exchange of the two folders (Linux `renameat2` with
    /// `RENAME_EXCHANGE`): `last/` is never missing or half written, and two builds finishing at
    /// the same moment both succeed, the later one's output winning.
    pub fn promote(mut self) -> Result<PathBuf> {
        let last = self.out_dir.join("last");
        let output = self.output();
        loop {
            match exchange(&output, &last) {
                // The previous output is now at `output`, inside this run's folder.
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match std::fs::rename(&output, &last) {
                        Ok(()) => break,
                        // Another run put a `last/` there in the meantime: exchange with it.
                        Err(e) if is_not_empty(&e) => continue,
                        Err(e) => return Err(Error::io("keeping the build output in", &last, e)),
                    }
                }
                Err(e) if is_unsupported(&e) => {
                    promote_by_rename(&self.root, &output, &last)?;
                    break;
                }
                Err(e) => return Err(Error::io("keeping the build output in", &last, e)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        self.promoted = true;
        Ok(last)
    }
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

fn is_not_empty(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOTEMPTY.raw_os_error()
            || code == rustix::io::Errno::EXIST.raw_os_error()
    )
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::INVAL.raw_os_error()
            || code == rustix::io::Errno::NOSYS.raw_os_error()
            || code == rustix::io::Errno::OPNOTSUPP.raw_os_error()
    )
}

/// Where the file system cannot exchange: move the previous output aside, then rename, so
/// `last/` is only missing for an instant.
fn promote_by_rename(root: &Path, output: &Path, last: &Path) -> Result<()> {
    let old = root.join("previous");
    let had_old = match std::fs::rename(last, &old) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("replacing previous output", last, e)),
    };
    std::fs::rename(output, last).map_err(|e| Error::io("keeping the build output in", last, e))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// What [`remove_stale_runs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleRuns {
    /// Run folders removed.
    pub removed: Vec<PathBuf>,
    /// Run folders kept, each with the reason.
    pub kept: Vec<String>,
}

/// Remove the run folders under `<out_dir>/runs` whose dockception process is gone (killed
/// before it could remove them). Folders of runs still going are kept. A missing output folder
/// is nothing to clean.
pub fn remove_stale_runs(out_dir: &Path) -> Result<StaleRuns> {
    remove_stale_runs_with(out_dir, crate::engine::owner::pid_alive)
}

fn remove_stale_runs_with(out_dir: &Path, alive: impl Fn(u32) -> bool) -> Result<StaleRuns> {
    let runs = out_dir.join("runs");
    let mut result = StaleRuns::default();
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(result),
        Err(e) => return Err(Error::io("reading run folders in", &runs, e)),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        match pid {
            Some(pid) if pid != std::process::id() && alive(pid) => result.kept.push(format!(
                "run folder {}: its dockception run (pid {pid}) is still going",
                path.display()
            )),
            _ => {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => result.removed.push(path),
                    Err(e) => result
                        .kept
                        .push(format!("run folder {}: {e}", path.display())),
                }
            }
        }
    }
    Ok(result)
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
    fn runs_finishing_together_all_succeed_and_last_is_always_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for round in 0..20 {
                        let run = RunDir::create(&out).expect("create");
                        let body = format!("{i}-{round}");
                        std::fs::write(run.output().join("a"), &body).expect("write");
                        std::fs::write(run.output().join("b"), &body).expect("write");
                        run.promote().expect("promote");
                        // `last/` is never missing, even while others exchange it. (Reading
                        // its two files one after the other could see two different runs.)
                        assert!(out.join("last").is_dir());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread failed");
        }
        // Whatever run won, its two files agree: never a mix or a gap.
        let a = std::fs::read_to_string(out.join("last/a")).expect("last/a");
        let b = std::fs::read_to_string(out.join("last/b")).expect("last/b");
        assert_eq!(a, b);
        assert_eq!(
            std::fs::read_dir(out.join("runs")).expect("runs").count(),
            0
        );
    }

    #[test]
    fn stale_run_folders_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = dir.path().join("runs");
        for name in ["111-5-0", "222-6-0", "333-7-0.old", "junk"] {
            std::fs::create_dir_all(runs.join(name).join("output")).expect("mkdir");
        }
        let result = remove_stale_runs_with(dir.path(), |pid| pid == 222).expect("clean");
        let removed: Vec<_> = result
            .removed
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed, ["111-5-0", "333-7-0.old", "junk"]);
        assert_eq!(result.kept.len(), 1);
        assert!(result.kept[0].contains("(pid 222) is still going"));
        assert!(runs.join("222-6-0").exists());
        let nothing = remove_stale_runs_with(&dir.path().join("none"), |_| false).expect("ok");
        assert_eq!(nothing, StaleRuns::default());
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
