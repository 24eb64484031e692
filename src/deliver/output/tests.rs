use std::collections::BTreeMap;
use std::io::Read;

use super::*;
use crate::deliver::testkit;

fn sample(dir: &Path) -> WrittenImage {
    testkit::image(
        &dir.join("store"),
        &[
            vec![("bin/app", b"#!/bin/sh\necho hi\n".to_vec())],
            vec![("etc/app.conf", b"x=1\n".to_vec())],
        ],
    )
    .expect("image")
}

/// Every entry of a tar: path -> (header fields, content).
fn entries(bytes: &[u8]) -> Vec<(String, u64, u64, u64, u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                h.mtime().expect("mtime"),
                h.uid().expect("uid"),
                h.gid().expect("gid"),
                h.mode().expect("mode"),
                data,
            )
        })
        .collect()
}

#[test]
fn outputs_read_in_buildx_words() {
    let table: &[(&str, Output)] = &[
        (
            "type=oci,dest=out",
            Output::Oci {
                dest: "out".into(),
                tar: false,
            },
        ),
        (
            "type=oci,dest=out.tar",
            Output::Oci {
                dest: "out.tar".into(),
                tar: true,
            },
        ),
        (
            "dest=x,type=oci,tar=true",
            Output::Oci {
                dest: "x".into(),
                tar: true,
            },
        ),
        (
            "type=docker,dest=img.tar",
            Output::Docker {
                dest: "img.tar".into(),
            },
        ),
        ("type=none", Output::None),
    ];
    for (text, expected) in table {
        assert_eq!(&Output::parse(text).expect(text), expected, "{text}");
    }
    let errors: &[(&str, &str)] = &[
        ("dest=x", "names no type"),
        ("type=oci", "needs dest="),
        ("type=docker", "--load"),
        ("type=none,dest=x", "takes no dest"),
        ("type=registry", "--push"),
        ("type=zip,dest=x", "not known"),
        ("type=oci,dest=x,colour=red", "no key"),
        ("type=oci,dest", "key=value"),
        ("type=oci,dest=x,tar=maybe", "neither"),
    ];
    for (text, needle) in errors {
        let e = Output::parse(text).expect_err(text).to_string();
        assert!(e.contains(needle) && e.contains("help:"), "{text}: {e}");
    }
}

#[test]
fn an_existing_unwritable_or_doubled_destination_is_refused_before_the_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let existing = dir.path().join("there.tar");
    std::fs::write(&existing, b"mine").expect("write");
    let e = check(&[Output::Docker {
        dest: existing.clone(),
    }])
    .expect_err("exists");
    assert!(
        e.to_string().contains(&existing.display().to_string())
            && e.to_string().contains("remove it"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&existing).expect("read"),
        b"mine",
        "untouched"
    );

    let missing = dir.path().join("no/such/folder/out");
    let e = check(&[Output::Oci {
        dest: missing.clone(),
        tar: false,
    }])
    .expect_err("no folder");
    assert!(e.to_string().contains("cannot be written"), "{e}");

    let twice = dir.path().join("a.tar");
    let e = check(&[
        Output::Docker {
            dest: twice.clone(),
        },
        Output::Oci {
            dest: twice.clone(),
            tar: true,
        },
    ])
    .expect_err("twice");
    assert!(e.to_string().contains("two outputs"), "{e}");

    check(&[
        Output::None,
        Output::Oci {
            dest: dir.path().join("fresh"),
            tar: false,
        },
    ])
    .expect("fine");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "the check leaves nothing"
    );
}

