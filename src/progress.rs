//! Where a run tells what it is doing: phases, the builder's and daemon's output, warnings and
//! pull progress. Everything goes to stderr so stdout stays free for `context` tars and JSON.
//!
//! Pick one with [`Progress::auto`] (the live view in a terminal, plain lines in CI or a file),
//! or [`Progress::Silent`] when dockception is embedded and only the returned report and errors
//! matter.
//!
//! In the live view ([`Progress::Tty`], `live.rs`) each running phase is one line with its
//! elapsed time, the builder's last lines are drawn under it, and a finished phase collapses to
//! one line with its time; with several targets, one line per target. When a target's work ends
//! (or is dropped, as on Ctrl-C) its lines are erased, so nothing is left drawn. Phases are
//! timed whatever the mode ([`take_timings`], for the closing `built in …` line), and the
//! builder's whole output goes to a log file ([`logging_to`], `build_log.rs`).
//!
//! The phases, their times and the live view are the process's, not a [`Progress`] value's:
//! there is one stderr to draw on, and two views drawing on one terminal would garble each
//! other. So `Progress` stays a plain `Copy` value that every stage passes along.
//!
//! When several targets build at once, [`labelled`] marks what each one prints with its name.

mod build_log;
mod live;

pub(crate) use build_log::{logging_to, LOG_FILE};

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How much a run prints, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Phases, logs and progress bars: the live view of [`Progress::Tty`] when stderr is a
    /// terminal, else the plain lines of [`Progress::Plain`].
    Normal,
    /// Only warnings.
    Quiet,
    /// Phases and logs as plain lines, never a bar or an escape sequence: for CI logs and
    /// files. Control characters in the builder's output are left out.
    Plain,
    /// Nothing at all, not even warnings: for embedding, where the returned report and errors
    /// carry what matters.
    Silent,
    /// The live view (buildx's `--progress tty`): one line per running phase with its elapsed
    /// time and the builder's last lines under it, erased when the run ends. Drawn even when
    /// stderr is not a terminal.
    Tty,
}

/// Which part of a build a phase's time counts toward, in the closing timing line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The build command in the builder.
    Builder,
    /// Selecting the artifacts in the builder's output.
    Artifacts,
    /// Making the runtime image (libraries, context, import or build, runtime steps).
    Image,
    /// Measuring the image for the report.
    Report,
    /// Anything else (pulls, cache volumes): counted in no stage.
    Other,
}

impl Stage {
    const TIMED: [Stage; 4] = [
        Stage::Builder,
        Stage::Artifacts,
        Stage::Image,
        Stage::Report,
    ];

    /// The name the timing line gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::Builder => "builder",
            Stage::Artifacts => "artifacts",
            Stage::Image => "image",
            Stage::Report => "report",
            Stage::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Progress {
    /// [`Progress::Tty`] when stderr is a terminal and `CI` is not set, else
    /// [`Progress::Plain`] (buildx's `--progress auto`).
    pub fn auto() -> Progress {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if std::io::stderr().is_terminal() && !ci {
            Progress::Tty
        } else {
            Progress::Plain
        }
    }

    fn shows_steps(&self) -> bool {
        matches!(self, Progress::Normal | Progress::Plain | Progress::Tty)
    }

    /// Whether this draws the live view rather than printing plain lines.
    fn draws(&self) -> bool {
        match self {
            Progress::Tty => true,
            Progress::Normal => std::io::stderr().is_terminal(),
            _ => false,
        }
    }

    /// A step of the pipeline starts; its time counts toward no stage.
    pub(crate) fn phase(&self, message: &str) {
        self.stage(Stage::Other, message);
    }

    /// A step of the pipeline starts, and its time (until the next step of the same target, or
    /// the target's end) counts toward `stage`.
    pub(crate) fn stage(&self, stage: Stage, message: &str) {
        let label = current_label();
        let text = marked(message);
        let mut state = state();
        state.end_phase(&label);
        state.running.push(Running {
            label: label.clone(),
            stage,
            started: Instant::now(),
        });
        if !self.shows_steps() {
            return;
        }
        if self.draws() {
            state.live(*self).phase(&label, &text);
        } else {
            eprintln!("==> {text}");
        }
    }

    /// One line of the builder's or the daemon's output: into the build log when one is open
    /// (as it is), and on stderr without its control characters.
    pub(crate) fn log(&self, line: &str) {
        build_log::record(line);
        if !self.shows_steps() {
            return;
        }
        let clean = printable(line);
        if self.draws() {
            state().live(*self).log(&current_label(), &marked(&clean));
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "  | {}", marked(&clean));
        }
    }

    /// Something the user should know even in quiet mode.
    pub(crate) fn warn(&self, message: &str) {
        if *self == Progress::Silent {
            return;
        }
        let line = format!("warning: {}", marked(message));
        let mut state = state();
        match state.live.as_mut() {
            Some(live) if self.draws() => live.above(&line),
            _ => eprintln!("{line}"),
        }
    }

    /// A line for the person watching (the closing `built in …`): on stderr unless quiet.
    pub(crate) fn say(&self, line: &str) {
        if !self.shows_steps() {
            return;
        }
        let mut state = state();
        match state.live.as_mut() {
            Some(live) if self.draws() => live.above(line),
            _ => eprintln!("{line}"),
        }
    }

