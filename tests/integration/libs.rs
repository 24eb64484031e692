//! Dynamically linked binaries against the real engine: on a base that lacks their libraries
//! the build fails naming them; with `libs = "auto"` the loader and libraries come from the
//! builder and the binary runs on scratch; static binaries need nothing and say so.

use std::path::Path;

use crate::support::*;

const HELLO_C: &str = r#"#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) {
    printf("Hello from C! sqrt(16) = %.0f\n", sqrt(16.0 * argc));
    return 0;
}
"#;

fn manifest(gcc_flags: &str, runtime: &str) -> String {
    format!(
        r#"[builder]
image   = "gcc:local"
workdir = "/src"
run     = "gcc -O2 {gcc_flags} -o /out/hello hello.c -lm"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["hello"]

[runtime]
entrypoint = ["/hello"]
{runtime}
"#
    )
}

fn build(dir: &Path, image: &TestImage, manifest: &str) -> std::process::Output {
    write_files(
        dir,
        &[("dockception.toml", manifest), ("src/hello.c", HELLO_C)],
    );
    dockception(&["build", "--tag", &image.0, "--format", "json"], dir)
}

#[test]
fn a_dynamic_binary_fails_on_scratch_naming_its_libraries_and_runs_with_libs_auto() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    let dir = project("dynamic");
    let image = TestImage::new("dynamic");

    // Without the option: the build stops before any image exists, naming what is missing.
    let out = build(dir.path(), &image, &manifest("", ""));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the base scratch lacks what dynamically linked artifacts need to start:\n  /hello needs the interpreter /lib64/ld-linux-x86-64.so.2, libc.so.6, libm.so.6\n  help: add libs = \"auto\" to [runtime]"),
        "{stderr}"
    );
    assert!(!image_exists(&image.0), "no image on a failed check");

    // A base that is not scratch is looked at through the engine: busybox has no glibc.
    let out = build(
        dir.path(),
        &image,
        &manifest("", "base = \"busybox:local\""),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the base busybox:local lacks what dynamically linked artifacts need to start:\n  /hello needs the interpreter /lib64/ld-linux-x86-64.so.2, libc.so.6, libm.so.6"),
        "{stderr}"
    );

    // With libs = "auto" the loader and libraries are copied from the builder: it runs.
    let out = build(dir.path(), &image, &manifest("", "libs = \"auto\""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let output = docker_stdout(&["run", "--rm", &image.0]);
    assert_eq!(output.trim(), "Hello from C! sqrt(16) = 4");

    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let libs = &reports[0]["libs"];
    assert_eq!(libs["mode"], "auto");
    assert_eq!(libs["elf_artifacts"][0]["path"], "/hello");
    assert_eq!(libs["elf_artifacts"][0]["linking"], "dynamic");
    let added: Vec<&str> = libs["added"]
        .as_array()
        .expect("added")
        .iter()
        .map(|a| a["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        added,
        [
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6"
        ]
    );
    // The image is the binary plus those files, nothing else.
    let added_bytes: u64 = libs["added"]
        .as_array()
        .expect("added")
        .iter()
        .map(|a| a["bytes"].as_u64().expect("bytes"))
        .sum();
    let runtime = reports[0]["runtime_bytes"].as_u64().expect("bytes");
    let artifact = reports[0]["artifact_bytes"].as_u64().expect("bytes");
    assert!(
        runtime <= artifact + added_bytes + 16 * 1024,
        "{runtime} bytes for a {artifact}-byte binary and {added_bytes} bytes of libraries"
    );
    assert!(
        containers_of(dir.path()).is_empty(),
        "containers left behind"
    );
}

#[test]
fn a_static_binary_needs_nothing_and_the_report_says_so() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("static");
    let image = TestImage::new("static");
    let out = build(dir.path(), &image, &manifest("-static", "libs = \"auto\""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(reports[0]["libs"]["elf_artifacts"][0]["linking"], "static");
    assert_eq!(reports[0]["libs"]["added"], serde_json::json!([]));
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0]).trim(),
        "Hello from C! sqrt(16) = 4"
    );

    let out = dockception(
        &[
            "build", "--tag", &image.0, "-q", "--force", "--report", "full",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("  /hello: static, needs no library at run time\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn libs_off_looks_at_nothing_and_ships_the_dynamic_binary_as_it_is() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("libs-off");
    let image = TestImage::new("libs-off");
    // The same binary that `check` refuses on scratch: with "off" nothing is looked at.
    let out = build(dir.path(), &image, &manifest("", "libs = \"off\""));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("looking for the shared libraries"),
        "{stderr}"
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let libs = &reports[0]["libs"];
    assert_eq!(libs["mode"], "off", "{libs}");
    assert_eq!(libs["elf_artifacts"], serde_json::json!([]), "{libs}");
    assert_eq!(libs["added"], serde_json::json!([]), "{libs}");
    let files: Vec<&str> = reports[0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(files, ["/hello"], "no library was added");
    // And, as the README warns, it cannot start there.
    let ran = docker(&["run", "--rm", &image.0]);
    assert!(!ran.status.success(), "a dynamic binary started on scratch");
}
