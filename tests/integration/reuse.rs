//! Content-addressed reuse, against the real engine: a build whose inputs equal an earlier
//! build's (an edit undone) runs no container and gives that build's image id; the store keeps
//! `builder.reuse_limit` bytes, evicting the builds used longest ago; `cache rm` empties it; a
//! kept output changed or deleted in the store is not reused. That no builder ran is read
//! from the engine's events for the project's label and from the report's facts (a run
//! through the warm builder's channel makes no event), never from a timer.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::*;

fn manifest(limit: Option<&str>) -> String {
    let limit = limit
        .map(|l| format!("reuse_limit = {l}\n"))
        .unwrap_or_default();
    format!(
        r#"
[builder]
image = "busybox:local"
workdir = "/src"
run = "cp app.txt /out/app.txt && mkdir -p /out/docs && cp README /out/docs/"
{limit}
[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app.txt"]

[runtime]
user = "65534:65534"
"#
    )
}

/// Source files written long before the first scan, so their stored digests are trusted.
fn write_aged(dir: &Path, files: &[(&str, &str)]) {
    write_files(dir, files);
    let old = SystemTime::now() - Duration::from_secs(3600);
    for (path, _) in files {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(path))
            .expect("open");
        file.set_modified(old).expect("set mtime");
    }
}

/// Build in `dir`: the JSON report, stderr, and the builder runs meanwhile: the containers
/// and execs the engine made for the project (from `docker events`), and a run through the
/// warm builder's channel, which the engine does not see, from the report's facts (the
/// command's time is there only when the command ran).
fn build(dir: &Path, image: &TestImage) -> (serde_json::Value, String, Vec<String>) {
    let started = unix_now();
    let result = dockception(&["build", "--tag", &image.0, "--format", "json"], dir);
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("a JSON report");
    let mut runs = created_containers(dir, started);
    let seen_by_engine = runs
        .iter()
        .any(|r| r.starts_with("exec_create") || r.starts_with("create dockception-build"));
    if !reports[0]["build_command_ms"].is_null() && !seen_by_engine {
        runs.push("a request through the warm builder's channel".into());
    }
    (reports[0].clone(), stderr, runs)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The builder runs of `dir`'s project since `since` (seconds), from the engine's events: a
/// fresh builder container's `create`, or an `exec_create` in the warm builder (on by
/// default), whose own `create` is not a run. Any other container the project's builds make
/// (`dockception-files`, `-steps`) counts too; the mode probe, made once, does not.
fn created_containers(dir: &Path, since: f64) -> Vec<String> {
    docker_stdout(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{:.3}", unix_now()),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        "event=exec_create",
        "--filter",
        &format!("label=dockception.project={}", project_label(dir)),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ])
    .lines()
    .filter(|line| {
        !(line.starts_with("create dockception-warm-")
            || line.starts_with("create dockception-probe-"))
    })
    .map(str::to_string)
    .collect()
}

