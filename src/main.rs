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
        /// Build even when nothing changed since the last build (by default an unchanged
        /// manifest, builder, base and sources whose image still exists print "up to date").
        #[arg(long)]
        force: bool,
    },
    /// Build the artifacts, then write the runtime image's build context (a tar holding a
    /// Dockerfile and the artifacts) to stdout: `dockception context | docker build -t app -`.
    Context {
        #[command(flatten)]
        common: Common,
    },
    /// List or remove the manifest's cache volumes (`[[cache]]`), kept between builds so
    /// compilers' caches make rebuilds incremental.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the manifest's cache volumes with their size (`--all`: every dockception cache
    /// volume on the engine).
    Ls {
        #[command(flatten)]
        manifest: ManifestArg,
        /// Also list the cache volumes of other projects.
        #[arg(long)]
        all: bool,
    },
    /// Remove the manifest's cache volumes, or only the one TARGET names (its target path in
    /// the container, e.g. /cache/go-build, or its volume name); the next build starts cold.
    Rm {
        #[command(flatten)]
        manifest: ManifestArg,
        /// A cache's target path or volume name [default: all of the manifest's caches].
        target: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ManifestArg {
    /// The manifest to use.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "dockception.toml"
    )]
    manifest: PathBuf,
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
            force,
        } => {
            let progress = progress(&common);
            let plan = dockception::load_plan(&options(&common, tags))?;
            let engine = Engine::connect().await?;
            let report = interruptible(
                &engine,
                dockception::build_if_changed(&engine, &plan, &progress, force),
            )
            .await?;
            match format {
                Format::Text if report.up_to_date => print!("{}", report.to_up_to_date_text()),
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
        Command::Cache { command } => cache(command).await,
    }
}

async fn cache(command: CacheCommand) -> Result<(), Error> {
    let (manifest, selector, all) = match &command {
        CacheCommand::Ls { manifest, all } => (manifest, None, *all),
        CacheCommand::Rm { manifest, target } => (manifest, target.as_deref(), false),
    };
    let plan = dockception::load_plan(&Options {
        manifest: manifest.manifest.clone(),
        ..Default::default()
    })?;
    if let CacheCommand::Rm { .. } = command {
        dockception::cache::select(&plan.builder.caches, selector)?;
        let engine = Engine::connect().await?;
        for (cache, existed) in dockception::remove_caches(&engine, &plan, selector).await? {
            let what = if existed { "removed" } else { "did not exist:" };
            println!("{what} {} ({})", cache.volume, cache.target);
        }
        return Ok(());
    }
    let engine = Engine::connect().await?;
    let rows = dockception::list_caches(&engine, &plan, all).await?;
    print!("{}", dockception::cache::to_text(&rows));
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
