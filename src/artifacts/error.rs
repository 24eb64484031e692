//! What can go wrong selecting artifacts and checking what they need.

use std::path::PathBuf;

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

    /// An artifact starts like an ELF file but cannot be read as one.
    #[error("artifact {path} looks like an ELF file but cannot be parsed: {message}\n  help: check the build's output; set libs = \"off\" in [runtime] to ship it unchecked")]
    InvalidElf {
        /// The artifact on the host.
        path: PathBuf,
        /// What the parser said.
        message: String,
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

    /// A library the search took from the builder was not copied out of it, so the image
    /// would ship an artifact that cannot start.
    #[error("the library {from} of the builder {builder}, needed at {path} in the image, was found but not copied out of the builder, so the image would ship an artifact that cannot start\n  help: build again; if it stays, ship the library as an artifact, install it in the base, or link statically")]
    LibraryNotCopied {
        /// Where it goes in the image.
        path: String,
        /// Its path in the builder.
        from: String,
        /// The builder image.
        builder: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
