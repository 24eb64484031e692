//! Several targets in one build, against the real engine: targets that do not depend on each
//! other build at the same time, the reports come back in the plan's order, what each prints is
//! marked with its name, a target taking artifacts from another waits for it, the up-to-date
//! check holds per target, and one target failing, or Ctrl-C, stops the others and leaves
//! nothing behind.

use std::path::Path;

use crate::support::*;

/// A builder script that marks `me` started in /shared, then waits for `other` to have
/// started too. Run one after the other, the first would wait in vain: it gives up after a
/// minute and fails the build, naming what it waited for.
fn meet(me: &str, other: &str) -> String {
    format!(
        "touch /shared/{me}-started; i=0; until [ -f /shared/{other}-started ]; do i=$((i+1)); \
         [ $i -gt 600 ] && echo '{other} never started while {me} ran' && exit 9; sleep 0.1; done; \
         echo {me} sees {other}; busybox cp /bin/busybox /out/busybox; echo {me} > /out/msg"
    )
}

/// A target on scratch that ships busybox and a message, and prints the message.
fn target(name: &str, run: &str, mounts: &[(&str, &str, bool)]) -> String {
    let mut text = format!(
        "[targets.{name}]\nbuilder.image = \"busybox:local\"\nbuilder.run = {run:?}\n\
         artifacts.include = [\"busybox\", \"msg\"]\n\
         runtime.entrypoint = [\"/busybox\", \"cat\", \"/msg\"]\n"
    );
    for (source, at, writable) in mounts {
        text.push_str(&format!(
            "\n[[targets.{name}.mount]]\nsource = {source:?}\ntarget = {at:?}\nread_only = {}\n",
            !writable
        ));
    }
    text + "\n"
}

fn build_json(dir: &Path, tags: &[&TestImage; 2], names: [&str; 2]) -> (serde_json::Value, String) {
    let tag_args: Vec<String> = names
        .iter()
        .zip(tags)
        .map(|(name, image)| format!("{name}={}", image.0))
        .collect();
    let result = dockception(
        &[
            "build",
            "--format",
            "json",
            "--tag",
            &tag_args[0],
            "--tag",
            &tag_args[1],
        ],
        dir,
    );
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    (
        serde_json::from_slice(&result.stdout).expect("JSON reports"),
        stderr,
    )
}

fn field<'a>(reports: &'a serde_json::Value, key: &str) -> Vec<&'a serde_json::Value> {
    reports
        .as_array()
        .expect("an array of reports")
        .iter()
        .map(|r| &r[key])
        .collect()
}

/// No run folder of any target is left.
fn assert_no_run_folders(dir: &Path) {
    let targets = dir.join(".dockception/targets");
    for target in std::fs::read_dir(&targets).expect("targets").flatten() {
        let runs = target.path().join("runs");
        if runs.exists() {
            let left: Vec<_> = std::fs::read_dir(&runs)
                .expect("runs")
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(left.is_empty(), "run folders left: {left:?}");
        }
    }
}

