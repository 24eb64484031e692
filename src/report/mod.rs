//! What a build shipped and what it left behind, in numbers; what changed since the baseline;
//! how the gates ended. JSON carries raw integers and signed deltas; only the text and markdown
//! forms use human units. The JSON shape is versioned (`schema_version`), documented in
//! README.md and checked in as `schema/report.schema.json` (generated from these types).
//!
//! This file is the stage's contract: the types other stages see. JSON is these types through
//! serde; the forms for people are rendered in `text.rs` and `markdown.rs`. Reading an export is
//! `scan`, its numbers `measure`.

mod error;

pub use error::{Error, Result};

pub mod diff;
pub mod gates;
pub mod measure;
pub mod scan;
pub mod store;
pub mod waste;

mod markdown;
mod short;
mod table;
mod text;
mod wording;

#[cfg(test)]
pub(crate) mod fixtures;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::diff::Diff;
use crate::report::gates::GateOutcome;
use crate::report::measure::{
    ArtifactSize, FileEntry, FileSize, Layer, Measurement, RuleSize, Sizes,
};
use crate::report::waste::Waste;
use crate::report::wording::short_id;

/// The version of the report's JSON shape. It changes when a field is removed or changes
/// meaning; added fields keep it.
pub const SCHEMA_VERSION: u32 = 1;

/// How a baseline from the previous build is named.
pub const LAST_BUILD: &str = "the last build";

/// The measurement of one runtime image: what `report.json` holds, and what a build returns to
/// library callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The version of this JSON shape (currently 1).
    pub schema_version: u32,
    /// The dockception that wrote it, e.g. `dockception 0.1.0`.
    pub tool: String,
    /// The runtime image's id (`sha256:…`).
    pub image_id: String,
    /// The tags it was given.
    pub tags: Vec<String>,
    /// The builder image and its size; absent when the image was measured without a build.
    pub builder: Option<SizedImage>,
    /// The runtime base and its size (`scratch` has size 0); absent when unknown.
    pub base: Option<SizedImage>,
    /// The runtime image's size as the engine reports it (uncompressed content), in bytes.
    pub runtime_bytes: u64,
    /// The runtime image's content, layer tar and gzip bytes, summed over its layers.
    pub sizes: Sizes,
    /// The image's history, bottom first: one entry per step, with its layer when it made one.
    pub layers: Vec<Layer>,
    /// The shipped files (those of the artifacts layer), sorted by path.
    pub artifacts: Vec<ArtifactSize>,
    /// Their total content bytes.
    pub artifact_bytes: u64,
    /// Files and bytes per artifact rule (include glob), in manifest order; empty when the
    /// manifest is unknown.
    pub rules: Vec<RuleSize>,
    /// Output files the globs did not select (build only).
    pub unshipped_files: Option<u64>,
    /// Their total size in bytes (build only).
    pub unshipped_bytes: Option<u64>,
    /// Builder image bytes that did not reach the runtime image: builder minus runtime, at
    /// least 0 (absent without a builder).
    pub left_behind_bytes: Option<u64>,
    /// Builder size divided by runtime size: how many times smaller the shipped image is
    /// (absent without a builder or for an empty image).
    pub reduction_ratio: Option<f64>,
    /// Bytes of the build context sent to the engine (build only).
    pub context_bytes: Option<u64>,
    /// The largest files of the image, largest first (at most 10).
    pub largest_files: Vec<FileSize>,
    /// Bytes stored for nothing: deleted or overwritten copies and duplicate content.
    pub waste: Waste,
    /// Every file of the image (folders left out), sorted by path: what the next diff compares.
    pub files: Vec<FileEntry>,
    /// How long the build command itself ran, in milliseconds (absent when it did not run).
    #[serde(default)]
    pub build_command_ms: Option<u64>,
    /// True when nothing changed since the last build, so nothing was built: this is that
    /// build's report.
    #[serde(default)]
    pub up_to_date: bool,
    /// How the ELF artifacts are linked, and the shared libraries added for them.
    #[serde(default)]
    pub libs: crate::artifacts::linkage::Linkage,
    /// The image's manifest digest (`sha256:…`), what a registry names it by; absent for an
    /// image dockception did not write.
    #[serde(default)]
    pub digest: Option<String>,
    /// Where the image went, one entry per destination (build only).
    #[serde(default)]
    pub delivered: Vec<Delivery>,
    /// When no builder ran because an earlier build had exactly these inputs: that build's
    /// fingerprint (hex), whose kept output and image this build reused.
    #[serde(default)]
    pub reused_from: Option<String>,
    /// How many source files the up-to-date check looked at (build only).
    #[serde(default)]
    pub source_files: Option<u64>,
    /// How many of them it read and hashed: the others' size, mtime, ctime and inode were
    /// unchanged since the last scan, so their stored digest was used (build only).
    #[serde(default)]
    pub source_files_hashed: Option<u64>,
}

/// One destination the image was delivered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    /// The kind: `engine` (loaded), `registry` (pushed), `oci` or `docker` (an archive or
    /// layout written).
    pub to: String,
    /// Where exactly, e.g. `the engine as app:1` or a registry reference.
    pub destination: String,
    /// Bytes sent (the archive loaded, the blobs uploaded or the file written).
    pub sent_bytes: u64,
    /// Compressed bytes of layers not sent because the destination had them already.
    pub skipped_bytes: u64,
}

/// An image and its size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct SizedImage {
    /// The reference from the manifest.
    pub image: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a build knows beyond the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFacts {
    /// The builder image.
    pub builder: SizedImage,
    /// Output files not shipped, and their bytes.
    pub unshipped: (u64, u64),
    /// Bytes of build context sent.
    pub context_bytes: Option<u64>,
}

