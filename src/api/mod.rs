//! dockception from your own code, typically a project's `xtask`: load a manifest (from a file
//! or from text), override variables, targets and tags, build, and get typed reports back.
//!
//! From synchronous code, [`build_blocking`] runs everything, Ctrl-C included:
//!
//! ```no_run
//! use dockception::{Options, Progress};
//!
//! fn main() -> dockception::Result<()> {
//!     let plans = Options::new("dockception.toml")
//!         .set("TAG", "dev")        // like --set TAG=dev
//!         .tag("app:dev")           // like --tag app:dev (TARGET=NAME[:TAG] with several)
//!         .load()?;                 // the manifest checked and resolved: nothing runs yet
//!     for built in dockception::build_blocking(&plans, Progress::auto())? {
//!         let report = &built.report;
//!         println!("{} -> {} ({} bytes)", built.target, report.image_id, report.runtime_bytes);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! From async code, connect and build yourself; [`Progress::Silent`] prints nothing:
//!
//! ```no_run
//! # async fn run() -> dockception::Result<()> {
//! use dockception::{Engine, Options, Progress};
//!
//! let manifest = r#"
//! [builder]
//! image = "gcc:local"
//! run   = "cc -static -o /out/hello /src/hello.c"
//!
//! [[mount]]
//! source = "."
//! target = "/src"
//!
//! [artifacts]
//! include = ["hello"]
//! "#;
//! // Relative paths resolve against the named file's folder, as if it existed.
//! let plans = Options::from_text("examples/hello-c/src/dockception.toml", manifest).load()?;
//! let engine = Engine::connect().await?;
//! let reports = dockception::build(&engine, &plans, &Progress::Silent).await?;
//! assert_eq!(reports[0].report.libs.elf_artifacts[0].linking, "static");
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`Error`] values: match on them (a manifest's [`Error::Manifest`] diagnostics,
//! also as `Error::diagnostics`, [`Error::BuildCommandFailed`] with the builder's exit status,
//! [`Error::Artifacts`] for missing libraries, [`Error::Engine`] naming the image, container or
//! volume a call was about, …) or print them; `Error::exit_status` gives the CLI's exit status.

pub mod rust;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::pipeline::TargetReport;
use crate::progress::Progress;
use std::collections::BTreeMap;

use crate::manifest::{self, vars};
use crate::plan::{self, PlanSet, Selection, TagOverride};
use crate::report::gates::{GateFlags, GateSet};

/// Where the manifest is and what the caller overrides.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The manifest file.
    pub manifest: PathBuf,
    /// Which targets to build.
    pub selection: Selection,
    /// Tags that replace the manifest's, per target (`TARGET=NAME`) or for the only target.
    pub tags: Vec<TagOverride>,
    /// Variables from `--set NAME=VALUE`; they win over the environment and the manifest.
    pub set: BTreeMap<String, String>,
    /// The tool's output folder (default: `.dockception` next to the manifest).
    pub out_dir: Option<PathBuf>,
    /// The manifest's text, when it does not come from the file: `manifest` then only names it
    /// in messages, and relative paths still resolve against its folder.
    pub source: Option<Vec<u8>>,
    /// How to use the engine, over the manifest's `[engine] mode` (`--engine-mode`).
    pub engine_mode: Option<crate::manifest::EngineMode>,
}

/// A manifest read once for a run: the plan, and the gates of each selected target, both from
/// the same variables (`[vars]`, the environment, `--set`).
pub(crate) struct Checked {
    /// The resolved plan.
    pub(crate) plan: PlanSet,
    /// The gates of each selected target (its `[gates]` with the flags on top), by target name.
    pub(crate) gates: BTreeMap<String, GateSet>,
}

/// Load and check the manifest (variables from `[vars]`, the `DOCKCEPTION_VAR_*` environment
/// and `--set`), then resolve the selected targets into a plan for the invoking user.
/// Everything `build` checks before it starts is checked here, `[gates]` included.
pub(crate) fn load_plan(options: &Options) -> Result<PlanSet> {
    Ok(load_checked(options, &GateFlags::default())?.plan)
}

