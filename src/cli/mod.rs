//! The `dockception` command: parses flags and wires the library's pipeline together.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::manifest::vars::Overrides;
use crate::pipeline::interrupt::interruptible;
use crate::report::gates::GateFlags;
use crate::report::store::{self, Source};
use crate::report::{Document, Report, LAST_BUILD};
use crate::{Engine, Error, Options, PlanSet, Progress, Selection, TagOverride};
use clap::{Parser, Subcommand, ValueEnum};

/// `print!` to standard output, but a reader that went away (`dockception plan | head -1`) ends
/// the process quietly, as command-line tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// `println!` likewise.
macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Small, clean container images from one TOML manifest.
///
/// dockception runs your build inside a fat builder image with your sources mounted read-only
/// (never copied into a layer), keeps only the files your artifact globs select, and ships them
/// on a tiny runtime base such as `scratch`. Everything is declared in `dockception.toml`; one
/// file can hold several targets (`[targets.NAME]`).
///
/// Exit status: 0 on success, the build command's own status when it fails, 1 for other
/// errors or a failed gate, 2 for usage errors or a misconfigured gate, 3 when a baseline was
/// required and is missing, 130/143 when interrupted.
#[derive(Debug, Parser)]
#[command(name = "dockception", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the artifacts in the builder, then build and tag the runtime image(s) and print a
    /// size report.
    Build {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        /// Tag a runtime image (repeatable): `NAME[:TAG]` when one target is built, else
        /// `TARGET=NAME[:TAG]`. Replaces the manifest's tags of that target.
        #[arg(short, long = "tag", value_name = "[TARGET=]NAME[:TAG]")]
        tags: Vec<String>,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        gates: GateArgs,
        /// Build even when nothing changed since the last build (by default a target whose
        /// manifest, builder, base and sources are unchanged and whose image still exists is
        /// "up to date" and nothing runs).
        #[arg(long)]
        force: bool,
    },
    /// Build the artifacts, then write the runtime image's build context (a tar holding a
    /// Dockerfile and the artifacts) to stdout: `dockception context | docker build -t app -`.
    Context {
        #[command(flatten)]
        common: Common,
        /// The target whose context to write (needed when several are selected).
        #[arg(value_name = "TARGET")]
        target: Option<String>,
    },
    /// Print the fully resolved plan (images, mounts with absolute host paths, caches,
    /// commands, artifact rules, runtime config, tags, build order) without starting anything.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        /// Tags, as for `build`.
        #[arg(short, long = "tag", value_name = "[TARGET=]NAME[:TAG]")]
        tags: Vec<String>,
        /// How to print the plan.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the size report of a target's last build (or of --current) compared with the
    /// build before it (or with --baseline), and check the gates. Needs no engine unless an
    /// image is named.
    Report(ReportArgs),
    /// List or remove the manifest's cache volumes (`[[cache]]`), kept between builds so
    /// compilers' caches make rebuilds incremental.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print the manifest's JSON Schema (for editors: save it and point `#:schema` at it).
    Schema,
    /// Write a commented starter manifest for the project in the current folder (Go, Rust,
    /// C/Make, JVM, or a generic one). Never overwrites an existing manifest.
    Init {
        /// Where to write it.
        #[arg(
            short = 'f',
            long = "file",
            value_name = "FILE",
            default_value = "dockception.toml"
        )]
        manifest: PathBuf,
    },
    /// Remove what interrupted or crashed runs left behind: builder containers whose
    /// dockception process is gone, dangling dockception images, and run folders in the output
    /// folder. Cache volumes are kept unless --caches is given. Builds in progress are not
    /// touched.
    Clean {
        #[command(flatten)]
        common: Common,
        /// Also remove the cache volumes.
        #[arg(long)]
        caches: bool,
        /// Clean every dockception project on the engine, not only this manifest's (run folders
        /// are still cleaned only in this manifest's output folder).
        #[arg(long)]
        all: bool,
        /// Also remove containers that may belong to a build in progress (made on another
        /// host, or by a dockception that labels no owner).
        #[arg(long)]
        force: bool,
    },
}

