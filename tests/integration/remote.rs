//! Remote mode against a real second engine with its own root filesystem (`second_engine`),
//! which cannot see this machine's files: sources synced into volumes, outputs read back,
//! images loaded and run there; a one-line change sends one file, a deleted file goes on the
//! engine's side too, the warm builder works there without keeping a secret, `plan` says the
//! mode, `clean` keeps the source volumes and
//! `clean --caches` removes them, and an interrupted sync is never taken as complete.

use std::path::Path;
use std::process::{Command, Output};

use crate::second_engine::*;
use crate::support::*;

/// `dockception ARGS` in `dir` against the engine at `host` (the test's own settings removed).
fn on(host: &str, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir);
    for name in [
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.env("DOCKER_HOST", host);
    command.output().expect("dockception runs")
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// A second engine that sees none of this machine's files, with `images` copied in.
fn engine_with_images(images: &[&str]) -> Option<SecondEngine> {
    if !engine_with(images) || !second_engine_possible() {
        return None;
    }
    let engine = SecondEngine::start(SecondEngineOptions::default());
    for image in images {
        engine.load(image);
    }
    Some(engine)
}

/// The summary of the last sync of `target` (`default` for a single-image manifest).
fn last_sync(dir: &Path, target: &str) -> serde_json::Value {
    let path = if target == "default" {
        dir.join(".dockception/sync/last.json")
    } else {
        dir.join(format!(".dockception/targets/{target}/sync/last.json"))
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A copy of the example `name` in a fresh project folder.
fn example(name: &str) -> Project {
    let dir = project(name);
    let from = repo().join("examples").join(name);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(dir.path())
        .status()
        .expect("cp runs");
    assert!(copied.success());
    let _ = std::fs::remove_dir_all(dir.path().join(".dockception"));
    dir
}

#[test]
fn hello_c_syncs_its_sources_builds_and_runs_on_an_engine_that_cannot_see_them() {
    let Some(engine) = engine_with_images(&["gcc:local"]) else {
        return;
    };
    let dir = example("hello-c");
    let tag = unique_token("remote-hello-c");
    let tag = format!("{tag}:1");
    let host = engine.socket.clone();
    let stderr = succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    assert!(stderr.contains("syncing the sources"), "{stderr}");
    let sync = last_sync(dir.path(), "default");
    assert_eq!(sync["volumes"][0]["full"], true, "{sync}");
    assert!(
        sync["volumes"][0]["sent"]
            .as_array()
            .expect("sent")
            .iter()
            .any(|p| p == "hello.c"),
        "{sync}"
    );
    // The image is the remote engine's, and runs there.
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert!(
        text(&ran.stdout).contains("Hello, world"),
        "{}",
        text(&ran.stdout)
    );
    assert!(!image_exists(&tag), "the local engine got the image");

    // A one-line change sends that one file.
    let source = dir.path().join("src/hello.c");
    let code = std::fs::read_to_string(&source).expect("hello.c");
    std::fs::write(&source, code.replace("Hello,", "Hello again,")).expect("write");
    succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    let sync = last_sync(dir.path(), "default");
    let volume = &sync["volumes"][0];
    assert_eq!(volume["full"], false, "{sync}");
    assert_eq!(volume["sent_files"], 1, "{sync}");
    assert_eq!(volume["sent"], serde_json::json!(["hello.c"]), "{sync}");
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(
        text(&ran.stdout).contains("Hello again, world"),
        "{}",
        text(&ran.stdout)
    );

    // A deleted file goes from the volume too: the build lists /src.
    // Two new files, one of them deleted next: the sources then match no earlier build's, which
    // would be reused without a sync.
    std::fs::write(dir.path().join("src/extra.h"), "/* extra */\n").expect("write");
    std::fs::write(dir.path().join("src/other.h"), "/* other */\n").expect("write");
    succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    let volume_name = sync["volumes"][0]["volume"]
        .as_str()
        .expect("name")
        .to_string();
    let listed = |engine: &SecondEngine| {
        let out = engine.docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume_name}:/v:ro"),
            "gcc:local",
            "ls",
            "-a",
            "/v",
        ]);
        text(&out.stdout)
    };
    assert!(listed(&engine).contains("extra.h"));
    std::fs::remove_file(dir.path().join("src/extra.h")).expect("rm");
    succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    let sync = last_sync(dir.path(), "default");
    assert_eq!(
        sync["volumes"][0]["deleted"],
        serde_json::json!(["extra.h"]),
        "{sync}"
    );
    assert_eq!(sync["volumes"][0]["sent_files"], 0, "{sync}");
    let now = listed(&engine);
    assert!(
        !now.contains("extra.h") && now.contains("other.h") && now.contains("hello.c"),
        "{now}"
    );
}

