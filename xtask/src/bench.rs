//! `cargo xtask bench`: dockception against the Dockerfile ways, measured side by side in one
//! run on real workloads, written to `BENCHMARKS.md`. Only the standard library: the numbers
//! come from wall clocks around real commands (`docker build`, the hand-written pipeline, the
//! release `dockception` binary), `/usr/bin/time` for peak memory, and the engine's own sizes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{cargo, root, run};

mod buildkit;
mod image;
mod memory;
mod phased;
mod push;
mod remote;
mod rust;
mod scale;

use buildkit::BuildCache;
use image::ImageBench;
use memory::Memory;
use push::{PushBench, Registry};
use rust::RUST;

/// Every way, in the tables' order: the headline peer first, the classic ways below it.
const WAYS: [Way; 6] = [
    Way::Buildkit,
    Way::Single,
    Way::Multi,
    Way::Pipeline,
    Way::Dockception,
    Way::Warm,
];
const SCENARIOS: [Scenario; 3] = [Scenario::Cold, Scenario::Noop, Scenario::Change];
/// The Lua release whose library sources the C workload compiles, from the lua-src crate.
const LUA_SRC: &str = "547.0.0";
const LUA_DIR: &str = "lua-5.4.7";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    /// BuildKit's multi-stage build with bind and cache mounts (issue 15's headline peer).
    Buildkit,
    Single,
    Multi,
    Pipeline,
    Dockception,
    /// dockception with `[builder] warm`: rebuilds exec in the running builder container.
    Warm,
}

impl Way {
    fn slug(self) -> &'static str {
        match self {
            Way::Buildkit => "buildkit",
            Way::Single => "single",
            Way::Multi => "multi",
            Way::Pipeline => "pipeline",
            Way::Dockception => "dockception",
            Way::Warm => "dockception-warm",
        }
    }
    fn is_dockception(self) -> bool {
        matches!(self, Way::Dockception | Way::Warm)
    }
    /// The classic builder's ways (`DOCKER_BUILDKIT=0`), measured in fewer repetitions.
    fn is_classic(self) -> bool {
        matches!(self, Way::Single | Way::Multi | Way::Pipeline)
    }
    fn title(self) -> &'static str {
        match self {
            Way::Buildkit => "BuildKit: multi-stage, bind + cache mounts",
            Way::Single => "single-stage Dockerfile",
            Way::Multi => "multi-stage Dockerfile",
            Way::Pipeline => "2015/2017 pipeline (`docker run -v` + `docker build -`)",
            Way::Dockception => "dockception",
            Way::Warm => "dockception, warm builder (`warm = \"5m\"`)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    Cold,
    Noop,
    Change,
}

impl Scenario {
    fn title(self) -> &'static str {
        match self {
            Scenario::Cold => "cold build",
            Scenario::Noop => "no-op rebuild",
            Scenario::Change => "one-line change",
        }
    }
}

/// A real program and how each way builds it.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    what: &'static str,
    builder: &'static str,
    /// The binary the build writes into `/out`.
    binary: &'static str,
    /// Shell command that builds into `/out` with objects or caches in `$OBJ`-like paths.
    build: &'static str,
    /// The same for dockception, with its caches in the cache volume.
    build_cached: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// The environment that puts the compiler's cache in `cache` (dockception and BuildKit).
    cache_env: &'static [(&'static str, &'static str)],
    cache: &'static str,
    /// The file and line the one-line change rewrites (`bench-0` becomes a value never used
    /// before, [`buildkit::change_value`]).
    change_file: &'static str,
    /// The ways measured on this workload.
    ways: &'static [Way],
}

const GO: Workload = Workload {
    name: "go-multi",
    what: "`benches/workloads/go-multi`: kvd, a key-value server in 6 packages (store, wal, api, metrics, version, cmd) on net/http; ~1,000 lines of Go. The one-line change edits a constant in the leaf package `version`, imported by `api` and `main`.",
    builder: "golang:local",
    binary: "kvd",
    build: "go build -buildvcs=false -ldflags='-s -w' -o /out/kvd ./cmd/kvd",
    build_cached: "go build -buildvcs=false -ldflags='-s -w' -o /out/kvd ./cmd/kvd",
    env: &[("CGO_ENABLED", "0")],
    cache_env: &[("GOCACHE", "/cache/go-build"), ("GOPATH", "/tmp/go")],
    cache: "/cache/go-build",
    change_file: "internal/version/version.go",
    ways: &WAYS,
};

const LUA: Workload = Workload {
    name: "lua",
    what: "`benches/workloads/lua`: luabench, a static C program embedding Lua 5.4.7 (33 C files, ~29,000 lines: the library sources of the `lua-src` crate on crates.io, fetched with cargo at bench time, plus `main.c`), built by `build.sh` (make-like: only changed files are compiled, two at a time). The one-line change edits a `#define` in `main.c`.",
    builder: "gcc:local",
    binary: "luabench",
    build: "sh build.sh /src /tmp/obj /out",
    build_cached: "sh build.sh /src /cache/obj /out",
    env: &[],
    cache_env: &[],
    cache: "/cache/obj",
    change_file: "main.c",
    ways: &WAYS,
};

