//! Project tasks, run as `cargo xtask TASK` (the alias is in `.cargo/config.toml`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask TASK

tasks:
  image    build dockception's own image (dockception:latest) from the root dockception.toml,
           through the library: [--tag NAME[:TAG]]... [--set NAME=VALUE]...
  demo     set up the engine and local images, build examples/hello-c with dockception, run it
  test     set up the engine and local images, then run the whole test suite
  engine   only make sure a Docker Engine answers and the local images exist
  schema   regenerate schema/dockception.schema.json from the manifest types";

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "image" => image(std::env::args().skip(2).collect()),
        "demo" => demo(),
        "test" => engine().and_then(|()| cargo(&["test", "--workspace"])),
        "engine" => engine(),
        "schema" => schema(),
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
    use dockception::{rust, Options, Progress};

    let mut options = Options::new(root().join("dockception.toml"));
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--tag" | "-t" => options = options.tag(value("--tag")?),
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
        dockception::build_blocking(&plans, Progress::auto()).map_err(|e| e.to_string())?;
    for built in &reports {
        print!("{}", built.report.to_text());
        if let Some(tag) = built.report.tags.first() {
            eprintln!("==> try it: docker run --rm {tag} --version");
        }
    }
    Ok(())
}

fn schema() -> Result<(), String> {
    let path = root().join("schema/dockception.schema.json");
    std::fs::create_dir_all(path.parent().unwrap_or(&root()))
        .map_err(|e| format!("creating schema/: {e}"))?;
    std::fs::write(&path, dockception::manifest::json_schema())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
