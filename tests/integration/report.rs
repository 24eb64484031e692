//! The size report against the real Docker Engine: a rebuild with one more output file diffs as
//! exactly that file, a wasteful image built by `docker build` reports what it wastes while a
//! dockception image reports nothing, every gate passes and fails with its exit status, and
//! every JSON output matches the checked-in schema (schema/report.schema.json) that README.md
//! documents. Gate misconfigurations are caught before any engine is asked.

use std::path::Path;
use std::process::Output;

use crate::support::*;
use serde_json::Value;

/// The bytes the test adds to the build's output.
const EXTRA: u64 = 5000;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schema/report.schema.json")).expect("schema");
    let schema: Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// Parse a JSON output and check it against the documented shape: `report` prints one
/// document, `build` an array with one per target (these tests build one).
fn checked_json(stdout: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(stdout)));
    let document = match value {
        Value::Array(mut documents) => {
            assert_eq!(documents.len(), 1, "one target was built");
            let document = documents.remove(0);
            assert_eq!(document["target"], "default");
            document
        }
        document => document,
    };
    let validator = validator();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "the JSON output breaks its schema: {errors:#?}"
    );
    document
}

/// A copy of examples/hello-c whose build ships everything in its output folder, under a tag
/// of its own.
fn hello_project(name: &str, image: &TestImage, extra: &str) -> Project {
    let dir = project(name);
    let source = std::fs::read_to_string(repo().join("examples/hello-c/src/hello.c")).expect("src");
    let manifest = format!(
        r#"[builder]
image   = "gcc:local"
workdir = "/src"
run     = "gcc -O2 -static -s -o /out/hello hello.c"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["*"]

[runtime]
entrypoint = ["/hello"]

[image]
tags = ["{tag}"]
{extra}"#,
        tag = image.0,
    );
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("src/hello.c", &source)],
    );
    dir
}

/// Make the build also write `extra.bin` of [`EXTRA`] bytes.
fn add_an_output_file(dir: &Path) {
    let path = dir.join("dockception.toml");
    let text = std::fs::read_to_string(&path).expect("manifest");
    let text = text.replace(
        "hello.c\"\n",
        &format!("hello.c && head -c {EXTRA} /dev/urandom > /out/extra.bin\"\n"),
    );
    std::fs::write(path, text).expect("write manifest");
}

fn run(args: &[&str], dir: &Path) -> Output {
    dockception(args, dir)
}

fn image_size(image: &str) -> u64 {
    docker_stdout(&["image", "inspect", "-f", "{{.Size}}", image])
        .trim()
        .parse()
        .expect("a size")
}

fn image_id(image: &str) -> String {
    docker_stdout(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// Removes images by id when dropped (the first build's image loses its tag to the second).
struct RemoveIds(Vec<String>);

impl Drop for RemoveIds {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", id])
                .output();
        }
    }
}