#[test]
fn independent_targets_build_at_once_and_report_in_plan_order() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-at-once");
    let shared = ("shared", "/shared", true);
    let manifest = [
        target("alpha", &meet("alpha", "beta"), &[shared]),
        target("beta", &meet("beta", "alpha"), &[shared]),
        // No builder: takes alpha's output, so it can only start once alpha has finished.
        "[targets.gamma]\nartifacts.from = \"alpha:/out\"\nartifacts.include = [\"busybox\", \"msg\"]\nruntime.entrypoint = [\"/busybox\", \"cat\", \"/msg\"]\n".to_string(),
    ]
    .concat();
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("shared/.keep", "")],
    );
    let images = [
        TestImage::new("alpha"),
        TestImage::new("beta"),
        TestImage::new("gamma"),
    ];
    let tags: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .zip(&images)
        .map(|(name, image)| format!("{name}={}", image.0))
        .collect();
    let mut args = vec!["build", "--format", "json"];
    for tag in &tags {
        args.extend(["--tag", tag]);
    }
    let result = dockception(&args, dir.path());
    let stderr = text(&result.stderr);
    // Each builder waited until the other had started: they ran at the same time.
    assert!(result.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    assert_eq!(field(&reports, "target"), ["alpha", "beta", "gamma"]);
    for (image, says) in images.iter().zip(["alpha", "beta", "alpha"]) {
        assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), says);
        let tags = docker_stdout(&["image", "inspect", "-f", "{{.RepoTags}}", &image.0]);
        assert!(tags.contains(&image.0), "{tags}");
    }
    for (i, report) in reports.as_array().expect("reports").iter().enumerate() {
        assert_eq!(report["tags"], serde_json::json!([images[i].0]));
    }

    // Every line says which target it belongs to, padded to the longest name.
    assert!(stderr.contains("  | [alpha] alpha sees beta\n"), "{stderr}");
    assert!(stderr.contains("  | [beta]  beta sees alpha\n"), "{stderr}");
    assert!(
        stderr.contains(
            "==> [beta]  building in busybox:local: /bin/sh -c touch /shared/beta-started"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("==> [gamma] building the runtime image on scratch"),
        "{stderr}"
    );
    for line in stderr.lines() {
        if let Some(rest) = line
            .strip_prefix("==> ")
            .or_else(|| line.strip_prefix("  | "))
        {
            assert!(
                rest.starts_with('['),
                "unlabelled line {line:?} in:\n{stderr}"
            );
        }
    }
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
    assert_no_run_folders(dir.path());
}

#[test]
fn the_up_to_date_check_holds_per_target() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-fresh");
    let run = "busybox cp /src/msg /out/msg && busybox cp /bin/busybox /out/busybox";
    let manifest = [
        target("one", run, &[("one", "/src", false)]),
        target("two", run, &[("two", "/src", false)]),
    ]
    .concat();
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &manifest),
            ("one/msg", "one\n"),
            ("two/msg", "two\n"),
        ],
    );
    let images = [TestImage::new("one"), TestImage::new("two")];
    let tags = [&images[0], &images[1]];
    let (first, _) = build_json(dir.path(), &tags, ["one", "two"]);
    assert_eq!(field(&first, "up_to_date"), [false, false]);
    // The image two's rebuild replaces: removed at the end, like the tagged ones.
    let _replaced = TestImage(first[1]["image_id"].as_str().expect("an id").to_string());

    let (again, stderr) = build_json(dir.path(), &tags, ["one", "two"]);
    assert_eq!(field(&again, "target"), ["one", "two"]);
    assert_eq!(field(&again, "up_to_date"), [true, true]);
    assert!(!stderr.contains("building in"), "{stderr}");

    // Only two's sources change: only two builds.
    std::fs::write(dir.path().join("two/msg"), "two, changed\n").expect("write");
    let (changed, stderr) = build_json(dir.path(), &tags, ["one", "two"]);
    assert_eq!(field(&changed, "target"), ["one", "two"]);
    assert_eq!(field(&changed, "up_to_date"), [true, false]);
    assert!(!stderr.contains("[one] building in"), "{stderr}");
    assert!(stderr.contains("==> [two] building in"), "{stderr}");
    assert_eq!(
        docker_stdout(&["run", "--rm", &images[1].0]).trim(),
        "two, changed"
    );
    assert_eq!(docker_stdout(&["run", "--rm", &images[0].0]).trim(), "one");
}

#[test]
fn one_target_failing_stops_the_others_and_leaves_nothing() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-fail");
    let shared = ("shared", "/shared", true);
    // `fails` fails only once `slow` runs, so `slow` is stopped in the middle of its build
    // (its sleep outlasts any wait: it would end with an output and an image, checked below).
    let fails = "i=0; until [ -f /shared/slow-started ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; \
                 sleep 0.1; done; echo failing; exit 3";
    let slow = "echo started; touch /shared/slow-started; sleep 30; echo late > /out/msg; \
                busybox cp /bin/busybox /out/busybox";
    let manifest = [
        target("fails", fails, &[shared]),
        target("slow", slow, &[shared]),
    ]
    .concat();
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("shared/.keep", "")],
    );
    let slow_image = TestImage::new("slow");
    let tag = format!("slow={}", slow_image.0);
    let result = dockception(&["build", "--tag", &tag], dir.path());
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("error: target `fails`: the build command failed with exit status 3"),
        "{stderr}"
    );
    assert!(stderr.contains("  | [slow]  started\n"), "{stderr}");
    // The build cleaned up itself: the command had nothing left to warn about.
    assert!(!stderr.contains("left behind"), "{stderr}");

    assert_eq!(
        containers_of(dir.path()),
        Vec::<String>::new(),
        "containers left"
    );
    assert_eq!(images_of(dir.path()), Vec::<String>::new(), "images left");
    assert!(!image_exists(&slow_image.0), "slow's image was tagged");
    assert!(!dir.path().join(".dockception/targets/slow/last").exists());
    assert!(!dir.path().join(".dockception/targets/fails/last").exists());
    assert_no_run_folders(dir.path());
}

