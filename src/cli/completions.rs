//! `dockception completions SHELL` and `dockception man`, and the completion requests the
//! completion scripts send back.
//!
//! The scripts are clap_complete's dynamic ones: each completion runs `dockception` with
//! [`COMPLETE_VAR`] set to the shell's name, and [`complete_if_asked`] answers it from the
//! same clap definitions as the parser, so the manifest's targets and groups complete too (in
//! every shell clap_complete supports, unlike its static scripts, which cannot know them).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory as _;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::CompleteEnv;

use crate::fsutil::FromIo as _;
use crate::Error;

use super::args::{Cli, CompletionShell};

/// The environment variable that turns a run into a completion request. A name of our own, so
/// a `COMPLETE` set for another program does not turn a build into one.
pub(super) const COMPLETE_VAR: &str = "DOCKCEPTION_COMPLETE";

/// Answer a completion request and exit, when this run is one.
pub(super) fn complete_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VAR)
        .complete();
}

/// `dockception completions SHELL`: the script that registers dockception's completion.
pub(super) fn completions(shell: CompletionShell) -> Result<(), Error> {
    let completer: &dyn clap_complete::env::EnvCompleter = match shell {
        CompletionShell::Bash => &clap_complete::env::Bash,
        CompletionShell::Zsh => &clap_complete::env::Zsh,
        CompletionShell::Fish => &clap_complete::env::Fish,
        CompletionShell::Elvish => &clap_complete::env::Elvish,
        CompletionShell::Powershell => &clap_complete::env::Powershell,
    };
    let mut script = Vec::new();
    completer
        .write_registration(
            COMPLETE_VAR,
            "dockception",
            "dockception",
            &this_program(),
            &mut script,
        )
        .map_err(|e| Error::io("writing the completion script for", "stdout", e))?;
    out!("{}", String::from_utf8_lossy(&script));
    Ok(())
}

/// How the script calls dockception back: by name when it was run from `PATH`, else by its
/// absolute path.
fn this_program() -> String {
    let invoked = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("dockception"));
    if invoked.components().count() > 1 {
        std::path::absolute(&invoked)
            .unwrap_or(invoked)
            .to_string_lossy()
            .into_owned()
    } else {
        invoked.to_string_lossy().into_owned()
    }
}

/// `dockception man`: the man page, in roff.
pub(super) fn man() -> Result<(), Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::io("writing the man page to", "stdout", e))?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(())
}

/// Completes a TARGET argument with the manifest's targets and groups.
pub(super) fn target_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        names_in(&manifest_being_completed())
            .into_iter()
            .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
            .collect::<Vec<_>>()
    })
}

/// The manifest the command line being completed names with `-f`/`--file`, else
/// `dockception.toml` here.
fn manifest_being_completed() -> PathBuf {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The completed command line follows `--` in a completion request.
    let line = match args.iter().position(|a| a == "--") {
        Some(at) => &args[at + 1..],
        None => &args[..],
    };
    manifest_in(line)
}

/// The value of the last `-f FILE`, `--file FILE` or `--file=FILE` in `line`.
fn manifest_in(line: &[OsString]) -> PathBuf {
    let mut found = None;
    let mut words = line.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(word) = words.next() {
        if word == "-f" || word == "--file" {
            found = words.next().or(found);
        } else if let Some(value) = word.strip_prefix("--file=") {
            found = Some(value.to_string());
        } else if let Some(value) = word.strip_prefix("-f").filter(|v| !v.is_empty()) {
            found = Some(value.to_string());
        }
    }
    PathBuf::from(found.unwrap_or_else(|| "dockception.toml".into()))
}

/// The targets (for the manifest with `[targets.NAME]`) and groups of the manifest at `path`,
/// each with what it is; nothing when it cannot be read or has errors.
fn names_in(path: &std::path::Path) -> Vec<(String, &'static str)> {
    let Ok(loaded) = crate::manifest::load_with(path, &Default::default()) else {
        return Vec::new();
    };
    let mut names: Vec<(String, &'static str)> = loaded
        .manifest
        .targets()
        .into_iter()
        .filter(|t| !t.span.is_empty())
        .map(|t| (t.name, "target"))
        .collect();
    names.extend(
        loaded
            .manifest
            .groups
            .keys()
            .map(|g| (g.get_ref().clone(), "group")),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_manifest_is_the_one_the_line_names() {
        for (line, manifest) in [
            ("dockception build", "dockception.toml"),
            ("dockception build -f other.toml", "other.toml"),
            ("dockception build --file a/b.toml run", "a/b.toml"),
            ("dockception build --file=c.toml", "c.toml"),
            ("dockception build -fd.toml", "d.toml"),
            ("dockception build -f", "dockception.toml"),
        ] {
            assert_eq!(manifest_in(&words(line)), PathBuf::from(manifest), "{line}");
        }
    }

    #[test]
    fn targets_and_groups_are_named_and_a_bad_manifest_names_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dockception.toml");
        std::fs::write(
            &path,
            "[targets.build]\nbuilder.image = \"gcc:local\"\nbuilder.run = \"true\"\nartifacts.include = [\"x\"]\n\n[targets.run]\nartifacts.from = \"build:/out\"\nartifacts.include = [\"x\"]\n\n[groups]\nall-images = [\"build\", \"run\"]\n",
        )
        .expect("write");
        let names = names_in(&path);
        assert_eq!(
            names,
            [
                ("build".to_string(), "target"),
                ("run".to_string(), "target"),
                ("all-images".to_string(), "group"),
            ]
        );
        std::fs::write(&path, "[targets.build\n").expect("write");
        assert_eq!(names_in(&path), []);
        assert_eq!(names_in(&dir.path().join("missing.toml")), []);
    }
}
