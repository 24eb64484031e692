//! The deliver stage against real parts: OCI layouts and archives read by skopeo and loaded by
//! the engine; pushes to Debian's docker-registry (plain, basic auth, TLS with a CA made here)
//! read back by skopeo and the registry's API; credentials from a docker config and a real
//! credential helper; a connection that drops mid-upload. Traffic only to 127.0.0.1.

use std::path::Path;
use std::process::Command;

use dockception::deliver::output::{self, Output};
use dockception::deliver::push::{self, RegistrySettings};
use dockception::deliver::testkit;
use dockception::Progress;

use crate::support::{
    block_on, engine_with, noise, text, tools, DroppingProxy, Registry, RegistryOptions, TestImage,
};

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// `skopeo ARGS`, which must succeed; its stdout.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        text(&out.stderr)
    );
    out.stdout
}

fn sample(store: &Path, seed: u64) -> testkit::WrittenImage {
    testkit::image(
        store,
        &[
            vec![("bin/app", noise(300_000, seed))],
            vec![("etc/app.conf", format!("seed={seed}\n").into_bytes())],
        ],
    )
    .expect("image")
}

fn plain() -> RegistrySettings {
    RegistrySettings::default()
}

#[test]
fn layouts_and_archives_are_read_by_skopeo_and_loaded_by_the_engine() {
    if !tools(&["skopeo"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 1);
    let tag = TestImage::new("deliver-archive");
    let tags = vec![tag.0.clone()];
    let layout = dir.path().join("layout");
    let oci_tar = dir.path().join("image-oci.tar");
    let docker_tar = dir.path().join("image-docker.tar");
    let outputs: Vec<Output> = [
        format!("type=oci,dest={}", layout.display()),
        format!("type=oci,dest={}", oci_tar.display()),
        format!("type=docker,dest={}", docker_tar.display()),
        "type=none".to_string(),
    ]
    .iter()
    .map(|o| Output::parse(o).expect("parses"))
    .collect();
    output::check(&outputs).expect("fresh destinations");
    let written = output::write_all(&outputs, &image, &tags).expect("written");
    assert_eq!(written.len(), 3);
    let ref_name = tag.0.rsplit(':').next().expect("a tag");

    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:{ref_name}", layout.display()),
    ]);
    assert_eq!(
        sha256_of(&raw),
        image.digest(),
        "the layout's manifest is ours"
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:{ref_name}", oci_tar.display()),
    ]);
    assert_eq!(
        sha256_of(&raw),
        image.digest(),
        "the archive's manifest is ours"
    );
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("docker-archive:{}", docker_tar.display()),
    ]);
    assert_eq!(
        sha256_of(&config),
        image.image_id(),
        "docker-archive config"
    );
    // The docker archive read as an OCI archive too (its index.json).
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:{ref_name}", docker_tar.display()),
    ]);
    assert_eq!(sha256_of(&raw), image.digest());

    // Written again: the same bytes.
    let again = dir.path().join("again.tar");
    output::write(
        &Output::Docker {
            dest: again.clone(),
        },
        &image,
        &tags,
    )
    .expect("again");
    assert_eq!(
        std::fs::read(&again).expect("read"),
        std::fs::read(&docker_tar).expect("read"),
        "an archive is the same bytes every time"
    );
    // An existing destination is refused before anything is built.
    let e = output::check(&outputs[..1]).expect_err("exists now");
    assert!(e.to_string().contains("exists already"), "{e}");

    if !engine_with(&[]) {
        return;
    }
    let out = Command::new("docker")
        .args(["load", "-i"])
        .arg(&docker_tar)
        .output()
        .expect("docker load");
    assert!(out.status.success(), "docker load: {}", text(&out.stderr));
    let id = crate::support::docker_stdout(&["image", "inspect", "-f", "{{.Id}}", &tag.0]);
    assert_eq!(id.trim(), image.image_id(), "image id == config digest");
}

