//! This project's tasks, run as `cargo xtask TASK` (the alias is in `.cargo/config.toml`).
//!
//! `cargo xtask image [--tag NAME[:TAG]]… [--push] [--output SPEC]…` builds the project's
//! runtime image with dockception, used as a library: no Dockerfile, no shell script. `--push`
//! sends it to the registry its tags name, `--output type=oci,dest=DIR` writes it to a file,
//! as `dockception build` does. The build runs in a builder
//! container with no registry and no network, so the host's Rust toolchain and the project's
//! vendored crates are mounted into it (see `dockception.toml`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dockception::{rust, Destinations, Options, Progress};

const USAGE: &str = "usage: cargo xtask image [--tag NAME[:TAG]]... [--push] [--output SPEC]...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("image", rest)) = args.split_first().map(|(t, r)| (t.as_str(), r)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut tags = Vec::new();
    let mut to = Destinations::default();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        let given = match arg.as_str() {
            "--push" => {
                to = to.push();
                Ok(())
            }
            "--tag" | "-t" => rest.next().map(|tag| tags.push(tag.clone())).ok_or(()),
            "--output" => match rest.next().map(|spec| to.clone().output(spec)) {
                Some(Ok(more)) => {
                    to = more;
                    Ok(())
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                None => Err(()),
            },
            _ => Err(()),
        };
        if given.is_err() {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    match image(&tags, &to) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// The project's root: the folder above `xtask/`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn image(tags: &[String], to: &Destinations) -> dockception::Result<()> {
    let root = root();
    // Crates for an offline build (none for this tiny app, but yours has some), and the
    // toolchain to mount: both from the host.
    let vendor = rust::vendor(&root, &root.join(".dockception/vendor"))?;
    let mut options = Options::new(root.join("dockception.toml"))
        .set("RUST_SYSROOT", rust::sysroot()?.to_string_lossy())
        .set("VENDOR", vendor.to_string_lossy());
    for tag in tags {
        options = options.tag(tag);
    }
    let plans = options.load()?;
    for built in dockception::build_blocking_to(&plans, Progress::auto(), to)? {
        print!("{}", built.report.to_text());
    }
    Ok(())
}
