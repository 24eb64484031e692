//! The live view, like BuildKit's tty output: per target, one line for its running phase with
//! the time since it started, and under it the builder's last few lines. A phase that ends
//! collapses to one printed line with its time (`==> building in gcc:local: make  2.4s`); a
//! target that ends takes its lines with it, and the view erases itself once none is left.

use std::collections::VecDeque;
use std::time::Duration;

use console::Term;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The builder lines shown under a phase while one target runs.
const TAIL_ALONE: usize = 5;
/// ... and under each target's phase while several run.
const TAIL_SHARED: usize = 2;

/// What the live view draws: one [`Lines`] per target (by label) that is running a phase.
pub(super) struct Live {
    multi: MultiProgress,
    targets: Vec<Lines>,
    /// The terminal's settings before the view turned its `^C` echo off, to restore.
    echo: Option<rustix::termios::Termios>,
}

/// One target's lines: its phase and the builder's last lines under it.
struct Lines {
    label: String,
    text: String,
    phase: ProgressBar,
    tail: Vec<ProgressBar>,
    recent: VecDeque<String>,
}

impl Live {
    /// A view on stderr; `forced` draws even when stderr is not a terminal.
    pub(super) fn new(forced: bool) -> Live {
        let target = if forced {
            ProgressDrawTarget::term_like_with_hz(Box::new(Term::buffered_stderr()), 10)
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        };
        Live {
            multi: MultiProgress::with_draw_target(target),
            targets: Vec::new(),
            echo: quiet_ctrl_c_echo(),
        }
    }

    /// Target `label` starts the phase `text`; its previous phase collapses to one line.
    pub(super) fn phase(&mut self, label: &str, text: &str) {
        if let Some(at) = self.find(label) {
            let lines = &mut self.targets[at];
            let done = collapsed(&lines.text, lines.phase.elapsed());
            for bar in lines.tail.drain(..) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            lines.recent.clear();
            lines.text = text.to_string();
            lines.phase.set_message(fit(text, PHASE_ROOM));
            lines.phase.reset_elapsed();
            self.above(&done);
            return;
        }
        let phase = self.multi.add(ProgressBar::new_spinner());
        phase.set_style(phase_style());
        phase.set_message(fit(text, PHASE_ROOM));
        phase.enable_steady_tick(Duration::from_millis(100));
        self.targets.push(Lines {
            label: label.to_string(),
            text: text.to_string(),
            phase,
            tail: Vec::new(),
            recent: VecDeque::new(),
        });
    }

    /// A line of target `label`'s output: the last few are drawn under its phase; without a
    /// phase to go under, it is printed above the view.
    pub(super) fn log(&mut self, label: &str, line: &str) {
        let shown = if self.targets.len() > 1 {
            TAIL_SHARED
        } else {
            TAIL_ALONE
        };
        let Some(at) = self.find(label) else {
            self.above(&format!("  | {line}"));
            return;
        };
        let lines = &mut self.targets[at];
        lines.recent.push_back(line.to_string());
        while lines.recent.len() > shown {
            lines.recent.pop_front();
        }
        while lines.tail.len() > lines.recent.len() {
            if let Some(bar) = lines.tail.pop() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        while lines.tail.len() < lines.recent.len() {
            let after = lines.tail.last().unwrap_or(&lines.phase).clone();
            let bar = self.multi.insert_after(&after, ProgressBar::new_spinner());
            bar.set_style(tail_style());
            lines.tail.push(bar);
        }
        for (bar, text) in lines.tail.iter().zip(&lines.recent) {
            bar.set_message(fit(text, TAIL_ROOM));
        }
    }

    /// A bar of its own (a pull), drawn at the end of the view.
    pub(super) fn add(&mut self, bar: ProgressBar) -> ProgressBar {
        self.multi.add(bar)
    }

    /// Print `line` above the view, which is redrawn under it.
    pub(super) fn above(&mut self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    /// Target `label`'s work ended: its phase collapses to one line and its lines go. True
    /// when no target is left in the view.
    pub(super) fn end(&mut self, label: &str) -> bool {
        if let Some(at) = self.find(label) {
            let lines = self.targets.remove(at);
            let done = collapsed(&lines.text, lines.phase.elapsed());
            for bar in lines.tail.iter().chain([&lines.phase]) {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            self.above(&done);
        }
        self.targets.is_empty()
    }

    /// Every target's lines go (their phases collapsed), and the view is erased.
    pub(super) fn finish(&mut self) {
        let labels: Vec<String> = self.targets.iter().map(|l| l.label.clone()).collect();
        for label in labels {
            self.end(&label);
        }
        let _ = self.multi.clear();
        if let Some(before) = self.echo.take() {
            let _ = rustix::termios::tcsetattr(
                std::io::stderr(),
                rustix::termios::OptionalActions::Now,
                &before,
            );
        }
    }

    fn find(&self, label: &str) -> Option<usize> {
        self.targets.iter().position(|l| l.label == label)
    }
}

/// The columns a phase line keeps for its spinner and time, and a builder line for its
/// margin. Lines stay a few columns short of the terminal's width: a line exactly as wide
/// leaves the cursor waiting to wrap, and the `^C` a terminal echoes on Ctrl-C then wraps onto
/// a new line, which erasing the view would miss.
const PHASE_ROOM: usize = 14;
const TAIL_ROOM: usize = 8;

/// `text` cut to the terminal's width less `room` columns.
fn fit(text: &str, room: usize) -> String {
    let width = usize::from(Term::stderr().size().1).max(40);
    console::truncate_str(text, width.saturating_sub(room), "…").into_owned()
}

/// Turn off the terminal's echo of `^C` while the view draws; the settings before, to restore.
/// indicatif leaves the cursor at the right edge of its last line, so an echoed `^C` would wrap
/// onto a new line and the view, erased on Ctrl-C, would leave its first line behind.
fn quiet_ctrl_c_echo() -> Option<rustix::termios::Termios> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let before = tcgetattr(std::io::stderr()).ok()?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHOCTL);
    tcsetattr(std::io::stderr(), OptionalActions::Now, &quiet).ok()?;
    Some(before)
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A running phase: spinner, the phase (cut to the terminal's width), its time.
fn phase_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {msg}  {seconds:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "seconds",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", seconds(state.elapsed()));
            },
        )
}

/// A builder line under its phase, cut to the terminal's width.
fn tail_style() -> ProgressStyle {
    ProgressStyle::with_template("  │ {msg:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// `3.2s`, as the live view and the collapsed lines show a phase's time.
fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

/// A finished phase as one line: `==> TEXT  3.2s`, the text cut to fit the terminal.
fn collapsed(text: &str, elapsed: Duration) -> String {
    let time = seconds(elapsed);
    let width = usize::from(Term::stderr().size().1).max(40);
    let room = width.saturating_sub(4 + 2 + time.len() + 1);
    format!("==> {}  {time}", console::truncate_str(text, room, "…"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_phase_is_one_line_with_its_time() {
        let line = collapsed("building in gcc:local: make", Duration::from_millis(3240));
        assert_eq!(line, "==> building in gcc:local: make  3.2s");
        let long = "x".repeat(500);
        let cut = collapsed(&long, Duration::from_secs(1));
        assert!(console::measure_text_width(&cut) <= 200, "{cut}");
        assert!(cut.ends_with("…  1.0s"), "{cut}");
    }
}
