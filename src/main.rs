//! The `dockception` command: parses flags and wires the library's pipeline together.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dockception::{Engine, Error, Options, Progress};

/// Small, clean container images from one TOML manifest.
///
/// dockception runs your build inside a fat builder image with your sources mounted read-only
/// (never copied into a layer), keeps only the files your artifact globs select, and ships them
/// on a tiny runtime base such as `scratch`. Everything is declared in `dockception.toml`.
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
    },
    /// Build the artifacts, then write the runtime image's build context (a tar holding a
    /// Dockerfile and the artifacts) to stdout: `dockception context | docker build -t app -`.
    Context {
        #[command(flatten)]
        common: Common,
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
    /// One JSON object with raw byte counts.
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
            tags,
            format,
        } => {
            let progress = progress(&common);
            let plan = dockception::load_plan(&options(&common, tags))?;
            let engine = Engine::connect().await?;
            let report =
                interruptible(&engine, dockception::build(&engine, &plan, &progress)).await?;
            match format {
                Format::Text => print!("{}", report.to_text()),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
            }
            Ok(())
        }
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
        Command::Clean {
            common,
            caches,
            all,
            force,
        } => clean(&common, caches, all, force).await,
    }
}

/// `dockception clean`: the engine's leftovers first (scoped to this manifest's project unless
/// `all`), then the stale run folders of the output folder.
async fn clean(common: &Common, caches: bool, all: bool, force: bool) -> Result<(), Error> {
    let project = dockception::plan::project_for(&common.manifest)?;
    let out_dir = match &common.out_dir {
        Some(dir) => dir.clone(),
        None => {
            let manifest = std::path::absolute(&common.manifest).map_err(|e| Error::Io {
                action: "reading the current folder for",
                path: common.manifest.clone(),
                source: e,
            })?;
            manifest
                .parent()
                .unwrap_or(std::path::Path::new("/"))
                .join(".dockception")
        }
    };
    // Run folders first: they need no engine, and an engine that is down is a reason to clean.
    let runs = dockception::outdir::remove_stale_runs(&out_dir)?;
    for run in &runs.removed {
        println!("removed run folder {}", run.display());
    }
    let engine = Engine::connect().await?;
    let cleaned = engine
        .clean((!all).then_some(project.as_str()), caches, force)
        .await?;
    for name in &cleaned.containers {
        println!("removed container {name}");
    }
    for id in &cleaned.images {
        println!("removed image {id}");
    }
    for name in &cleaned.volumes {
        println!("removed cache volume {name}");
    }
    let removed = cleaned.containers.len()
        + cleaned.images.len()
        + cleaned.volumes.len()
        + runs.removed.len();
    if removed == 0 {
        println!(
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

fn options(common: &Common, tags: Vec<String>) -> Options {
    Options {
        manifest: common.manifest.clone(),
        tags: (!tags.is_empty()).then_some(tags),
        out_dir: common.out_dir.clone(),
    }
}

/// Run `work`, but on Ctrl-C or SIGTERM drop it (which removes its temporary folders and stops
/// its streams), remove the containers and untagged images it created, and report the
/// interrupt. A second signal during that cleanup exits at once, naming what is left. When
/// `work` fails on its own and something could not be removed (the engine went away), say
/// what is left and how to remove it.
async fn interruptible<T>(
    engine: &Engine,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    // Listening starts before the work, and the same listeners serve the second signal, so
    // no signal is lost between the two.
    let mut signals = Signals::listen();
    let (signal, status) = tokio::select! {
        result = work => {
            if result.is_err() {
                let left = engine.leftovers();
                if !left.is_empty() {
                    eprintln!(
                        "warning: left behind: {}; once the engine answers, `dockception clean` removes what is left",
                        left.join(", ")
                    );
                }
            }
            return result;
        }
        s = signals.next() => s,
    };
    eprintln!("\n{signal} received: cleaning up (press Ctrl-C again to exit at once)");
    tokio::select! {
        left = engine.remove_leftovers() => {
            if !left.is_empty() {
                eprintln!(
                    "could not remove: {} (`dockception clean` removes them once the engine answers)",
                    left.join(", ")
                );
            }
        }
        _ = signals.next() => {
            let left = engine.leftovers();
            eprintln!(
                "exiting without cleanup; left behind: {}",
                if left.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} (`dockception clean` removes them)", left.join(", "))
                }
            );
            std::process::exit(i32::from(status));
        }
    }
    Err(Error::Interrupted { signal, status })
}

/// SIGINT and SIGTERM listeners, installed once for the whole run.
struct Signals {
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let listeners = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        };
        Signals { listeners }
    }

    async fn next(&mut self) -> (&'static str, u8) {
        let Some((int, term)) = self.listeners.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => ("SIGINT", 130),
            _ = term.recv() => ("SIGTERM", 143),
        }
    }
}