#[test]
fn a_rebuild_with_one_more_file_diffs_as_exactly_that_file() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let image = TestImage::new("grow");
    let dir = hello_project("grow", &image, "");
    let first = run(&["build", "-q", "--format", "json"], dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = checked_json(&first.stdout);
    assert!(first["baseline"].is_null() && first["diff"].is_null());
    assert_eq!(first["waste"]["total_bytes"], 0);
    let first_id = image_id(&image.0);
    let _cleanup = RemoveIds(vec![first_id.clone()]);
    let first_size = image_size(&image.0);

    add_an_output_file(dir.path());
    let second = run(&["build", "-q", "--format", "json"], dir.path());
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second = checked_json(&second.stdout);
    let second_size = image_size(&image.0);
    assert_ne!(image_id(&image.0), first_id);

    let diff = &second["diff"];
    assert_eq!(second["baseline"]["source"], "the last build");
    assert_eq!(second["baseline"]["image_id"], first_id.as_str());
    // Exactly one file added, with its size; nothing else moved.
    assert_eq!(
        diff["files"]["added"],
        serde_json::json!([{"path": "/extra.bin", "before": null, "after": EXTRA, "delta_bytes": EXTRA}])
    );
    assert_eq!(diff["files"]["removed"], serde_json::json!([]));
    assert_eq!(diff["files"]["changed"], serde_json::json!([]));
    assert_eq!(diff["artifacts"]["added"][0]["path"], "/extra.bin");
    assert_eq!(diff["artifacts"]["changed"], serde_json::json!([]));
    // The image grew by the artifacts layer's growth, which is the file, as the engine sees it.
    assert_eq!(second_size - first_size, EXTRA, "docker image inspect");
    assert_eq!(diff["image"]["delta_bytes"], EXTRA);
    assert_eq!(diff["image"]["before"], first_size);
    assert_eq!(diff["image"]["after"], second_size);
    let roles = diff["roles"].as_array().expect("roles");
    let artifacts = roles
        .iter()
        .find(|r| r["role"] == "artifacts")
        .expect("an artifacts role");
    assert_eq!(artifacts["delta_bytes"], EXTRA);
    for other in roles.iter().filter(|r| r["role"] != "artifacts") {
        assert_eq!(other["delta_bytes"], 0, "{other}");
    }
    let layer = |report: &Value| -> u64 {
        report["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .filter(|l| l["role"] == "artifacts")
            .map(|l| l["content_bytes"].as_u64().expect("bytes"))
            .sum()
    };
    assert_eq!(layer(&second) - layer(&first), EXTRA);
    assert_eq!(second["runtime_bytes"], second_size);
    assert_eq!(second["sizes"]["content_bytes"], second_size);
    assert_eq!(diff["rules"][0]["before_files"], 1);
    assert_eq!(diff["rules"][0]["after_files"], 2);
    let listing = diff["listing"].as_str().expect("listing");
    assert!(
        listing.contains(&format!("\n+/extra.bin {EXTRA} 0644\n")),
        "{listing}"
    );
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.starts_with(['+', '-']))
            .count(),
        3,
        "headers and one added line: {listing}"
    );

    // Both reports are stored; `dockception report` shows the same comparison, in any format.
    let out = dir.path().join(".dockception");
    assert!(out.join("report.json").exists() && out.join("report.previous.json").exists());
    let report = run(&["report", "--format", "json"], dir.path());
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert_eq!(checked_json(&report.stdout)["diff"], *diff);
    let report = run(&["report"], dir.path());
    let stdout = text(&report.stdout);
    let summary = stdout.lines().next().expect("a summary line");
    assert!(
        summary.ends_with("+4.9 KiB (+0.73%) since the last build"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n    +  /extra.bin  +4.9 KiB  (4.9 KiB)\n"),
        "{stdout}"
    );
    let markdown = text(&run(&["report", "--format", "markdown"], dir.path()).stdout);
    assert!(
        markdown.contains("| added | `/extra.bin` |  | 4.9 KiB | +4.9 KiB |"),
        "{markdown}"
    );

    // Any earlier report or image is a baseline: the first image by id, the first report by file.
    let by_image = run(
        &["report", "--baseline", &first_id, "--format", "json"],
        dir.path(),
    );
    assert!(by_image.status.success(), "{}", text(&by_image.stderr));
    let by_image = checked_json(&by_image.stdout);
    assert_eq!(by_image["diff"]["files"], diff["files"]);
    assert_eq!(by_image["diff"]["image"], diff["image"]);
    assert_eq!(
        by_image["diff"]["rules"], diff["rules"],
        "rules known for our own image"
    );
    let saved = dir.path().join("first.json");
    std::fs::copy(out.join("report.previous.json"), &saved).expect("copy");
    let by_file = run(
        &["report", "--baseline", "first.json", "--format", "json"],
        dir.path(),
    );
    assert_eq!(checked_json(&by_file.stdout)["diff"], *diff);
}