    /// A byte progress bar for pulling `image`; hidden unless the live view draws.
    pub(crate) fn pull_bar(&self, image: &str) -> ProgressBar {
        if !self.shows_steps() || !self.draws() {
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
        let bar = state().live(*self).add(bar);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// End every phase still running and erase whatever the live view still draws: after a run,
/// before a report or an error is printed.
pub(crate) fn finish() {
    let mut state = state();
    let labels: Vec<String> = state.running.iter().map(|r| r.label.clone()).collect();
    for label in labels {
        state.end_phase(&label);
    }
    if let Some(mut live) = state.live.take() {
        live.finish();
    }
}

/// The time spent in each stage since the last call (phases of targets that ran at the same
/// time add up), leaving out stages nothing ran in; phases still running are not counted.
pub(crate) fn take_timings() -> Vec<(Stage, Duration)> {
    let mut state = state();
    let totals = std::mem::take(&mut state.totals);
    Stage::TIMED
        .into_iter()
        .filter_map(|s| totals[s.index()].map(|d| (s, d)))
        .collect()
}

/// A phase that has started and not ended: the target it belongs to (its label), the stage
/// its time counts toward, and when it started.
struct Running {
    label: String,
    stage: Stage,
    started: Instant,
}

/// The process's phases, their times per stage, and the live view while one draws.
struct State {
    running: Vec<Running>,
    /// By [`Stage::index`]; `None` for a stage no phase ran in.
    totals: [Option<Duration>; 5],
    live: Option<live::Live>,
}

static STATE: Mutex<State> = Mutex::new(State {
    running: Vec::new(),
    totals: [None; 5],
    live: None,
});

/// The state, also after a panic elsewhere held it: what it holds stays consistent line by line.
fn state() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// The phase running for `label` ends: its time is added to its stage.
    fn end_phase(&mut self, label: &str) {
        if let Some(at) = self.running.iter().position(|r| r.label == label) {
            let done = self.running.remove(at);
            let total = self.totals[done.stage.index()].get_or_insert(Duration::ZERO);
            *total += done.started.elapsed();
        }
    }

    /// The live view, made on first use.
    fn live(&mut self, mode: Progress) -> &mut live::Live {
        self.live
            .get_or_insert_with(|| live::Live::new(mode == Progress::Tty))
    }

    /// The work labelled `label` ended: its phase ends, and its lines of the live view are
    /// erased (its last phase collapsed to one line); the view goes once nothing is left in it.
    fn end_work(&mut self, label: &str) {
        self.end_phase(label);
        if let Some(live) = self.live.as_mut() {
            if live.end(label) {
                if let Some(mut live) = self.live.take() {
                    live.finish();
                }
            }
        }
    }
}

/// `line` as a terminal or a log may show it: escape sequences and control characters left
/// out, tabs made spaces, and of a line rewritten with carriage returns (a percentage counting
/// up) only what a terminal would end up showing.
pub(crate) fn printable(line: &str) -> String {
    let shown = line
        .rsplit('\r')
        .find(|part| !part.is_empty())
        .unwrap_or("");
    console::strip_ansi_codes(shown)
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

tokio::task_local! {
    /// The label of the target whose work is being polled, while several targets build.
    static LABEL: String;
}

/// Run `work` with every phase, log line, warning and pull bar it prints marked with `label`
/// (e.g. `[build]`), so the lines of targets built at the same time can be told apart. The
/// label goes with the future wherever it is polled (not into tasks it spawns), so the code
/// between here and the line printed needs no change. An empty label marks nothing.
///
/// When `work` ends, or is dropped unfinished (Ctrl-C), its last phase ends and its lines of
/// the live view are erased.
pub async fn labelled<F: Future>(label: String, work: F) -> F::Output {
    let _ends = EndWorkOnDrop(label.clone());
    LABEL.scope(label, work).await
}

struct EndWorkOnDrop(String);

impl Drop for EndWorkOnDrop {
    fn drop(&mut self) {
        state().end_work(&self.0);
    }
}

/// The label of the work being polled ("" outside [`labelled`]).
fn current_label() -> String {
    LABEL.try_with(Clone::clone).unwrap_or_default()
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
    fn only_the_live_view_draws_bars() {
        for quiet in [Progress::Quiet, Progress::Plain, Progress::Silent] {
            assert!(quiet.pull_bar("x").is_hidden(), "{quiet:?}");
            assert!(!quiet.draws(), "{quiet:?}");
        }
        assert!(Progress::Tty.draws());
        assert!(Progress::Plain.shows_steps());
        assert!(!Progress::Silent.shows_steps());
    }

    #[test]
    fn printable_lines_hold_no_control_characters() {
        for (raw, shown) in [
            ("plain text", "plain text"),
            ("\x1b[1;31merror:\x1b[0m boom", "error: boom"),
            ("a\tb", "a b"),
            (" 10%\r 50%\r100%", "100%"),
            ("ends with CR\r", "ends with CR"),
            ("bell\x07 and nul\0", "bell and nul"),
            ("\x1b]0;title\x07visible", "visible"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn a_labelled_works_phases_are_timed_per_stage() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        // The ledger is the process's: other tests' phases may add to it, never subtract.
        runtime.block_on(labelled("[timed-test]".into(), async {
            Progress::Silent.stage(Stage::Builder, "building");
            tokio::time::sleep(Duration::from_millis(30)).await;
            Progress::Silent.stage(Stage::Report, "measuring");
        }));
        let timings = take_timings();
        let builder = timings
            .iter()
            .find(|(s, _)| *s == Stage::Builder)
            .map(|(_, d)| *d);
        assert!(
            builder.is_some_and(|d| d >= Duration::from_millis(30)),
            "{timings:?}"
        );
        assert!(
            timings.iter().any(|(s, _)| *s == Stage::Report),
            "{timings:?}"
        );
        assert!(
            state().running.iter().all(|r| r.label != "[timed-test]"),
            "the work's end ended its phase"
        );
    }
}