const WORKLOADS: [&Workload; 3] = [&GO, &LUA, &RUST];

#[derive(Debug, Clone, Default)]
struct Sample {
    seconds: f64,
    context_bytes: Option<u64>,
    build_command_ms: Option<u64>,
    max_rss_kib: Option<u64>,
    up_to_date: Option<bool>,
    /// dockception's `==>` phase lines: (seconds after spawn, the line).
    phases: Vec<(f64, String)>,
}

type Results = BTreeMap<(Way, Scenario), Vec<Sample>>;

struct Measured {
    workload: &'static Workload,
    /// `docker run --rm BUILDER true`: what one container costs on this engine, whoever runs it.
    floor: Vec<f64>,
    results: Results,
    image_bytes: BTreeMap<Way, u64>,
    artifact_bytes: u64,
}

/// Every image id the Dockerfile builds printed, removed at the end (never anything else).
#[derive(Default)]
struct Leftovers {
    images: Vec<String>,
    tags: Vec<String>,
    /// BuildKit's build cache records the bench made (pruned at the end and before each cold
    /// BuildKit build).
    build_cache: BuildCache,
}

/// What `--only` may name: a workload, one of issue 14's image measurements, `remote` (issue
/// 16's second engine), `scale` (100,000 source files), or `buildkit`: every workload with
/// only the headline's ways (BuildKit and dockception's defaults).
const PARTS: [&str; 9] = [
    "buildkit",
    "go-multi",
    "lua",
    "rust-toml2json",
    "image",
    "push",
    "memory",
    "remote",
    "scale",
];

/// Everything one run measured; a part not run (`--only`) is empty.
#[derive(Default)]
struct Run {
    measured: Vec<Measured>,
    image: Option<ImageBench>,
    push: Option<PushBench>,
    memory: Vec<Memory>,
    remote: Option<remote::RemoteBench>,
    scale: Option<scale::ScaleBench>,
    /// The load average (1, 5, 15 min) as each part started.
    loads: Vec<(String, String)>,
}

/// `/proc/loadavg`'s first three figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn bench(args: &[String]) -> Result<(), String> {
    // Issue 15: medians of at least 6 for the headline (BuildKit, dockception), at least 5 for
    // the rest.
    let mut reps = 6usize;
    let mut only: Option<String> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--reps" => {
                reps = iter
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--reps takes a positive number")?
            }
            "--only" => {
                only = Some(
                    iter.next()
                        .filter(|o| PARTS.contains(&o.as_str()))
                        .cloned()
                        .ok_or(format!("--only takes one of {}", PARTS.join(", ")))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown bench option {other} (--reps N, --only {})",
                    PARTS.join("|")
                ))
            }
        }
    }
    let headline_only = only.as_deref() == Some("buildkit");
    let wanted = |part: &str| {
        only.as_deref().is_none_or(|o| o == part)
            || (headline_only && WORKLOADS.iter().any(|w| w.name == part))
    };
    let mut images = vec!["scripts/engine.sh", "gcc", "golang"];
    if wanted(RUST.name) {
        images.push("rust");
    }
    run(Command::new("bash").args(images))?;
    eprintln!("==> building the release dockception");
    cargo(&["build", "--release", "--quiet", "--package", "dockception"])?;
    let bin = root().join("target/release/dockception");
    let work = root().join("target/bench");
    let lua = if wanted("lua") {
        Some(fetch_lua(&work)?)
    } else {
        None
    };
    let toml = if wanted(RUST.name) {
        Some(rust::fetch_toml(&work)?)
    } else {
        None
    };

    let mut leftovers = Leftovers::default();
    let mut results = Run::default();
    let outcome = measure_all(
        &mut results,
        &wanted,
        reps,
        &bin,
        &work,
        Sources {
            lua: lua.as_deref(),
            toml: toml.as_deref(),
        },
        &mut leftovers,
    );
    clean(&leftovers, &bin, &work);
    outcome?;
    let markdown = render(&results, reps);
    // A partial run does not replace the whole report.
    let path = match &only {
        None => root().join("BENCHMARKS.md"),
        Some(part) => work.join(format!("BENCHMARKS.{part}.md")),
    };
    std::fs::write(&path, &markdown).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("{markdown}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// What the workloads copy in at bench time (`None` when their part is not run).
#[derive(Clone, Copy)]
struct Sources<'a> {
    /// Lua's C sources (lua).
    lua: Option<&'a Path>,
    /// The toml crate's folder in cargo's registry (rust-toml2json).
    toml: Option<&'a Path>,
}