/// The baseline and the gates, on `build` and `report`; each gate flag overrides the
/// manifest's `[gates]` key of the same name.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Baseline and gates")]
struct GateArgs {
    /// Compare with this report file or image instead of the previous build (a path that
    /// exists or ends in .json is a report file, anything else an image).
    #[arg(long, value_name = "FILE|IMAGE")]
    baseline: Option<String>,
    /// FAIL when the image is larger than SIZE (bytes, or e.g. "20 MiB", "1.5 MB").
    #[arg(long, value_name = "SIZE")]
    max_image_size: Option<String>,
    /// WARN when the image is larger than SIZE.
    #[arg(long, value_name = "SIZE")]
    warn_image_size: Option<String>,
    /// FAIL when the image grew by more than SIZE since the baseline.
    #[arg(long, value_name = "SIZE")]
    max_growth: Option<String>,
    /// FAIL when the image grew by more than PERCENT since the baseline (once it grew by at
    /// least the growth floor).
    #[arg(long, value_name = "PERCENT")]
    max_growth_percent: Option<String>,
    /// Growth below SIZE skips the percent gate [default: 64 KiB].
    #[arg(long, value_name = "SIZE")]
    growth_floor: Option<String>,
    /// FAIL when any shipped file is larger than SIZE.
    #[arg(long, value_name = "SIZE")]
    max_artifact_size: Option<String>,
    /// FAIL when deleted, overwritten or duplicate bytes exceed SIZE (0: a clean image).
    #[arg(long, value_name = "SIZE")]
    max_waste: Option<String>,
    /// FAIL when the image is fewer than RATIO times smaller than the builder.
    #[arg(long, value_name = "RATIO")]
    min_reduction: Option<String>,
    /// Exit 3 when there is no baseline to compare with.
    #[arg(long)]
    require_baseline: bool,
}

