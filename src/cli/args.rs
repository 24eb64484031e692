//! The command line's flags and subcommands (clap).

use std::path::PathBuf;

use crate::report::gates::GateFlags;
use crate::Selection;
use clap::{Parser, Subcommand, ValueEnum};

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
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
        /// How much of the text report to print: the short answer (the summary, what changed,
        /// the gates) or every table (as `dockception report` prints it).
        #[arg(long = "report", value_enum, default_value_t = ReportLength::Short)]
        report: ReportLength,
        /// The full report, as --report full.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        gates: GateArgs,
        /// Build even when nothing changed since the last build (by default a target whose
        /// manifest, builder, base and sources are unchanged and whose image still exists is
        /// "up to date" and nothing runs).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        deliver: DeliverArgs,
    },
    /// Build the artifacts, then write the runtime image's build context (a tar holding a
    /// Dockerfile and the artifacts) to stdout: `dockception context | docker build -t app -`.
    Context {
        #[command(flatten)]
        common: Common,
        /// The target whose context to write (needed when several are selected).
        #[arg(value_name = "TARGET", add = super::completions::target_names())]
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
    /// List what dockception has running on the engine: warm builders (kept up after a build
    /// for the next one, `[builder] warm`; each ends on its own after its idle time, and
    /// `dockception clean` stops it at once) and builds in progress, of every project.
    Ps {
        /// Also list stopped containers.
        #[arg(short, long)]
        all: bool,
    },
    /// Print the manifest's JSON Schema (for editors: save it and point `#:schema` at it).
    Schema,
    /// Write a commented starter manifest for the project in the current folder (Go with or
    /// without go.mod, a Rust crate or workspace, C with CMake, a Makefile or bare sources,
    /// Node with a build script, JVM, or a generic one). Never overwrites an existing manifest.
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
    /// Print a shell's completion script: subcommands, flags and the manifest's target names.
    ///
    /// bash: `source <(dockception completions bash)` in ~/.bashrc; zsh: the same in ~/.zshrc;
    /// fish: `dockception completions fish | source` in ~/.config/fish/config.fish; elvish:
    /// `eval (dockception completions elvish | slurp)`; PowerShell: `dockception completions
    /// powershell | Out-String | Invoke-Expression`. The script asks dockception itself for
    /// each completion, so target names come from the manifest at hand (`-f FILE`, else
    /// ./dockception.toml); generate it anew when dockception is upgraded.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff): `dockception man | man -l -`, or save it as dockception.1.
    Man,
    /// Remove what interrupted or crashed runs left behind: builder containers whose
    /// dockception process is gone, dangling dockception images, and run folders in the output
    /// folder. Cache volumes are kept unless --caches is given. Builds in progress are not
    /// touched.
    Clean {
        #[command(flatten)]
        common: Common,
        /// Also remove the cache volumes, the blob store and the kept builds (earlier builds'
        /// outputs, kept for reuse).
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
pub(super) struct GateArgs {
    /// Compare with this report file or image instead of the previous build (a path that
    /// exists or ends in .json is a report file, anything else an image).
    #[arg(long, value_name = "FILE|IMAGE")]
    pub(super) baseline: Option<String>,
    /// FAIL when the image is larger than SIZE (bytes, or e.g. "20 MiB", "1.5 MB").
    #[arg(long, value_name = "SIZE")]
    pub(super) max_image_size: Option<String>,
    /// WARN when the image is larger than SIZE.
    #[arg(long, value_name = "SIZE")]
    pub(super) warn_image_size: Option<String>,
    /// FAIL when the image grew by more than SIZE since the baseline.
    #[arg(long, value_name = "SIZE")]
    pub(super) max_growth: Option<String>,
    /// FAIL when the image grew by more than PERCENT since the baseline (once it grew by at
    /// least the growth floor).
    #[arg(long, value_name = "PERCENT")]
    pub(super) max_growth_percent: Option<String>,
    /// Growth below SIZE skips the percent gate [default: 64 KiB].
    #[arg(long, value_name = "SIZE")]
    pub(super) growth_floor: Option<String>,
    /// FAIL when any shipped file is larger than SIZE.
    #[arg(long, value_name = "SIZE")]
    pub(super) max_artifact_size: Option<String>,
    /// FAIL when deleted, overwritten or duplicate bytes exceed SIZE (0: a clean image).
    #[arg(long, value_name = "SIZE")]
    pub(super) max_waste: Option<String>,
    /// FAIL when the image is fewer than RATIO times smaller than the builder.
    #[arg(long, value_name = "RATIO")]
    pub(super) min_reduction: Option<String>,
    /// Exit 3 when there is no baseline to compare with.
    #[arg(long)]
    pub(super) require_baseline: bool,
}

impl GateArgs {
    pub(super) fn flags(&self) -> GateFlags {
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
pub(super) struct ReportArgs {
    /// The target to report on (needed when the manifest has several).
    #[arg(value_name = "TARGET", add = super::completions::target_names())]
    pub(super) target: Option<String>,
    /// The manifest (for the output folder, the gates, the base and the artifact rules)
    /// [default: dockception.toml when it exists].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(super) manifest: Option<PathBuf>,
    /// The tool's output folder, where builds store report.json [default: .dockception next
    /// to the manifest].
    #[arg(long, value_name = "DIR")]
    pub(super) out_dir: Option<PathBuf>,
    /// Report on this report file or image instead of the last build.
    #[arg(long, value_name = "FILE|IMAGE")]
    pub(super) current: Option<String>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(super) format: Format,
    #[command(flatten)]
    pub(super) gates: GateArgs,
    /// Print only warnings and errors.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// How to show progress, as for `build`.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ProgressMode::Auto)]
    pub(super) progress: ProgressMode,
}

#[derive(Debug, Subcommand)]
pub(super) enum CacheCommand {
    /// List the manifest's cache volumes with their size (`--all`: every dockception cache
    /// volume on the engine), then each target's kept builds (earlier outputs kept for reuse).
    Ls {
        #[command(flatten)]
        common: Common,
        /// Also list the cache volumes of other projects.
        #[arg(long)]
        all: bool,
    },
    /// Remove the manifest's cache volumes and kept builds, or only those of one target (its
    /// name), or one cache volume (its path in the container, e.g. /cache/go-build, or its
    /// volume name); the next build starts cold.
    Rm {
        #[command(flatten)]
        common: Common,
        /// A target name, a cache's target path or a volume name [default: every cache].
        #[arg(add = super::completions::target_names())]
        target: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct Common {
    /// The manifest to use.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "dockception.toml"
    )]
    pub(super) manifest: PathBuf,
    /// Set a manifest variable (repeatable); wins over DOCKCEPTION_VAR_NAME and [vars].
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(super) set: Vec<String>,
    /// The tool's output folder [default: .dockception next to the manifest].
    #[arg(long, value_name = "DIR")]
    pub(super) out_dir: Option<PathBuf>,
    /// Print only warnings and errors (no phases, no build output); as --progress quiet.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// How to show progress on stderr (buildx's names): `tty` draws each running phase with
    /// its elapsed time and the builder's last lines under it, `plain` prints lines without
    /// escape sequences, `quiet` only warnings; `auto` is tty on a terminal, plain in CI (`CI`
    /// set) or when stderr is not a terminal.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ProgressMode::Auto)]
    pub(super) progress: ProgressMode,
    /// Whether the engine sees this machine's files: `local` bind-mounts the sources, `remote`
    /// syncs each mount into a volume kept between builds and reads the outputs back (for
    /// DOCKER_HOST=ssh://… or tcp://… to another machine), `auto` asks the engine once. Wins
    /// over the manifest's `[engine] mode`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub(super) engine_mode: Option<EngineModeArg>,
}

/// `--engine-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum EngineModeArg {
    /// Ask the engine whether it sees this folder (once per engine; the answer is kept).
    Auto,
    /// Bind-mount the sources: the engine runs on this machine.
    Local,
    /// Sync the sources into volumes: the engine cannot see this machine's files.
    Remote,
}

impl EngineModeArg {
    /// The manifest's value of the same name.
    pub(super) fn mode(self) -> crate::EngineMode {
        match self {
            EngineModeArg::Auto => crate::EngineMode::Auto,
            EngineModeArg::Local => crate::EngineMode::Local,
            EngineModeArg::Remote => crate::EngineMode::Remote,
        }
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct Targets {
    /// Targets or groups [default: the manifest's `default`, else every target].
    #[arg(value_name = "TARGET", add = super::completions::target_names())]
    pub(super) names: Vec<String>,
    /// Every target.
    #[arg(long, conflicts_with = "names")]
    pub(super) all: bool,
}

impl Targets {
    pub(super) fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else if self.names.is_empty() {
            Selection::Default
        } else {
            Selection::Names(self.names.clone())
        }
    }
}

/// `--progress`: buildx's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ProgressMode {
    /// tty on a terminal; plain in CI (`CI` set) or when stderr is not a terminal.
    Auto,
    /// The live view: running phases with their time, the builder's last lines under them.
    Tty,
    /// Plain lines, no escape sequences: for logs.
    Plain,
    /// Only warnings and errors.
    Quiet,
}

/// `build --report`: how much of the text report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ReportLength {
    /// The summary line, what changed since the last build, and the gates.
    Short,
    /// Every table: sizes, layers, rules, libraries, largest files, waste, changes, gates.
    Full,
}

/// The shells `dockception completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum CompletionShell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Format {
    /// For people: aligned, human units.
    Text,
    /// One JSON document with raw values (for `build`: an array, one report per target; each
    /// follows schema/report.schema.json).
    Json,
    /// Markdown for a pull-request comment or a CI step summary.
    Markdown,
}

/// Where the images go, in buildx's words.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeliverArgs {
    /// Load each image into the engine, sending only the layers it lacks (the default, unless
    /// --push or --output is given).
    #[arg(long)]
    pub load: bool,
    /// Push every tag straight to the registry it names (never through the engine); the
    /// manifest goes last, so a failed upload leaves no tag.
    #[arg(long)]
    pub push: bool,
    /// Write the image as `type=oci,dest=DIR` (an OCI layout), `type=oci,dest=FILE.tar` (an OCI
    /// archive), `type=docker,dest=FILE.tar` (an archive `docker load` takes) or `type=none`
    /// (build and report only). Repeatable; the destination must not exist.
    #[arg(long = "output", value_name = "type=…,dest=…")]
    pub outputs: Vec<String>,
    /// A registry (`HOST[:PORT]`) that may be reached over plain HTTP, besides localhost and
    /// 127.0.0.0/8 (repeatable). Does not skip TLS verification.
    #[arg(long = "registry-http", value_name = "HOST[:PORT]")]
    pub registry_http: Vec<String>,
    /// A registry (`HOST[:PORT]`) whose TLS certificate is not verified (repeatable). Does not
    /// allow plain HTTP.
    #[arg(long = "registry-skip-verify", value_name = "HOST[:PORT]")]
    pub registry_skip_verify: Vec<String>,
    /// A CA certificate (PEM) to trust for registries, besides the system's (repeatable).
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Vec<std::path::PathBuf>,
}

impl DeliverArgs {
    /// The destinations these flags ask for.
    pub fn destinations(&self) -> Result<crate::pipeline::Destinations, crate::Error> {
        let mut to = crate::pipeline::Destinations::default();
        if self.load {
            to = to.load();
        }
        if self.push {
            to = to.push();
        }
        for output in &self.outputs {
            to = to.output(output)?;
        }
        for registry in &self.registry_http {
            to = to.registry_http(registry);
        }
        for registry in &self.registry_skip_verify {
            to = to.registry_skip_verify(registry);
        }
        for file in &self.registry_ca {
            to = to.registry_ca(file);
        }
        Ok(to)
    }
}