fn measure_all(
    results: &mut Run,
    wanted: &dyn Fn(&str) -> bool,
    reps: usize,
    bin: &Path,
    work: &Path,
    sources: Sources,
    leftovers: &mut Leftovers,
) -> Result<(), String> {
    // `--only buildkit` is the one part that wants itself and not the whole run's other parts;
    // it measures the headline ways only, the new workload first (the longest builds).
    let headline_only = wanted("buildkit") && !wanted("image");
    let order = if headline_only {
        [&RUST, &GO, &LUA]
    } else {
        WORKLOADS
    };
    for workload in order {
        if wanted(workload.name) {
            results.loads.push((workload.name.into(), load_average()));
            let workload = if headline_only {
                buildkit::headline_ways(workload)
            } else {
                workload
            };
            results
                .measured
                .push(measure(workload, reps, bin, work, sources, leftovers)?);
            // Each finished workload is written at once, so a run cut short still leaves what
            // it measured.
            let so_far = work.join("BENCHMARKS.so-far.md");
            if let Err(e) = std::fs::write(&so_far, render(results, reps)) {
                eprintln!("warning: writing {}: {e}", so_far.display());
            }
        }
    }
    if wanted("image") {
        results
            .loads
            .push(("assembly plus load".into(), load_average()));
        results.image = Some(image::measure_image(bin, work, reps, leftovers)?);
    }
    if wanted("remote") {
        results.loads.push(("remote".into(), load_average()));
        results.remote = Some(remote::measure_remote(bin, work, reps)?);
    }
    if wanted("scale") {
        results.loads.push(("scale".into(), load_average()));
        results.scale = Some(scale::measure_scale(bin, work, reps.max(5))?);
    }
    if wanted("push") || wanted("memory") {
        let registry = Registry::start(work)?;
        if wanted("push") {
            results.loads.push(("push".into(), load_average()));
            results.push = Some(push::measure_push(bin, work, &registry, reps.max(5))?);
        }
        if wanted("memory") {
            results.loads.push(("peak memory".into(), load_average()));
            results.memory = memory::measure_memory(bin, work, &registry)?;
        }
    }
    Ok(())
}

/// The Lua 5.4 library sources of the lua-src crate, downloaded by cargo into its registry.
fn fetch_lua(work: &Path) -> Result<PathBuf, String> {
    let dir = fetch_crate(work, "lua-src", LUA_SRC)?.join(LUA_DIR);
    if !dir.join("lvm.c").exists() {
        return Err(format!("{} holds no Lua sources", dir.display()));
    }
    Ok(dir)
}

/// The folder of crate `name` at exactly `version` in cargo's registry, downloaded by cargo
/// when it is not there yet.
fn fetch_crate(work: &Path, name: &str, version: &str) -> Result<PathBuf, String> {
    let fetch = work.join(format!("{name}-fetch"));
    std::fs::create_dir_all(fetch.join("src")).map_err(|e| e.to_string())?;
    std::fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n[dependencies]\n{name} = \"={version}\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(fetch.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(fetch.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata could not fetch {name}"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("{name}-{version}/Cargo.toml");
    let manifest = text
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|p| p.ends_with(&needle))
        .ok_or(format!("cargo metadata did not name {name}'s folder"))?;
    Ok(Path::new(manifest)
        .parent()
        .ok_or(format!("{name} has no folder"))?
        .to_path_buf())
}

fn tag(workload: &Workload, way: Way) -> String {
    format!("dockception-bench/{}:{}", workload.name, way.slug())
}

