//! The library's progress modes, as README.md's "As a library" promises them, through a real
//! build on the real engine: `Progress::Silent` prints nothing, not even warnings;
//! `Progress::Quiet` only warnings; `Progress::Plain` the phases and the builder's lines, with
//! no escape sequence. Each build runs in a child process (this test binary again, running
//! [`library_progress_child`]) so that its stderr can be read whole.

use std::process::Command;

use crate::support::*;

/// The environment variable that makes [`library_progress_child`] build: `MODE TAG MANIFEST`.
const CHILD: &str = "DOCKCEPTION_TEST_LIBRARY_PROGRESS";

/// A busybox build that prints one line and ships an image that runs as root, which warns.
const MANIFEST: &str = r#"
[builder]
image = "busybox:local"
run = "echo line-from-the-builder; echo hi > /out/app"

[artifacts]
include = ["app"]

[runtime]
base = "busybox:local"
cmd = ["cat", "/app"]
"#;

const WARNING: &str = "warning: the runtime image runs as root";

/// Build with the library in `mode` in a child process: the image it made, and its stderr.
fn build_in_child(mode: &str) -> (TestImage, String) {
    let dir = project(&format!("library-{mode}"));
    write_files(dir.path(), &[("dockception.toml", MANIFEST)]);
    let image = TestImage::new(&format!("library-{mode}"));
    let manifest = dir.path().join("dockception.toml");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["library::library_progress_child", "--exact", "--nocapture"])
        .env(CHILD, format!("{mode} {} {}", image.0, manifest.display()))
        .output()
        .expect("child runs");
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && text(&out.stdout).contains("1 passed"),
        "{mode}: {}{stderr}",
        text(&out.stdout)
    );
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0]).trim(),
        "hi",
        "{mode}: the build made its image"
    );
    (image, stderr)
}

#[test]
fn silent_prints_nothing_quiet_only_warnings_and_plain_the_phases() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let (_image, silent) = build_in_child("silent");
    assert_eq!(
        silent, "",
        "Progress::Silent prints nothing, not even a warning"
    );

    let (_image, quiet) = build_in_child("quiet");
    assert!(quiet.contains(WARNING), "Progress::Quiet warns:\n{quiet}");
    assert!(
        quiet.lines().all(|l| l.starts_with("warning: ")),
        "Progress::Quiet prints only warnings:\n{quiet}"
    );

    let (_image, plain) = build_in_child("plain");
    assert!(
        plain.contains("==> building in busybox:local"),
        "Progress::Plain shows the phases:\n{plain}"
    );
    assert!(
        plain.contains("\n  | line-from-the-builder\n"),
        "Progress::Plain shows the builder's lines:\n{plain}"
    );
    assert!(plain.contains(WARNING), "and the warnings:\n{plain}");
    assert!(
        !plain.chars().any(|c| c.is_control() && c != '\n'),
        "Progress::Plain prints no escape sequence or control character:\n{plain:?}"
    );
}

/// Run by [`silent_prints_nothing_quiet_only_warnings_and_plain_the_phases`] in a child
/// process; on its own it does nothing.
#[test]
fn library_progress_child() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    let mut args = args.splitn(3, ' ');
    let (mode, tag, manifest) = (
        args.next().expect("mode"),
        args.next().expect("tag"),
        args.next().expect("manifest"),
    );
    let progress = match mode {
        "silent" => dockception::Progress::Silent,
        "quiet" => dockception::Progress::Quiet,
        "plain" => dockception::Progress::Plain,
        other => panic!("unknown mode {other}"),
    };
    let plans = dockception::Options::new(manifest)
        .tag(tag)
        .load()
        .expect("the manifest loads");
    let built = dockception::build_blocking(&plans, progress).expect("the build succeeds");
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].report.tags, [tag.to_string()]);
}