#[test]
fn copy_and_add_layers_of_an_image_dockception_did_not_build_are_other() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("foreign-copy");
    write_files(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox:local\nCOPY app.txt /app.txt\nADD conf.txt /etc/conf.txt\n",
            ),
            ("app.txt", "an app\n"),
            ("conf.txt", "a conf\n"),
        ],
    );
    let foreign = TestImage::new("foreign-copy");
    // The classic builder records the steps as `#(nop) COPY` and `#(nop) ADD`.
    let built = std::process::Command::new("/usr/bin/docker")
        .args(["build", "-q", "-t", &foreign.0, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(dir.path())
        .output()
        .expect("docker build runs");
    assert!(built.status.success(), "{}", text(&built.stderr));

    let report = run(
        &["report", "--current", &foreign.0, "--format", "json"],
        dir.path(),
    );
    assert!(report.status.success(), "{}", text(&report.stderr));
    let report = checked_json(&report.stdout);
    let layers: Vec<(&str, &str)> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| !l["diff_id"].is_null())
        .map(|l| {
            (
                l["role"].as_str().expect("role"),
                l["created_by"].as_str().expect("created_by"),
            )
        })
        .collect();
    assert_eq!(layers.len(), 3, "{layers:?}");
    assert!(layers[1].1.contains("COPY "), "{layers:?}");
    assert!(layers[2].1.contains("ADD "), "{layers:?}");
    assert!(
        layers.iter().all(|(role, _)| *role == "other"),
        "{layers:?}"
    );
}

#[test]
fn a_wasteful_image_reports_what_it_wastes_and_a_dockception_image_nothing() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    // The 2014 lesson: a file deleted in a later layer still weighs in the image.
    let dir = project("wasteful");
    write_files(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\n\
             RUN head -c 300000 /dev/urandom > /junk.bin && head -c 1000 /dev/urandom > /conf\n\
             RUN rm /junk.bin && echo 123456789 > /conf\n",
        )],
    );
    let wasteful = TestImage::new("wasteful");
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &wasteful.0, "."])
        .current_dir(dir.path())
        .output()
        .expect("docker build runs");
    assert!(built.status.success(), "{}", text(&built.stderr));

    let report = run(
        &["report", "--current", &wasteful.0, "--format", "json"],
        dir.path(),
    );
    assert!(report.status.success(), "{}", text(&report.stderr));
    let report = checked_json(&report.stdout);
    let waste = &report["waste"];
    // All copies minus the survivor: the deleted file whole, the overwritten one's old copy.
    assert_eq!(waste["reclaimable_bytes"], 300_000 + 1000);
    assert_eq!(waste["duplicate_bytes"], 0);
    assert_eq!(
        waste["reclaimable"],
        serde_json::json!([
            {"path": "/junk.bin", "copies": 1, "stored_bytes": 300000, "surviving_bytes": 0, "reclaimable_bytes": 300000},
            {"path": "/conf", "copies": 2, "stored_bytes": 1010, "surviving_bytes": 10, "reclaimable_bytes": 1000},
        ])
    );
    assert_eq!(report["runtime_bytes"], image_size(&wasteful.0));
    let roles: Vec<&str> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["role"].as_str().expect("role"))
        .collect();
    assert_eq!(
        roles,
        ["other", "other", "other"],
        "no manifest, no base known"
    );

    let gated = run(
        &["report", "--current", &wasteful.0, "--max-waste", "0"],
        dir.path(),
    );
    let stdout = text(&gated.stdout);
    assert_eq!(gated.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("\n  FAIL  waste  293.9 KiB > max 0 B\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  /junk.bin  293.0 KiB  1 copy stored, 0 B survives\n"),
        "{stdout}"
    );

    // A dockception image on the same base: nothing to reclaim, and the base is recognised.
    let ours = TestImage::new("clean");
    let project_dir = hello_project("clean", &ours, "");
    let manifest = project_dir.path().join("dockception.toml");
    let text_manifest = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("[runtime]\n", "[runtime]\nbase = \"busybox:local\"\n");
    std::fs::write(&manifest, text_manifest).expect("write");
    let build = run(
        &["build", "-q", "--format", "json", "--max-waste", "0"],
        project_dir.path(),
    );
    assert!(build.status.success(), "{}", text(&build.stderr));
    let clean = checked_json(&build.stdout);
    assert_eq!(clean["waste"]["reclaimable_bytes"], 0);
    assert_eq!(clean["waste"]["total_bytes"], 0);
    assert_eq!(clean["gates"]["checks"][0]["status"], "PASS");
    let roles: Vec<&str> = clean["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["role"].as_str().expect("role"))
        .collect();
    assert_eq!(&roles[..2], ["base", "artifacts"], "{roles:?}");
    assert!(roles[2..].iter().all(|r| *r == "metadata"), "{roles:?}");
    assert_eq!(clean["base"]["image"], "busybox:local");
    assert_eq!(clean["base"]["bytes"], image_size("busybox:local"));
    assert_eq!(clean["runtime_bytes"], image_size(&ours.0));
}