/// A fresh copy of the workload for one way, with that way's own files.
fn prepare(
    workload: &Workload,
    way: Way,
    work: &Path,
    sources: Sources,
) -> Result<PathBuf, String> {
    let dir = work.join(workload.name).join(way.slug());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    copy_tree(&root().join("benches/workloads").join(workload.name), &dir)?;
    if let Some(toml) = sources.toml.filter(|_| workload.name == RUST.name) {
        rust::add_sources(&dir, toml)?;
    }
    if let ("lua", Some(lua)) = (workload.name, sources.lua) {
        let dest = dir.join("lua");
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        for entry in std::fs::read_dir(lua).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|x| x == "c" || x == "h") {
                std::fs::copy(&path, dest.join(path.file_name().unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let env_lines: String = workload
        .env
        .iter()
        .map(|(k, v)| format!("ENV {k}={v}\n"))
        .collect();
    let stage = format!(
        "FROM {builder}{alias}\nLABEL dockception.bench.way={way}\nWORKDIR /src\n{env_lines}COPY . .\nRUN {build}\n",
        way = way.slug(),
        builder = workload.builder,
        alias = if way == Way::Multi { " AS build" } else { "" },
        build = workload.build,
    );
    let bin = workload.binary;
    let files: Vec<(&str, String)> = match way {
        Way::Buildkit => vec![("Dockerfile", buildkit::dockerfile(workload))],
        Way::Single => vec![(
            "Dockerfile",
            format!("{stage}ENTRYPOINT [\"/out/{bin}\"]\n"),
        )],
        Way::Multi => vec![(
            "Dockerfile",
            format!("{stage}\nFROM scratch\nCOPY --from=build /out/{bin} /{bin}\nENTRYPOINT [\"/{bin}\"]\n"),
        )],
        Way::Pipeline => {
            let env: String = workload
                .env
                .iter()
                .map(|(k, v)| format!(" -e {k}={v}"))
                .collect();
            vec![(
                "pipeline.sh",
                format!(
                    "# The 2015/2017 articles' pipeline, by hand: build with the sources mounted, then\n\
                     # send a context of a Dockerfile and the binary to `docker build -`.\n\
                     set -eu\nrm -rf out && mkdir out\n\
                     docker run --rm -v \"$PWD\":/src:ro -v \"$PWD/out\":/out -w /src{env} {builder} sh -c \"{build}\"\n\
                     printf 'FROM scratch\\nCOPY {bin} /{bin}\\nENTRYPOINT [\"/{bin}\"]\\n' > out/Dockerfile\n\
                     tar -C out -cf - . | DOCKER_BUILDKIT=0 docker build -q -t \"$1\" -\n",
                    builder = workload.builder,
                    build = workload.build,
                ),
            )]
        }
        Way::Dockception | Way::Warm => {
            let env: String = workload
                .env
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\"\n"))
                .collect();
            let cache_env: String = workload
                .cache_env
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\"\n"))
                .collect();
            let warm = if way == Way::Warm {
                "warm = \"5m\"\n"
            } else {
                ""
            };
            vec![(
                "dockception.toml",
                format!(
                    "[builder]\nimage = \"{builder}\"\nworkdir = \"/src\"\nrun = \"{build}\"\n{warm}\n[builder.env]\n{env}{cache_env}\n\
                     [[mount]]\nsource = \".\"\ntarget = \"/src\"\n\n[[cache]]\ntarget = \"{cache}\"\n\n\
                     [artifacts]\ninclude = [\"{bin}\"]\n\n[runtime]\nentrypoint = [\"/{bin}\"]\n\n[image]\ntags = [\"{tag}\"]\n",
                    builder = workload.builder,
                    build = workload.build_cached,
                    cache = workload.cache,
                    tag = tag(workload, way),
                ),
            )]
        }
    };
    for (name, body) in files {
        std::fs::write(dir.join(name), body).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn measure(
    workload: &'static Workload,
    reps: usize,
    bin: &Path,
    work: &Path,
    sources: Sources,
    leftovers: &mut Leftovers,
) -> Result<Measured, String> {
    let mut dirs = BTreeMap::new();
    for &way in workload.ways {
        dirs.insert(way, prepare(workload, way, work, sources)?);
        leftovers.tags.push(tag(workload, way));
    }
    leftovers.build_cache.note_others()?;
    let nonce = buildkit::nonce();
    let classic_reps = classic_reps(reps);
    let mut results = Results::new();
    let mut artifact_bytes = 0;
    let mut floor = Vec::new();
    for rep in 1..=reps {
        let start = Instant::now();
        quiet(Command::new("docker").args(["run", "--rm", workload.builder, "true"]))?;
        floor.push(start.elapsed().as_secs_f64());
        for scenario in SCENARIOS {
            // The way that goes first rotates from rep to rep, and every other rep runs the
            // ways in reverse: what one way leaves the engine doing (BuildKit's bookkeeping after
            // a build, a container's removal) lands on the ways around it in turn, not always
            // on the same neighbour.
            let n = workload.ways.len();
            let order = (0..n).map(|k| {
                let k = if rep % 2 == 0 { n - 1 - k } else { k };
                workload.ways[(k + rep) % n]
            });
            for way in order {
                if way.is_classic() && rep > classic_reps {
                    continue;
                }
                let dir = &dirs[&way];
                if scenario == Scenario::Change {
                    let value = buildkit::change_value(nonce, rep);
                    one_line_change(&dir.join(workload.change_file), &value)?;
                }
                if scenario == Scenario::Cold && way == Way::Buildkit {
                    leftovers.build_cache.empty_ours()?;
                }
                if scenario == Scenario::Cold && way.is_dockception() {
                    // No warm builder either: it holds the cache volume, and cold means none.
                    quiet(
                        Command::new(bin)
                            .args(["clean", "--caches"])
                            .current_dir(dir),
                    )?;
                }
                eprintln!(
                    "==> {} rep {rep}/{reps}: {} / {}",
                    workload.name,
                    scenario.title(),
                    way.title()
                );
                let sample = timed(workload, way, scenario, dir, bin, leftovers)?;
                if way.is_dockception() {
                    artifact_bytes = sample.1.unwrap_or(artifact_bytes);
                }
                results.entry((way, scenario)).or_default().push(sample.0);
            }
        }
    }
    let mut image_bytes = BTreeMap::new();
    for &way in workload.ways {
        let size = capture(Command::new("docker").args([
            "image",
            "inspect",
            "-f",
            "{{.Size}}",
            &tag(workload, way),
        ]))?;
        image_bytes.insert(way, size.trim().parse().unwrap_or(0));
    }
    Ok(Measured {
        workload,
        floor,
        results,
        image_bytes,
        artifact_bytes,
    })
}

/// Rewrite the `"bench-…"` label in the change file to `value`: one line, a real change.
fn one_line_change(path: &Path, value: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = text.find("\"bench-").ok_or("no bench- label to change")? + 1;
    let end = start + text[start..].find('"').ok_or("unterminated label")?;
    let changed = format!("{}{value}{}", &text[..start], &text[end..]);
    std::fs::write(path, changed).map_err(|e| e.to_string())
}

/// Run one build, timed; returns the sample and (for dockception) the artifact bytes.
fn timed(
    workload: &Workload,
    way: Way,
    scenario: Scenario,
    dir: &Path,
    bin: &Path,
    leftovers: &mut Leftovers,
) -> Result<(Sample, Option<u64>), String> {
    let tag = tag(workload, way);
    let rss_file = dir.with_extension("rss");
    let mut command = match way {
        Way::Buildkit => buildkit::command(&tag, scenario),
        Way::Single | Way::Multi => {
            let mut c = Command::new("docker");
            c.env("DOCKER_BUILDKIT", "0").args(["build", "-t", &tag]);
            if scenario == Scenario::Cold {
                c.arg("--no-cache");
            }
            c.arg(".");
            c
        }
        Way::Pipeline => {
            let mut c = Command::new("bash");
            c.args(["pipeline.sh", &tag]);
            c
        }
        Way::Dockception | Way::Warm => {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "%M", "-o"]).arg(&rss_file).arg(bin).args([
                "build",
                "--progress",
                "plain",
                "--format",
                "json",
            ]);
            if scenario == Scenario::Cold {
                c.arg("--force");
            }
            c
        }
    };
    command.current_dir(dir);
    if way.is_dockception() {
        return timed_dockception(workload, way, &mut command, &rss_file);
    }
    let start = Instant::now();
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} / {} failed in {}:\n{stdout}\n{stderr}",
            workload.name,
            way.title(),
            dir.display()
        ));
    }
    let mut sample = Sample {
        seconds,
        ..Default::default()
    };
    let artifact_bytes = None;
    match way {
        Way::Buildkit => sample.context_bytes = buildkit::context_sent(&stderr),
        Way::Single | Way::Multi => {
            sample.context_bytes = stdout.lines().find_map(sending_context);
            leftovers
                .images
                .extend(stdout.lines().filter_map(step_image));
        }
        Way::Pipeline => {
            let tar = capture(Command::new("sh").arg("-c").arg(format!(
                "tar -C '{}' -cf - . | wc -c",
                dir.join("out").display()
            )))?;
            sample.context_bytes = tar.trim().parse().ok();
        }
        Way::Dockception | Way::Warm => {}
    }
    Ok((sample, artifact_bytes))
}