impl GateArgs {
    fn flags(&self) -> GateFlags {
        GateFlags {
            max_image_size: self.max_image_size.clone(),
            warn_image_size: self.warn_image_size.clone(),
            max_growth: self.max_growth.clone(),
            max_growth_percent: self.max_growth_percent.clone(),
            growth_floor: self.growth_floor.clone(),
            max_artifact_size: self.max_artifact_size.clone(),
            max_waste: self.max_waste.clone(),
            min_reduction: self.min_reduction.clone(),
            require_baseline: self.require_baseline,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The target to report on (needed when the manifest has several).
    #[arg(value_name = "TARGET")]
    target: Option<String>,
    /// The manifest (for the output folder, the gates, the base and the artifact rules)
    /// [default: dockception.toml when it exists].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The tool's output folder, where builds store report.json [default: .dockception next
    /// to the manifest].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Report on this report file or image instead of the last build.
    #[arg(long, value_name = "FILE|IMAGE")]
    current: Option<String>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    gates: GateArgs,
    /// Print only warnings and errors.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the manifest's cache volumes with their size (`--all`: every dockception cache
    /// volume on the engine).
    Ls {
        #[command(flatten)]
        common: Common,
        /// Also list the cache volumes of other projects.
        #[arg(long)]
        all: bool,
    },
    /// Remove the manifest's cache volumes, or only those of one target (its name), or one
    /// cache (its path in the container, e.g. /cache/go-build, or its volume name); the next
    /// build starts cold.
    Rm {
        #[command(flatten)]
        common: Common,
        /// A target name, a cache's target path or a volume name [default: every cache].
        target: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The manifest to use.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "dockception.toml"
    )]
    manifest: PathBuf,
    /// Set a manifest variable (repeatable); wins over DOCKCEPTION_VAR_NAME and [vars].
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// The tool's output folder [default: .dockception next to the manifest].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Print only warnings and errors (no phases, no build output).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct Targets {
    /// Targets or groups [default: the manifest's `default`, else every target].
    #[arg(value_name = "TARGET")]
    names: Vec<String>,
    /// Every target.
    #[arg(long, conflicts_with = "names")]
    all: bool,
}

impl Targets {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else if self.names.is_empty() {
            Selection::Default
        } else {
            Selection::Names(self.names.clone())
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// For people: aligned, human units.
    Text,
    /// One JSON document with raw values (for `build`: an array, one report per target; each
    /// follows schema/report.schema.json).
    Json,
    /// Markdown for a pull-request comment or a CI step summary.
    Markdown,
}

/// The `dockception` command line: parse the arguments, run the subcommand, exit with its status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A blocking task stuck on a dead pipe or engine must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Build {
            common,
            targets,
            tags,
            format,
            gates,
            force,
        } => {
            let progress = progress(&common);
            let plan = crate::api::load_plan(&options(&common, targets.selection(), &tags)?)?;
            // By target name: reports come back in the manifest's order, not the command line's.
            let mut gate_sets = std::collections::HashMap::new();
            for target in &plan.selected {
                gate_sets.insert(
                    target.clone(),
                    crate::pipeline::load_gates(
                        Some(&common.manifest),
                        Some(target),
                        &gates.flags(),
                    )?,
                );
            }
            let engine = Engine::connect().await?;
            // An explicit baseline is read before the build, which may retag its image.
            let explicit = match gates.baseline.as_deref().map(Source::parse) {
                Some(source) => {
                    let target = only_selected(&plan, "--baseline")?;
                    Some((
                        crate::pipeline::load_source(
                            &source,
                            Some(&engine),
                            plan.target(target),
                            &progress,
                            true,
                        )
                        .await?,
                        source.name(),
                    ))
                }
                None => None,
            };
            let reports = interruptible(
                &engine,
                crate::pipeline::build_if_changed(&engine, &plan, &progress, force),
            )
            .await?;
            let mut documents = Vec::new();
            let mut explicit = explicit;
            for built in reports {
                let gate_set = gate_sets
                    .remove(&built.target)
                    .ok_or_else(|| Error::Usage {
                        message: format!("target `{}` was built but not selected", built.target),
                        help: "this is a bug in dockception; please report it".into(),
                    })?;
                let baseline = match explicit.take() {
                    Some(b) => Some(b),
                    None => plan
                        .target(&built.target)
                        .and_then(|p| previous_build(&p.out_dir, &progress)),
                };
                let document = crate::pipeline::review(built.report, baseline, &gate_set);
                documents.push((built.target, built.init, document));
            }
            finish_all(documents, format)
        }
        Command::Report(args) => report(args).await,
        Command::Cache { command } => cache(command).await,
        Command::Plan {
            common,
            targets,
            tags,
            format,
        } => {
            let plan = crate::api::load_plan(&options(&common, targets.selection(), &tags)?)?;
            match format {
                Format::Text | Format::Markdown => out!("{}", plan.to_text()),
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                ),
            }
            Ok(())
        }
        Command::Schema => {
            out!("{}", crate::manifest::json_schema());
            Ok(())
        }
        Command::Init { manifest } => {
            let folder = std::env::current_dir().map_err(|e| Error::io("reading", ".", e))?;
            let kind = crate::manifest::starter::write_starter(&folder, &manifest)?;
            eprintln!(
                "wrote {} for a {kind} project; edit it, then run: dockception build",
                manifest.display()
            );
            Ok(())
        }
        Command::Context { common, target } => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Usage {
                    message: "refusing to write a tar to the terminal".into(),
                    help: "pipe it instead: dockception context | docker build -t app -".into(),
                });
            }
            let progress = progress(&common);
            let selection = match target {
                Some(t) => Selection::Names(vec![t]),
                None => Selection::Default,
            };
            let plan = crate::api::load_plan(&options(&common, selection, &[])?)?;
            let engine = Engine::connect().await?;
            let written = interruptible(
                &engine,
                crate::pipeline::write_context(&engine, &plan, &progress, stdout.lock()),
            )
            .await?;
            progress.phase(&format!("wrote a {written}-byte build context to stdout"));
            Ok(())
        }
        Command::Clean {
            common,
            caches,
            all,
            force,
        } => clean(&common, caches, all, force).await,
    }
}

