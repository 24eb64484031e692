//! The `dockception` command: parses flags and wires the library's pipeline together.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dockception::interrupt::interruptible;
use dockception::vars::Overrides;
use dockception::{Engine, Error, Options, Progress, Selection, TagOverride};

/// Small, clean container images from one TOML manifest.
///
/// dockception runs your build inside a fat builder image with your sources mounted read-only
/// (never copied into a layer), keeps only the files your artifact globs select, and ships them
/// on a tiny runtime base such as `scratch`. Everything is declared in `dockception.toml`; one
/// file can hold several targets (`[targets.NAME]`).
///
/// Exit status: 0 on success, the build command's own status when it fails, 1 for other
/// errors, 2 for usage errors, 130/143 when interrupted.
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
    /// One JSON document with raw values.
    Json,
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
            targets,
            tags,
            format,
        } => {
            let progress = progress(&common);
            let plan = dockception::load_plan(&options(&common, targets.selection(), &tags)?)?;
            let engine = Engine::connect().await?;
            let reports =
                interruptible(&engine, dockception::build(&engine, &plan, &progress)).await?;
            match format {
                Format::Text => {
                    for (i, r) in reports.iter().enumerate() {
                        if reports.len() > 1 {
                            print!("{}[{}] ", if i > 0 { "\n" } else { "" }, r.target);
                        }
                        print!("{}", r.report.to_text());
                    }
                }
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).unwrap_or_default()
                ),
            }
            Ok(())
        }
        Command::Plan {
            common,
            targets,
            tags,
            format,
        } => {
            let plan = dockception::load_plan(&options(&common, targets.selection(), &tags)?)?;
            match format {
                Format::Text => print!("{}", plan.to_text()),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                ),
            }
            Ok(())
        }
        Command::Schema => {
            print!("{}", dockception::manifest::json_schema());
            Ok(())
        }
        Command::Init { manifest } => {
            let folder = std::env::current_dir().map_err(|e| Error::Io {
                action: "reading",
                path: ".".into(),
                source: e,
            })?;
            let kind = dockception::init::write_starter(&folder, &manifest)?;
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
            let plan = dockception::load_plan(&options(&common, selection, &[])?)?;
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