/// A dockception build with plain progress, its `==>` phase lines timed as they arrive
/// (where the time goes), the figures from its JSON report.
fn timed_dockception(
    workload: &Workload,
    way: Way,
    command: &mut Command,
    rss_file: &Path,
) -> Result<(Sample, Option<u64>), String> {
    let run = phased::run_phased(command)
        .map_err(|e| format!("{} / {}: {e}", workload.name, way.title()))?;
    let stdout = &run.stdout;
    let sample = Sample {
        seconds: run.seconds,
        context_bytes: json_u64(stdout, "context_bytes"),
        build_command_ms: json_u64(stdout, "build_command_ms"),
        up_to_date: Some(stdout.contains("\"up_to_date\": true")),
        max_rss_kib: std::fs::read_to_string(rss_file)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        phases: run.phases.clone(),
    };
    Ok((sample, json_u64(stdout, "artifact_bytes")))
}

/// Remove what the benchmark made: its tags, the images its Dockerfile builds printed, its
/// cache volumes. Nothing else on the engine is touched.
fn clean(leftovers: &Leftovers, bin: &Path, work: &Path) {
    for tag in &leftovers.tags {
        let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    }
    for id in leftovers.images.iter().rev() {
        let _ = Command::new("docker").args(["rmi", id]).output();
    }
    if let Err(e) = leftovers.build_cache.empty_ours() {
        eprintln!("warning: {e}");
    }
    for workload in WORKLOADS {
        for way in [Way::Dockception, Way::Warm] {
            let dir = work.join(workload.name).join(way.slug());
            if dir.join("dockception.toml").exists() {
                let _ = Command::new(bin)
                    .args(["clean", "--caches"])
                    .current_dir(&dir)
                    .output();
            }
        }
    }
}

