//! Project tasks, run as `cargo xtask TASK` (the alias is in `.cargo/config.toml`).

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask TASK

tasks:
  image    build dockception's own image (dockception:latest) from the root dockception.toml,
           through the library: [--tag NAME[:TAG]]... [--set NAME=VALUE]... [--push]
           [--load] [--output type=…,dest=…]... [--registry-http HOST[:PORT]]...
  demo     set up the engine and local images, build examples/hello-c with dockception, run it
  test     set up the engine and local images, run the whole test suite, then check that it
           left no labelled container or volume behind
  engine   only make sure a Docker Engine answers and the local images exist
  schema   regenerate schema/dockception.schema.json (manifest) and schema/report.schema.json
           (the report's JSON) from the Rust types
  bench    measure dockception against the Dockerfile ways on real workloads, and issue 14's
           image targets (assembly plus load, a push after a change, peak memory per
           destination); write BENCHMARKS.md (options: --reps N, default 3; --only
           go-multi|lua|image|push|memory measures one part and writes
           target/bench/BENCHMARKS.PART.md instead)";

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "image" => image(std::env::args().skip(2).collect()),
        "demo" => demo(),
        "test" => engine().and_then(|()| test_suite()),
        "engine" => engine(),
        "schema" => schema(),
        "bench" => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            bench::bench(&rest)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::from(1)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

fn engine() -> Result<(), String> {
    run(Command::new("bash").arg("scripts/engine.sh"))
}

fn demo() -> Result<(), String> {
    run(Command::new("bash").args(["scripts/engine.sh", "gcc"]))?;
    cargo(&[
        "run",
        "--quiet",
        "--package",
        "dockception",
        "--",
        "build",
        "-f",
        "examples/hello-c/dockception.toml",
    ])?;
    eprintln!("==> docker run --rm hello-c:latest");
    run(Command::new("docker").args(["run", "--rm", "hello-c:latest"]))
}

/// `cargo xtask image`: dockception builds its own image through its library, the way any
/// project's xtask can (see examples/xtask-consumer).
fn image(args: Vec<String>) -> Result<(), String> {
    use dockception::{rust, Destinations, Options, Progress};

    let mut options = Options::new(root().join("dockception.toml"));
    let mut to = Destinations::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--tag" | "-t" => options = options.tag(value("--tag")?),
            "--push" => to = to.push(),
            "--load" => to = to.load(),
            "--output" => to = to.output(&value("--output")?).map_err(|e| e.to_string())?,
            "--registry-http" => to = to.registry_http(value("--registry-http")?),
            "--set" => {
                let pair = value("--set")?;
                let (name, v) = pair
                    .split_once('=')
                    .ok_or(format!("--set {pair:?} is not NAME=VALUE"))?;
                options = options.set(name, v);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    run(Command::new("bash").args(["scripts/engine.sh", "gcc"]))?;
    // The builder has no registry and no network: the host's toolchain and vendored crates
    // are mounted into it (see dockception.toml).
    let vendor =
        rust::vendor(&root(), &root().join(".dockception/vendor")).map_err(|e| e.to_string())?;
    let sysroot = rust::sysroot().map_err(|e| e.to_string())?;
    let plans = options
        .set("RUST_SYSROOT", sysroot.to_string_lossy())
        .set("VENDOR", vendor.to_string_lossy())
        .load()
        .map_err(|e| e.to_string())?;
    let reports =
        dockception::build_blocking_to(&plans, Progress::auto(), &to).map_err(|e| e.to_string())?;
    for built in &reports {
        print!("{}", built.report.to_text());
        if let Some(tag) = built.report.tags.first() {
            eprintln!("==> try it: docker run --rm {tag} --version");
        }
    }
    Ok(())
}

/// The whole suite, then a check that it left no labelled container or volume behind. The
/// tests name their project folders `dcpt-<run>-…` (tests/integration/support.rs), so only this run's
/// leftovers count, even while others use the same engine.
fn test_suite() -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run_id = format!("r{:x}{:x}", std::process::id(), nanos & 0xfff);
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tests = run(Command::new(cargo_bin)
        .args(["test", "--workspace"])
        .env("DOCKCEPTION_TEST_RUN", &run_id));
    let left = leftovers(&run_id)?;
    if !left.is_empty() {
        return Err(format!(
            "the test suite left these behind (remove them with `docker rm -f` / `docker volume rm`):\n  {}",
            left.join("\n  ")
        ));
    }
    tests?;
    eprintln!("==> the test suite left no labelled container or volume behind");
    Ok(())
}

/// Labelled containers and volumes of the projects of test run `run_id`.
fn leftovers(run_id: &str) -> Result<Vec<String>, String> {
    let prefix = format!("dcpt-{run_id}-");
    let mut left = Vec::new();
    for (kind, list, name) in [
        ("container", &["ps", "-a"][..], "{{.Names}}"),
        ("volume", &["volume", "ls"][..], "{{.Name}}"),
    ] {
        let format = format!("{name} {{{{.Label \"dockception.project\"}}}}");
        let out = Command::new("docker")
            .args(list)
            .args(["--filter", "label=dockception", "--format", &format])
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "listing labelled {kind}s failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((thing, project)) = line.split_once(' ') {
                if project.starts_with(&prefix) {
                    left.push(format!("{kind} {thing} (project {project})"));
                }
            }
        }
    }
    Ok(left)
}

fn schema() -> Result<(), String> {
    for (name, text) in [
        ("dockception.schema.json", dockception::manifest_schema()),
        ("report.schema.json", dockception::report_schema()),
    ] {
        let path = root().join("schema").join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(&root()))
            .map_err(|e| format!("creating schema/: {e}"))?;
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
