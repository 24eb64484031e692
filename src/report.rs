//! What a build shipped and what it left behind, in numbers. JSON carries raw integers; only the
//! text form uses human units.

use serde::Serialize;

/// The result of a build, as printed and as returned to library callers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The runtime image's id.
    pub image_id: String,
    /// The tags it was given.
    pub tags: Vec<String>,
    /// The builder image.
    pub builder: SizedImage,
    /// The runtime base (`scratch` has size 0).
    pub base: SizedImage,
    /// The runtime image's size in bytes.
    pub runtime_bytes: u64,
    /// The shipped files.
    pub artifacts: Vec<ArtifactSize>,
    /// Their total size in bytes.
    pub artifact_bytes: u64,
    /// Output files the globs did not select.
    pub unshipped_files: usize,
    /// Their total size in bytes.
    pub unshipped_bytes: u64,
    /// Builder image bytes that did not reach the runtime image (builder minus runtime, at
    /// least 0).
    pub left_behind_bytes: u64,
    /// Builder size divided by runtime size: how many times smaller the shipped image is.
    pub reduction_ratio: f64,
    /// Bytes of the build context sent to the engine.
    pub context_bytes: u64,
    /// How the ELF artifacts are linked, and the shared libraries added for them.
    pub libs: crate::libs::Linkage,
}

/// An image and its size.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SizedImage {
    /// The reference from the manifest.
    pub image: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One shipped file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArtifactSize {
    /// Its path in the image.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Report {
    /// Fill in the derived numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image_id: String,
        tags: Vec<String>,
        builder: SizedImage,
        base: SizedImage,
        runtime_bytes: u64,
        artifacts: Vec<ArtifactSize>,
        unshipped: (usize, u64),
        context_bytes: u64,
    ) -> Report {
        let artifact_bytes = artifacts.iter().map(|a| a.bytes).sum();
        let reduction_ratio = if runtime_bytes == 0 {
            0.0
        } else {
            builder.bytes as f64 / runtime_bytes as f64
        };
        Report {
            image_id,
            tags,
            left_behind_bytes: builder.bytes.saturating_sub(runtime_bytes),
            builder,
            base,
            runtime_bytes,
            artifacts,
            artifact_bytes,
            unshipped_files: unshipped.0,
            unshipped_bytes: unshipped.1,
            reduction_ratio,
            context_bytes,
            libs: crate::libs::Linkage::default(),
        }
    }

    /// The report for people: a summary line first, then an aligned table.
    pub fn to_text(&self) -> String {
        let name = self
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| short_id(&self.image_id));
        let mut out = format!(
            "{name}: {} on {}, {:.1}x smaller than the builder {} ({} left behind)\n",
            human(self.runtime_bytes),
            self.base.image,
            self.reduction_ratio,
            self.builder.image,
            human(self.left_behind_bytes),
        );
        let mut rows: Vec<(String, String)> = vec![
            (
                format!("builder image {}", self.builder.image),
                human(self.builder.bytes),
            ),
            (
                format!("base image {}", self.base.image),
                human(self.base.bytes),
            ),
            (
                format!("runtime image {}", short_id(&self.image_id)),
                human(self.runtime_bytes),
            ),
        ];
        for a in &self.artifacts {
            rows.push((format!("  {}", a.path), human(a.bytes)));
        }
        rows.push((
            format!("artifacts ({} files)", self.artifacts.len()),
            human(self.artifact_bytes),
        ));
        rows.push((
            format!("outputs not shipped ({} files)", self.unshipped_files),
            human(self.unshipped_bytes),
        ));
        rows.push(("build context sent".into(), human(self.context_bytes)));
        let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let size_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        for (label, size) in rows {
            out.push_str(&format!("  {label:<width$}  {size:>size_width$}\n"));
        }
        out.push_str(&self.libs.to_text());
        if !self.tags.is_empty() {
            out.push_str(&format!("  tagged {}\n", self.tags.join(", ")));
        }
        out
    }
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::new(
            "sha256:0123456789abcdef".into(),
            vec!["hello:latest".into()],
            SizedImage {
                image: "gcc:local".into(),
                bytes: 368 * 1024 * 1024,
            },
            SizedImage {
                image: "scratch".into(),
                bytes: 0,
            },
            800 * 1024,
            vec![ArtifactSize {
                path: "hello".into(),
                bytes: 800 * 1024,
            }],
            (2, 4096),
            800 * 1024 + 2048,
        )
    }

    #[test]
    fn derived_numbers() {
        let r = report();
        assert_eq!(r.left_behind_bytes, 368 * 1024 * 1024 - 800 * 1024);
        assert!((r.reduction_ratio - 471.04).abs() < 0.01);
        assert_eq!(r.artifact_bytes, 800 * 1024);
    }

    #[test]
    fn text_starts_with_a_summary_and_aligns() {
        let text = report().to_text();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("hello:latest: 800.0 KiB on scratch, 471.0x smaller than the builder gcc:local (367.2 MiB left behind)")
        );
        assert_eq!(
            lines.next(),
            Some("  builder image gcc:local        368.0 MiB")
        );
        assert!(
            text.contains("\n    hello                        800.0 KiB\n"),
            "{text}"
        );
    }

    #[test]
    fn json_keeps_raw_integers() {
        let json = serde_json::to_value(report()).expect("json");
        assert_eq!(json["runtime_bytes"], 800 * 1024);
        assert_eq!(json["builder"]["bytes"], 368 * 1024 * 1024);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