fn quiet(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn capture(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Sending build context to Docker daemon  12.29kB` -> bytes (the CLI's decimal units).
fn sending_context(line: &str) -> Option<u64> {
    decimal_size(
        line.strip_prefix("Sending build context to Docker daemon")?
            .trim(),
    )
}

/// `12.29kB` -> bytes (the Docker CLI's and BuildKit's decimal units).
fn decimal_size(size: &str) -> Option<u64> {
    let split = size.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = size.split_at(split);
    let factor = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| (n * factor).round() as u64)
}

/// ` ---> 3f1a2b4c5d6e`: an image a classic build step made.
fn step_image(line: &str) -> Option<String> {
    let id = line.trim().strip_prefix("---> ")?.trim();
    (id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The number after `"key":` in a JSON text (`None` for null or absent).
fn json_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn seconds_of(samples: &[Sample]) -> f64 {
    median(&mut samples.iter().map(|s| s.seconds).collect::<Vec<_>>())
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    } else {
        format!("{:.2} GiB", n as f64 / 1073741824.0)
    }
}

fn machine() -> String {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "- CPU: {} ({} cores)\n- memory: {}\n- kernel: {}\n- Docker Engine {} ({} storage; the classic builder with `DOCKER_BUILDKIT=0`, its built-in BuildKit with `DOCKER_BUILDKIT=1 /usr/bin/docker build`)\n- dockception {} (release build), measured {}\n- load average when the report was written: {} (the machine is shared with other work; the ways are interleaved so they share the noise)\n",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'"),
        sh("nproc"),
        sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo"),
        sh("uname -sr"),
        sh("docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'"),
        sh("docker info --format '{{.Driver}}'"),
        sh("git rev-parse --short HEAD"),
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        sh("cut -d' ' -f1-3 /proc/loadavg"),
    )
}

/// A line of the targets table: what, the figures, met.
type Target = (String, String, bool);

/// How many repetitions the classic ways run: they sit out the last one when that still leaves
/// at least 5, since they are not the headline peer and are the slowest.
fn classic_reps(reps: usize) -> usize {
    if reps > 5 {
        reps - 1
    } else {
        reps
    }
}

fn render(results: &Run, reps: usize) -> String {
    let measured = &results.measured;
    let classic = classic_reps(reps);
    let counts = if classic < reps {
        format!(
            "{reps} repetitions for BuildKit and dockception ({classic} for the classic builder's ways, which sit\n\
             out the last one)"
        )
    } else {
        format!("{reps} repetitions for every way")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\nWritten by `cargo xtask bench` (xtask/src/bench.rs); rerun it to refresh. Every workload number\n\
         is a median of {counts}, all ways measured side by side in the same run, interleaved (rep 1: cold for\n\
         every way, then no-op for every way, then the change; rep 2: ...), the way that goes first rotating\n\
         from rep to rep and every other rep in reverse order. The image measurements\n\
         (issue 14) say their own counts.\n\n\
         ## The machine\n\n{}{}",
        machine(),
        results
            .loads
            .iter()
            .map(|(part, load)| format!("- load average as the {part} measurement started: {load}\n"))
            .collect::<String>()
    );
    let _ = writeln!(
        out,
        "## The ways\n\n\
         - **BuildKit: multi-stage, bind + cache mounts** (the headline peer): `DOCKER_BUILDKIT=1 /usr/bin/docker build` of\n  \
           `FROM builder AS build` + `RUN --mount=type=bind,target=/src --mount=type=cache,target=CACHE BUILD` (the same\n  \
           command and cache folder as dockception's manifest), then `FROM scratch` + `COPY --from=build` of the binary.\n\
         - **single-stage Dockerfile**: `FROM` the builder, `COPY . .`, `RUN` the build; the image is the builder plus everything.\n\
         - **multi-stage Dockerfile**: the same stage, then `FROM scratch` + `COPY --from=build` of the binary.\n\
         - **2015/2017 pipeline**: `docker run --rm -v $PWD:/src:ro -v $PWD/out:/out builder sh -c BUILD`, then a Dockerfile\n  \
           and the binary piped as a tar to `docker build -` (no cache volume: the articles had none).\n\
         - **dockception**: `dockception build` with its defaults, the sources mounted and a `[[cache]]` volume for\n  \
           the compiler's cache (Go's build cache; the objects of `build.sh`; cargo's target folder). On a local\n  \
           engine the default keeps the builder container up between builds (the warm builder, which ends itself\n  \
           after 10 minutes idle), so a rebuild runs the command in it, through the named pipes it mounts (no\n  \
           `docker exec`). Run with `--progress\n  \
           plain --format json`, its phase lines timed as they arrive.\n\
         - **dockception, `warm = \"5m\"`**: the same manifest with the warm builder asked for explicitly, as the\n  \
           runs before it became the default measured it.\n\n\
         Scenarios: **cold** = no layer cache (`--no-cache`) and no cache volume nor warm builder (`dockception\n\
         clean --caches`, then `build --force`; for BuildKit, every build cache record the bench made, cache mounts\n\
         included, pruned with `docker builder prune --filter id=`, records that were there before left alone);\n\
         **no-op** = the same build again, nothing changed; **one-line change** = one line of one source file\n\
         rewritten to a value never used before (`bench-<run nonce>-<rep>`: BuildKit's cache is content-addressed),\n\
         then rebuilt. Times are wall-clock, process start to exit.\n"
    );
    let mut targets: Vec<Target> = Vec::new();
    for m in measured {
        let w = m.workload;
        let _ = writeln!(out, "## Workload: {}\n\n{}\n", w.name, w.what);
        out.push_str(&buildkit::headline(m, &mut targets));
        let _ = writeln!(out, "**Every way:**\n");
        let _ = writeln!(
            out,
            "| way | cold | no-op | one-line change | image size | build context sent |\n|---|---:|---:|---:|---:|---:|"
        );
        for &way in w.ways {
            let med = |s: Scenario| seconds_of(&m.results[&(way, s)]);
            let context = m.results[&(way, Scenario::Cold)]
                .iter()
                .filter_map(|s| s.context_bytes)
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                way.title(),
                secs(med(Scenario::Cold)),
                secs(med(Scenario::Noop)),
                secs(med(Scenario::Change)),
                bytes(m.image_bytes[&way]),
                bytes(context)
            );
        }
        let _ = writeln!(
            out,
            "\n**dockception's time as a fraction of each peer's** (below 1 is faster; `0.10x` = ten times faster):\n\n\
             | dockception | against | cold | no-op | one-line change |\n|---|---|---:|---:|---:|"
        );
        for ours in [Way::Dockception, Way::Warm]
            .into_iter()
            .filter(|ours| w.ways.contains(ours))
        {
            for &way in w.ways.iter().filter(|w| !w.is_dockception()) {
                let ratio = |s: Scenario| {
                    seconds_of(&m.results[&(ours, s)]) / seconds_of(&m.results[&(way, s)])
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2}x | {:.3}x | {:.2}x |",
                    ours.title(),
                    way.title(),
                    ratio(Scenario::Cold),
                    ratio(Scenario::Noop),
                    ratio(Scenario::Change)
                );
            }
        }
        let _ = writeln!(
            out,
            "\n**dockception's runner overhead** (total minus the build command's own time, which is measured\n\
             from the builder container's start, or the warm builder's request, to the end of its output):\n\n\
             | dockception | scenario | total | build command | overhead | peak memory (max RSS) |\n|---|---|---:|---:|---:|---:|"
        );
        let mut overheads = BTreeMap::new();
        for (ours, s) in [Way::Dockception, Way::Warm]
            .into_iter()
            .filter(|ours| w.ways.contains(ours))
            .flat_map(|w| SCENARIOS.into_iter().map(move |s| (w, s)))
        {
            let samples = &m.results[&(ours, s)];
            let total = seconds_of(samples);
            let command = median(
                &mut samples
                    .iter()
                    .map(|x| x.build_command_ms.unwrap_or(0) as f64 / 1000.0)
                    .collect::<Vec<_>>(),
            );
            let overhead = median(
                &mut samples
                    .iter()
                    .map(|x| x.seconds - x.build_command_ms.unwrap_or(0) as f64 / 1000.0)
                    .collect::<Vec<_>>(),
            );
            overheads.insert((ours, s), overhead);
            let rss = samples
                .iter()
                .filter_map(|x| x.max_rss_kib)
                .max()
                .unwrap_or(0);
            let ran = if samples.iter().all(|x| x.up_to_date == Some(true)) {
                "did not run (up to date)".to_string()
            } else {
                secs(command)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                ours.title(),
                s.title(),
                secs(total),
                ran,
                secs(overhead),
                bytes(rss * 1024)
            );
        }
        let floor = median(&mut m.floor.clone());
        let _ = writeln!(
            out,
            "\nFor scale: one `docker run --rm {} true` (create, start, wait, remove one container, the\n\
             least any container-based way pays) takes {} on this engine, median of {} (same run).",
            w.builder,
            secs(floor),
            m.floor.len()
        );
        let samples: String = w
            .ways
            .iter()
            .flat_map(|way| SCENARIOS.iter().map(move |s| (*way, *s)))
            .map(|(way, s)| {
                let list: Vec<String> = m.results[&(way, s)]
                    .iter()
                    .map(|x| format!("{:.3}", x.seconds))
                    .collect();
                format!(
                    "| {} | {} | {} |\n",
                    way.title(),
                    s.title(),
                    list.join(", ")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\n<details><summary>every sample (seconds)</summary>\n\n| way | scenario | samples |\n|---|---|---|\n{samples}\n</details>\n"
        );
        let multi = |s| seconds_of(&m.results[&(Way::Multi, s)]);
        let issue_14 = w.ways.contains(&Way::Multi);
        for ours in [Way::Dockception, Way::Warm]
            .into_iter()
            .filter(|_| issue_14)
        {
            let d = |s| seconds_of(&m.results[&(ours, s)]);
            let who = if ours == Way::Warm {
                format!("{} (warm builder)", w.name)
            } else {
                w.name.to_string()
            };
            let noop_ratio = d(Scenario::Noop) / multi(Scenario::Noop);
            targets.push((
                format!(
                    "{who}: no-op at most 0.2x the multi-stage cached rebuild, and under 300 ms"
                ),
                format!("{:.3}x, {}", noop_ratio, secs(d(Scenario::Noop))),
                noop_ratio <= 0.2 && d(Scenario::Noop) < 0.3,
            ));
            let change_ratio = d(Scenario::Change) / multi(Scenario::Change);
            targets.push((
                format!("{who}: one-line change at most 0.5x the multi-stage rebuild"),
                format!(
                    "{change_ratio:.2}x ({} vs {})",
                    secs(d(Scenario::Change)),
                    secs(multi(Scenario::Change))
                ),
                change_ratio <= 0.5,
            ));
            for s in SCENARIOS {
                targets.push((
                    format!("{who}: runner overhead under 300 ms ({})", s.title()),
                    secs(overheads[&(ours, s)]),
                    overheads[&(ours, s)] < 0.3,
                ));
            }
        }
        let limit = m.artifact_bytes + 16 * 1024;
        targets.push((
            format!(
                "{}: runtime image at most base (scratch, 0 B) + artifacts + 16 KiB",
                w.name
            ),
            format!(
                "{} image, {} artifacts ({} B over)",
                bytes(m.image_bytes[&Way::Dockception]),
                bytes(m.artifact_bytes),
                m.image_bytes[&Way::Dockception] as i64 - m.artifact_bytes as i64
            ),
            m.image_bytes[&Way::Dockception] <= limit,
        ));
    }
    if let Some(bench) = &results.image {
        out.push_str(&image::render(bench, &mut targets));
    }
    if let Some(bench) = &results.push {
        out.push_str(&push::render(bench, &mut targets));
    }
    if !results.memory.is_empty() {
        out.push_str(&memory::render(&results.memory, &mut targets));
    }
    if let Some(bench) = &results.remote {
        out.push_str(&remote::render(bench, &mut targets));
    }
    if let Some(bench) = &results.scale {
        out.push_str(&scale::render(bench, &mut targets));
    }
    let _ = writeln!(
        out,
        "## The issue's targets\n\n| target | measured | met |\n|---|---|---|"
    );
    for (target, value, met) in targets {
        let _ = writeln!(
            out,
            "| {target} | {value} | {} |",
            if met { "yes" } else { "**no**" }
        );
    }
    if measured
        .iter()
        .any(|m| m.workload.ways.contains(&Way::Multi))
    {
        out.push_str(NOTES);
    }
    if !measured.is_empty() {
        out.push_str(buildkit::NOTES);
    }
    out
}

