//! The `dockception` command: parses flags and wires the library's pipeline together.

use std::process::ExitCode;

use crate::manifest::vars::Overrides;
use crate::{Error, Options, PlanSet, Progress, Selection, TagOverride};
use clap::Parser;

use args::*;

/// `print!` to standard output, but a reader that went away (`dockception plan | head -1`) ends
/// the process quietly, as command-line tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

/// `println!` likewise.
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
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

mod args;
mod build;
mod cache;
mod clean;
mod completions;
mod context;
mod init;
mod plan;
mod ps;
mod report;

/// The `dockception` command line: parse the arguments, run the subcommand, exit with its status.
pub fn main() -> ExitCode {
    completions::complete_if_asked();
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
    // Nothing stays drawn once the run is over, whatever ended it.
    crate::progress::finish();
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

/// Run one subcommand.
async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Build {
            common,
            targets,
            tags,
            format,
            report,
            verbose,
            gates,
            force,
            deliver,
        } => {
            let length = if verbose { ReportLength::Full } else { report };
            let output = build::Output { format, length };
            let destinations = deliver.destinations()?;
            build::build(
                &common,
                &targets,
                &tags,
                output,
                &gates,
                force,
                &destinations,
            )
            .await
        }
        Command::Report(args) => report::report(args).await,
        Command::Cache { command } => cache::cache(command).await,
        Command::Ps { all } => ps::ps(all).await,
        Command::Plan {
            common,
            targets,
            tags,
            format,
        } => plan::plan(&common, &targets, &tags, format),
        Command::Schema => {
            out!("{}", crate::manifest::json_schema());
            Ok(())
        }
        Command::Init { manifest } => init::init(&manifest),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
        Command::Context { common, target } => context::context(&common, target).await,
        Command::Clean {
            common,
            caches,
            all,
            force,
        } => clean::clean(&common, caches, all, force).await,
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

/// Phases and warnings on stderr as `--progress` says, or with `-q` only the warnings.
fn progress(quiet: bool, mode: ProgressMode) -> Progress {
    match mode {
        _ if quiet => Progress::Quiet,
        ProgressMode::Quiet => Progress::Quiet,
        ProgressMode::Plain => Progress::Plain,
        ProgressMode::Tty => Progress::Tty,
        ProgressMode::Auto => Progress::auto(),
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
        engine_mode: common.engine_mode.map(EngineModeArg::mode),
        ..Default::default()
    })
}
