//! Reports to test with: a small measured one, and a document that compares it with itself grown.

use crate::report::diff::diff;
use crate::report::gates::{evaluate, GateSet};
use crate::report::measure::{
    ArtifactSize, FileEntry, FileKind, FileSize, Layer, Measurement, Role, RuleSize, Sizes,
};
use crate::report::waste::Waste;
use crate::report::{BuildFacts, Document, Report, SizedImage, LAST_BUILD};

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
        context_bytes: 800 * 1024 + 2048,
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
