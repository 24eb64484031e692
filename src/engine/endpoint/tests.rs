use std::collections::HashMap;

use super::*;

/// Settings with only these variables and `home` as the home folder.
fn settings(vars: &[(&str, &str)], home: &Path) -> Settings {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings {
        env: Box::new(move |name| vars.get(name).cloned()),
        home: Some(home.to_path_buf()),
    }
}

/// A context as `docker context create NAME --docker host=HOST` writes it, with TLS files
/// when `tls` is set.
fn context(config: &Path, name: &str, host: &str, tls: bool) -> PathBuf {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let meta = config.join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).expect("mkdir");
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        ),
    )
    .expect("write meta.json");
    let dir = config.join("contexts/tls").join(&id).join("docker");
    if tls {
        pem_files(&dir);
    }
    dir
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

fn pem_files(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), CERT).expect("ca");
    std::fs::write(dir.join("cert.pem"), CERT).expect("cert");
    std::fs::write(dir.join("key.pem"), KEY).expect("key");
}

#[test]
fn docker_host_wins_over_contexts() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join(".docker");
    context(&config, "remote", "tcp://10.0.0.1:2375", false);
    std::fs::write(config.join("config.json"), r#"{"currentContext":"remote"}"#).expect("write");
    let s = settings(
        &[
            ("DOCKER_HOST", "unix:///x.sock"),
            ("DOCKER_CONTEXT", "remote"),
        ],
        home.path(),
    );
    let e = resolve(&s).expect("resolves");
    assert_eq!(e.host, "unix:///x.sock");
    assert_eq!(e.chosen_by, ChosenBy::DockerHost("unix:///x.sock".into()));
    assert_eq!(e.tls, None);
}

#[test]
fn docker_context_then_current_context_then_the_local_socket() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join(".docker");
    context(&config, "remote", "tcp://10.0.0.1:2375", false);
    context(&config, "other", "unix:///other.sock", false);
    let nothing = resolve(&settings(&[], home.path())).expect("resolves");
    assert_eq!(nothing.host, DEFAULT_HOST);
    assert_eq!(nothing.chosen_by, ChosenBy::Default);

    std::fs::write(config.join("config.json"), r#"{"currentContext":"other"}"#).expect("write");
    let current = resolve(&settings(&[], home.path())).expect("resolves");
    assert_eq!(current.host, "unix:///other.sock");
    assert_eq!(
        current.chosen_by.to_string(),
        "the context `other` in ~/.docker/config.json"
    );

    let env = resolve(&settings(&[("DOCKER_CONTEXT", "remote")], home.path())).expect("resolves");
    assert_eq!(env.host, "tcp://10.0.0.1:2375");
    assert_eq!(
        env.chosen_by.to_string(),
        "the context `remote` (DOCKER_CONTEXT)"
    );

    let default =
        resolve(&settings(&[("DOCKER_CONTEXT", "default")], home.path())).expect("resolves");
    assert_eq!(default.host, DEFAULT_HOST);
}

#[test]
fn docker_config_moves_the_contexts_folder() {
    let home = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    context(elsewhere.path(), "ci", "tcp://ci:2375", false);
    std::fs::write(
        elsewhere.path().join("config.json"),
        r#"{"auths":{},"currentContext":"ci"}"#,
    )
    .expect("write");
    let dir = elsewhere.path().display().to_string();
    let e = resolve(&settings(&[("DOCKER_CONFIG", &dir)], home.path())).expect("resolves");
    assert_eq!(e.host, "tcp://ci:2375");
    assert_eq!(
        e.chosen_by.to_string(),
        format!("the context `ci` in {dir}/config.json")
    );
}

#[test]
fn a_context_with_tls_files_uses_them() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join(".docker");
    let dir = context(&config, "secure", "tcp://10.0.0.1:2376", true);
    let e = resolve(&settings(&[("DOCKER_CONTEXT", "secure")], home.path())).expect("resolves");
    assert_eq!(
        e.tls,
        Some(TlsFiles {
            ca: dir.join("ca.pem"),
            client: Some((dir.join("cert.pem"), dir.join("key.pem"))),
        })
    );
}