impl Report {
    /// A report of an image that has no layers, no files and no build (a start for tests and
    /// for [`Report::from_measurement`]).
    pub(crate) fn empty(image_id: &str) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool: format!("dockception {}", env!("CARGO_PKG_VERSION")),
            image_id: image_id.to_string(),
            tags: Vec::new(),
            builder: None,
            base: None,
            runtime_bytes: 0,
            sizes: Sizes::default(),
            layers: Vec::new(),
            artifacts: Vec::new(),
            artifact_bytes: 0,
            rules: Vec::new(),
            unshipped_files: None,
            unshipped_bytes: None,
            left_behind_bytes: None,
            reduction_ratio: None,
            context_bytes: None,
            largest_files: Vec::new(),
            waste: Waste::default(),
            files: Vec::new(),
            build_command_ms: None,
            up_to_date: false,
            libs: crate::artifacts::linkage::Linkage::default(),
            digest: None,
            delivered: Vec::new(),
            reused_from: None,
            source_files: None,
            source_files_hashed: None,
        }
    }

    /// The report of a measured image.
    pub(crate) fn from_measurement(
        image_id: &str,
        tags: Vec<String>,
        runtime_bytes: u64,
        base: Option<SizedImage>,
        measured: Measurement,
    ) -> Report {
        Report {
            tags,
            base,
            runtime_bytes,
            sizes: measured.sizes,
            layers: measured.layers,
            artifact_bytes: measured.artifacts.iter().map(|a| a.bytes).sum(),
            artifacts: measured.artifacts,
            rules: measured.rules,
            largest_files: measured.largest_files,
            waste: measured.waste,
            files: measured.files,
            ..Report::empty(image_id)
        }
    }

    /// Add what the build knows: the builder (so "left behind" is exact), the unshipped
    /// outputs and the context size.
    pub(crate) fn with_build(mut self, build: BuildFacts) -> Report {
        self.left_behind_bytes = Some(build.builder.bytes.saturating_sub(self.runtime_bytes));
        self.reduction_ratio = (self.runtime_bytes > 0)
            .then(|| build.builder.bytes as f64 / self.runtime_bytes as f64);
        self.builder = Some(build.builder);
        self.unshipped_files = Some(build.unshipped.0);
        self.unshipped_bytes = Some(build.unshipped.1);
        self.context_bytes = build.context_bytes;
        self
    }

    /// The image's first tag, else its short id.
    pub fn name(&self) -> String {
        self.tags
            .first()
            .cloned()
            .unwrap_or_else(|| short_id(&self.image_id))
    }

    /// The report for people, without a diff or gates.
    pub fn to_text(&self) -> String {
        Document::new(self.clone(), None, None, None).to_text()
    }
}

/// The baseline a document compares with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineInfo {
    /// Where it came from: `the last build`, a report file, or an image reference.
    pub source: String,
    /// Its image id.
    pub image_id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its size as the engine reported it.
    pub runtime_bytes: u64,
}

/// What `build` and `report` print: the report's fields, then the baseline, the diff against it
/// and the gates' outcome (each `null` when there is none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "dockception report")]
pub struct Document {
    /// The measurement of the current image.
    #[serde(flatten)]
    pub report: Report,
    /// What it is compared with.
    pub baseline: Option<BaselineInfo>,
    /// How it differs from the baseline.
    pub diff: Option<Diff>,
    /// How the gates ended; absent when no gate is configured.
    pub gates: Option<GateOutcome>,
}

impl Document {
    /// Put the pieces together; `baseline` is the baseline's report and where it came from.
    pub fn new(
        report: Report,
        baseline: Option<(&Report, String)>,
        diff: Option<Diff>,
        gates: Option<GateOutcome>,
    ) -> Document {
        Document {
            baseline: baseline.map(|(b, source)| BaselineInfo {
                source,
                image_id: b.image_id.clone(),
                tags: b.tags.clone(),
                runtime_bytes: b.runtime_bytes,
            }),
            report,
            diff,
            gates,
        }
    }

    /// The exit status the gates ask for (0 without gates).
    pub fn exit_code(&self) -> u8 {
        self.gates.as_ref().map_or(0, |g| g.exit_code)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The JSON Schema of what `--format json` prints, as checked into
/// `schema/report.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Document);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::diff::diff;
    use crate::report::fixtures::sample_report;
    use crate::report::measure::Role;

    #[test]
    fn derived_numbers() {
        let r = sample_report(None);
        assert_eq!(r.left_behind_bytes, Some(368 * 1024 * 1024 - 800 * 1024));
        assert!((r.reduction_ratio.expect("ratio") - 471.04).abs() < 0.01);
        assert_eq!(r.artifact_bytes, 800 * 1024);
        let roles = diff(&Report::empty("sha256:none"), &r).roles;
        let artifacts = roles.iter().find(|d| d.role == Role::Artifacts);
        assert_eq!(artifacts.map(|d| d.after), Some(800 * 1024));
    }

    #[test]
    fn json_keeps_raw_integers_and_round_trips() {
        let r = sample_report(None);
        let json = serde_json::to_value(Document::new(r.clone(), None, None, None)).expect("json");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["runtime_bytes"], 800 * 1024);
        assert_eq!(json["builder"]["bytes"], 368 * 1024 * 1024);
        assert_eq!(json["layers"][0]["gzip_bytes"], 400 * 1024);
        assert!(json["diff"].is_null());
        let back: Report = serde_json::from_value(json).expect("a report reads back");
        assert_eq!(back, r);
    }
}
