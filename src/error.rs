//! The one error type of the library: every failure names the thing that is wrong and what to do.

use std::fmt;
use std::path::PathBuf;

/// Everything that can stop a dockception run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest file could not be read.
    #[error("cannot read manifest {path}: {source}\n  help: pass the manifest with -f FILE, or run from the folder that holds dockception.toml")]
    ReadManifest {
        /// The manifest path as given.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },

    /// The manifest file is larger than any real manifest.
    #[error("manifest {path} is larger than {limit} bytes, more than any real manifest\n  help: check that -f names the manifest (dockception.toml), not another file")]
    ManifestTooLarge {
        /// The manifest path as given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// The manifest has syntax, type or semantic errors; each one points at its spot.
    #[error("{}", render_diagnostics(.0))]
    Manifest(Vec<Diagnostic>),

    /// The command line asks for something the manifest does not have.
    #[error("{message}\n  help: {help}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// No Docker Engine answers.
    #[error("no Docker Engine answers at {host}: {reason}\n  help: start one (as root on Debian: scripts/engine.sh), or point DOCKER_HOST at a running engine")]
    NoDaemon {
        /// The address that was tried.
        host: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// `DOCKER_HOST` names an engine that does not answer.
    #[error("no Docker Engine answers at {host}: {reason}\n  help: start one there, or fix DOCKER_HOST (it is set to {host}; unset it to use the local engine at unix:///var/run/docker.sock)")]
    NoDaemonAtDockerHost {
        /// The address from `DOCKER_HOST`.
        host: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// `DOCKER_HOST` is not an address dockception can use.
    #[error("DOCKER_HOST={host} is not a Docker Engine address: {reason}\n  help: set it like unix:///var/run/docker.sock or tcp://HOST:2375, or unset it to use the local engine")]
    BadDockerHost {
        /// The value of `DOCKER_HOST`.
        host: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The engine's socket exists but this user may not use it.
    #[error("permission denied on the Docker Engine socket at {host}\n  help: add yourself to the docker group (sudo usermod -aG docker $USER, then log in again), or run as a user that may use the socket")]
    EngineAccessDenied {
        /// The address that was tried.
        host: String,
    },

    /// The engine answers but speaks an API older than dockception needs.
    #[error("the Docker Engine at {host} speaks API {version}; dockception needs {minimum} or newer (Docker 1.13+)\n  help: upgrade the engine, or point DOCKER_HOST at a newer one")]
    EngineTooOld {
        /// The address of the engine.
        host: String,
        /// The API version it speaks.
        version: String,
        /// The oldest API version dockception speaks.
        minimum: String,
    },

    /// The connection to the engine broke in the middle of a run (it stopped or restarted).
    #[error("the Docker Engine stopped answering while {action}: {message}\n  help: check the engine (docker info) and start it again; then `dockception clean` removes what this run left behind")]
    EngineGone {
        /// What dockception was doing.
        action: String,
        /// What the connection said.
        message: String,
    },

    /// A secret the manifest names for the builder is not available.
    #[error("builder.env_from_host names {name}, but {problem}\n  help: export {name}=... in the shell that runs dockception (or remove it from env_from_host)")]
    MissingSecret {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },

    /// An image is neither present locally nor pullable.
    #[error("image {image} is not present locally and could not be pulled: {reason}\n  help: build or import it locally (scripts/engine.sh makes gcc:local, golang:local and busybox:local), or fix the name in the manifest")]
    ImageUnavailable {
        /// The image reference from the manifest.
        image: String,
        /// The daemon's message from the failed pull.
        reason: String,
    },

    /// The build command in the builder container exited with a non-zero status.
    #[error("the build command failed with exit status {code}{}\n  help: fix the build, or run it by hand: docker run --rm -it {image} sh", render_tail(.tail))]
    BuildCommandFailed {
        /// The builder's exit status; the CLI exits with it.
        code: i64,
        /// The builder image, for the hint.
        image: String,
        /// The builder's last output lines.
        tail: Vec<String>,
    },

    /// A `runtime.run` step exited with a non-zero status; no image was made.
    #[error("a runtime step failed with exit status {code}{}\n  help: the steps run in {base} with the artifacts at {mount}; try them by hand: docker run --rm -it -v ARTIFACTS:{mount}:ro {base} sh", render_tail(.tail))]
    RuntimeStepFailed {
        /// The step's exit status; the CLI exits with it.
        code: i64,
        /// The runtime base.
        base: String,
        /// Where the artifacts were mounted.
        mount: String,
        /// The last output lines.
        tail: Vec<String>,
    },

    /// `runtime.init` cannot be satisfied.
    #[error("{message}\n  help: {help}")]
    Init {
        /// What is missing.
        message: String,
        /// What to do.
        help: String,
    },

    /// The include globs selected nothing in the builder's output folder.
    #[error("no artifacts matched include {include:?} in the builder output folder {from}{}\n  help: make the build command write into {from}, or fix [artifacts] include", render_found(.found))]
    NoArtifacts {
        /// The container folder the artifacts come from.
        from: String,
        /// The include globs.
        include: Vec<String>,
        /// A few of the files the builder did produce, relative to `from`.
        found: Vec<String>,
    },

    /// A selected symlink in the builder's output resolves outside the output folder.
    #[error("artifact {path} is a symlink to {target}, outside the builder output folder: {why}\n  help: make the link relative to a file among the artifacts, copy the file itself into the output folder, or exclude the link")]
    SymlinkOutside {
        /// The link, as a container path.
        path: String,
        /// Where it points.
        target: String,
        /// How it leaves the folder.
        why: String,
    },

    /// An artifact glob does not compile.
    #[error("invalid artifact glob {pattern:?}: {message}")]
    InvalidGlob {
        /// The glob as written (quoted; cut when very long).
        pattern: String,
        /// What is wrong with it.
        message: String,
    },

    /// The daemon refused the runtime image build.
    #[error("building the runtime image failed: {message}\n  help: check [runtime] in the manifest; `dockception context | tar -t` shows what was sent")]
    ImageBuild {
        /// The daemon's message.
        message: String,
    },

    /// Any other Docker Engine call failed.
    #[error("{action} failed: {message}")]
    Docker {
        /// What dockception was doing, e.g. "creating the builder container".
        action: String,
        /// The daemon's message.
        message: String,
    },

    /// A file system operation on the tool's own files failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "creating output folder".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A gate's threshold is not valid (manifest `[gates]` or a command-line flag); nothing
    /// was built or checked. Exit status 2.
    #[error("misconfigured gate: {}", .problems.join("\n\n"))]
    GateConfig {
        /// Every problem found, each with its fix.
        problems: Vec<String>,
    },

    /// The gates asked for a non-zero exit: one failed (1), or a baseline was required and is
    /// missing (3). The report was printed (and, for a build, stored) first.
    #[error("{summary}")]
    Gates {
        /// The gates' result line.
        summary: String,
        /// 1 or 3.
        status: u8,
    },

    /// The baseline named with `--baseline` does not exist. Exit status 3.
    #[error("the baseline {source_name} does not exist: {reason}\n  help: {help}")]
    BaselineMissing {
        /// The report file or image as given.
        source_name: String,
        /// Why it is not there.
        reason: String,
        /// What to do.
        help: String,
    },

    /// Dynamically linked artifacts need an interpreter or libraries that the runtime image
    /// would lack.
    #[error("{}", render_missing(.base, .builder, *.searched_builder, .missing))]
    MissingLibraries {
        /// The runtime base.
        base: String,
        /// The builder image.
        builder: String,
        /// Whether the builder was searched too (`libs = "auto"`).
        searched_builder: bool,
        /// What is missing, and what needs it.
        missing: Vec<crate::artifacts::shared_libs::MissingLibrary>,
    },

    /// An artifact starts like an ELF file but cannot be read as one.
    #[error("artifact {path} looks like an ELF file but cannot be parsed: {message}\n  help: check the build's output; set libs = \"off\" in [runtime] to ship it unchecked")]
    InvalidElf {
        /// The artifact on the host.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },

    /// A program dockception runs on the host (rustc, cargo) failed.
    #[error("{command} failed: {message}\n  help: {help}")]
    HostCommand {
        /// The command line.
        command: String,
        /// What went wrong (its last output lines, or why it did not start).
        message: String,
        /// What to do.
        help: String,
    },

    /// A report file could not be read, parsed or written.
    #[error("{action} report {path}: {message}")]
    ReportFile {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An image could not be measured from its export.
    #[error("measuring image {image} failed: {message}")]
    Measure {
        /// The image reference or id.
        image: String,
        /// What went wrong.
        message: String,
    },

    /// `cache rm TARGET` named no cache of the manifest.
    #[error("no cache of this manifest is named {selector}; its caches are {}\n  help: name a cache by its target path or its volume name (see `dockception cache ls`), or give none to remove them all", render_known(.known))]
    NoSuchCache {
        /// What was given.
        selector: String,
        /// The manifest's caches, as `target (volume)`.
        known: Vec<String>,
    },

    /// One target of a build with several targets failed; the others were stopped and what
    /// they had created removed. `source` says how it failed.
    #[error("target `{target}`: {source}")]
    InTarget {
        /// The target that failed.
        target: String,
        /// Its error.
        source: Box<Error>,
    },

    /// The run was interrupted by a signal; cleanup already happened.
    #[error("interrupted by {signal}; the builder container and temporary folders were removed")]
    Interrupted {
        /// The signal's name.
        signal: &'static str,
        /// The conventional exit status (130 for SIGINT, 143 for SIGTERM).
        status: u8,
    },
}

impl Error {
    /// The process exit status the CLI uses for this error: the builder's own status when the
    /// build command failed, 128+signal when interrupted, 2 for a misconfigured gate, 1 for a
    /// failed gate, 3 when a baseline was required and is missing, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            Error::BuildCommandFailed { code, .. } | Error::RuntimeStepFailed { code, .. } => {
                u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1)
            }
            Error::Interrupted { status, .. } => *status,
            Error::InTarget { source, .. } => source.exit_status(),
            Error::Usage { .. } => 2,
            Error::GateConfig { .. } => 2,
            Error::Gates { status, .. } => *status,
            Error::BaselineMissing { .. } => 3,
            _ => 1,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem in a manifest, located at `file:line:col`, with the source line and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The source line the error is on (empty when unknown).
    pub source_line: String,
    /// How many characters the caret underlines (at least 1).
    pub width: usize,
    /// A one-line fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// Locate `span` (byte offsets into `source`) and build a diagnostic for it.
    pub fn at(
        path: impl Into<PathBuf>,
        source: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(source, span.end.clamp(start, line_end));
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            path: path.into(),
            line,
            column,
            message: message.into(),
            source_line,
            width,
            help,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        let gutter = self.line.to_string();
        let pad = " ".repeat(gutter.len());
        let (shown, caret_at, width) = clip_line(&self.source_line, self.column, self.width);
        writeln!(f, "{pad} |")?;
        writeln!(f, "{gutter} | {shown}")?;
        write!(f, "{pad} | {}{}", " ".repeat(caret_at), "^".repeat(width))?;
        if let Some(help) = &self.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// The most characters of a source line a diagnostic shows.
const MAX_SHOWN_CHARS: usize = 100;

/// A window of at most [`MAX_SHOWN_CHARS`] characters of `line` around the caret (a minified or
/// generated line can be megabytes long), with `…` where it was cut; returns the text, the
/// caret's offset in it and the caret's width.
fn clip_line(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let at = column.saturating_sub(1);
    let width = width.max(1);
    if chars.len() <= MAX_SHOWN_CHARS {
        return (line.to_string(), at, width);
    }
    let start = at.saturating_sub(MAX_SHOWN_CHARS / 3).min(chars.len());
    let end = (start + MAX_SHOWN_CHARS).min(chars.len());
    let mut shown = String::new();
    let mut caret_at = at - start;
    if start > 0 {
        shown.push('…');
        caret_at += 1;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let width = width.min(end.saturating_sub(at).max(1));
    (shown, caret_at, width)
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&d.to_string());
    }
    if diagnostics.len() > 1 {
        out.push_str(&format!("\n\n{} errors in the manifest", diagnostics.len()));
    }
    out
}

fn render_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut out = String::from("; its last lines were:");
    for line in tail {
        out.push_str("\n  | ");
        out.push_str(line);
    }
    out
}

fn render_known(known: &[String]) -> String {
    if known.is_empty() {
        "none (the manifest has no [[cache]])".to_string()
    } else {
        known.join(", ")
    }
}

fn render_missing(
    base: &str,
    builder: &str,
    searched_builder: bool,
    missing: &[crate::artifacts::shared_libs::MissingLibrary],
) -> String {
    let mut out = if searched_builder {
        format!("neither the base {base} nor the builder {builder} has what dynamically linked artifacts need to start:")
    } else {
        format!("the base {base} lacks what dynamically linked artifacts need to start:")
    };
    let mut by: Vec<(&str, Vec<String>)> = Vec::new();
    for m in missing {
        let name = if m.interpreter {
            format!("the interpreter {}", m.name)
        } else {
            m.name.clone()
        };
        for needer in &m.needed_by {
            match by.iter_mut().find(|(n, _)| n == needer) {
                Some((_, names)) => names.push(name.clone()),
                None => by.push((needer, vec![name.clone()])),
            }
        }
    }
    for (needer, names) in by {
        out.push_str(&format!("\n  {needer} needs {}", names.join(", ")));
    }
    if searched_builder {
        out.push_str("\n  help: install them in the builder image, ship them as artifacts, or, when they are in a folder the loader does not search by default, set LD_LIBRARY_PATH in [runtime.env]");
    } else {
        out.push_str(&format!("\n  help: add libs = \"auto\" to [runtime] to copy them from the builder {builder}, link statically (e.g. gcc -static), or use a base that has them"));
    }
    out
}

fn render_found(found: &[String]) -> String {
    if found.is_empty() {
        " (the folder is empty)".to_string()
    } else {
        format!("; it holds {}", found.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_points_at_line_and_column() {
        let src = "[builder]\nimage = 3\n";
        let d = Diagnostic::at("m.toml", src, 18..19, "expected a string", None);
        assert_eq!((d.line, d.column, d.width), (2, 9, 1));
        assert_eq!(
            d.to_string(),
            "m.toml:2:9: expected a string\n  |\n2 | image = 3\n  |         ^"
        );
    }

    #[test]
    fn a_very_long_line_is_shown_as_a_window_around_the_caret() {
        let src = format!("a = {}x{}\n", "[".repeat(5000), "]".repeat(5000));
        let d = Diagnostic::at("m.toml", &src, 5004..5005, "bad", None);
        assert_eq!((d.line, d.column), (1, 5005));
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("1 | …[[["), "{text}");
        assert!(lines[2].ends_with("]]]…"), "{text}");
        assert!(lines[2].chars().count() < 120, "{text}");
        let caret = lines[3].find('^').expect("a caret");
        assert_eq!(lines[2].chars().nth(caret), Some('x'), "{text}");
    }

    #[test]
    fn build_failure_keeps_the_builders_status() {
        let e = Error::BuildCommandFailed {
            code: 3,
            image: "gcc:local".into(),
            tail: vec![],
        };
        assert_eq!(e.exit_status(), 3);
        let e = Error::BuildCommandFailed {
            code: 300,
            image: "gcc:local".into(),
            tail: vec![],
        };
        assert_eq!(e.exit_status(), 1);
    }

    #[test]
    fn a_failed_target_is_named_and_keeps_its_errors_status() {
        let e = Error::InTarget {
            target: "app".into(),
            source: Box::new(Error::BuildCommandFailed {
                code: 3,
                image: "gcc:local".into(),
                tail: vec![],
            }),
        };
        assert_eq!(e.exit_status(), 3);
        assert!(
            e.to_string()
                .starts_with("target `app`: the build command failed with exit status 3"),
            "{e}"
        );
    }
}