#[test]
fn docker_tls_verify_reads_docker_cert_path() {
    let home = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    pem_files(certs.path());
    let path = certs.path().display().to_string();
    let vars = [
        ("DOCKER_HOST", "tcp://10.0.0.1:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", path.as_str()),
    ];
    let e = resolve(&settings(&vars, home.path())).expect("resolves");
    assert_eq!(e.tls.expect("tls").ca, certs.path().join("ca.pem"));
    // Without DOCKER_CERT_PATH: ~/.docker, which has no ca.pem here.
    let e = resolve(&settings(&vars[..2], home.path())).expect_err("no ca.pem");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "TLS failed with the Docker Engine at tcp://10.0.0.1:2376, chosen by DOCKER_HOST: it does not exist (DOCKER_TLS_VERIFY is set; DOCKER_CERT_PATH names the folder of ca.pem, cert.pem and key.pem): {}/.docker/ca.pem\n  help: point DOCKER_CERT_PATH",
            home.path().display()
        )),
        "{text}"
    );
    // A unix socket ignores the TLS settings, as the docker CLI does.
    let unix = [
        ("DOCKER_HOST", "unix:///x.sock"),
        ("DOCKER_TLS_VERIFY", "1"),
    ];
    assert_eq!(
        resolve(&settings(&unix, home.path()))
            .expect("resolves")
            .tls,
        None
    );
}

#[test]
fn wrong_tls_files_are_named() {
    let home = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    pem_files(certs.path());
    let path = certs.path().display().to_string();
    let vars = [
        ("DOCKER_HOST", "tcp://10.0.0.1:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", path.as_str()),
    ];
    let cases = [
        ("ca.pem", "not a certificate", "it holds no PEM certificate"),
        ("key.pem", CERT, "it is not a PEM private key"),
        ("cert.pem", KEY, "it holds no PEM certificate"),
    ];
    for (file, contents, problem) in cases {
        pem_files(certs.path());
        std::fs::write(certs.path().join(file), contents).expect("write");
        let text = resolve(&settings(&vars, home.path()))
            .expect_err(file)
            .to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        assert!(first.contains(problem), "{file}: {text}");
        assert!(
            first.ends_with(&certs.path().join(file).display().to_string()),
            "{file}: {text}"
        );
    }
    pem_files(certs.path());
    std::fs::remove_file(certs.path().join("key.pem")).expect("rm");
    let text = resolve(&settings(&vars, home.path()))
        .expect_err("no key")
        .to_string();
    assert!(text.contains("key.pem"), "{text}");
    // Neither client file: TLS with the CA alone, as the docker CLI allows.
    std::fs::remove_file(certs.path().join("cert.pem")).expect("rm");
    let e = resolve(&settings(&vars, home.path())).expect("resolves");
    assert_eq!(e.tls.expect("tls").client, None);
}

#[test]
fn a_context_that_is_not_there_says_so_and_how_to_choose() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join(".docker");
    std::fs::create_dir_all(&config).expect("mkdir");
    let text = resolve(&settings(&[("DOCKER_CONTEXT", "gone")], home.path()))
        .expect_err("no such context")
        .to_string();
    let id = format!("{:x}", Sha256::digest(b"gone"));
    assert_eq!(
        text,
        format!("the Docker context `gone` (DOCKER_CONTEXT) does not exist (there is no ~/.docker/contexts/meta/{id}/meta.json)\n  help: `docker context ls` lists the contexts; set DOCKER_CONTEXT to one of them, or unset it for the local engine")
    );
    std::fs::write(config.join("config.json"), r#"{"currentContext":"gone"}"#).expect("write");
    let text = resolve(&settings(&[], home.path()))
        .expect_err("no such context")
        .to_string();
    assert!(
        text.starts_with("the Docker context `gone` in ~/.docker/config.json does not exist"),
        "{text}"
    );
    assert!(text.ends_with("`docker context use NAME` chooses another (`docker context use default` the local engine)"), "{text}");
    std::fs::write(config.join("config.json"), "{").expect("write");
    let text = resolve(&settings(&[], home.path()))
        .expect_err("bad json")
        .to_string();
    assert!(
        text.starts_with("the docker CLI's configuration ~/.docker/config.json cannot be used to find the current context: it is not JSON"),
        "{text}"
    );
}

#[test]
fn connection_errors_name_the_setting_and_what_to_change() {
    let context = ChosenBy::Context {
        name: "remote".into(),
        from: ContextFrom::Env,
    };
    let e = Error::NoDaemon {
        host: "tcp://10.0.0.1:2375".into(),
        chosen_by: context,
        reason: "nothing listens there (connection refused)".into(),
    };
    assert_eq!(
        e.to_string(),
        "no Docker Engine answers at tcp://10.0.0.1:2375, chosen by the context `remote` (DOCKER_CONTEXT): nothing listens there (connection refused)\n  help: start one there, or fix the context (docker context inspect remote), or set DOCKER_CONTEXT to another one (unset it for the local engine)"
    );
    let e = Error::BadDockerHost {
        host: "ftp://x".into(),
        chosen_by: ChosenBy::Context {
            name: "odd".into(),
            from: ContextFrom::Config("~/.docker/config.json".into()),
        },
        reason: "no".into(),
    };
    assert!(
        e.to_string()
            .starts_with("the host ftp://x of the context `odd` in ~/.docker/config.json is not a Docker Engine address: no\n"),
        "{e}"
    );
}