#[test]
fn a_second_push_uploads_nothing_and_skopeo_and_docker_read_what_was_pushed() {
    if !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 2);
    let tags = vec![
        format!("{}/team/app:1", registry.address),
        format!("{}/team/app:latest", registry.address),
    ];
    let first = block_on(push::push(&image, &tags, &plain(), &Progress::Silent)).expect("pushed");
    let blobs: u64 = image.layers.iter().map(|l| l.blob.size).sum::<u64>() + image.config_blob.size;
    assert_eq!(first[0].uploaded_bytes, blobs, "{first:?}");
    assert_eq!(first[0].digest, image.digest());
    assert_eq!(
        first[1].uploaded_bytes, 0,
        "the second tag finds every blob there"
    );
    let second =
        block_on(push::push(&image, &tags[..1], &plain(), &Progress::Silent)).expect("again");
    assert_eq!(second[0].uploaded_bytes, 0, "{second:?}");
    assert_eq!(second[0].skipped_bytes(), blobs);

    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", tags[0]),
    ]);
    assert_eq!(
        sha256_of(&raw),
        image.digest(),
        "the registry holds our manifest bytes"
    );
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", tags[1]),
    ]);
    assert_eq!(sha256_of(&config), image.image_id());

    if !engine_with(&[]) {
        return;
    }
    let pulled = TestImage(tags[0].clone());
    crate::support::docker_stdout(&["pull", &pulled.0]);
    let id = crate::support::docker_stdout(&["image", "inspect", "-f", "{{.Id}}", &pulled.0]);
    assert_eq!(id.trim(), image.image_id());
}

#[test]
fn a_push_without_the_credentials_a_registry_wants_fails_naming_it_and_leaves_no_tag() {
    if !tools(&["docker-registry", "htpasswd"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions {
        basic: Some(("tester".into(), "s3cret".into())),
        ..RegistryOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 3);
    let tag = format!("{}/locked/app:1", registry.address);
    let empty = dir.path().join("no-docker-config");
    let anonymous = RegistrySettings {
        docker_config: Some(empty),
        ..RegistrySettings::default()
    };
    let e = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &anonymous,
        &Progress::Silent,
    ))
    .expect_err("refused");
    let message = e.to_string();
    eprintln!("the error as shown:\n{message}");
    assert!(
        message.contains(&registry.address)
            && message.contains("locked/app")
            && message.contains("docker login"),
        "{message}"
    );
    let creds = Some(("tester", "s3cret"));
    assert_eq!(
        registry.status("GET", "/v2/locked/app/manifests/1", creds),
        404,
        "no tag"
    );

    // The same push with the credentials in a docker config's auths.
    let config = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dGVzdGVyOnMzY3JldA=="}}}}}}"#,
            registry.address
        ),
    )
    .expect("config");
    let settings = RegistrySettings {
        docker_config: Some(config.path().to_path_buf()),
        ..RegistrySettings::default()
    };
    let pushed =
        block_on(push::push(&image, &[tag], &settings, &Progress::Silent)).expect("pushed");
    assert!(pushed[0].uploaded_bytes > 0);
    assert_eq!(
        registry.status("GET", "/v2/locked/app/manifests/1", creds),
        200
    );

    // A helper the config names but that is not there: an error naming it, nothing sent.
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"credHelpers":{{"{}":"dockception-nowhere"}}}}"#,
            registry.address
        ),
    )
    .expect("config");
    let other = format!("{}/locked/other:1", registry.address);
    let e = block_on(push::push(&image, &[other], &settings, &Progress::Silent))
        .expect_err("no helper");
    assert!(
        e.to_string()
            .contains("docker-credential-dockception-nowhere"),
        "{e}"
    );
    assert_eq!(
        registry.status("GET", "/v2/locked/other/manifests/1", creds),
        404
    );
}

/// The environment variable that makes [`credential_helper_child`] do its work.
const CHILD: &str = "DOCKCEPTION_TEST_HELPER_REGISTRY";

#[test]
fn a_credential_helper_on_path_gives_the_credentials() {
    if !tools(&["docker-registry", "htpasswd"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions {
        basic: Some(("helped".into(), "pw-from-helper".into())),
        ..RegistryOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let log = dir.path().join("helper.log");
    let helper = bin.join("docker-credential-dcpttest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server || true\necho \"$server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"helped\",\"Secret\":\"pw-from-helper\"}}' \"$server\"\n",
            log.display()
        ),
    )
    .expect("helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("docker");
    std::fs::create_dir(&config).expect("mkdir");
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"dcpttest"}}}}"#, registry.address),
    )
    .expect("config");
    // PATH and DOCKER_CONFIG are the process's: the push runs in a child of this test binary.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["deliver::credential_helper_child", "--exact", "--nocapture"])
        .env("PATH", path)
        .env("DOCKER_CONFIG", &config)
        .env(CHILD, &registry.address)
        .output()
        .expect("child runs");
    assert!(
        out.status.success() && text(&out.stdout).contains("1 passed"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let asked = std::fs::read_to_string(&log).expect("the helper was run");
    assert!(asked.contains(&registry.address), "{asked}");
    assert_eq!(
        registry.status(
            "GET",
            "/v2/helped/app/manifests/1",
            Some(("helped", "pw-from-helper"))
        ),
        200
    );
}

/// Run by [`a_credential_helper_on_path_gives_the_credentials`] in a child process; on its
/// own it does nothing.
#[test]
fn credential_helper_child() {
    let Ok(address) = std::env::var(CHILD) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 4);
    let tag = format!("{address}/helped/app:1");
    block_on(push::push(&image, &[tag], &plain(), &Progress::Silent))
        .expect("pushed with the helper's credentials");
}

