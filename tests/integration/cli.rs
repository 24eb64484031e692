//! The command line without an engine: usage, help, and errors that must appear before any
//! container starts (the tool is pointed at an engine that does not exist to prove it).

use std::process::Command;

use crate::support::*;

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
        stderr.starts_with("error: no Docker Engine answers at unix:///nonexistent/docker.sock, chosen by DOCKER_HOST: "),
        "{stderr}"
    );
    assert!(stderr.contains("help: start one"), "{stderr}");
    assert!(
        !dir.path().join(".dockception").exists(),
        "nothing is written before the engine answers"
    );
}

fn run_with_host(host: &str, cwd: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["build"])
        .current_dir(cwd)
        .env("DOCKER_HOST", host)
        .output()
        .expect("dockception runs");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn a_wrong_docker_host_is_one_error_with_the_fix() {
    let dir = project("badhost");
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", "")],
    );
    let cases = [
        (
            "tcp://127.0.0.1:1",
            "error: no Docker Engine answers at tcp://127.0.0.1:1, chosen by DOCKER_HOST: nothing listens there (connection refused)\n  help: start one there, or fix DOCKER_HOST (it is set to tcp://127.0.0.1:1; unset it to use the local engine at unix:///var/run/docker.sock)\n",
        ),
        (
            "ftp://example",
            "error: DOCKER_HOST=ftp://example is not a Docker Engine address: dockception speaks to unix:// sockets, tcp:// or http:// addresses (TLS with DOCKER_TLS_VERIFY) and ssh://\n  help: set it like unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST, or unset it to use the local engine\n",
        ),
        (
            "/var/run/docker.sock",
            "error: DOCKER_HOST=/var/run/docker.sock is not a Docker Engine address: dockception speaks to unix:// sockets, tcp:// or http:// addresses (TLS with DOCKER_TLS_VERIFY) and ssh://\n  help: set it like unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST, or unset it to use the local engine\n",
        ),
        (
            "unix:///nonexistent/docker.sock",
            "error: no Docker Engine answers at unix:///nonexistent/docker.sock, chosen by DOCKER_HOST: the socket /nonexistent/docker.sock does not exist\n  help: start one there, or fix DOCKER_HOST (it is set to unix:///nonexistent/docker.sock; unset it to use the local engine at unix:///var/run/docker.sock)\n",
        ),
    ];
    for (host, expected) in cases {
        let (code, stderr) = run_with_host(host, dir.path());
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr, expected);
    }
    let (code, stderr) = run_with_host("tcp://no-such-host.invalid:2375", dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: DOCKER_HOST=tcp://no-such-host.invalid:2375 is not a Docker Engine address: its host name does not resolve"),
        "{stderr}"
    );
    assert!(!dir.path().join(".dockception").exists());
}

#[test]
fn a_socket_without_permission_says_how_to_get_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = project("noperm");
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", "")],
    );
    let sockets = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let path = sockets.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let host = format!("unix://{}", path.display());
    let mut command = if rustix::process::getuid().is_root() {
        // Root may use any socket: run as nobody, like a user outside the docker group.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ]);
        c
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        Command::new(BIN)
    };
    let out = command
        .args(["build", "-f"])
        .arg(dir.path().join("dockception.toml"))
        .current_dir("/")
        .env("DOCKER_HOST", &host)
        .output()
        .expect("dockception runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("error: permission denied on the Docker Engine socket at {host}\n  help: add yourself to the docker group (sudo usermod -aG docker $USER, then log in again), or run as a user that may use the socket\n")
    );
}

/// A stand-in for a Docker Engine from 2016 (API 1.24): it answers only the two requests
/// dockception makes before deciding (`/_ping` and `/version`). No engine that old runs here;
/// the version check itself is unit-tested in `engine.rs`.
fn old_engine(path: &std::path::Path) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            loop {
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap_or(0) == 0 {
                    break;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let body = if request.contains("/version") {
                    r#"{"Version":"1.12.6","ApiVersion":"1.24","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#
                } else {
                    "OK"
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nApi-Version: 1.24\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    break;
                }
            }
        }
    })
}

#[test]
fn an_engine_too_old_is_refused_with_the_versions() {
    let dir = project("oldengine");
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", "")],
    );
    let sockets = tempfile::tempdir().expect("tempdir");
    let path = sockets.path().join("old.sock");
    let _engine = old_engine(&path);
    let host = format!("unix://{}", path.display());
    let (code, stderr) = run_with_host(&host, dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("error: the Docker Engine at {host} speaks API 1.24; dockception needs 1.25 or newer (Docker 1.13+)\n  help: upgrade the engine, or point DOCKER_HOST at a newer one\n")
    );
    assert!(!dir.path().join(".dockception").exists());
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // The reader closes its end at once, like `dockception schema | head -c1`; whether the
    // write comes before or after that, the command ends with status 0 and no panic.
    let dir = project("pipe");
    for _ in 0..5 {
        let mut child = Command::new(BIN)
            .arg("schema")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dockception runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("it ends");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
