//! The manifest as a language, through the real binary and without an engine: every bad
//! manifest under tests/fixtures/bad/ gives exactly its snapshot (tests/fixtures/bad/*.stderr),
//! and the examples plan, validate against the schema, and select targets as documented.
//!
//! A changed or missing snapshot fails. To accept new messages on purpose:
//! `DOCKCEPTION_BLESS=1 cargo test --test integration -- manifest::`, then review the diff of
//! the .stderr files.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn plan(args: &[&str], cwd: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("plan")
        .args(args)
        .current_dir(cwd)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("DOCKCEPTION_VAR_TAG")
        .output()
        .expect("dockception runs");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn every_bad_manifest_gives_its_snapshot() {
    let dir = repo().join("tests/fixtures/bad");
    let bless = blessing();
    let mut manifests: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/bad")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    manifests.sort();
    assert!(
        manifests.len() >= 30,
        "the corpus has {} manifests",
        manifests.len()
    );
    let root = repo().display().to_string();
    let mut mismatches = Vec::new();
    for manifest in &manifests {
        let relative = manifest.strip_prefix(repo()).expect("inside the repo");
        let (code, stdout, stderr) = plan(&["-f", relative.to_str().expect("utf-8")], &repo());
        // A misconfigured gate is exit status 2 (README: Gates), any other mistake 1.
        let gates_only = relative
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("gates-"));
        let status = if gates_only { 2 } else { 1 };
        assert_eq!(code, Some(status), "{}: {stderr}", relative.display());
        assert!(stdout.is_empty(), "{}: printed a plan", relative.display());
        assert!(
            !stderr.contains("panicked"),
            "{}: {stderr}",
            relative.display()
        );
        let got = stderr.replace(&root, "$REPO");
        if let Err(problem) = check_snapshot(&manifest.with_extension("stderr"), &got, bless) {
            mismatches.push(problem);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} snapshots differ or are missing:\n\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_error_points_at_file_line_and_column_with_a_caret_and_a_fix() {
    let dir = repo().join("tests/fixtures/bad");
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "stderr") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text.replacen("error: misconfigured gate: ", "error: ", 1);
        assert!(
            text.starts_with("error: tests/fixtures/bad/"),
            "{}",
            path.display()
        );
        let location = text.lines().next().unwrap_or_default();
        let mut parts = location.split(':').skip(2);
        let line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
        let column: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!(line >= 1 && column >= 1, "{}: {location}", path.display());
        assert!(text.contains(" | "), "{}: no source line", path.display());
        assert!(text.contains('^'), "{}: no caret", path.display());
        assert!(text.contains("= help: "), "{}: no fix", path.display());
    }
}

#[test]
fn every_example_plans_to_stable_json() {
    let mut manifests = vec![repo().join("dockception.toml")];
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples") {
        let manifest = entry.expect("entry").path().join("dockception.toml");
        if manifest.exists() {
            manifests.push(manifest);
        }
    }
    // The root manifest mounts the crates `cargo xtask image` vendors first, and the host's
    // toolchain: point them at folders that exist on any checkout.
    let src = repo().join("src");
    let set_vendor = format!("VENDOR={}", src.display());
    let set_sysroot = format!("RUST_SYSROOT={}", src.display());
    for manifest in manifests {
        let mut args = vec!["--format", "json", "-f", manifest.to_str().expect("utf-8")];
        let text = std::fs::read_to_string(&manifest).expect("read");
        if text.contains("${VENDOR}") || text.contains("${RUST_SYSROOT}") {
            args.extend(["--set", &set_vendor, "--set", &set_sysroot]);
        }
        let (code, stdout, stderr) = plan(&args, &repo());
        assert_eq!(code, Some(0), "{}: {stderr}", manifest.display());
        let plan: serde_json::Value = serde_json::from_str(&stdout).expect("plan JSON");
        assert_eq!(plan["manifest"], manifest.to_str().expect("utf-8"));
        let order = plan["order"].as_array().expect("order");
        let targets = plan["targets"].as_array().expect("targets");
        assert_eq!(order.len(), targets.len());
        for (name, target) in order.iter().zip(targets) {
            assert_eq!(&target["target"], name);
            assert!(target["builder"]["image"].is_string());
            assert!(target["builder"]["command"]
                .as_array()
                .is_some_and(|c| !c.is_empty()));
            for mount in target["builder"]["mounts"].as_array().expect("mounts") {
                let source = mount["source"].as_str().expect("source");
                assert!(Path::new(source).is_absolute() && Path::new(source).exists());
            }
            assert!(target["artifacts"]["include"]
                .as_array()
                .is_some_and(|i| !i.is_empty()));
            assert!(target["runtime"]["base"].is_string());
            assert!(target["tags"].is_array());
        }
    }
}