/// [`load_plan`], and the gates: each selected target's `[gates]` with `flags` on top; every
/// other target's `[gates]` is checked too, so `dockception plan` catches what any build would.
/// The manifest is read once, so the gates see the same variables as the plan.
pub(crate) fn load_checked(options: &Options, flags: &GateFlags) -> Result<Checked> {
    let loaded = load_manifest(options)?;
    let plan = plan::plan(&loaded, &plan_options(options))?;
    let mut gates = BTreeMap::new();
    let mut problems = Vec::new();
    for target in loaded.manifest.targets() {
        let selected = plan.is_selected(&target.name);
        let no_flags = GateFlags::default();
        let flags = if selected { flags } else { &no_flags };
        match GateSet::resolve(Some(&loaded), Some(&target.name), flags) {
            Ok(set) if selected => {
                gates.insert(target.name, set);
            }
            Ok(_) => {}
            Err(manifest::Error::GateConfig { problems: more }) => {
                // The flags are the same for every target: report their problems once.
                for problem in more {
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    if !problems.is_empty() {
        return Err(manifest::Error::GateConfig { problems }.into());
    }
    Ok(Checked { plan, gates })
}

/// The manifest, checked, with the variables of the environment and [`Options::set`].
fn load_manifest(options: &Options) -> Result<manifest::LoadedManifest> {
    let overrides = vars::Overrides {
        env: vars::Overrides::from_env(std::env::vars()),
        set: options.set.clone(),
    };
    Ok(match &options.source {
        Some(bytes) => manifest::parse_bytes_with(&options.manifest, bytes.clone(), &overrides)?,
        None => manifest::load_with(&options.manifest, &overrides)?,
    })
}

/// What the plan needs beyond the manifest: the invoking user, tags, output folder, selection.
fn plan_options(options: &Options) -> plan::PlanOptions {
    plan::PlanOptions {
        invoking_user: Some((
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )),
        tags: options.tags.clone(),
        out_dir: options.out_dir.clone(),
        selection: options.selection.clone(),
        engine_mode: options.engine_mode,
    }
}

impl Options {
    /// Options for the manifest file at `manifest`; everything else comes from the manifest.
    pub fn new(manifest: impl Into<PathBuf>) -> Options {
        Options {
            manifest: manifest.into(),
            ..Default::default()
        }
    }

    /// Options for a manifest given as text. `manifest` names it in messages, and relative
    /// paths in it resolve against that path's folder (the file need not exist).
    pub fn from_text(manifest: impl Into<PathBuf>, text: impl Into<String>) -> Options {
        Options {
            manifest: manifest.into(),
            source: Some(text.into().into_bytes()),
            ..Default::default()
        }
    }

    /// Options for a manifest given as bytes, which need not be UTF-8 (a manifest that is not
    /// is an error pointing at the first bad byte); otherwise like [`Options::from_text`].
    pub fn from_bytes(manifest: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Options {
        Options {
            manifest: manifest.into(),
            source: Some(bytes.into()),
            ..Default::default()
        }
    }

    /// Give variable `name` a value; it wins over `[vars]` and `DOCKCEPTION_VAR_NAME`, like
    /// `--set NAME=VALUE`.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Options {
        self.set.insert(name.into(), value.into());
        self
    }

    /// Build these targets or groups instead of the manifest's default.
    pub fn targets<I, S>(mut self, names: I) -> Options
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = Selection::Names(names.into_iter().map(Into::into).collect());
        self
    }

    /// Build every target.
    pub fn all_targets(mut self) -> Options {
        self.selection = Selection::All;
        self
    }

    /// Tag an image, like `--tag`: `NAME[:TAG]` when one target is built, else
    /// `TARGET=NAME[:TAG]`. The first tag given for a target replaces the manifest's tags.
    pub fn tag(mut self, reference: impl AsRef<str>) -> Options {
        self.tags.push(TagOverride::parse(reference.as_ref()));
        self
    }

    /// Keep the tool's output in `dir` instead of `.dockception` next to the manifest.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Options {
        self.out_dir = Some(dir.into());
        self
    }

    /// Load and check the manifest (variables from `[vars]`, the `DOCKCEPTION_VAR_*`
    /// environment and [`Options::set`]), then resolve the selected targets into a plan for the
    /// invoking user. Everything a build checks before it starts is checked, every target's
    /// `[gates]` included (a misconfigured gate is `Error::Manifest` with exit status 2).
    /// Nothing runs yet.
    pub fn load(&self) -> Result<PlanSet> {
        load_plan(self)
    }
}

/// Build the plan's images from synchronous code (an xtask's `main`): starts a Tokio runtime,
/// connects to the engine (`DOCKER_HOST`, else the local socket), runs [`crate::build`], and
/// on Ctrl-C or SIGTERM removes the containers the run created before returning
/// [`Error::Interrupted`].
pub fn build_blocking(plans: &PlanSet, progress: Progress) -> Result<Vec<TargetReport>> {
    build_blocking_to(plans, progress, &crate::Destinations::default())
}

/// [`build_blocking`], with the images going to `destinations` (pushed, written to files,
/// loaded), as `dockception build --push`/`--output`/`--load` do.
pub fn build_blocking_to(
    plans: &PlanSet,
    progress: Progress,
    destinations: &crate::Destinations,
) -> Result<Vec<TargetReport>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::HostCommand {
            command: "starting the Tokio runtime".into(),
            message: e.to_string(),
            help: "check the process's limits on threads and open files".into(),
        })?;
    runtime.block_on(async {
        let engine = crate::Engine::connect().await?;
        crate::pipeline::interrupt::interruptible(
            &engine,
            crate::build_to(&engine, plans, &progress, destinations),
        )
        .await
    })
}

