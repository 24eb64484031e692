//! Images, exports and reports to test with: layer tars and `docker save` archives as the engine
//! writes them, and a small measured report.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::fsutil::hex;
use crate::report::diff::diff;
use crate::report::gates::{evaluate, GateSet};
use crate::report::measure::{
    ArtifactSize, FileEntry, FileSize, Layer, Measurement, Role, RuleSize, Sizes,
};
use crate::report::scan::FileKind;
use crate::report::waste::Waste;
use crate::report::{BuildFacts, Document, Report, SizedImage, LAST_BUILD};

/// A file, folder, symlink or whiteout to put in a test layer.
pub(crate) enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A layer tar, as the engine writes one.
pub(crate) fn layer_tar(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        match item {
            Item::File(path, content, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                header.set_mode(*mode);
                builder
                    .append_data(&mut header, path, *content)
                    .expect("append");
            }
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
                builder
                    .append_data(&mut header, path, io::empty())
                    .expect("append");
            }
            Item::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                builder
                    .append_link(&mut header, path, target)
                    .expect("append");
            }
            Item::Hardlink(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                header.set_mode(0o755);
                builder
                    .append_link(&mut header, path, target)
                    .expect("append");
            }
        }
    }
    builder.into_inner().expect("tar")
}

pub(crate) fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// A legacy `docker save` archive of `layers` (bottom first) with `history`
/// (`(created_by, empty_layer)`), its entries in the engine's order: layer folders (by
/// name), the config, then `manifest.json`.
pub(crate) fn save_tar(layers: &[Vec<u8>], history: &[(&str, bool)]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history.iter().map(|(by, empty)| {
            let mut h = serde_json::json!({"created_by": by});
            if *empty { h["empty_layer"] = serde_json::json!(true); }
            h
        }).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_name = format!("{}.json", &sha(&config)["sha256:".len()..]);
    // Folder names as the engine makes them: unrelated to the order of the layers.
    let mut folders: Vec<(String, &Vec<u8>)> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("{:x}{}", 15 - i, &sha(l)[8..20]), l))
        .collect();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["test:1"],
        "Layers": folders.iter().map(|(f, _)| format!("{f}/layer.tar")).collect::<Vec<_>>(),
    }]);
    folders.sort();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, data)
            .expect("append");
    };
    for (folder, layer) in &folders {
        add(&format!("{folder}/VERSION"), b"1.0");
        add(&format!("{folder}/json"), b"{}");
        add(&format!("{folder}/layer.tar"), layer);
    }
    add(&config_name, &config);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    add("repositories", b"{}");
    builder.into_inner().expect("tar")
}

/// The gzipped size at the default level, as `docker push` would store it.
pub(crate) fn gzip_size(bytes: &[u8]) -> u64 {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip").len() as u64
}

/// A dockception image on scratch: `/hello` (800 KiB) and, with `extra`, `/extra.bin` of that
/// many bytes; built from a 368 MiB builder.
pub(crate) fn sample_report(extra: Option<u64>) -> Report {
    let mut files = vec![FileEntry {
        path: "/hello".into(),
        kind: FileKind::File,
        size: 800 * 1024,
        mode: "0755".into(),
        sha256: Some("aa".into()),
        link: None,
    }];
    if let Some(size) = extra {
        files.push(FileEntry {
            path: "/extra.bin".into(),
            kind: FileKind::File,
            size,
            mode: "0644".into(),
            sha256: Some("bb".into()),
            link: None,
        });
    }
    let content: u64 = files.iter().map(|f| f.size).sum();
    let measured = Measurement {
        sizes: Sizes {
            content_bytes: content,
            tar_bytes: content + 2048,
            gzip_bytes: content / 2,
        },
        layers: vec![
            Layer {
                index: 0,
                role: Role::Artifacts,
                created_by: "/bin/sh -c #(nop) COPY dir:0123 in / ".into(),
                diff_id: Some("sha256:ab".into()),
                files: files.len() as u64,
                sizes: Sizes {
                    content_bytes: content,
                    tar_bytes: content + 2048,
                    gzip_bytes: content / 2,
                },
            },
            Layer {
                index: 1,
                role: Role::Metadata,
                created_by: "/bin/sh -c #(nop)  ENTRYPOINT [\"/hello\"]".into(),
                diff_id: None,
                files: 0,
                sizes: Sizes::default(),
            },
        ],
        artifacts: files
            .iter()
            .map(|f| ArtifactSize {
                path: f.path.clone(),
                bytes: f.size,
                rule: Some("*".into()),
            })
            .collect(),
        rules: vec![RuleSize {
            include: "*".into(),
            files: files.len() as u64,
            content_bytes: content,
            tar_bytes: content + 1024,
        }],
        largest_files: files
            .iter()
            .map(|f| FileSize {
                path: f.path.clone(),
                bytes: f.size,
            })
            .collect(),
        files,
        waste: Waste::default(),
    };
    Report::from_measurement(
        "sha256:0123456789abcdef",
        vec!["hello:latest".into()],
        content,
        Some(SizedImage {
            image: "scratch".into(),
            bytes: 0,
        }),
        measured,
    )
    .with_build(BuildFacts {
        builder: SizedImage {
            image: "gcc:local".into(),
            bytes: 368 * 1024 * 1024,
        },
        unshipped: (2, 4096),
        context_bytes: Some(800 * 1024 + 2048),
    })
}

/// The sample grown by a 5000-byte file since the last build, against a 4000-byte growth gate
/// (which fails).
pub(crate) fn grown_document() -> Document {
    let before = sample_report(None);
    let after = sample_report(Some(5000));
    let d = diff(&before, &after);
    let gates = evaluate(
        &GateSet {
            max_growth: Some(4000),
            ..Default::default()
        },
        &after,
        Some(&d),
    );
    Document::new(
        after,
        Some((&before, LAST_BUILD.into())),
        Some(d),
        Some(gates),
    )
}
