//! Project tasks, run as `cargo xtask TASK` (the alias is in `.cargo/config.toml`).

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask TASK

tasks:
  demo     set up the engine and local images, build examples/hello-c with dockception, run it
  test     set up the engine and local images, then run the whole test suite
  engine   only make sure a Docker Engine answers and the local images exist
  schema   regenerate schema/dockception.schema.json (manifest) and schema/report.schema.json
           (the report's JSON) from the Rust types
  bench    measure dockception against the Dockerfile ways on real workloads, write BENCHMARKS.md
           (options: --reps N, default 3; --only go-multi|lua)";

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "demo" => demo(),
        "test" => engine().and_then(|()| cargo(&["test", "--workspace"])),
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

fn schema() -> Result<(), String> {
    for (name, text) in [
        (
            "dockception.schema.json",
            dockception::manifest::json_schema(),
        ),
        ("report.schema.json", dockception::report::json_schema()),
    ] {
        let path = root().join("schema").join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(&root()))
            .map_err(|e| format!("creating schema/: {e}"))?;
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