/// `dockception report`: the last build (or `--current`) against the build before it (or
/// `--baseline`).
async fn report(args: ReportArgs) -> Result<(), Error> {
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::Normal
    };
    let manifest = args.manifest.clone().or_else(|| {
        let default = Path::new("dockception.toml");
        default.exists().then(|| default.to_path_buf())
    });
    let plans = match &manifest {
        Some(path) => Some(crate::api::load_plan(&Options {
            manifest: path.clone(),
            selection: match &args.target {
                Some(t) => Selection::Names(vec![t.clone()]),
                None => Selection::Default,
            },
            out_dir: args.out_dir.clone(),
            ..Default::default()
        })?),
        None => None,
    };
    let target = match &plans {
        Some(plans) => Some(only_selected(plans, "report")?.to_string()),
        None => None,
    };
    let plan = plans
        .as_ref()
        .zip(target.as_deref())
        .and_then(|(plans, t)| plans.target(t))
        .cloned();
    let gate_set =
        crate::pipeline::load_gates(manifest.as_deref(), target.as_deref(), &args.gates.flags())?;
    let current_source = args.current.as_deref().map(Source::parse);
    let baseline_source = args.gates.baseline.as_deref().map(Source::parse);
    let engine = if [&current_source, &baseline_source]
        .iter()
        .any(|s| matches!(s, Some(Source::Image(_))))
    {
        Some(Engine::connect().await?)
    } else {
        None
    };
    let out_dir = plan
        .as_ref()
        .map(|p| p.out_dir.clone())
        .or(args.out_dir.clone());
    let current = match &current_source {
        Some(source) => {
            crate::pipeline::load_source(source, engine.as_ref(), plan.as_ref(), &progress, false)
                .await?
        }
        None => {
            let dir = out_dir.clone().ok_or_else(|| Error::Report(crate::report::Error::ReportFile {
                action: "finding",
                path: "report.json".into(),
                message: "there is no dockception.toml here and no --out-dir or --current\n  help: run it next to the manifest, pass -f FILE, or name --current FILE|IMAGE".into(),
            }))?;
            let path = dir.join(store::REPORT_FILE);
            store::load_if_present(&path)?.ok_or_else(|| {
                Error::Report(crate::report::Error::ReportFile {
                    action: "reading",
                    path,
                    message: "no such file; build first (each build writes it)".into(),
                })
            })?
        }
    };
    let baseline = match (&baseline_source, &current_source, &out_dir) {
        (Some(source), _, _) => Some((
            crate::pipeline::load_source(source, engine.as_ref(), plan.as_ref(), &progress, true)
                .await?,
            source.name(),
        )),
        (None, None, Some(dir)) => previous_build(dir, &progress),
        _ => None,
    };
    finish(
        crate::pipeline::review(current, baseline, &gate_set),
        args.format,
    )
}

/// The report of the build before the last one, when there is a readable one.
fn previous_build(out_dir: &Path, progress: &Progress) -> Option<(Report, String)> {
    let path = out_dir.join(store::PREVIOUS_FILE);
    match store::load_if_present(&path) {
        Ok(report) => report.map(|r| (r, LAST_BUILD.to_string())),
        Err(e) => {
            progress.warn(&format!("{e}; comparing with nothing"));
            None
        }
    }
}

/// Print the document, then exit as the gates say.
fn finish(document: Document, format: Format) -> Result<(), Error> {
    match format {
        Format::Text => out!("{}", document.to_text()),
        Format::Json => out!("{}", document.to_json()),
        Format::Markdown => out!("{}", document.to_markdown()),
    }
    match (document.exit_code(), &document.gates) {
        (0, _) | (_, None) => Ok(()),
        (status, Some(gates)) => Err(Error::Gates {
            summary: gates.summary.clone(),
            status,
        }),
    }
}

async fn cache(command: CacheCommand) -> Result<(), Error> {
    let (common, selector, all) = match &command {
        CacheCommand::Ls { common, all } => (common, None, *all),
        CacheCommand::Rm { common, target } => (common, target.as_deref(), false),
    };
    // The manifest's variables apply (a cache's name or path may use them).
    let plans = crate::api::load_plan(&options(common, Selection::All, &[])?)?;
    let engine = Engine::connect().await?;
    if let CacheCommand::Rm { .. } = command {
        for (cache, existed) in crate::pipeline::remove_caches(&engine, &plans, selector).await? {
            let what = if existed { "removed" } else { "did not exist:" };
            outln!("{what} {} ({})", cache.volume, cache.target);
        }
        return Ok(());
    }
    let rows = crate::pipeline::list_caches(&engine, &plans, all).await?;
    out!("{}", crate::pipeline::caches::to_text(&rows));
    Ok(())
}

