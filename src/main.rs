//! The `dockception` command: parses flags and wires the library's pipeline together.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dockception::baseline::{self, Source};
use dockception::gates::GateFlags;
use dockception::report::{Document, Report, LAST_BUILD};
use dockception::{Engine, Error, Options, Progress};

/// Small, clean container images from one TOML manifest.
///
/// dockception runs your build inside a fat builder image with your sources mounted read-only
/// (never copied into a layer), keeps only the files your artifact globs select, and ships them
/// on a tiny runtime base such as `scratch`. Everything is declared in `dockception.toml`.
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
    /// Build the artifacts in the builder, then build and tag the runtime image and print a
    /// size report.
    Build {
        #[command(flatten)]
        common: Common,
        /// Tag the runtime image (repeatable); replaces `[image] tags` of the manifest.
        #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
        tags: Vec<String>,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        gates: GateArgs,
    },
    /// Build the artifacts, then write the runtime image's build context (a tar holding a
    /// Dockerfile and the artifacts) to stdout: `dockception context | docker build -t app -`.
    Context {
        #[command(flatten)]
        common: Common,
    },
    /// Print the size report of the last build (or of --current) compared with the build before
    /// it (or with --baseline), and check the gates. Needs no engine unless an image is named.
    Report(ReportArgs),
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
    /// The tool's output folder [default: .dockception next to the manifest].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Print only warnings and errors (no phases, no build output).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A summary line and an aligned table, in human units.
    Text,
    /// One JSON object with raw byte counts and signed deltas (schema/report.schema.json).
    Json,
    /// Markdown for a pull-request comment or a CI step summary.
    Markdown,
}

fn main() -> ExitCode {
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
    match runtime.block_on(run(cli)) {
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
            tags,
            format,
            gates,
        } => {
            let progress = progress(&common);
            let plan = dockception::load_plan(&options(&common, tags))?;
            let gate_set = dockception::load_gates(Some(&common.manifest), &gates.flags())?;
            let engine = Engine::connect().await?;
            // An explicit baseline is read before the build, which may retag its image.
            let explicit = match gates.baseline.as_deref().map(Source::parse) {
                Some(source) => Some((
                    dockception::load_source(&source, Some(&engine), Some(&plan), &progress, true)
                        .await?,
                    source.name(),
                )),
                None => None,
            };
            let report =
                interruptible(&engine, dockception::build(&engine, &plan, &progress)).await?;
            let baseline = match explicit {
                Some(b) => Some(b),
                None => previous_build(&plan.out_dir, &progress),
            };
            finish(dockception::review(report, baseline, &gate_set), format)
        }
        Command::Report(args) => report(args).await,
        Command::Context { common } => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Io {
                    action: "refusing to write a tar to",
                    path: "the terminal".into(),
                    source: std::io::Error::other(
                        "pipe it instead: dockception context | docker build -t app -",
                    ),
                });
            }
            let progress = progress(&common);
            let plan = dockception::load_plan(&options(&common, Vec::new()))?;
            let engine = Engine::connect().await?;
            let written = interruptible(
                &engine,
                dockception::write_context(&engine, &plan, &progress, stdout.lock()),
            )
            .await?;
            progress.phase(&format!("wrote a {written}-byte build context to stdout"));
            Ok(())
        }
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
    let plan = match &manifest {
        Some(path) => Some(dockception::load_plan(&Options {
            manifest: path.clone(),
            tags: None,
            out_dir: args.out_dir.clone(),
        })?),
        None => None,
    };
    let gate_set = dockception::load_gates(manifest.as_deref(), &args.gates.flags())?;
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
            dockception::load_source(source, engine.as_ref(), plan.as_ref(), &progress, false)
                .await?
        }
        None => {
            let dir = out_dir.clone().ok_or_else(|| Error::ReportFile {
                action: "finding",
                path: "report.json".into(),
                message: "there is no dockception.toml here and no --out-dir or --current\n  help: run it next to the manifest, pass -f FILE, or name --current FILE|IMAGE".into(),
            })?;
            let path = dir.join(baseline::REPORT_FILE);
            baseline::load_if_present(&path)?.ok_or_else(|| Error::ReportFile {
                action: "reading",
                path,
                message: "no such file; build first (each build writes it)".into(),
            })?
        }
    };
    let baseline = match (&baseline_source, &current_source, &out_dir) {
        (Some(source), _, _) => Some((
            dockception::load_source(source, engine.as_ref(), plan.as_ref(), &progress, true)
                .await?,
            source.name(),
        )),
        (None, None, Some(dir)) => previous_build(dir, &progress),
        _ => None,
    };
    finish(
        dockception::review(current, baseline, &gate_set),
        args.format,
    )
}

/// The report of the build before the last one, when there is a readable one.
fn previous_build(out_dir: &Path, progress: &Progress) -> Option<(Report, String)> {
    let path = out_dir.join(baseline::PREVIOUS_FILE);
    match baseline::load_if_present(&path) {
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
        Format::Text => print!("{}", document.to_text()),
        Format::Json => print!("{}", document.to_json()),
        Format::Markdown => print!("{}", document.to_markdown()),
    }
    match (document.exit_code(), &document.gates) {
        (0, _) | (_, None) => Ok(()),
        (status, Some(gates)) => Err(Error::Gates {
            summary: gates.summary.clone(),
            status,
        }),
    }
}

fn progress(common: &Common) -> Progress {
    if common.quiet {
        Progress::Quiet
    } else {
        Progress::Normal
    }
}

fn options(common: &Common, tags: Vec<String>) -> Options {
    Options {
        manifest: common.manifest.clone(),
        tags: (!tags.is_empty()).then_some(tags),
        out_dir: common.out_dir.clone(),
    }
}

/// Run `work`, but on Ctrl-C or SIGTERM drop it (which removes its temporary folders), remove
/// the containers it created, and report the interrupt. A second signal during that cleanup
/// exits at once, naming what is left.
async fn interruptible<T>(
    engine: &Engine,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let (signal, status) = tokio::select! {
        result = work => return result,
        s = wait_for_signal() => s,
    };
    eprintln!("\n{signal} received: cleaning up (press Ctrl-C again to exit at once)");
    tokio::select! {
        left = engine.remove_leftovers() => {
            if !left.is_empty() {
                eprintln!("could not remove containers: {} (remove them with docker rm -f)", left.join(" "));
            }
        }
        _ = wait_for_signal() => {
            let left = engine.live_containers();
            eprintln!(
                "exiting without cleanup; left behind: {}",
                if left.is_empty() { "nothing".to_string() } else { left.join(" ") }
            );
            std::process::exit(i32::from(status));
        }
    }
    Err(Error::Interrupted { signal, status })
}

async fn wait_for_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    }
}
