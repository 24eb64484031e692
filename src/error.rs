//! The one error the library returns: each stage's error, wrapped, and the failures of the
//! chain itself; every failure names the thing that is wrong and what to do. Rendered once, by
//! the CLI.

pub use crate::artifacts::shared_libs::MissingLibrary;
pub use crate::artifacts::Error as ArtifactsError;
pub use crate::deliver::Error as DeliverError;
pub use crate::engine::Error as EngineError;
pub use crate::fsutil::IoError;
pub use crate::image::Error as ImageError;
pub use crate::manifest::Diagnostic;
pub use crate::manifest::Error as ManifestError;
pub use crate::plan::Error as PlanError;
pub use crate::report::Error as ReportError;

/// Everything that can stop a dockception run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or checking the manifest failed.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),

    /// Resolving the plan failed.
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),

    /// The container engine failed or refused.
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),

    /// Selecting the artifacts or what they need failed.
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::Error),

    /// Writing the runtime image failed.
    #[error(transparent)]
    Image(#[from] crate::image::Error),

    /// Pushing the image, or writing it to a file, failed or cannot be done.
    #[error(transparent)]
    Deliver(#[from] crate::deliver::Error),

    /// Measuring, storing or reading a report failed.
    #[error(transparent)]
    Report(#[from] crate::report::Error),

    /// The command line asks for something the manifest does not have.
    #[error("{message}\n  help: {help}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// The build command in the builder container exited with a non-zero status.
    #[error("the build command failed with exit status {code}{}\n  help: fix the build, or run it by hand: docker run --rm -it {image} sh", render_build_tail(.tail, *.lines, .log.as_deref()))]
    BuildCommandFailed {
        /// The builder's exit status; the CLI exits with it.
        code: i64,
        /// The builder image, for the hint.
        image: String,
        /// The builder's last output lines.
        tail: Vec<String>,
        /// How many lines the builder wrote in all (0 when unknown).
        lines: usize,
        /// The file holding its whole output (`build.log` in the output folder), when written.
        log: Option<std::path::PathBuf>,
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

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

impl Error {
    /// The manifest's problems, each at its `file:line:col`, when the manifest (or what it
    /// resolves to) is what is wrong; empty for every other error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Manifest(ManifestError::Invalid(d)) | Error::Plan(PlanError::Invalid(d)) => d,
            Error::InTarget { source, .. } => source.diagnostics(),
            _ => &[],
        }
    }

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
            Error::Manifest(crate::manifest::Error::GateConfig { .. })
            | Error::Manifest(crate::manifest::Error::Usage { .. })
            | Error::Plan(crate::plan::Error::Usage { .. }) => 2,
            Error::Gates { status, .. } => *status,
            Error::BaselineMissing { .. } => 3,
            _ => 1,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// The builder's last lines, saying when they are not all of them, and where the whole output is.
fn render_build_tail(tail: &[String], lines: usize, log: Option<&std::path::Path>) -> String {
    let mut out = render_tail(tail);
    if lines > tail.len() && !tail.is_empty() {
        out = out.replacen(
            "; its last lines were:",
            &format!("; its last {} of {lines} lines were:", tail.len()),
            1,
        );
    }
    if let Some(log) = log {
        out.push_str(&format!("\n  the whole output is in {}", log.display()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_failure_keeps_the_builders_status() {
        let e = Error::BuildCommandFailed {
            code: 3,
            image: "gcc:local".into(),
            tail: vec![],
            lines: 0,
            log: None,
        };
        assert_eq!(e.exit_status(), 3);
        let e = Error::BuildCommandFailed {
            code: 300,
            image: "gcc:local".into(),
            tail: vec![],
            lines: 0,
            log: None,
        };
        assert_eq!(e.exit_status(), 1);
    }

    #[test]
    fn a_long_build_failure_says_how_much_it_shows_and_where_the_rest_is() {
        let e = Error::BuildCommandFailed {
            code: 2,
            image: "gcc:local".into(),
            tail: vec!["line 249".into(), "line 250".into()],
            lines: 250,
            log: Some("/p/.dockception/build.log".into()),
        };
        assert_eq!(
            e.to_string(),
            "the build command failed with exit status 2; its last 2 of 250 lines were:\n  | line 249\n  | line 250\n  the whole output is in /p/.dockception/build.log\n  help: fix the build, or run it by hand: docker run --rm -it gcc:local sh"
        );
    }

    #[test]
    fn a_failed_target_is_named_and_keeps_its_errors_status() {
        let e = Error::InTarget {
            target: "app".into(),
            source: Box::new(Error::BuildCommandFailed {
                code: 3,
                image: "gcc:local".into(),
                tail: vec![],
                lines: 0,
                log: None,
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