/// Print one document per built target, then exit as the worst gate says.
fn finish_all(
    documents: Vec<(String, Option<String>, Document)>,
    format: Format,
) -> Result<(), Error> {
    let several = documents.len() > 1;
    match format {
        Format::Json => {
            let array: Vec<serde_json::Value> = documents
                .iter()
                .map(|(target, init, document)| {
                    let mut value: serde_json::Value =
                        serde_json::from_str(&document.to_json()).unwrap_or_default();
                    if let Some(object) = value.as_object_mut() {
                        object.insert("target".into(), target.clone().into());
                        object.insert("init".into(), init.clone().into());
                    }
                    value
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&array).unwrap_or_default()
            );
        }
        Format::Text | Format::Markdown => {
            for (i, (target, init, document)) in documents.iter().enumerate() {
                if several {
                    out!("{}[{target}] ", if i > 0 { "\n" } else { "" });
                }
                match format {
                    Format::Markdown => out!("{}", document.to_markdown()),
                    _ => out!("{}", document.to_text()),
                }
                if let Some(init) = init {
                    outln!("  init (PID 1): {init}");
                }
            }
        }
    }
    let worst = documents
        .iter()
        .filter_map(|(_, _, d)| {
            let code = d.exit_code();
            (code != 0).then(|| (code, d.gates.as_ref().map(|g| g.summary.clone())))
        })
        .max_by_key(|(code, _)| *code);
    match worst {
        None => Ok(()),
        Some((status, summary)) => Err(Error::Gates {
            summary: summary.unwrap_or_default(),
            status,
        }),
    }
}

/// The one selected target, for what works on a single image.
fn only_selected<'a>(plans: &'a PlanSet, what: &str) -> Result<&'a str, Error> {
    match plans.selected.as_slice() {
        [one] => Ok(one),
        several => Err(Error::Usage {
            message: format!(
                "{what} works on one target, but {} are selected",
                several.len()
            ),
            help: format!("name one of {}", plans.order.join(", ")),
        }),
    }
}

/// `dockception clean`: the engine's leftovers first (scoped to this manifest's project unless
/// `all`), then the stale run folders of the output folder.
async fn clean(common: &Common, caches: bool, all: bool, force: bool) -> Result<(), Error> {
    let project = crate::plan::project_for(&common.manifest)?;
    let out_dir = match &common.out_dir {
        Some(dir) => dir.clone(),
        None => {
            let manifest = std::path::absolute(&common.manifest).map_err(|e| {
                Error::io("reading the current folder for", common.manifest.clone(), e)
            })?;
            manifest
                .parent()
                .unwrap_or(std::path::Path::new("/"))
                .join(".dockception")
        }
    };
    // Run folders first: they need no engine, and an engine that is down is a reason to clean.
    let runs = crate::artifacts::run_dir::remove_stale_runs(&out_dir)?;
    for run in &runs.removed {
        outln!("removed run folder {}", run.display());
    }
    let engine = Engine::connect().await?;
    let cleaned = engine
        .clean((!all).then_some(project.as_str()), caches, force)
        .await?;
    for name in &cleaned.containers {
        outln!("removed container {name}");
    }
    for id in &cleaned.images {
        outln!("removed image {id}");
    }
    for name in &cleaned.volumes {
        outln!("removed cache volume {name}");
    }
    let removed = cleaned.containers.len()
        + cleaned.images.len()
        + cleaned.volumes.len()
        + runs.removed.len();
    if removed == 0 {
        outln!(
            "nothing to clean for {}",
            if all { "any project" } else { project.as_str() }
        );
    }
    if !common.quiet {
        for kept in cleaned.kept.iter().chain(&runs.kept) {
            eprintln!("kept {kept}");
        }
    }
    Ok(())
}

fn progress(common: &Common) -> Progress {
    if common.quiet {
        Progress::Quiet
    } else {
        Progress::Normal
    }
}

fn options(common: &Common, selection: Selection, tags: &[String]) -> Result<Options, Error> {
    let set = Overrides::parse_set(&common.set).map_err(|message| Error::Usage {
        message,
        help: "write --set NAME=VALUE".into(),
    })?;
    Ok(Options {
        manifest: common.manifest.clone(),
        selection,
        tags: tags.iter().map(|t| TagOverride::parse(t)).collect(),
        set,
        out_dir: common.out_dir.clone(),
        ..Default::default()
    })
}
