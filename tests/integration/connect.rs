//! Connecting the way the docker CLI does, against real engines: TLS over TCP and ssh to a
//! second engine in its own namespaces (`second_engine`), Docker contexts made by
//! `docker context create`, and the errors that name the setting that chose the engine.

use std::path::Path;
use std::process::{Command, Output};

use crate::second_engine::*;
use crate::support::*;

/// A scratch image of one file, built in busybox: quick on any engine.
const MANIFEST: &str = r#"[builder]
image = "busybox:local"
run = "echo over the wire > /out/hello"
warm = "off"

[artifacts]
include = ["hello"]

[image]
tags = ["TAG"]
"#;

/// A project with [`MANIFEST`] tagging `tag`.
fn tiny_project(name: &str, tag: &str) -> Project {
    let dir = project(name);
    write_files(
        dir.path(),
        &[("dockception.toml", &MANIFEST.replace("TAG", tag))],
    );
    dir
}

/// `dockception build` in `dir` with only these engine settings (the test's own are removed).
fn build_with(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("build").current_dir(dir);
    for name in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("dockception runs")
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn tls_over_tcp_builds_on_the_second_engine_and_a_wrong_ca_names_the_file() {
    if !engine_with(&["busybox:local"]) || !second_engine_possible() {
        return;
    }
    let dir = tiny_project("tls", "over-tls:1");
    let engine = SecondEngine::start(SecondEngineOptions {
        shared: vec![dir.path().to_path_buf()],
        ..Default::default()
    });
    engine.load("busybox:local");
    let certs = engine.client_certs.display().to_string();
    let tls = [
        ("DOCKER_HOST", engine.tcp.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.as_str()),
    ];
    succeeded(&build_with(dir.path(), &tls));
    let inspect = engine.docker(&["image", "inspect", "over-tls:1"]);
    assert!(
        inspect.status.success(),
        "the image is on the second engine"
    );
    assert!(
        !image_exists("over-tls:1"),
        "and not on the machine's own engine"
    );

    // The same engine through a context that holds the TLS files, as the docker CLI makes it.
    let config = tempfile::tempdir().expect("tempdir");
    let config_dir = config.path().display().to_string();
    let c = engine.client_certs.clone();
    let docker_host = format!(
        "host={},ca={},cert={},key={}",
        engine.tcp,
        c.join("ca.pem").display(),
        c.join("cert.pem").display(),
        c.join("key.pem").display()
    );
    docker_context(&config_dir, &["create", "secure", "--docker", &docker_host]);
    succeeded(&build_with(
        dir.path(),
        &[("DOCKER_CONFIG", &config_dir), ("DOCKER_CONTEXT", "secure")],
    ));

    // A CA that did not sign the engine's certificate.
    let wrong = tempfile::tempdir().expect("tempdir");
    make_ca(wrong.path());
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(c.join(file), wrong.path().join(file)).expect("copy");
    }
    let wrong_path = wrong.path().display().to_string();
    let out = build_with(
        dir.path(),
        &[
            ("DOCKER_HOST", engine.tcp.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", wrong_path.as_str()),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: TLS failed with the Docker Engine at {}, chosen by DOCKER_HOST: the engine's certificate is not signed by the CA in: {}\n  help: point DOCKER_CERT_PATH",
            engine.tcp,
            wrong.path().join("ca.pem").display()
        )),
        "{stderr}"
    );

    // TLS not asked for: the engine's own answer says it speaks TLS.
    let out = build_with(dir.path(), &[("DOCKER_HOST", engine.tcp.as_str())]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "chosen by DOCKER_HOST: the engine there speaks TLS, and DOCKER_TLS_VERIFY is not set"
        ),
        "{stderr}"
    );
}