/// Run `report` with `flags` on the project's two stored builds; return the exit status and
/// stdout.
fn gate(dir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["report"];
    args.extend_from_slice(flags);
    let out = run(&args, dir);
    (out.status.code(), text(&out.stdout) + &text(&out.stderr))
}

#[track_caller]
fn expect(dir: &Path, flags: &[&str], code: i32, line: &str) {
    let (status, output) = gate(dir, flags);
    assert_eq!(status, Some(code), "{flags:?}:\n{output}");
    assert!(
        output.contains(line),
        "{flags:?}: expected {line:?} in:\n{output}"
    );
}

#[test]
fn every_gate_passes_and_fails_with_its_exit_status() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let image = TestImage::new("gates");
    // The manifest's gates run with the build; the first build has no baseline yet.
    let dir = hello_project(
        "gates",
        &image,
        "\n[gates]\nmax_image_size = \"1 MiB\"\nrequire_baseline = true\n",
    );
    let first = run(&["build", "-q"], dir.path());
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(3),
        "{stdout}{}",
        text(&first.stderr)
    );
    assert!(
        stdout.contains("\n  FAIL  baseline    required, but there is none"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("gates: FAIL (a baseline was required and is missing, 1 passed)\n"),
        "{stdout}"
    );
    assert!(
        image_exists(&image.0),
        "the image is built and tagged all the same"
    );
    let first_id = image_id(&image.0);
    let mut cleanup = RemoveIds(vec![first_id.clone()]);
    assert!(
        dir.path().join(".dockception/report.json").exists(),
        "and its report stored"
    );

    add_an_output_file(dir.path());
    let second = run(&["build", "-q", "--format", "json"], dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let second = checked_json(&second.stdout);
    cleanup.0.push(image_id(&image.0));
    assert_eq!(second["gates"]["status"], "PASS");
    assert_eq!(second["gates"]["exit_code"], 0);
    let size = second["runtime_bytes"].as_u64().expect("size");
    assert!(size > 600 * 1024 && size < 1024 * 1024, "{size}");

    // A manifest gate fails the build (exit 1), after printing and storing the report.
    let manifest = dir.path().join("dockception.toml");
    let original = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, original.replace("\"1 MiB\"", "\"100 KiB\"")).expect("write");
    let failing = run(&["build", "-q", "--format", "json"], dir.path());
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    let failing_json = checked_json(&failing.stdout);
    cleanup.0.push(image_id(&image.0));
    assert_eq!(failing_json["gates"]["checks"][0]["gate"], "image_size");
    assert_eq!(failing_json["gates"]["checks"][0]["status"], "FAIL");
    assert_eq!(failing_json["gates"]["exit_code"], 1);
    assert!(text(&failing.stderr).contains("error: gates: FAIL (1 failed, 1 passed)"));
    // The flag overrides the manifest's key of the same name.
    let rebuilt = run(&["build", "-q", "--max-image-size", "1MiB"], dir.path());
    assert_eq!(rebuilt.status.code(), Some(0), "{}", text(&rebuilt.stdout));
    // From here on only the flags gate, so each case shows one gate.
    let gates_table = "\n[gates]\nmax_image_size = \"1 MiB\"\nrequire_baseline = true\n";
    assert!(original.contains(gates_table));
    std::fs::write(&manifest, original.replace(gates_table, "")).expect("write");
    // Compare the two builds that differ by the extra file.
    let stored = dir.path().join(".dockception");
    std::fs::copy(stored.join("report.json"), dir.path().join("second.json")).expect("copy");
    let first_report = dir.path().join("first.json");
    let first_json = run(
        &["report", "--current", &first_id, "--format", "json"],
        dir.path(),
    );
    std::fs::write(&first_report, &first_json.stdout).expect("write");
    let pair = ["--current", "second.json", "--baseline", "first.json"];
    let with = |flags: &[&'static str]| -> Vec<&str> {
        let mut all: Vec<&str> = pair.to_vec();
        all.extend_from_slice(flags);
        all
    };
    let d = dir.path();

    // image size: pass, warn, fail.
    expect(
        d,
        &with(&["--max-image-size", "10MiB"]),
        0,
        "  PASS  image_size",
    );
    expect(
        d,
        &with(&["--warn-image-size", "100KiB"]),
        0,
        "  WARN  image_size  ",
    );
    expect(
        d,
        &with(&["--warn-image-size", "100KiB"]),
        0,
        "gates: WARN (1 warned)",
    );
    expect(
        d,
        &with(&["--max-image-size", "100KiB"]),
        1,
        "  FAIL  image_size  ",
    );
    // growth in bytes: the image grew by exactly EXTRA.
    expect(
        d,
        &with(&["--max-growth", "5000"]),
        0,
        "  PASS  growth  +4.9 KiB <= max +4.9 KiB",
    );
    expect(
        d,
        &with(&["--max-growth", "4999"]),
        1,
        "  FAIL  growth  +4.9 KiB > max +4.9 KiB",
    );
    // growth in percent: +0.73 %, only above the floor.
    expect(
        d,
        &with(&["--max-growth-percent", "1", "--growth-floor", "1000"]),
        0,
        "  PASS  growth_percent  +0.73% <= max +1%",
    );
    expect(
        d,
        &with(&["--max-growth-percent", "0.5", "--growth-floor", "1000"]),
        1,
        "  FAIL  growth_percent  +0.73% > max +0.5%",
    );
    expect(
        d,
        &with(&["--max-growth-percent", "0.5"]),
        0,
        "  SKIP  growth_percent  grew +4.9 KiB, under the 64.0 KiB floor",
    );
    // the largest artifact is the 667 KiB binary.
    expect(
        d,
        &with(&["--max-artifact-size", "1MiB"]),
        0,
        "  PASS  artifact_size  largest /hello",
    );
    expect(
        d,
        &with(&["--max-artifact-size", "100KiB"]),
        1,
        "  FAIL  artifact_size  largest /hello",
    );
    // waste: a dockception image has none (the failing side is in the wasteful-image test).
    expect(
        d,
        &with(&["--max-waste", "0"]),
        0,
        "  PASS  waste  0 B <= max 0 B",
    );
    // reduction: about 540x smaller than gcc:local.
    expect(
        d,
        &with(&["--min-reduction", "100x"]),
        0,
        "  PASS  reduction  ",
    );
    expect(
        d,
        &with(&["--min-reduction", "10000"]),
        1,
        "  FAIL  reduction  ",
    );
    // several at once: one failure fails them all, warnings do not.
    expect(
        d,
        &with(&[
            "--warn-image-size",
            "100KiB",
            "--max-waste",
            "0",
            "--min-reduction",
            "10000",
        ]),
        1,
        "gates: FAIL (1 failed, 1 warned, 1 passed)",
    );

    // A baseline that is required and missing: exit 3; a named one that does not exist too.
    expect(
        d,
        &["--current", "second.json", "--require-baseline"],
        3,
        "gates: FAIL (a baseline was required and is missing)",
    );
    expect(d, &["--current", "second.json"], 0, "no baseline");
    expect(
        d,
        &with(&["--require-baseline"]),
        0,
        "  PASS  baseline  present",
    );
    expect(
        d,
        &["--baseline", "missing.json"],
        3,
        "the baseline missing.json does not exist: no such file",
    );
    expect(
        d,
        &["--baseline", "dockception-test/none:missing"],
        3,
        "the baseline dockception-test/none:missing does not exist",
    );
    let failed_build = run(&["build", "--baseline", "missing.json"], d);
    assert_eq!(
        failed_build.status.code(),
        Some(3),
        "checked before building"
    );
    assert!(
        !text(&failed_build.stderr).contains("==> building"),
        "{}",
        text(&failed_build.stderr)
    );

    // Misconfigured gates: exit 2, nothing checked.
    expect(
        d,
        &["--warn-image-size", "2MiB", "--max-image-size", "1MiB"],
        2,
        "warn_image_size (2.0 MiB) is above max_image_size (1.0 MiB)",
    );
    expect(
        d,
        &["--max-image-size", "10 XB"],
        2,
        "--max-image-size \"10 XB\": unknown size unit \"xb\"",
    );
}