/// Volumes of the project in `dir` on `engine`.
fn remote_volumes(engine: &SecondEngine, dir: &Path) -> Vec<String> {
    let filter = format!("label=dockception.project={}", project_label(dir));
    let out = engine.docker(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn go_and_a_multi_target_manifest_build_there_plan_says_remote_and_clean_keeps_the_sources() {
    let Some(engine) = engine_with_images(&["golang:local", "busybox:local"]) else {
        return;
    };
    let host = engine.socket.clone();

    let go = example("hello-go");
    let tag = format!("{}:1", unique_token("remote-hello-go"));
    let plan = succeeded_stdout(&on(&host, go.path(), &["plan"]));
    assert!(
        plan.contains("the first build asks") && plan.contains(&host),
        "{plan}"
    );
    succeeded(&on(&host, go.path(), &["build", "-t", &tag]));
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert!(!text(&ran.stdout).is_empty());
    // The probe's answer is kept: plan says remote without asking, and names the volume.
    let plan = succeeded_stdout(&on(&host, go.path(), &["plan"]));
    assert!(
        plan.contains("engine    remote") && plan.contains("synced into volume dockception-src-"),
        "{plan}"
    );
    let json = succeeded_stdout(&on(&host, go.path(), &["plan", "--format", "json"]));
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["engine"]["mode"], "remote", "{json}");
    // A manifest setting wins over the probe, and says where it is.
    let local = on(&host, go.path(), &["plan", "--engine-mode", "local"]);
    assert!(succeeded_stdout(&local).contains("local, sources bind-mounted (set by --engine-mode)"));

    // Bind-mounting there fails with the reason, and the kept answer is forgotten.
    let local = on(
        &host,
        go.path(),
        &["build", "--force", "--engine-mode", "local"],
    );
    assert!(!local.status.success());
    let stderr = text(&local.stderr);
    assert!(
        stderr.contains("cannot see this machine's files") && stderr.contains("--engine-mode"),
        "{stderr}"
    );
    let plan = succeeded_stdout(&on(&host, go.path(), &["plan"]));
    assert!(plan.contains("the first build asks"), "{plan}");

    // Plain clean keeps the synced sources and the cache; --caches removes both.
    let volumes = remote_volumes(&engine, go.path());
    assert!(
        volumes.iter().any(|v| v.starts_with("dockception-src-")),
        "{volumes:?}"
    );
    let kept = succeeded_stdout(&on(&host, go.path(), &["clean"]));
    assert_eq!(remote_volumes(&engine, go.path()), volumes, "{kept}");
    succeeded(&on(&host, go.path(), &["clean", "--caches"]));
    assert_eq!(remote_volumes(&engine, go.path()), Vec::<String>::new());
    // The next build sends everything again.
    std::fs::write(
        go.path().join("main.go"),
        std::fs::read_to_string(go.path().join("main.go")).expect("main.go") + "\n",
    )
    .expect("write");
    succeeded(&on(&host, go.path(), &["build", "-t", &tag]));
    assert_eq!(last_sync(go.path(), "default")["volumes"][0]["full"], true);
    succeeded(&on(&host, go.path(), &["clean", "--caches"]));

    // Two images from one manifest, one taking the other's artifacts, both run there.
    let multi = example("compilation-images");
    let token = unique_token("remote-multi");
    let set = format!("TAG={token}");
    succeeded(&on(&host, multi.path(), &["build", "--set", &set]));
    for image in [
        format!("compilation-build:{token}"),
        format!("compilation:{token}"),
    ] {
        let ran = engine.docker(&["run", "--rm", &image]);
        assert!(ran.status.success(), "{image}: {}", text(&ran.stderr));
    }
    assert_eq!(last_sync(multi.path(), "build")["volumes"][0]["full"], true);
    succeeded(&on(&host, multi.path(), &["clean", "--caches"]));
}

fn succeeded_stdout(out: &Output) -> String {
    succeeded(out);
    text(&out.stdout)
}

/// A busybox project whose build lists its sources and reads a secret file, with a runtime step.
const STEPS: &str = r#"[builder]
image = "busybox:local"
workdir = "/src"
run = "cat /run/secrets/token > /out/seen-secret; ls -R /src > /out/listing; cp /src/app.sh /out/app"

[builder.secrets]
token = "secret.txt"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app", "listing", "seen-secret"]

[runtime]
base = "busybox:local"
run = ["cp /artifacts/app /bin/app && chmod 755 /bin/app"]
entrypoint = ["/bin/app"]

[image]
tags = ["TAG"]
"#;

#[test]
fn runtime_steps_and_secret_files_work_there_and_the_secret_stays_out_of_volumes() {
    let Some(engine) = engine_with_images(&["busybox:local"]) else {
        return;
    };
    let dir = project("remote-steps");
    let tag = format!("{}:1", unique_token("remote-steps"));
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &STEPS.replace("TAG", &tag)),
            ("secret.txt", "s3cr3t-value\n"),
            ("src/app.sh", "#!/bin/sh\necho steps ran remotely\n"),
            ("src/deep/one.txt", "1\n"),
        ],
    );
    let host = engine.socket.clone();
    let first = succeeded(&on(&host, dir.path(), &["build"]));
    assert!(first.contains("stays up until"), "{first}");
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(
        text(&ran.stdout).contains("steps ran remotely"),
        "{}",
        text(&ran.stderr)
    );
    let last = dir.path().join(".dockception/last");
    assert_eq!(
        std::fs::read_to_string(last.join("seen-secret")).expect("seen"),
        "s3cr3t-value\n"
    );
    assert!(std::fs::read_to_string(last.join("listing"))
        .expect("listing")
        .contains("one.txt"));
    // No volume holds the secret.
    for volume in remote_volumes(&engine, dir.path()) {
        let out = engine.docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/v:ro"),
            "busybox:local",
            "grep",
            "-r",
            "s3cr3t",
            "/v",
        ]);
        assert!(
            !out.status.success(),
            "volume {volume} holds the secret: {}",
            text(&out.stdout)
        );
    }
    // Two builds of the target take turns: while another holds the lock, a build waits.
    let lock_path = dir.path().join(".dockception/sync/lock");
    let lock = std::fs::File::options()
        .write(true)
        .open(&lock_path)
        .expect("the lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    std::fs::write(
        dir.path().join("src/app.sh"),
        "#!/bin/sh\necho after the wait\n",
    )
    .expect("write");
    let waiting = Running::start(
        &["build", "--progress", "plain"],
        dir.path(),
        &[("DOCKER_HOST", host.as_str())],
    );
    waiting.wait_for(
        "waiting for another dockception building target default",
        120,
    );
    assert!(!waiting.stderr_so_far().contains("sending "));
    drop(lock);
    let (code, _, stderr) = waiting.finish(300);
    assert_eq!(code, Some(0), "{stderr}");
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(
        text(&ran.stdout).contains("after the wait"),
        "{}",
        text(&ran.stdout)
    );

    // The warm builder (on by default) runs there too: the builds above used one, and the
    // next build is an exec in that same container, with no secret left in it afterwards.
    let warm_ids = || {
        let out = engine.docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "label=dockception.warm",
        ]);
        text(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = warm_ids();
    assert_eq!(
        before.len(),
        1,
        "one warm builder on the remote engine: {before:?}\n{first}\n{stderr}"
    );
    std::fs::write(
        dir.path().join("src/app.sh"),
        "#!/bin/sh\necho warm again\n",
    )
    .expect("write");
    std::fs::remove_file(dir.path().join("src/deep/one.txt")).expect("remove");
    succeeded(&on(&host, dir.path(), &["build"]));
    assert_eq!(
        warm_ids(),
        before,
        "the rebuild ran in the same warm builder"
    );
    // Its sources went through that container (no helper made), the deletion too.
    let summary = last_sync(dir.path(), "default");
    let warm_name = text(
        &engine
            .docker(&["inspect", "-f", "{{.Name}}", &before[0]])
            .stdout,
    )
    .trim()
    .trim_start_matches('/')
    .to_string();
    assert_eq!(summary["through"], warm_name.as_str(), "{summary}");
    assert_eq!(
        summary["volumes"][0]["deleted"][0], "deep/one.txt",
        "{summary}"
    );
    assert!(!std::fs::read_to_string(last.join("listing"))
        .expect("listing")
        .contains("one.txt"));
    // Its writable second mount of the sources is for root only.
    let reach = engine.docker(&[
        "exec",
        "--user",
        "65534:65534",
        &before[0],
        "ls",
        "/.dockception-sync/0",
    ]);
    assert!(
        !reach.status.success(),
        "a build user reaches the sources writable: {}",
        text(&reach.stdout)
    );
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(
        text(&ran.stdout).contains("warm again"),
        "{}",
        text(&ran.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(last.join("seen-secret")).expect("seen"),
        "s3cr3t-value\n",
        "the exec read the secret file"
    );
    let secret_left = engine.docker(&["exec", &before[0], "ls", "/run/secrets/token"]);
    assert!(
        !secret_left.status.success(),
        "the secret file outlived its build in the warm builder"
    );
    // What an earlier build left in the output folder is gone before the next: it is made anew.
    let listing = engine.docker(&["exec", &before[0], "ls", "-a", "/out"]);
    let listed = text(&listing.stdout);
    assert!(listed.contains("app"), "{listed}");
    let stale = engine.docker(&["exec", &before[0], "touch", "/out/stale"]);
    assert!(stale.status.success(), "{}", text(&stale.stderr));
    std::fs::write(
        dir.path().join("src/app.sh"),
        "#!/bin/sh\necho warm once more\n",
    )
    .expect("write");
    succeeded(&on(&host, dir.path(), &["build"]));
    let listing = engine.docker(&["exec", &before[0], "ls", "-a", "/out"]);
    assert!(
        !text(&listing.stdout).contains("stale"),
        "{}",
        text(&listing.stdout)
    );
    // `dockception ps` lists it and `clean` stops it on that engine.
    let listed = succeeded_stdout(&on(&host, dir.path(), &["ps"]));
    let name = engine.docker(&["inspect", "-f", "{{.Name}}", &before[0]]);
    let name = text(&name.stdout)
        .trim()
        .trim_start_matches('/')
        .to_string();
    assert!(
        !name.is_empty()
            && listed
                .lines()
                .any(|l| l.starts_with(&name) && l.contains("warm builder of target default")),
        "ps does not list {name}:\n{listed}"
    );
    succeeded(&on(&host, dir.path(), &["clean"]));
    assert_eq!(
        warm_ids(),
        Vec::<String>::new(),
        "clean left the warm builder"
    );
    succeeded(&on(&host, dir.path(), &["clean", "--caches"]));
}

#[test]
fn an_interrupted_sync_is_not_taken_as_complete() {
    let Some(engine) = engine_with_images(&["busybox:local"]) else {
        return;
    };
    let dir = project("remote-interrupt");
    let tag = format!("{}:1", unique_token("remote-interrupt"));
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &STEPS.replace("TAG", &tag)),
            ("secret.txt", "x\n"),
            ("src/app.sh", "#!/bin/sh\necho first\n"),
        ],
    );
    let host = engine.socket.clone();
    succeeded(&on(&host, dir.path(), &["build"]));
    // A large file makes the next sync long enough to interrupt once it started.
    std::fs::write(dir.path().join("src/big.bin"), noise(1 << 30, 7)).expect("write");
    std::fs::write(dir.path().join("src/app.sh"), "#!/bin/sh\necho second\n").expect("write");
    let running = Running::start(
        &["build", "--progress", "plain"],
        dir.path(),
        &[("DOCKER_HOST", host.as_str())],
    );
    // Once the upload reached the volume (its marker says a sync is under way), Ctrl-C.
    running.wait_for("sending ", 120);
    let volume = last_sync(dir.path(), "default")["volumes"][0]["volume"]
        .as_str()
        .expect("volume")
        .to_string();
    let marker = engine.volume_files(&volume).join(".dockception-sync");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&marker).unwrap_or_default() != "syncing" {
        assert!(
            std::time::Instant::now() < deadline,
            "the volume's marker never said syncing: {}",
            running.stderr_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    running.signal(rustix::process::Signal::INT);
    let (code, _, stderr) = running.finish(120);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("synced "),
        "the sync finished before the interrupt: {stderr}"
    );
    // The next build cannot trust the volume: it sends everything, and the build sees it all.
    std::fs::remove_file(dir.path().join("src/big.bin")).expect("rm");
    succeeded(&on(&host, dir.path(), &["build"]));
    let sync = last_sync(dir.path(), "default");
    assert_eq!(sync["volumes"][0]["full"], true, "{sync}");
    let ran = engine.docker(&["run", "--rm", &tag]);
    assert!(
        text(&ran.stdout).contains("second"),
        "{}",
        text(&ran.stdout)
    );
    let listing =
        std::fs::read_to_string(dir.path().join(".dockception/last/listing")).expect("listing");
    assert!(!listing.contains("big.bin"), "{listing}");
    succeeded(&on(&host, dir.path(), &["clean", "--caches"]));
}