/// `docker context ARGS` with this `DOCKER_CONFIG`.
fn docker_context(config: &str, args: &[&str]) {
    let out = Command::new("docker")
        .arg("context")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker context {args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn a_docker_context_chooses_the_engine_and_names_itself_when_it_fails() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let image = TestImage::new("context");
    let dir = tiny_project("context", &image.0);
    let config = tempfile::tempdir().expect("tempdir");
    let config_dir = config.path().display().to_string();
    docker_context(
        &config_dir,
        &[
            "create",
            "here",
            "--docker",
            "host=unix:///var/run/docker.sock",
        ],
    );
    docker_context(
        &config_dir,
        &["create", "dead", "--docker", "host=tcp://127.0.0.1:1"],
    );

    // DOCKER_CONTEXT.
    succeeded(&build_with(
        dir.path(),
        &[("DOCKER_CONFIG", &config_dir), ("DOCKER_CONTEXT", "here")],
    ));
    assert!(image_exists(&image.0));
    let out = build_with(
        dir.path(),
        &[("DOCKER_CONFIG", &config_dir), ("DOCKER_CONTEXT", "dead")],
    );
    assert_eq!(
        text(&out.stderr),
        "error: no Docker Engine answers at tcp://127.0.0.1:1, chosen by the context `dead` (DOCKER_CONTEXT): nothing listens there (connection refused)\n  help: start one there, or fix the context (docker context inspect dead), or set DOCKER_CONTEXT to another one (unset it for the local engine)\n"
    );

    // `docker context use`, which writes currentContext to config.json.
    docker_context(&config_dir, &["use", "dead"]);
    let out = build_with(dir.path(), &[("DOCKER_CONFIG", &config_dir)]);
    assert_eq!(
        text(&out.stderr),
        format!("error: no Docker Engine answers at tcp://127.0.0.1:1, chosen by the context `dead` in {config_dir}/config.json: nothing listens there (connection refused)\n  help: start one there, or fix the context (docker context inspect dead), or choose another with `docker context use NAME` (`docker context use default` for the local engine)\n")
    );
    docker_context(&config_dir, &["use", "here"]);
    succeeded(&build_with(dir.path(), &[("DOCKER_CONFIG", &config_dir)]));
    // DOCKER_HOST wins over the current context, as with the docker CLI.
    let out = build_with(
        dir.path(),
        &[
            ("DOCKER_CONFIG", &config_dir),
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
        ],
    );
    assert!(
        text(&out.stderr).starts_with(
            "error: no Docker Engine answers at tcp://127.0.0.1:1, chosen by DOCKER_HOST: "
        ),
        "{}",
        text(&out.stderr)
    );

    // A context that does not exist.
    let out = build_with(
        dir.path(),
        &[("DOCKER_CONFIG", &config_dir), ("DOCKER_CONTEXT", "nope")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: the Docker context `nope` (DOCKER_CONTEXT) does not exist"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_docker_host_with_tls_names_docker_host_and_the_address() {
    if !tools(&["openssl"]) {
        return;
    }
    let dir = tiny_project("unreachable", "unreachable:1");
    let certs = tempfile::tempdir().expect("tempdir");
    make_ca(certs.path());
    let path = certs.path().display().to_string();
    let out = build_with(
        dir.path(),
        &[
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &path),
        ],
    );
    assert_eq!(
        text(&out.stderr),
        "error: no Docker Engine answers at tcp://127.0.0.1:1, chosen by DOCKER_HOST: nothing listens there (connection refused)\n  help: start one there, or fix DOCKER_HOST (it is set to tcp://127.0.0.1:1; unset it to use the local engine at unix:///var/run/docker.sock)\n"
    );
    // A CA file that is not one is named before any connection.
    std::fs::write(certs.path().join("ca.pem"), "not a certificate").expect("write");
    let out = build_with(
        dir.path(),
        &[
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &path),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: TLS failed with the Docker Engine at tcp://127.0.0.1:1, chosen by DOCKER_HOST: it holds no PEM certificate: {}/ca.pem\n",
            path
        )),
        "{stderr}"
    );
    assert!(!dir.path().join(".dockception").exists());
}

/// An ssh client for the test: a wrapper named `ssh` first on PATH that uses this key and
/// known_hosts only. Returns the PATH to run dockception with.
fn ssh_client(dir: &Path, key: &Path, host: &str, host_key: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(dir.join("known_hosts"), format!("{host} {host_key}\n")).expect("write");
    std::fs::write(
        dir.join("ssh_config"),
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            key.display(),
            dir.join("known_hosts").display()
        ),
    )
    .expect("write");
    let wrapper = bin.join("ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
            dir.join("ssh_config").display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn ssh_key(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::read_to_string(path.with_extension("pub")).expect("public key")
}

#[test]
fn ssh_reaches_the_second_engine_and_a_refused_key_shows_ssh_s_words() {
    if !engine_with(&["busybox:local"]) || !second_engine_possible() {
        return;
    }
    let dir = tiny_project("ssh", "over-ssh:1");
    let client = tempfile::tempdir().expect("tempdir");
    let key = client.path().join("id_ed25519");
    let public = ssh_key(&key);
    let engine = SecondEngine::start(SecondEngineOptions {
        shared: vec![dir.path().to_path_buf()],
        ssh_authorized_keys: Some(public),
    });
    engine.load("busybox:local");
    let host_key = engine.ssh_host_key.clone().expect("sshd runs");
    let path = ssh_client(client.path(), &key, &engine.address, &host_key);
    let address = format!("ssh://root@{}", engine.address);
    succeeded(&build_with(
        dir.path(),
        &[("DOCKER_HOST", &address), ("PATH", &path)],
    ));
    assert!(engine
        .docker(&["image", "inspect", "over-ssh:1"])
        .status
        .success());

    // A key the engine's host does not accept: ssh's own message.
    let other = client.path().join("other");
    ssh_key(&other);
    let path = ssh_client(client.path(), &other, &engine.address, &host_key);
    let out = build_with(dir.path(), &[("DOCKER_HOST", &address), ("PATH", &path)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: ssh failed for the Docker Engine at {address}, chosen by DOCKER_HOST: "
        )) && stderr.contains("Permission denied (publickey)"),
        "{stderr}"
    );
    assert!(stderr.contains("help: make `ssh root@"), "{stderr}");
}