const MANIFEST: &str = r#"[builder]
image = "gcc:local"
run = "true"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app"]
"#;

/// Like the CLI tests: an engine that does not exist proves nothing reached it.
fn offline(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("dockception runs");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn misconfigured_manifest_gates_exit_2_before_any_engine_is_asked() {
    let dir = project("gateconfig");
    for (gates, expected) in [
        (
            "[gates]\nmax_waste = \"lots\"\n",
            "error: misconfigured gate: dockception.toml:13:13: gates.max_waste: \"lots\" is not a size\n   |\n13 | max_waste = \"lots\"\n   |             ^^^^^^\n   = help: write a number of bytes or a size such as \"20 MiB\", \"1.5 MB\" or \"512 KiB\"\n",
        ),
        (
            "[gates]\nmax_image_sise = 1000\n",
            "error: misconfigured gate: dockception.toml:13:1: unknown key `max_image_sise` in `gates`\n   |\n13 | max_image_sise = 1000\n   | ^^^^^^^^^^^^^^\n   = help: did you mean `max_image_size`?\n",
        ),
        (
            "[gates]\nmax_growth_percent = -5\n",
            "error: misconfigured gate: dockception.toml:13:22: gates.max_growth_percent: -5 is not a valid threshold",
        ),
        (
            "[gates]\nrequire_baseline = \"yes\"\n",
            "error: misconfigured gate: dockception.toml:13:20: `gates.require_baseline` must be a boolean, not a string",
        ),
    ] {
        write_files(
            dir.path(),
            &[
                ("dockception.toml", &format!("{MANIFEST}\n{gates}")),
                ("src/app.c", ""),
            ],
        );
        // `plan` is the dry run CI uses: it checks the gates as `build` does.
        for command in [&["build"][..], &["report"][..], &["plan"][..]] {
            let (code, stderr) = offline(command, dir.path());
            assert_eq!(code, Some(2), "{command:?} {gates}: {stderr}");
            assert!(stderr.starts_with(expected), "{command:?} {gates}:\n{stderr}");
        }
    }
    assert!(!dir.path().join(".dockception").exists(), "nothing ran");
}

#[test]
fn report_without_a_build_says_what_to_do() {
    let dir = project("nobuild");
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", "")],
    );
    let (code, stderr) = offline(&["report"], dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("report.json: no such file; build first"),
        "{stderr}"
    );
    let empty = project("nomanifest");
    let (code, stderr) = offline(&["report"], empty.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("there is no dockception.toml here"),
        "{stderr}"
    );
}