#[test]
fn an_oci_layout_folder_holds_every_blob_and_names_the_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(dir.path());
    let dest = dir.path().join("layout");
    let tags = vec!["app:1".to_string(), "127.0.0.1:5000/team/app".to_string()];
    let written = write(
        &Output::Oci {
            dest: dest.clone(),
            tar: false,
        },
        &image,
        &tags,
    )
    .expect("write")
    .expect("written");
    assert_eq!(written.kind, "oci-layout");
    assert_eq!(
        std::fs::read_to_string(dest.join("oci-layout")).expect("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"].as_array().expect("manifests").len(), 2);
    let first = &index["manifests"][0];
    assert_eq!(first["digest"], image.digest());
    assert_eq!(
        first["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(
        first["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:1"
    );
    assert_eq!(
        index["manifests"][1]["annotations"]["io.containerd.image.name"],
        "127.0.0.1:5000/team/app:latest"
    );
    let mut digests: Vec<&str> = vec![image.digest(), image.image_id()];
    digests.extend(image.layers.iter().map(|l| l.blob.digest.as_str()));
    for digest in digests {
        let blob = std::fs::read(dest.join(archive_path(digest))).expect("blob");
        assert_eq!(
            format!(
                "sha256:{}",
                crate::fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(&blob))
            ),
            digest
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn archives_are_the_same_bytes_every_time_with_nothing_from_the_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(dir.path());
    let tags = vec!["app:1".to_string()];
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    for dest in [&a, &b] {
        write(&Output::Docker { dest: dest.clone() }, &image, &tags)
            .expect("write")
            .expect("written");
    }
    let bytes = std::fs::read(&a).expect("read");
    assert_eq!(bytes, std::fs::read(&b).expect("read"), "deterministic");
    let all = entries(&bytes);
    let paths: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "sorted entries");
    assert!(
        paths.contains(&"manifest.json")
            && paths.contains(&"index.json")
            && paths.contains(&"oci-layout")
    );
    assert!(paths.starts_with(&["blobs/", "blobs/sha256/"]), "{paths:?}");
    for (path, mtime, uid, gid, mode, _) in &all {
        assert_eq!((*mtime, *uid, *gid), (0, 0, 0), "{path}");
        assert!(*mode == 0o644 || *mode == 0o755, "{path}: {mode:o}");
    }
    let files: BTreeMap<&str, &Vec<u8>> = all.iter().map(|e| (e.0.as_str(), &e.5)).collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(files["manifest.json"]).expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"][0], "app:1");
    assert_eq!(
        manifest[0]["Config"],
        archive_path(image.image_id()).as_str()
    );
    for layer in manifest[0]["Layers"].as_array().expect("layers") {
        assert!(files.contains_key(layer.as_str().expect("path")), "{layer}");
    }
    // An OCI archive is the layout as a tar, without manifest.json.
    let oci = dir.path().join("oci.tar");
    write(
        &Output::Oci {
            dest: oci.clone(),
            tar: true,
        },
        &image,
        &tags,
    )
    .expect("write");
    let oci_paths: Vec<String> = entries(&std::fs::read(&oci).expect("read"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(!oci_paths.iter().any(|p| p == "manifest.json"));
    assert!(oci_paths.iter().any(|p| p == "index.json"));
}

#[test]
fn a_failed_write_leaves_nothing_at_the_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(dir.path());
    // A layer blob gone from the store: the write fails part way.
    std::fs::remove_file(image.blob_path(&image.layers[1].blob.digest)).expect("rm");
    for output in [
        Output::Docker {
            dest: dir.path().join("img.tar"),
        },
        Output::Oci {
            dest: dir.path().join("layout"),
            tar: false,
        },
    ] {
        let e = write(&output, &image, &[]).expect_err("fails");
        assert!(e.to_string().contains("nothing was left"), "{e}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["store".to_string()], "{output:?}");
    }
}

#[test]
fn an_untagged_image_is_listed_once_without_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(dir.path());
    let index: serde_json::Value = serde_json::from_slice(&index_json(&image, &[])).expect("json");
    assert_eq!(index["manifests"].as_array().expect("list").len(), 1);
    assert!(index["manifests"][0].get("annotations").is_none());
    assert_eq!(full_name("team/app:2"), "docker.io/team/app:2");
    assert_eq!(full_name("localhost/app"), "localhost/app:latest");
    assert_eq!(
        full_name("reg.io:5000/a/b@sha256:00"),
        "reg.io:5000/a/b@sha256:00"
    );
}
