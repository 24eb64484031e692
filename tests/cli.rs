//! The command line without an engine: usage, help, and errors that must appear before any
//! container starts (the tool is pointed at an engine that does not exist to prove it).

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str], cwd: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("dockception runs");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const MANIFEST: &str = r#"[builder]
image = "gcc:local"
run = "cc -o /out/app app.c"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app"]
"#;

#[test]
fn usage_errors_exit_2() {
    let dir = project("usage");
    let (code, _, stderr) = run(&["build", "--no-such-flag"], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, _) = run(&[], dir.path());
    assert_eq!(code, Some(2));
}

#[test]
fn help_explains_the_tool_and_its_exit_status() {
    let dir = project("help");
    let (code, stdout, _) = run(&["--help"], dir.path());
    assert_eq!(code, Some(0));
    for needle in [
        "builder image",
        "dockception.toml",
        "build",
        "context",
        "Exit status",
    ] {
        assert!(
            stdout.contains(needle),
            "--help lacks {needle:?}:\n{stdout}"
        );
    }
    let (_, stdout, _) = run(&["context", "--help"], dir.path());
    assert!(stdout.contains("docker build -t app -"), "{stdout}");
}

#[test]
fn an_unreadable_manifest_is_one_clear_error() {
    let dir = project("unreadable");
    let (code, _, stderr) = run(&["build"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr
            .starts_with("error: cannot read manifest dockception.toml: No such file or directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: pass the manifest with -f FILE"),
        "{stderr}"
    );

    std::fs::create_dir(dir.path().join("folder.toml")).expect("mkdir");
    let (code, _, stderr) = run(&["build", "-f", "folder.toml"], dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("error: cannot read manifest folder.toml: Is a directory"),
        "{stderr}"
    );
}

#[test]
fn manifest_errors_point_at_the_spot_before_any_engine_is_asked() {
    let dir = project("errors");
    let bad = MANIFEST
        .replace("target = \"/src\"", "target = \"src\"")
        .replace(
            "include = [\"app\"]",
            "include = [\"app\"]\ndestination = \"/bin\"",
        );
    write_files(dir.path(), &[("dockception.toml", &bad), ("src/app.c", "")]);
    let (code, _, stderr) = run(&["build"], dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "error: dockception.toml:7:10: mount target must be an absolute path inside the container, not \"src\"\n  |\n7 | target = \"src\"\n  |          ^^^^^\n  = help: write it from the root, e.g. \"/src\"\n\n\
         dockception.toml:11:1: unknown key `destination` in `artifacts`\n   |\n11 | destination = \"/bin\"\n   | ^^^^^^^^^^^\n   = help: remove it; `artifacts` takes `dest`, `exclude`, `from`, `include`\n\n\
         2 errors in the manifest\n",
        "every error of the file, in order"
    );

    let bad = MANIFEST.replace("target = \"/src\"", "target = \"src\"");
    write_files(dir.path(), &[("dockception.toml", &bad)]);
    let (code, _, stderr) = run(&["build"], dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "error: dockception.toml:7:10: mount target must be an absolute path inside the container, not \"src\"\n  |\n7 | target = \"src\"\n  |          ^^^^^\n  = help: write it from the root, e.g. \"/src\"\n"
    );
}

#[test]
fn a_missing_mount_source_is_reported_at_its_line() {
    let dir = project("nosource");
    write_files(dir.path(), &[("dockception.toml", MANIFEST)]);
    let (code, _, stderr) = run(&["build"], dir.path());
    assert_eq!(code, Some(1));
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: dockception.toml:6:10: mount source "),
        "{stderr}"
    );
    assert!(
        first.ends_with("/src cannot be used: No such file or directory (os error 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: create the folder, or fix the path"),
        "{stderr}"
    );
}

#[test]
fn no_daemon_is_one_clear_error() {
    let dir = project("nodaemon");
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", "")],
    );
    let (code, _, stderr) = run(&["build"], dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: no Docker Engine answers at unix:///nonexistent/docker.sock: "),
        "{stderr}"
    );
    assert!(stderr.contains("help: start one"), "{stderr}");
    assert!(
        !dir.path().join(".dockception").exists(),
        "nothing is written before the engine answers"
    );
}
