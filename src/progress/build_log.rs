//! The builder's whole output, as it came, in a file of the target's output folder
//! (`build.log`), whatever the progress mode: the live view shows only its last lines, and a
//! failure shows the last [`TAIL`] of them with the log's path.
//!
//! The run writes a file of its own (`.build.log.<pid>-<n>`) and renames it to `build.log`
//! when the build command ends (or the work is dropped, as on Ctrl-C), so two builds of one
//! manifest at once do not write into one file: the later one's log wins whole.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::Progress;

/// The log's name in a target's output folder.
pub(crate) const LOG_FILE: &str = "build.log";

/// How many of the last lines a failure shows.
pub(crate) const TAIL: usize = 200;

/// What a build log holds once the work it recorded ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Logged {
    /// The log file, when it could be written.
    pub(crate) path: Option<PathBuf>,
    /// How many lines the builder wrote.
    pub(crate) lines: usize,
    /// The last of them, at most [`TAIL`].
    pub(crate) tail: Vec<String>,
}

tokio::task_local! {
    /// The log the builder's output lines of the work being polled go into.
    static BUILD_LOG: Arc<BuildLog>;
}

/// Run `work` with every output line it passes to [`Progress::log`] written to the file
/// `path` too; returns its output and what the log holds. A log that cannot be written is a
/// warning, not an error: the build goes on without it.
pub(crate) async fn logging_to<F: Future>(
    path: PathBuf,
    progress: &Progress,
    work: F,
) -> (F::Output, Logged) {
    let log = Arc::new(BuildLog::create(path, *progress));
    let closing = CloseOnDrop(Arc::clone(&log));
    let output = BUILD_LOG.scope(Arc::clone(&log), work).await;
    let logged = closing.0.close();
    (output, logged)
}

/// Write `line` to the log of the work being polled, if it has one.
pub(super) fn record(line: &str) {
    let _ = BUILD_LOG.try_with(|log| log.write(line));
}

struct BuildLog {
    progress: Progress,
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The run's own file and its path, until it is closed.
    file: Option<(BufWriter<File>, PathBuf)>,
    written: bool,
    lines: usize,
    tail: VecDeque<String>,
}

impl BuildLog {
    fn create(path: PathBuf, progress: Progress) -> BuildLog {
        let file = match open_own(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                progress.warn(&format!(
                    "cannot write the build log {}: {e}; the build goes on without it",
                    path.display()
                ));
                None
            }
        };
        BuildLog {
            progress,
            path,
            inner: Mutex::new(Inner {
                file,
                written: false,
                lines: 0,
                tail: VecDeque::new(),
            }),
        }
    }

    fn write(&self, line: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.lines += 1;
        if inner.tail.len() >= TAIL {
            inner.tail.pop_front();
        }
        inner.tail.push_back(line.to_string());
        if let Some((file, _)) = inner.file.as_mut() {
            if writeln!(file, "{line}").is_err() {
                // A full disk: what was written so far stays; the rest is in the tail only.
                inner.file = None;
            }
        }
    }

    /// Flush the run's file and give it the log's name; what the log holds. Once only: later
    /// calls find nothing more to close.
    fn close(&self) -> Logged {
        let Ok(mut inner) = self.inner.lock() else {
            return Logged::default();
        };
        if let Some((mut file, own)) = inner.file.take() {
            let done = file
                .flush()
                .and_then(|()| std::fs::rename(&own, &self.path));
            match done {
                Ok(()) => inner.written = true,
                Err(e) => {
                    let _ = std::fs::remove_file(&own);
                    self.progress.warn(&format!(
                        "cannot write the build log {}: {e}",
                        self.path.display()
                    ));
                }
            }
        }
        Logged {
            path: inner.written.then(|| self.path.clone()),
            lines: inner.lines,
            tail: inner.tail.iter().cloned().collect(),
        }
    }
}

/// The run's own file beside `path`, its folder made if missing.
fn open_own(path: &std::path::Path) -> std::io::Result<(BufWriter<File>, PathBuf)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the log has no folder"))?;
    std::fs::create_dir_all(dir)?;
    let own = dir.join(format!(
        ".{LOG_FILE}.{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Ok((BufWriter::new(File::create(&own)?), own))
}

/// Closes the log when the work is dropped before it ends.
struct CloseOnDrop(Arc<BuildLog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_log_holds_every_line_and_the_tail_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out").join(LOG_FILE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (answer, logged) =
            runtime.block_on(logging_to(path.clone(), &Progress::Silent, async {
                for i in 0..250 {
                    Progress::Silent.log(&format!("line {i}"));
                }
                42
            }));
        assert_eq!(answer, 42);
        assert_eq!(logged.lines, 250);
        assert_eq!(logged.tail.len(), TAIL);
        assert_eq!(logged.tail[0], "line 50");
        assert_eq!(logged.path.as_deref(), Some(path.as_path()));
        let text = std::fs::read_to_string(&path).expect("log");
        assert_eq!(text.lines().count(), 250);
        assert!(text.starts_with("line 0\nline 1\n"), "{text}");
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from(LOG_FILE)],
            "no run file left"
        );
        Progress::Silent.log("outside any log");
        assert_eq!(
            std::fs::read_to_string(&path).expect("log").lines().count(),
            250
        );
    }

    #[test]
    fn a_dropped_work_still_leaves_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_FILE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let work = logging_to(path.clone(), &Progress::Silent, async {
                Progress::Silent.log("before the interrupt");
                std::future::pending::<()>().await;
            });
            let _ = tokio::time::timeout(Duration::ZERO, work).await;
        });
        assert_eq!(
            std::fs::read_to_string(&path).expect("log"),
            "before the interrupt\n"
        );
    }
}
