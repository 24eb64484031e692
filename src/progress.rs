//! Where a run tells what it is doing: phases, the builder's and daemon's output, warnings and
//! pull progress. Everything goes to stderr so stdout stays free for `context` tars and JSON.
//!
//! Pick one with [`Progress::auto`] (bars in a terminal, plain lines in CI), or
//! [`Progress::Silent`] when dockception is embedded and only the returned report and errors
//! matter.
//!
//! When several targets build at once, [`labelled`] marks what each one prints with its name.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How much a run prints, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Phases, logs and progress bars (bars only when stderr is a terminal).
    Normal,
    /// Only warnings.
    Quiet,
    /// Phases and logs as plain lines, never a bar: for CI logs and files.
    Plain,
    /// Nothing at all, not even warnings: for embedding, where the returned report and errors
    /// carry what matters.
    Silent,
}

impl Progress {
    /// [`Progress::Normal`] when stderr is a terminal and `CI` is not set, else
    /// [`Progress::Plain`].
    pub fn auto() -> Progress {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if std::io::stderr().is_terminal() && !ci {
            Progress::Normal
        } else {
            Progress::Plain
        }
    }

    fn shows_steps(&self) -> bool {
        matches!(self, Progress::Normal | Progress::Plain)
    }

    /// A step of the pipeline starts.
    pub(crate) fn phase(&self, message: &str) {
        if self.shows_steps() {
            eprintln!("==> {}", marked(message));
        }
    }

    /// One line of the builder's or the daemon's output, passed through as it is.
    pub(crate) fn log(&self, line: &str) {
        if self.shows_steps() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "  | {}", marked(line));
        }
    }

    /// Something the user should know even in quiet mode.
    pub(crate) fn warn(&self, message: &str) {
        if *self != Progress::Silent {
            eprintln!("warning: {}", marked(message));
        }
    }

    /// A byte progress bar for pulling `image`; hidden unless [`Progress::Normal`] on a
    /// terminal.
    pub(crate) fn pull_bar(&self, image: &str) -> ProgressBar {
        if *self != Progress::Normal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} pulling {msg} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(marked(image));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

tokio::task_local! {
    /// The label of the target whose work is being polled, while several targets build.
    static LABEL: String;
}

/// Run `work` with every phase, log line, warning and pull bar it prints marked with `label`
/// (e.g. `[build]`), so the lines of targets built at the same time can be told apart. The
/// label goes with the future wherever it is polled (not into tasks it spawns), so the code
/// between here and the line printed needs no change. An empty label marks nothing.
pub async fn labelled<F: Future>(label: String, work: F) -> F::Output {
    LABEL.scope(label, work).await
}

/// `text` after the label of the work that prints it, if any.
fn marked(text: &str) -> String {
    LABEL
        .try_with(|label| {
            if label.is_empty() {
                text.to_string()
            } else {
                format!("{label} {text}")
            }
        })
        .unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_label_of_the_work_that_prints_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            assert_eq!(marked("selecting"), "selecting");
            let a = labelled("[a]  ".into(), async {
                tokio::task::yield_now().await;
                marked("one")
            });
            let b = labelled("[bee]".into(), async { marked("two") });
            let unlabelled = labelled(String::new(), async { marked("three") });
            assert_eq!(
                tokio::join!(a, b, unlabelled),
                ("[a]   one".into(), "[bee] two".into(), "three".into())
            );
            assert_eq!(marked("after"), "after");
        });
    }

    #[test]
    fn only_normal_draws_bars() {
        for quiet in [Progress::Quiet, Progress::Plain, Progress::Silent] {
            assert!(quiet.pull_bar("x").is_hidden(), "{quiet:?}");
        }
        assert!(Progress::Plain.shows_steps());
        assert!(!Progress::Silent.shows_steps());
    }
}