#[test]
fn undoing_an_edit_reuses_the_first_build_and_runs_no_container() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("reuse");
    write_aged(
        dir.path(),
        &[
            ("dockception.toml", &manifest(None)),
            ("src/app.txt", "one\n"),
            ("src/README", "docs\n"),
            ("src/other.txt", "unchanged\n"),
        ],
    );
    let image = TestImage::new("reuse");

    let (first, stderr, created) = build(dir.path(), &image);
    assert!(first["reused_from"].is_null(), "{first}");
    assert_eq!(
        created.len(),
        1,
        "the first build runs its builder: {stderr}"
    );

    write_files(dir.path(), &[("src/app.txt", "two\n")]);
    let (second, stderr, created) = build(dir.path(), &image);
    assert!(second["reused_from"].is_null(), "{second}");
    assert_eq!(created.len(), 1, "{stderr}");
    assert_ne!(second["image_id"], first["image_id"]);
    assert_eq!(
        second["source_files_hashed"], 1,
        "only the changed file is read"
    );
    assert_eq!(second["source_files"], 3, "{second}");

    // The edit undone: the first build's inputs again.
    write_files(dir.path(), &[("src/app.txt", "one\n")]);
    let (third, stderr, created) = build(dir.path(), &image);
    assert_eq!(created, Vec::<String>::new(), "no container: {stderr}");
    assert!(!stderr.contains("==> building in"), "{stderr}");
    assert!(third["reused_from"].is_string(), "{third}");
    assert_eq!(third["up_to_date"], false);
    assert_eq!(third["build_command_ms"], serde_json::Value::Null);
    assert_eq!(third["image_id"], first["image_id"]);
    assert_eq!(third["source_files_hashed"], 1);
    // The tag is on the first build's image, and its output is the target's output again.
    let tagged = docker_stdout(&["image", "inspect", "--format", "{{.Id}}", &image.0]);
    assert_eq!(tagged.trim(), first["image_id"].as_str().expect("id"));
    let kept = std::fs::read_to_string(dir.path().join(".dockception/last/app.txt"));
    assert_eq!(kept.expect("last output").as_str(), "one\n");

    // Nothing changed since: up to date, as before.
    let (fourth, _, created) = build(dir.path(), &image);
    assert_eq!(fourth["up_to_date"], true, "{fourth}");
    assert_eq!(created, Vec::<String>::new());
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());

    // `clean --caches` takes the kept builds with the other caches.
    let store = dir.path().join(".dockception/reuse");
    assert!(store.is_dir());
    let cleaned = dockception(&["clean", "--caches"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert!(
        text(&cleaned.stdout).contains(&format!("removed kept builds {}", store.display())),
        "{}",
        text(&cleaned.stdout)
    );
    assert!(!store.exists());
}

/// `cache ls` lines of the kept builds: their image ids (short).
fn kept_images(dir: &Path) -> Vec<String> {
    let result = dockception(&["cache", "ls"], dir);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    let Some((_, table)) = stdout.split_once("\nTARGET ") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .map(|l| {
            l.split_whitespace()
                .nth(2)
                .expect("image column")
                .to_string()
        })
        .collect()
}

fn short(report: &serde_json::Value) -> String {
    report["image_id"].as_str().expect("id")["sha256:".len()..][..12].to_string()
}

#[test]
fn the_store_keeps_its_limit_evicting_the_oldest_and_cache_rm_empties_it() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("reuse-limit");
    // Each output is 1,000 + 5 bytes (app.txt and docs/README): two fit, three do not.
    let body = |c: char| format!("{}\n", c.to_string().repeat(999));
    write_aged(
        dir.path(),
        &[
            ("dockception.toml", &manifest(Some("\"2.5 kB\""))),
            ("src/app.txt", &body('a')),
            ("src/README", "docs\n"),
        ],
    );
    let image = TestImage::new("reuse-limit");
    let (a, _, _) = build(dir.path(), &image);
    write_files(dir.path(), &[("src/app.txt", &body('b'))]);
    let (b, _, _) = build(dir.path(), &image);
    assert_eq!(kept_images(dir.path()), [short(&a), short(&b)]);
    write_files(dir.path(), &[("src/app.txt", &body('c'))]);
    let (c, _, _) = build(dir.path(), &image);
    assert_eq!(
        kept_images(dir.path()),
        [short(&b), short(&c)],
        "a went first"
    );

    // b is kept: reused. a was evicted: built again (the same image, as builds are
    // reproducible), and kept again in place of c, now used longest ago.
    write_files(dir.path(), &[("src/app.txt", &body('b'))]);
    let (again_b, _, created) = build(dir.path(), &image);
    assert!(again_b["reused_from"].is_string(), "{again_b}");
    assert_eq!(created, Vec::<String>::new());
    write_files(dir.path(), &[("src/app.txt", &body('a'))]);
    let (again_a, _, created) = build(dir.path(), &image);
    assert!(again_a["reused_from"].is_null(), "{again_a}");
    assert_eq!(created.len(), 1);
    assert_eq!(again_a["image_id"], a["image_id"]);
    assert_eq!(kept_images(dir.path()), [short(&b), short(&a)]);

    // cache rm empties the store: switching back to b builds.
    let removed = dockception(&["cache", "rm"], dir.path());
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(
        text(&removed.stdout).contains("removed 2 kept build(s) of target default"),
        "{}",
        text(&removed.stdout)
    );
    assert_eq!(kept_images(dir.path()), Vec::<String>::new());
    assert!(!dir.path().join(".dockception/reuse").exists());
    write_files(dir.path(), &[("src/app.txt", &body('b'))]);
    let (built_b, _, created) = build(dir.path(), &image);
    assert!(built_b["reused_from"].is_null(), "{built_b}");
    assert_eq!(created.len(), 1);
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn a_kept_output_changed_or_deleted_in_the_store_is_not_reused() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("reuse-tamper");
    write_aged(
        dir.path(),
        &[
            ("dockception.toml", &manifest(None)),
            ("src/app.txt", "one\n"),
            ("src/README", "docs\n"),
        ],
    );
    let image = TestImage::new("reuse-tamper");
    let store = dir.path().join(".dockception/reuse");
    let only_entry = |skip: &[std::path::PathBuf]| {
        let mut entries: Vec<_> = std::fs::read_dir(&store)
            .expect("the store")
            .flatten()
            .map(|e| e.path())
            .filter(|p| !skip.contains(p))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.remove(0)
    };
    let (one, _, _) = build(dir.path(), &image);
    let one_entry = only_entry(&[]);
    write_files(dir.path(), &[("src/app.txt", "two\n")]);
    let (two, _, _) = build(dir.path(), &image);
    let two_entry = only_entry(std::slice::from_ref(&one_entry));
    write_files(dir.path(), &[("src/app.txt", "three\n")]);
    build(dir.path(), &image);

    // One's artifact rewritten in place (same size), two's second file deleted.
    std::fs::write(one_entry.join("output/app.txt"), "0ne\n").expect("tamper");
    std::fs::remove_file(two_entry.join("output/docs/README")).expect("delete");

    write_files(dir.path(), &[("src/app.txt", "one\n")]);
    let (again, stderr, created) = build(dir.path(), &image);
    assert!(again["reused_from"].is_null(), "{again}");
    assert_eq!(created.len(), 1, "built again: {stderr}");
    assert!(
        stderr.contains("its kept output cannot be reused: app.txt changed in the stored output"),
        "{stderr}"
    );
    assert_eq!(again["image_id"], one["image_id"]);

    write_files(dir.path(), &[("src/app.txt", "two\n")]);
    let (again, stderr, created) = build(dir.path(), &image);
    assert!(again["reused_from"].is_null(), "{again}");
    assert_eq!(created.len(), 1, "{stderr}");
    assert!(
        stderr.contains("docs/README is gone from the stored output"),
        "{stderr}"
    );
    assert_eq!(again["image_id"], two["image_id"]);
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}