/// `--set` and `DOCKCEPTION_VAR_*` reach `[gates]` too: the manifest is read once, so the gates
/// see the variables the plan sees (they were read again without them: `${TAG}` was undefined
/// and `${LIMIT}` kept its `[vars]` value).
#[test]
fn set_and_environment_variables_reach_the_gates() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let image = TestImage::new("gatevars");
    let dir = project("gatevars");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            "[vars]\nLIMIT = \"1 B\"\n\n[builder]\nimage = \"busybox:local\"\nrun = \"echo hi > /out/app\"\n\n[artifacts]\ninclude = [\"app\"]\n\n[image]\ntags = [\"${TAG}\"]\n\n[gates]\nmax_image_size = \"${LIMIT}\"\n",
        )],
    );
    let tag = format!("TAG={}", image.0);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("DOCKCEPTION_VAR_TAG")
            .env_remove("DOCKCEPTION_VAR_LIMIT")
            .envs(env.iter().copied())
            .output()
            .expect("dockception runs");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = run(&["build", "-q", "--set", &tag, "--set", "LIMIT=1 MiB"], &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("gates: PASS"), "{stdout}");
    assert!(image_exists(&image.0), "tagged with --set TAG");

    // From the environment, for `build` and `report` alike.
    let env = [
        ("DOCKCEPTION_VAR_TAG", image.0.as_str()),
        ("DOCKCEPTION_VAR_LIMIT", "1 MiB"),
    ];
    let (code, stdout, stderr) = run(&["build", "-q"], &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = run(&["report"], &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("gates: PASS"), "{stdout}");

    // Without the override the gate has the manifest's 1 B, and fails.
    let (code, stdout, stderr) = run(&["build", "-q", "--set", &tag], &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("gates: FAIL"), "{stdout}");
}