#[test]
fn ctrl_c_stops_every_running_target_and_leaves_nothing() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-int");
    let shared = ("shared", "/shared", true);
    let first = "touch /shared/first-started; i=0; until [ -f /shared/second-started ]; do \
                 i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done; echo both started; sleep 120";
    let second = "touch /shared/second-started; sleep 120";
    let manifest = [
        target("first", first, &[shared]),
        target("second", second, &[shared]),
    ]
    .concat();
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("shared/.keep", "")],
    );
    let build = Running::start(&["build"], dir.path(), &[]);
    // Both builders run now.
    build.wait_for("| [first]  both started", 120);
    build.signal(rustix::process::Signal::INT);
    let (code, _, stderr) = build.finish(60);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted by SIGINT"), "{stderr}");
    assert_eq!(
        containers_of(dir.path()),
        Vec::<String>::new(),
        "containers left"
    );
    assert_eq!(images_of(dir.path()), Vec::<String>::new(), "images left");
    assert_no_run_folders(dir.path());
}

#[test]
fn each_targets_gates_check_its_own_report_whatever_order_the_command_line_names_them() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-gates");
    let run = "busybox cp /bin/busybox /out/busybox && echo hi > /out/msg";
    // Only `big` has a gate, and busybox (about 2 MiB) fails it.
    let manifest = [
        target("small", run, &[]),
        target("big", run, &[]),
        "[targets.big.gates]\nmax_image_size = \"1 KiB\"\n".to_string(),
    ]
    .concat();
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let images = [TestImage::new("small"), TestImage::new("big")];
    let result = dockception(
        &[
            "build",
            "big",
            "small",
            "--format",
            "json",
            "--tag",
            &format!("small={}", images[0].0),
            "--tag",
            &format!("big={}", images[1].0),
        ],
        dir.path(),
    );
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON reports");
    let of = |name: &str| {
        reports
            .as_array()
            .expect("an array of reports")
            .iter()
            .find(|r| r["target"] == name)
            .unwrap_or_else(|| panic!("no report for {name}: {reports}"))
            .clone()
    };
    assert!(
        of("small")["gates"].is_null(),
        "small has no gates: {reports}"
    );
    assert_eq!(of("big")["gates"]["checks"][0]["gate"], "image_size");
    assert_eq!(of("big")["gates"]["checks"][0]["status"], "FAIL");
}

#[test]
fn a_failed_gate_wins_over_a_missing_baseline_across_targets() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("targets-exit");
    let run = "busybox cp /bin/busybox /out/busybox && echo hi > /out/msg";
    // `aaa` (first in the plan) asks for a baseline it cannot have (3), `zzz` fails a size
    // gate (1): the run ends with 1, as one report's gates would.
    let manifest = [
        target("aaa", run, &[]),
        "[targets.aaa.gates]\nrequire_baseline = true\n\n".to_string(),
        target("zzz", run, &[]),
        "[targets.zzz.gates]\nmax_image_size = 1\n".to_string(),
    ]
    .concat();
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let images = [TestImage::new("aaa"), TestImage::new("zzz")];
    let result = dockception(
        &[
            "build",
            "--format",
            "json",
            "--tag",
            &format!("aaa={}", images[0].0),
            "--tag",
            &format!("zzz={}", images[1].0),
        ],
        dir.path(),
    );
    let stderr = text(&result.stderr);
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    let codes: Vec<_> = reports
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| r["gates"]["exit_code"].clone())
        .collect();
    assert_eq!(codes, [3, 1], "{stderr}");
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}