/// What the table's misses come from, as understood when this harness was written; review it
/// against the new numbers after every run.
const NOTES: &str = r#"
## Why some targets are missed

- **Runner overhead under 300 ms on a cold build: not met.** A cold build has no builder
  container to reuse (and creates its cache volume), so it pays the container's create and start
  once; on this engine (dockerd 20.10 on cgroup v1) that alone is about the "for scale" time above
  (`docker run --rm BUILDER true`), itself above 300 ms. Rebuilds run the command in the
  builder container kept from the build before (the default on a local engine), through the
  named pipes it mounts.
- What is left on a rebuild is writing and loading the image (see "Assembly plus load", whose
  16-byte row is what any new image costs on this engine) and the report.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_workload_measured_with_only_some_ways() {
        let workload = buildkit::headline_ways(&RUST);
        let mut results = Results::new();
        for &way in workload.ways {
            for s in SCENARIOS {
                let sample = Sample {
                    seconds: 1.0,
                    build_command_ms: way.is_dockception().then_some(500),
                    phases: vec![(0.1, "building in rust:local".into())],
                    ..Default::default()
                };
                results.insert((way, s), vec![sample]);
            }
        }
        let run = Run {
            measured: vec![Measured {
                workload,
                floor: vec![1.0],
                results,
                image_bytes: workload.ways.iter().map(|w| (*w, 1000)).collect(),
                artifact_bytes: 1000,
            }],
            ..Default::default()
        };
        let markdown = render(&run, 6);
        assert!(markdown.contains("| one-line change | 1.00 s | 1.00 s | 1.000x |"));
        assert!(markdown.contains("**no**"), "{markdown}");
        assert!(!markdown.contains("warm builder (`warm"), "{markdown}");
    }

    #[test]
    fn parses_what_the_tools_print() {
        assert_eq!(
            sending_context("Sending build context to Docker daemon  12.29kB"),
            Some(12_290)
        );
        assert_eq!(
            sending_context("Sending build context to Docker daemon  1.5MB"),
            Some(1_500_000)
        );
        assert_eq!(
            step_image(" ---> 3f1a2b4c5d6e"),
            Some("3f1a2b4c5d6e".into())
        );
        assert_eq!(step_image(" ---> Running in 3f1a2b4c5d6e"), None);
        let json = "{\n  \"context_bytes\": 1234,\n  \"build_command_ms\": null\n}";
        assert_eq!(json_u64(json, "context_bytes"), Some(1234));
        assert_eq!(json_u64(json, "build_command_ms"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