#[test]
fn the_compilation_images_example_orders_and_selects_targets() {
    let manifest = repo().join("examples/compilation-images/dockception.toml");
    let m = manifest.to_str().expect("utf-8");
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--format", "json", "-f", m];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = plan(&all, &repo());
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(&stdout).expect("plan JSON")
    };
    let everything = json(&[]);
    assert_eq!(everything["order"], serde_json::json!(["build", "run"]));
    assert_eq!(everything["selected"], serde_json::json!(["build", "run"]));
    let run = &everything["targets"][1];
    assert_eq!(run["artifacts_from"], "build");
    assert_eq!(run["artifacts"]["subdir"], "bin");
    assert_eq!(run["tags"], serde_json::json!(["compilation:latest"]));

    let only_run = json(&["run"]);
    assert_eq!(
        only_run["order"],
        serde_json::json!(["build", "run"]),
        "run needs build"
    );
    assert_eq!(only_run["selected"], serde_json::json!(["run"]));

    let group = json(&["images", "--tag", "run=app:1", "--set", "TAG=2"]);
    assert_eq!(group["selected"], serde_json::json!(["build", "run"]));
    assert_eq!(
        group["targets"][0]["tags"],
        serde_json::json!(["compilation-build:2"])
    );
    assert_eq!(group["targets"][1]["tags"], serde_json::json!(["app:1"]));
    assert_eq!(group["vars"]["TAG"], "2");

    let (code, _, stderr) = plan(&["-f", m, "rnu"], &repo());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`rnu` is not a target or group"),
        "{stderr}"
    );
    assert!(stderr.contains("help: did you mean `run`?"), "{stderr}");

    let (code, _, stderr) = plan(&["-f", m, "--tag", "app:1"], &repo());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("write --tag TARGET=app:1"), "{stderr}");

    // A --tag is checked like the manifest's tags, and two targets never share one.
    let (code, _, stderr) = plan(&["-f", m, "--tag", "run=App:1"], &repo());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--tag App:1: the image reference has uppercase letters")
            && stderr.contains("help: write \"app:1\""),
        "{stderr}"
    );
    let (code, _, stderr) = plan(&["-f", m, "--tag", "run=compilation-build"], &repo());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("targets `build` and `run` would both be tagged compilation-build"),
        "{stderr}"
    );
    // The same tag is fine for a target whose image is not built this time.
    let (code, _, stderr) = plan(&["-f", m, "run", "--tag", "run=compilation-build"], &repo());
    assert_eq!(code, Some(0), "{stderr}");
}

