//! A `dockception build --progress plain` run, timed from the outside: wall clock from spawn
//! to exit, and the moment each `==> phase` line reached stderr, so one phase of the build
//! (writing the image, loading it, pushing it) can be measured without the builder's time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One finished run: its stdout, its wall-clock time and its phases' start times.
pub(super) struct Phased {
    pub(super) seconds: f64,
    pub(super) stdout: String,
    /// `(seconds after spawn, the line without its `==> `)`, in order.
    pub(super) phases: Vec<(f64, String)>,
}

impl Phased {
    /// Seconds after spawn at which the first phase line starting with `prefix` was printed.
    pub(super) fn at(&self, prefix: &str) -> Option<f64> {
        self.phases
            .iter()
            .find(|(_, line)| line.starts_with(prefix))
            .map(|(t, _)| *t)
    }

    /// From the phase starting with `prefix` to the process's exit.
    pub(super) fn from(&self, prefix: &str) -> Option<f64> {
        self.at(prefix).map(|t| self.seconds - t)
    }

    /// The report's JSON (`build --format json` prints an array; its first element).
    pub(super) fn report(&self) -> Result<serde_json::Value, String> {
        let all: serde_json::Value = serde_json::from_str(&self.stdout)
            .map_err(|e| format!("the report is not JSON ({e}): {}", self.stdout))?;
        Ok(all.get(0).cloned().unwrap_or(all))
    }
}

/// Run `command` (which must print plain progress on stderr) to its end, noting when each
/// phase line arrived. An unsuccessful exit is an error carrying its stderr.
pub(super) fn run_phased(command: &mut Command) -> Result<Phased, String> {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let reading = std::thread::spawn(move || {
        let mut phases = Vec::new();
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let at = start.elapsed().as_secs_f64();
            if let Some(phase) = line.strip_prefix("==> ") {
                phases.push((at, phase.to_string()));
            }
            text.push_str(&line);
            text.push('\n');
        }
        (phases, text)
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let (phases, text) = reading.join().map_err(|_| "the stderr reader panicked")?;
    if !status.success() {
        return Err(format!(
            "{command:?} failed with {status}:\n{stdout}\n{text}"
        ));
    }
    Ok(Phased {
        seconds,
        stdout,
        phases,
    })
}
