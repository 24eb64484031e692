//! Where a run tells what it is doing: phases, the builder's and daemon's output, warnings and
//! pull progress. Everything goes to stderr so stdout stays free for `context` tars and JSON.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How much a run prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Phases, logs and progress bars (bars only when stderr is a terminal).
    Normal,
    /// Only warnings.
    Quiet,
}

impl Progress {
    /// A step of the pipeline starts.
    pub fn phase(&self, message: &str) {
        if *self == Progress::Normal {
            eprintln!("==> {message}");
        }
    }

    /// One line of the builder's or the daemon's output, passed through as it is.
    pub fn log(&self, line: &str) {
        if *self == Progress::Normal {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "  | {line}");
        }
    }

    /// Something the user should know even in quiet mode.
    pub fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }

    /// A byte progress bar for pulling `image`; hidden when quiet or not on a terminal.
    pub fn pull_bar(&self, image: &str) -> ProgressBar {
        if *self == Progress::Quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} pulling {msg} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(image.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}