/// `default` where README.md and the example put it (a top-level key, above the first table)
/// is what a bare `plan`/`build` selects; names on the command line and `--all` replace it.
#[test]
fn the_default_selection_is_what_a_bare_run_builds() {
    let example =
        std::fs::read_to_string(repo().join("examples/compilation-images/dockception.toml"))
            .expect("the example");
    let first_table = example.find("\n[").expect("a table");
    let at = example
        .find("\ndefault = \"images\"\n")
        .expect("the example sets default");
    assert!(
        at < first_table,
        "default is a top-level key, above the first table"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let snippet = readme
        .split_once("(`examples/compilation-images/dockception.toml`):\n\n```toml\n")
        .map(|(_, rest)| rest.split("```").next().unwrap_or(rest))
        .expect("README.md shows the targets example");
    let line = snippet
        .lines()
        .position(|l| l.starts_with("default = "))
        .expect("README shows default");
    let table = snippet
        .lines()
        .position(|l| l.starts_with('['))
        .expect("a table");
    assert!(
        line < table,
        "README.md puts default above the first table:\n{snippet}"
    );

    // The example's default is every target, which is also what no default gives: select
    // one target with it, at the same place, to see it work.
    let dir = project("default");
    let manifest = example.replace("\ndefault = \"images\"\n", "\ndefault = \"run\"\n");
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("src/go.mod", "")],
    );
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = plan(&all, dir.path());
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(&stdout).expect("plan JSON")
    };
    let bare = json(&[]);
    assert_eq!(bare["selected"], serde_json::json!(["run"]));
    assert_eq!(
        bare["order"],
        serde_json::json!(["build", "run"]),
        "run needs build"
    );
    assert_eq!(
        json(&["--all"])["selected"],
        serde_json::json!(["build", "run"])
    );
    assert_eq!(json(&["build"])["selected"], serde_json::json!(["build"]));
    let list = manifest.replace("\ndefault = \"run\"\n", "\ndefault = [\"build\"]\n");
    write_files(dir.path(), &[("dockception.toml", &list)]);
    assert_eq!(json(&[])["selected"], serde_json::json!(["build"]));
}

#[test]
fn variables_come_from_the_manifest_then_the_environment_then_set() {
    let dir = project("vars");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            "[vars]\nTAG = \"manifest\"\nBASE = \"scratch\"\n\n[builder]\nimage = \"gcc:${GCC:-local}\"\nrun = \"echo $${HOME} ${TAG} > /out/app\"\n\n[artifacts]\ninclude = [\"app\"]\n\n[runtime]\nbase = \"${BASE}\"\n\n[image]\ntags = [\"app:${TAG}\"]\n",
        )],
    );
    let run = |env: &[(&str, &str)], args: &[&str]| -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["plan", "--format", "json"])
            .args(args)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let plain = run(&[], &[]);
    let target = &plain["targets"][0];
    assert_eq!(target["builder"]["image"], "gcc:local");
    assert_eq!(
        target["builder"]["command"][2],
        "echo ${HOME} manifest > /out/app"
    );
    assert_eq!(target["tags"][0], "app:manifest");
    let env = run(&[("DOCKCEPTION_VAR_TAG", "env")], &[]);
    assert_eq!(env["targets"][0]["tags"][0], "app:env");
    let set = run(&[("DOCKCEPTION_VAR_TAG", "env")], &["--set", "TAG=set"]);
    assert_eq!(set["targets"][0]["tags"][0], "app:set");
    let gcc = run(&[("DOCKCEPTION_VAR_GCC", "12")], &[]);
    assert_eq!(gcc["targets"][0]["builder"]["image"], "gcc:12");
}

#[test]
fn examples_validate_against_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&dockception::manifest_schema()).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut manifests = vec![repo().join("dockception.toml")];
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples") {
        let manifest = entry.expect("entry").path().join("dockception.toml");
        if manifest.exists() {
            manifests.push(manifest);
        }
    }
    for manifest in &manifests {
        let document: toml::Value =
            toml::from_str(&std::fs::read_to_string(manifest).expect("read")).expect("TOML");
        let json = serde_json::to_value(&document).expect("as JSON");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", manifest.display());
    }
    // And the schema does reject what the loader rejects.
    let bad: toml::Value = toml::from_str("[builder]\nimgae = \"x\"\n").expect("TOML");
    assert!(!validator.is_valid(&serde_json::to_value(&bad).expect("json")));
}

#[test]
fn init_writes_a_starter_once() {
    let dir = project("init");
    write_files(
        dir.path(),
        &[
            ("go.mod", "module example.com/x\n"),
            ("main.go", "package main\n"),
        ],
    );
    let out = Command::new(BIN)
        .arg("init")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("for a Go project"));
    let written = std::fs::read_to_string(dir.path().join("dockception.toml")).expect("written");
    assert!(written.contains("CGO_ENABLED"));
    let (code, _, stderr) = plan(&[], dir.path());
    assert_eq!(code, Some(0), "the starter plans: {stderr}");
    let again = Command::new(BIN)
        .arg("init")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dockception.toml")).expect("unchanged"),
        written
    );
}