#[test]
fn a_connection_dropped_mid_upload_fails_the_push_and_leaves_no_tag() {
    if !tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let proxy = DroppingProxy::start(&registry.address, 1 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = testkit::image(
        &dir.path().join("store"),
        &[vec![("big", noise(4 << 20, 5))]],
    )
    .expect("image");
    let tag = format!("{}/dropped/app:1", proxy.address);
    let e = block_on(push::push(&image, &[tag], &plain(), &Progress::Silent)).expect_err("dropped");
    let message = e.to_string();
    eprintln!("the error as shown:\n{message}");
    assert!(
        message.contains(&proxy.address)
            && message.contains("dropped/app")
            && message.contains("nothing was tagged"),
        "{message}"
    );
    assert_eq!(
        registry.status("GET", "/v2/dropped/app/manifests/1", None),
        404,
        "no tag"
    );
}

#[test]
fn tls_needs_the_ca_or_a_separate_choice_to_skip_verification() {
    if !tools(&["docker-registry", "openssl"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions {
        tls: true,
        ..RegistryOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 6);
    let tag = format!("{}/secure/app:1", registry.address);
    let e = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &plain(),
        &Progress::Silent,
    ))
    .expect_err("unknown CA");
    assert!(e.to_string().contains("certificate"), "{e}");
    let with_ca = RegistrySettings {
        ca_files: vec![registry.ca.clone().expect("a CA")],
        ..RegistrySettings::default()
    };
    let pushed = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &with_ca,
        &Progress::Silent,
    ))
    .expect("with the CA");
    assert!(pushed[0].uploaded_bytes > 0);
    let skipping = RegistrySettings {
        skip_tls_verify: vec![registry.address.clone()],
        ..RegistrySettings::default()
    };
    let again =
        block_on(push::push(&image, &[tag], &skipping, &Progress::Silent)).expect("unverified");
    assert_eq!(again[0].uploaded_bytes, 0);
}

#[test]
fn a_base_from_the_same_registry_is_pulled_without_an_engine_and_its_layers_mounted() {
    if !tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let base_image = sample(&dir.path().join("base-store"), 7);
    let base_ref = format!("{}/bases/thing:1", registry.address);
    block_on(push::push(
        &base_image,
        std::slice::from_ref(&base_ref),
        &plain(),
        &Progress::Silent,
    ))
    .expect("base pushed");

    let store_dir = dir.path().join("store");
    let store = testkit::store(&store_dir);
    let base = block_on(push::pull_base(&base_ref, &store, &plain())).expect("pulled");
    assert_eq!(base.image_id, base_image.image_id());
    let diff_ids: Vec<&str> = base.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let expected: Vec<&str> = base_image
        .layers
        .iter()
        .map(|l| l.diff_id.as_str())
        .collect();
    assert_eq!(diff_ids, expected);
    assert!(base.layers.iter().all(|l| l.from_base && l.tar_bytes > 0));
    // Pulled again: the store has it whole, by image id.
    let again = block_on(push::pull_base(&base_ref, &store, &plain())).expect("again");
    assert_eq!(again, base);

    let image = testkit::image_on(
        &store_dir,
        &base.layers,
        &[("app", b"#!/bin/sh\n".to_vec())],
        Some(base_ref.clone()),
    )
    .expect("image");
    let tag = format!("{}/apps/app:1", registry.address);
    let pushed = block_on(push::push(&image, &[tag], &plain(), &Progress::Silent)).expect("pushed");
    let base_bytes: u64 = base.layers.iter().map(|l| l.blob.size).sum();
    assert_eq!(pushed[0].mounted_bytes, base_bytes, "{pushed:?}");
    assert_eq!(
        pushed[0].uploaded_bytes,
        image.layers.last().expect("layer").blob.size + image.config_blob.size
    );
    // A base that is not there: an error naming the registry and repository.
    let missing = format!("{}/bases/none:1", registry.address);
    let e = block_on(push::pull_base(&missing, &store, &plain())).expect_err("missing");
    assert!(
        e.to_string().contains("bases/none") && e.to_string().contains(&registry.address),
        "{e}"
    );
}

#[test]
fn a_tag_without_a_registry_is_refused_before_anything_is_built() {
    let e = push::check_tags(&["app:1".to_string()]).expect_err("no registry");
    assert!(e.to_string().contains("names no registry"), "{e}");
}
