//! Remote mode against a real second engine with its own root filesystem (`second_engine`),
//! which cannot see this machine's files: sources synced into volumes, outputs read back,
//! images loaded and run there; a one-line change sends one file, a deleted file goes on the
//! engine's side too, `plan` says the mode, `clean` keeps the source volumes and
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
        dir.join(format!(".dockception/{target}/sync/last.json"))
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A copy of the example `name` in a fresh project folder.
fn example(name: &str) -> tempfile::TempDir {
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
    assert!(text(&ran.stdout).contains("Hello, world"), "{}", text(&ran.stdout));
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
    assert!(text(&ran.stdout).contains("Hello again, world"), "{}", text(&ran.stdout));

    // A deleted file goes from the volume too: the build lists /src.
    std::fs::write(dir.path().join("src/extra.h"), "/* extra */\n").expect("write");
    succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    let volume_name = sync["volumes"][0]["volume"].as_str().expect("name").to_string();
    let listed = |engine: &SecondEngine| {
        let out = engine.docker(&[
            "run", "--rm", "-v", &format!("{volume_name}:/v:ro"), "gcc:local", "ls", "-a", "/v",
        ]);
        text(&out.stdout)
    };
    assert!(listed(&engine).contains("extra.h"));
    std::fs::remove_file(dir.path().join("src/extra.h")).expect("rm");
    succeeded(&on(&host, dir.path(), &["build", "-t", &tag]));
    let sync = last_sync(dir.path(), "default");
    assert_eq!(sync["volumes"][0]["deleted"], serde_json::json!(["extra.h"]), "{sync}");
    assert_eq!(sync["volumes"][0]["sent_files"], 0, "{sync}");
    let now = listed(&engine);
    assert!(!now.contains("extra.h") && now.contains("hello.c"), "{now}");
}