/// The manifest's JSON Schema, as checked in at `schema/dockception.schema.json`: generated from
/// the manifest's types, so an editor completes and explains every key.
pub fn manifest_schema() -> String {
    manifest::json_schema()
}

/// The JSON Schema of `report --format json`, as checked in at `schema/report.schema.json`.
pub fn report_schema() -> String {
    crate::report::json_schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_methods_fill_the_options() {
        let o = Options::new("m.toml")
            .set("A", "1")
            .targets(["run"])
            .tag("run=app:1")
            .out_dir("/tmp/out");
        assert_eq!(o.manifest, PathBuf::from("m.toml"));
        assert_eq!(o.set.get("A").map(String::as_str), Some("1"));
        assert_eq!(o.selection, Selection::Names(vec!["run".into()]));
        assert_eq!(o.tags, [TagOverride::parse("run=app:1")]);
        assert_eq!(o.out_dir, Some(PathBuf::from("/tmp/out")));
        assert_eq!(
            Options::new("m.toml").all_targets().selection,
            Selection::All
        );
    }

    #[test]
    fn a_manifest_from_text_resolves_paths_from_its_named_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let text = "[builder]\nimage = \"gcc:local\"\nrun = \"make\"\n\n[[mount]]\nsource = \"src\"\ntarget = \"/src\"\n\n[artifacts]\ninclude = [\"${APP}\"]\n\n[image]\ntags = [\"${APP}:1\"]\n";
        let plans = Options::from_text(dir.path().join("virtual.toml"), text)
            .set("APP", "hello")
            .load()
            .expect("plan");
        let plan = &plans.targets[0];
        assert_eq!(plan.builder.mounts[0].source, dir.path().join("src"));
        assert_eq!(plan.artifacts.include, ["hello"]);
        assert_eq!(plan.tags, ["hello:1"]);
    }

    #[test]
    fn a_bad_manifest_from_text_is_a_typed_error() {
        let err = Options::from_text("inline.toml", "[builder\n")
            .load()
            .expect_err("bad TOML");
        let Error::Manifest(crate::manifest::Error::Invalid(diagnostics)) = err else {
            panic!("expected Error::Manifest, got {err}");
        };
        assert_eq!(diagnostics[0].path, PathBuf::from("inline.toml"));
        assert_eq!(diagnostics[0].line, 1);
    }

    #[test]
    fn the_gates_see_the_plans_variables_and_every_target_is_checked() {
        let target = |name: &str, gate: &str| {
            format!("[targets.{name}]\nbuilder.image = \"gcc:local\"\nbuilder.run = \"make\"\nartifacts.include = [\"app\"]\ngates.{gate}\n\n")
        };
        let good = target("a", "max_image_size = \"${LIMIT}\"");
        let options = Options::from_text("inline.toml", good.clone())
            .set("LIMIT", "1 MiB")
            .targets(["a"]);
        let checked = load_checked(&options, &GateFlags::default()).expect("loads");
        assert_eq!(checked.gates["a"].max_image_size, Some(1 << 20));

        let bad = format!("{good}{}", target("b", "max_waste = \"lots\""));
        let err = Options::from_text("inline.toml", bad)
            .set("LIMIT", "1 MiB")
            .targets(["a"])
            .load()
            .expect_err("b's gate is misconfigured, though only a is selected");
        assert_eq!(err.exit_status(), 2, "{err}");
        assert!(err.to_string().contains("gates.max_waste"), "{err}");
    }
}
