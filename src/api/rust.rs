//! Building a Rust project in a builder container without a registry or network inside it: the
//! host's own toolchain, mounted read-only, and the project's crates, vendored on the host.
//! This is what `cargo xtask image` uses for dockception itself; copy it for yours:
//!
//! ```no_run
//! use std::path::Path;
//! use dockception::{rust, Options, Progress};
//!
//! fn main() -> dockception::Result<()> {
//!     let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".."); // the workspace
//!     let vendor = rust::vendor(&root, &root.join(".dockception/vendor"))?;
//!     let plans = Options::new(root.join("dockception.toml"))
//!         .set("RUST_SYSROOT", rust::sysroot()?.to_string_lossy())
//!         .set("VENDOR", vendor.to_string_lossy())
//!         .load()?;
//!     dockception::build_blocking(&plans, Progress::auto())?;
//!     Ok(())
//! }
//! ```
//!
//! In the manifest, mount `${RUST_SYSROOT}` (say on `/rust`, with `/rust/bin` first in `PATH`)
//! and `${VENDOR}` (say on `/vendor`), and build with
//! `cargo build --offline --locked --config 'source.crates-io.replace-with="vendored"'
//! --config 'source.vendored.directory="/vendor"'`. The toolchain needs a glibc at least as
//! new as the one it was built for and a C linker (`cc`): a Debian image with gcc does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;

/// The stamp in a vendor folder naming the `Cargo.lock` it was made from.
const STAMP: &str = ".dockception-cargo-lock.sha256";

/// The host toolchain's sysroot (`rustc --print sysroot`, with `RUSTC` honoured as cargo does):
/// a folder holding `bin/cargo`, `bin/rustc` and the standard library, which a builder
/// container can mount read-only.
pub fn sysroot() -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = run(Command::new(&rustc).args(["--print", "sysroot"]), &rustc)?;
    let path = PathBuf::from(output.trim());
    if !path.join("bin").is_dir() {
        return Err(Error::HostCommand {
            command: format!("{rustc} --print sysroot"),
            message: format!("it printed {}, which has no bin/ folder", path.display()),
            help: "install Rust with rustup, or point RUSTC at a rustc of a full toolchain".into(),
        });
    }
    Ok(path)
}

/// Vendor the crates of the workspace at `workspace` (as locked by its `Cargo.lock`) into
/// `dest` with `cargo vendor --locked --versioned-dirs`, so a builder can build offline.
/// Skipped when `dest` already holds the crates of this very `Cargo.lock`. Returns `dest`.
pub fn vendor(workspace: &Path, dest: &Path) -> Result<PathBuf> {
    let lock = workspace.join("Cargo.lock");
    let text = std::fs::read(&lock).map_err(|e| Error::io("reading", &lock, e))?;
    let digest = crate::fsutil::hex(&Sha256::digest(&text));
    let stamp = dest.join(STAMP);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == digest) {
        return Ok(dest.to_path_buf());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args(["vendor", "--locked", "--versioned-dirs", "--quiet"])
        .arg(dest);
    run(&mut command, &format!("{cargo} vendor"))?;
    // Without dependencies cargo makes no folder; the builder still mounts one.
    std::fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
    std::fs::write(&stamp, format!("{digest}\n")).map_err(|e| Error::io("writing", &stamp, e))?;
    Ok(dest.to_path_buf())
}

/// Run `command`; its stdout on success, else an error with its last stderr lines.
fn run(command: &mut Command, name: &str) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::HostCommand {
            command: name.to_string(),
            message: format!("it did not start: {e}"),
            help: "install Rust with rustup (https://rustup.rs), or fix PATH".into(),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        return Err(Error::HostCommand {
            command: name.to_string(),
            message: format!(
                "{}: {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  | ")
            ),
            help: "run it by hand to see the whole output".into(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sysroot_holds_cargo_and_rustc() {
        let root = sysroot().expect("a toolchain runs these tests");
        assert!(root.join("bin/rustc").exists(), "{}", root.display());
    }

    #[test]
    fn a_failing_command_says_what_it_printed() {
        let err = run(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            "sh -c oops",
        )
        .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("sh -c oops failed: exit status: 3: oops"),
            "{text}"
        );
        let err = run(&mut Command::new("/nonexistent/rustc"), "rustc").expect_err("no program");
        assert!(err.to_string().contains("did not start"), "{err}");
    }

    #[test]
    fn a_vendor_folder_for_the_same_lock_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Cargo.lock"), "version = 4\n").expect("write");
        let dest = dir.path().join("vendor");
        std::fs::create_dir(&dest).expect("mkdir");
        let digest = crate::fsutil::hex(&Sha256::digest(b"version = 4\n"));
        std::fs::write(dest.join(STAMP), &digest).expect("stamp");
        // No Cargo.toml here: had cargo vendor run, it would have failed.
        assert_eq!(vendor(dir.path(), &dest).expect("kept"), dest);
    }

    #[test]
    fn cargo_vendor_runs_again_when_cargo_lock_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/lib.rs"), "").expect("write");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"vendored\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .expect("write");
        let lock = "version = 3\n\n[[package]]\nname = \"vendored\"\nversion = \"0.1.0\"\n";
        std::fs::write(dir.path().join("Cargo.lock"), lock).expect("write");
        let dest = dir.path().join("vendor");
        // The stamp of a folder vendored from another Cargo.lock.
        std::fs::create_dir(&dest).expect("mkdir");
        std::fs::write(dest.join(STAMP), "0".repeat(64)).expect("stamp");
        assert_eq!(vendor(dir.path(), &dest).expect("vendored"), dest);
        let digest = crate::fsutil::hex(&Sha256::digest(lock.as_bytes()));
        assert_eq!(
            std::fs::read_to_string(dest.join(STAMP))
                .expect("stamp")
                .trim(),
            digest,
            "cargo vendor ran and the stamp names this Cargo.lock"
        );
        // A changed Cargo.lock runs cargo vendor again: here it fails, as the manifest is gone.
        std::fs::remove_file(dir.path().join("Cargo.toml")).expect("remove");
        std::fs::write(dir.path().join("Cargo.lock"), format!("{lock}\n")).expect("write");
        let err = vendor(dir.path(), &dest).expect_err("cargo vendor ran, without a Cargo.toml");
        assert!(err.to_string().contains("vendor failed"), "{err}");
    }
}
