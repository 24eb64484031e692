//! What a build shipped and what it left behind, in numbers; what changed since the baseline;
//! how the gates ended. JSON carries raw integers and signed deltas; only the text and markdown
//! forms use human units. The JSON shape is versioned (`schema_version`), documented in
//! README.md and checked in as `schema/report.schema.json` (generated from these types).

mod error;

pub use error::{Error, Result};

pub mod diff;
pub mod gates;
pub mod measure;
pub mod store;
pub mod waste;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::diff::{Change, Changes, Diff};
use crate::report::gates::GateOutcome;
use crate::report::measure::{
    ArtifactSize, FileEntry, FileSize, Layer, Measurement, Role, RuleSize, Sizes,
};
use crate::report::waste::Waste;
use crate::units::{human, signed_human};

/// The version of the report's JSON shape. It changes when a field is removed or changes
/// meaning; added fields keep it.
pub const SCHEMA_VERSION: u32 = 1;

/// How many entries of each change list the text and markdown forms show.
const SHOWN: usize = 10;
/// How many lines of the listing diff the text and markdown forms show.
const SHOWN_DIFF_LINES: usize = 60;

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
    pub libs: crate::artifacts::shared_libs::Linkage,
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
    pub context_bytes: u64,
}

impl Report {
    /// A report of an image that has no layers, no files and no build (a start for tests and
    /// for [`Report::from_measurement`]).
    pub fn empty(image_id: &str) -> Report {
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
            libs: crate::artifacts::shared_libs::Linkage::default(),
        }
    }

    /// The report of a measured image.
    pub fn from_measurement(
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
    pub fn with_build(mut self, build: BuildFacts) -> Report {
        self.left_behind_bytes = Some(build.builder.bytes.saturating_sub(self.runtime_bytes));
        self.reduction_ratio = (self.runtime_bytes > 0)
            .then(|| build.builder.bytes as f64 / self.runtime_bytes as f64);
        self.builder = Some(build.builder);
        self.unshipped_files = Some(build.unshipped.0);
        self.unshipped_bytes = Some(build.unshipped.1);
        self.context_bytes = Some(build.context_bytes);
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

    /// The one line that says it all.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let mut line = format!("{}: {}", r.name(), human(r.runtime_bytes));
        if let Some(base) = &r.base {
            line.push_str(&format!(" on {}", base.image));
        }
        if let (Some(builder), Some(ratio), Some(left)) =
            (&r.builder, r.reduction_ratio, r.left_behind_bytes)
        {
            line.push_str(&format!(
                ", {ratio:.1}x smaller than the builder {} ({} left behind)",
                builder.image,
                human(left)
            ));
        } else {
            line.push_str(&format!(" (gzip {})", human(r.sizes.gzip_bytes)));
        }
        if let (Some(diff), Some(baseline)) = (&self.diff, &self.baseline) {
            line.push_str(&format!(
                ", {} {}",
                delta_text(diff.image.delta_bytes, diff.image.delta_percent),
                since(&baseline.source)
            ));
        }
        if r.waste.total_bytes > 0 {
            line.push_str(&format!(", {} wasted", human(r.waste.total_bytes)));
        }
        line
    }

    /// The report for people: the summary line first, then aligned tables in human units.
    pub fn to_text(&self) -> String {
        let r = &self.report;
        let mut out = String::new();
        if r.up_to_date {
            // Nothing was built: one line, and the gates' result when there are gates.
            out.push_str(&format!(
                "{} is up to date: nothing changed since the last build (image {}, {}); --force rebuilds\n",
                r.name(),
                short_id(&r.image_id),
                human(r.runtime_bytes)
            ));
            if let Some(gates) = &self.gates {
                out.push_str(&gates.summary);
                out.push('\n');
            }
            return out;
        }
        out.push_str(&self.summary());
        out.push('\n');
        if let Some(ms) = r.build_command_ms {
            out.push_str(&format!("  build command ran {}\n", human_ms(ms)));
        }

        let image_delta = self.diff.as_ref().map(|d| &d.image);
        let mut sizes = Table::new(&[false, true, false]);
        if let Some(b) = &r.builder {
            sizes.row(vec![
                format!("builder image {}", b.image),
                human(b.bytes),
                String::new(),
            ]);
        }
        if let Some(b) = &r.base {
            sizes.row(vec![
                format!("base image {}", b.image),
                human(b.bytes),
                String::new(),
            ]);
        }
        sizes.row(vec![
            format!("runtime image {}", short_id(&r.image_id)),
            human(r.runtime_bytes),
            image_delta.map_or(String::new(), |d| {
                delta_text(d.delta_bytes, d.delta_percent)
            }),
        ]);
        sizes.row(vec![
            "  as layer tars".into(),
            human(r.sizes.tar_bytes),
            String::new(),
        ]);
        sizes.row(vec![
            "  gzip estimate".into(),
            human(r.sizes.gzip_bytes),
            self.diff
                .as_ref()
                .map_or(String::new(), |d| signed_human(d.gzip.delta_bytes)),
        ]);
        for a in &r.artifacts {
            sizes.row(vec![format!("  {}", a.path), human(a.bytes), String::new()]);
        }
        sizes.row(vec![
            format!("artifacts ({})", files(r.artifacts.len() as u64)),
            human(r.artifact_bytes),
            self.diff
                .as_ref()
                .map_or(String::new(), |d| signed_human(d.artifacts.delta_bytes)),
        ]);
        if let (Some(count), Some(bytes)) = (r.unshipped_files, r.unshipped_bytes) {
            sizes.row(vec![
                format!("outputs not shipped ({})", files(count)),
                human(bytes),
                String::new(),
            ]);
        }
        if let Some(bytes) = r.context_bytes {
            sizes.row(vec![
                "build context sent".into(),
                human(bytes),
                String::new(),
            ]);
        }
        if let Some(left) = r.left_behind_bytes {
            sizes.row(vec!["left behind".into(), human(left), String::new()]);
        }
        sizes.row(vec![
            "waste".into(),
            human(r.waste.total_bytes),
            self.diff
                .as_ref()
                .map_or(String::new(), |d| signed_human(d.waste.delta_bytes)),
        ]);
        out.push_str(&sizes.render("  "));
        if !r.tags.is_empty() {
            // A build tagged the image; a measured image just has tags.
            let verb = if r.builder.is_some() {
                "tagged"
            } else {
                "tags"
            };
            out.push_str(&format!("  {verb} {}\n", r.tags.join(", ")));
        }

        out.push_str("\nlayers\n");
        let mut layers = Table::new(&[true, false, true, true, true, false]);
        layers.row(
            ["#", "role", "size", "tar", "gzip", "created by"]
                .map(String::from)
                .to_vec(),
        );
        for l in &r.layers {
            layers.row(vec![
                l.index.to_string(),
                l.role.name().into(),
                human(l.sizes.content_bytes),
                human(l.sizes.tar_bytes),
                human(l.sizes.gzip_bytes),
                step(&l.created_by),
            ]);
        }
        out.push_str(&layers.render("  "));

        if !r.rules.is_empty() {
            out.push_str("\nartifact rules\n");
            let mut rules = Table::new(&[false, true, true, false]);
            for rule in &r.rules {
                let delta = self
                    .diff
                    .as_ref()
                    .and_then(|d| d.rules.iter().find(|x| x.include == rule.include))
                    .map_or(String::new(), |x| signed_human(x.delta_bytes));
                rules.row(vec![
                    rule.include.clone(),
                    files(rule.files),
                    human(rule.content_bytes),
                    delta,
                ]);
            }
            out.push_str(&rules.render("  "));
        }

        out.push_str(&r.libs.to_text());

        if !r.largest_files.is_empty() {
            out.push_str("\nlargest files\n");
            let mut largest = Table::new(&[false, true]);
            for f in &r.largest_files {
                largest.row(vec![f.path.clone(), human(f.bytes)]);
            }
            out.push_str(&largest.render("  "));
        }

        out.push_str(&format!(
            "\nwaste: {} reclaimable, {} duplicated\n",
            human(r.waste.reclaimable_bytes),
            human(r.waste.duplicate_bytes)
        ));
        let mut waste = Table::new(&[false, true, false]);
        for w in r.waste.reclaimable.iter().take(SHOWN) {
            waste.row(vec![
                w.path.clone(),
                human(w.reclaimable_bytes),
                format!(
                    "{} stored, {} survives",
                    match w.copies {
                        1 => "1 copy".to_string(),
                        n => format!("{n} copies"),
                    },
                    human(w.surviving_bytes)
                ),
            ]);
        }
        for d in r.waste.duplicates.iter().take(SHOWN) {
            let more = d.paths.len().saturating_sub(1);
            waste.row(vec![
                format!(
                    "{} and {more} more",
                    d.paths.first().map_or("", String::as_str)
                ),
                human(d.wasted_bytes),
                format!("same {} content", human(d.bytes)),
            ]);
        }
        out.push_str(&waste.render("  "));

        if let (Some(diff), Some(baseline)) = (&self.diff, &self.baseline) {
            out.push_str(&format!("\nchanges {}\n", since(&baseline.source)));
            out.push_str(&format!(
                "  image {} -> {}: {}\n",
                human(diff.image.before),
                human(diff.image.after),
                delta_text(diff.image.delta_bytes, diff.image.delta_percent)
            ));
            let mut roles = Table::new(&[false, true, true, true]);
            for role in diff.roles.iter().filter(|r| r.before > 0 || r.after > 0) {
                roles.row(vec![
                    format!("{} layers", role.role.name()),
                    human(role.before),
                    human(role.after),
                    signed_human(role.delta_bytes),
                ]);
            }
            out.push_str(&roles.render("  "));
            for (what, changes) in [("artifacts", &diff.artifacts), ("files", &diff.files)] {
                out.push_str(&format!("  {what}: {}\n", counts(changes)));
                out.push_str(&change_lines(changes));
            }
            if !diff.listing.is_empty() {
                out.push_str("  file listing (path size mode):\n");
                let lines: Vec<&str> = diff.listing.lines().collect();
                for line in lines.iter().take(SHOWN_DIFF_LINES) {
                    out.push_str(&format!("    {line}\n"));
                }
                if lines.len() > SHOWN_DIFF_LINES {
                    out.push_str(&format!(
                        "    ... and {} more lines\n",
                        lines.len() - SHOWN_DIFF_LINES
                    ));
                }
            }
        } else if self.baseline.is_none() {
            out.push_str("\nno baseline: this is the first report to compare with\n");
        }

        if let Some(gates) = &self.gates {
            out.push_str("\ngates\n");
            let mut table = Table::new(&[false, false, false]);
            for c in &gates.checks {
                table.row(vec![
                    c.status.name().into(),
                    c.gate.clone(),
                    c.detail.clone(),
                ]);
            }
            out.push_str(&table.render("  "));
            out.push_str(&gates.summary);
            out.push('\n');
        }
        out
    }

    /// A pull-request comment or CI step summary (GitHub-flavoured markdown).
    pub fn to_markdown(&self) -> String {
        let r = &self.report;
        let mut out = format!(
            "### dockception: `{}`\n\n{}\n\n",
            r.name(),
            md(&self.summary())
        );
        out.push_str("| | size | change |\n|---|---:|---:|\n");
        let diff = self.diff.as_ref();
        if let Some(b) = &r.builder {
            out.push_str(&format!(
                "| builder image `{}` | {} | |\n",
                b.image,
                human(b.bytes)
            ));
        }
        if let Some(b) = &r.base {
            out.push_str(&format!(
                "| base image `{}` | {} | |\n",
                b.image,
                human(b.bytes)
            ));
        }
        out.push_str(&format!(
            "| **runtime image** | **{}** | {} |\n",
            human(r.runtime_bytes),
            diff.map_or(String::new(), |d| delta_text(
                d.image.delta_bytes,
                d.image.delta_percent
            ))
        ));
        out.push_str(&format!(
            "| gzip estimate | {} | {} |\n",
            human(r.sizes.gzip_bytes),
            diff.map_or(String::new(), |d| signed_human(d.gzip.delta_bytes))
        ));
        if let Some(left) = r.left_behind_bytes {
            out.push_str(&format!("| left behind | {} | |\n", human(left)));
        }
        out.push_str(&format!(
            "| artifacts ({}) | {} | {} |\n",
            files(r.artifacts.len() as u64),
            human(r.artifact_bytes),
            diff.map_or(String::new(), |d| signed_human(d.artifacts.delta_bytes))
        ));
        out.push_str(&format!(
            "| waste | {} | {} |\n",
            human(r.waste.total_bytes),
            diff.map_or(String::new(), |d| signed_human(d.waste.delta_bytes))
        ));

        out.push_str("\n<details><summary>Layers</summary>\n\n");
        out.push_str(
            "| # | role | size | tar | gzip | created by |\n|---:|---|---:|---:|---:|---|\n",
        );
        for l in &r.layers {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | `{}` |\n",
                l.index,
                l.role.name(),
                human(l.sizes.content_bytes),
                human(l.sizes.tar_bytes),
                human(l.sizes.gzip_bytes),
                md(&step(&l.created_by))
            ));
        }
        out.push_str("\n</details>\n");

        if let (Some(diff), Some(baseline)) = (diff, &self.baseline) {
            out.push_str(&format!(
                "\n#### Changes {}\n\n",
                md(&since(&baseline.source))
            ));
            out.push_str(&format!("Files: {}.\n\n", counts(&diff.files)));
            if !diff.files.is_empty() {
                out.push_str("| | path | before | after | change |\n|---|---|---:|---:|---:|\n");
                for (mark, list) in [
                    ("added", &diff.files.added),
                    ("removed", &diff.files.removed),
                    ("changed", &diff.files.changed),
                ] {
                    for c in list.iter().take(SHOWN) {
                        out.push_str(&format!(
                            "| {mark} | `{}` | {} | {} | {} |\n",
                            md(&c.path),
                            c.before.map_or(String::new(), human),
                            c.after.map_or(String::new(), human),
                            signed_human(c.delta_bytes)
                        ));
                    }
                    if list.len() > SHOWN {
                        out.push_str(&format!(
                            "| {mark} | ... and {} more | | | |\n",
                            list.len() - SHOWN
                        ));
                    }
                }
            }
            if !diff.listing.is_empty() {
                out.push_str("\n<details><summary>File listing diff</summary>\n\n```diff\n");
                let lines: Vec<&str> = diff.listing.lines().collect();
                for line in lines.iter().take(SHOWN_DIFF_LINES) {
                    out.push_str(line);
                    out.push('\n');
                }
                if lines.len() > SHOWN_DIFF_LINES {
                    out.push_str(&format!(
                        "... and {} more lines\n",
                        lines.len() - SHOWN_DIFF_LINES
                    ));
                }
                out.push_str("```\n\n</details>\n");
            }
        }

        if let Some(gates) = &self.gates {
            out.push_str("\n#### Gates\n\n| result | gate | detail |\n|---|---|---|\n");
            for c in &gates.checks {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    c.status.name(),
                    c.gate,
                    md(&c.detail)
                ));
            }
            out.push_str(&format!("\n**{}**\n", gates.summary));
        }
        out
    }
}

/// `the last build` -> `since the last build`; anything else -> `vs X`.
fn since(source: &str) -> String {
    if source == LAST_BUILD {
        format!("since {LAST_BUILD}")
    } else {
        format!("vs {source}")
    }
}

/// How a baseline from the previous build is named.
pub const LAST_BUILD: &str = "the last build";

fn counts(c: &Changes) -> String {
    format!(
        "{} added, {} removed, {} changed, {} in all",
        c.added.len(),
        c.removed.len(),
        c.changed.len(),
        signed_human(c.delta_bytes)
    )
}

fn change_lines(c: &Changes) -> String {
    let mut table = Table::new(&[false, false, true, false]);
    let mut more = Vec::new();
    for (mark, list) in [("+", &c.added), ("-", &c.removed), ("~", &c.changed)] {
        for change in list.iter().take(SHOWN) {
            table.row(vec![
                mark.into(),
                change.path.clone(),
                signed_human(change.delta_bytes),
                sizes_of(change),
            ]);
        }
        if list.len() > SHOWN {
            more.push(format!(
                "    ... and {} more {}\n",
                list.len() - SHOWN,
                match mark {
                    "+" => "added",
                    "-" => "removed",
                    _ => "changed",
                }
            ));
        }
    }
    let mut out = table.render("    ");
    for line in more {
        out.push_str(&line);
    }
    out
}

fn sizes_of(c: &Change) -> String {
    match (c.before, c.after) {
        (Some(b), Some(a)) => format!("({} -> {})", human(b), human(a)),
        (None, Some(a)) => format!("({})", human(a)),
        (Some(b), None) => format!("(was {})", human(b)),
        (None, None) => String::new(),
    }
}

fn files(n: u64) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A history step without the classic builder's `/bin/sh -c #(nop)` noise, cut to 60
/// characters.
fn step(created_by: &str) -> String {
    let s = created_by.trim();
    let s = s.strip_prefix("/bin/sh -c #(nop)").map_or(s, str::trim);
    let s = s.strip_suffix("# buildkit").map_or(s, str::trim);
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(59).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// Markdown table cells cannot hold `|` or newlines.
fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Rows of cells, padded to columns; trailing empty cells are dropped.
struct Table {
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(right: &[bool]) -> Table {
        Table {
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, indent: &str) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let last = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
            let mut line = String::from(indent);
            for (i, cell) in row.iter().take(last).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                let right = self.right.get(i).copied().unwrap_or(false);
                let is_last = i + 1 == last;
                if right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if !is_last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `850 ms`, `12.3 s`.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `+4.9 KiB (+0.73%)`; the percent is left out when the baseline was empty.
fn delta_text(bytes: i64, percent: Option<f64>) -> String {
    match percent {
        Some(p) => format!("{} ({})", signed_human(bytes), percent_text(p)),
        None => signed_human(bytes),
    }
}

/// `+12.5%`, and two decimals below 1 % so a small change does not read as `+0.0%`.
fn percent_text(p: f64) -> String {
    if p.abs() >= 1.0 || p == 0.0 {
        format!("{p:+.1}%")
    } else {
        format!("{p:+.2}%")
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

/// Content bytes of the layers of `role`.
pub fn role_bytes(report: &Report, role: Role) -> u64 {
    report
        .layers
        .iter()
        .filter(|l| l.role == role)
        .map(|l| l.sizes.content_bytes)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::diff::diff;
    use crate::report::gates::{evaluate, GateSet};
    use crate::report::measure::FileKind;

    fn report(extra: Option<u64>) -> Report {
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

    #[test]
    fn derived_numbers() {
        let r = report(None);
        assert_eq!(r.left_behind_bytes, Some(368 * 1024 * 1024 - 800 * 1024));
        assert!((r.reduction_ratio.expect("ratio") - 471.04).abs() < 0.01);
        assert_eq!(r.artifact_bytes, 800 * 1024);
        assert_eq!(role_bytes(&r, Role::Artifacts), 800 * 1024);
    }

    #[test]
    fn text_starts_with_a_summary_and_aligns() {
        let text = report(None).to_text();
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
            text.contains("\n    /hello                       800.0 KiB\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  0  artifacts  800.0 KiB  802.0 KiB  400.0 KiB  COPY dir:0123 in /\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  1  metadata         0 B        0 B        0 B  ENTRYPOINT [\"/hello\"]\n"
            ),
            "{text}"
        );
        assert!(text.contains("no baseline"), "{text}");
    }

    #[test]
    fn text_and_markdown_show_the_diff_and_the_gates() {
        let before = report(None);
        let after = report(Some(5000));
        let d = diff(&before, &after);
        let gates = evaluate(
            &GateSet {
                max_growth: Some(4000),
                ..Default::default()
            },
            &after,
            Some(&d),
        );
        let doc = Document::new(
            after,
            Some((&before, LAST_BUILD.into())),
            Some(d),
            Some(gates),
        );
        let text = doc.to_text();
        assert!(
            text.starts_with("hello:latest: 804.9 KiB on scratch, 468.2x smaller than the builder gcc:local (367.2 MiB left behind), +4.9 KiB (+0.61%) since the last build\n"),
            "{text}"
        );
        assert!(text.contains("\n  files: 1 added, 0 removed, 0 changed, +4.9 KiB in all\n    +  /extra.bin  +4.9 KiB  (4.9 KiB)\n"), "{text}");
        assert!(text.contains("    +/extra.bin 5000 0644\n"), "{text}");
        assert!(
            text.contains("\n  FAIL  growth  +4.9 KiB > max +3.9 KiB\n"),
            "{text}"
        );
        assert!(text.ends_with("gates: FAIL (1 failed)\n"), "{text}");
        assert_eq!(doc.exit_code(), 1);

        let md = doc.to_markdown();
        assert!(
            md.starts_with("### dockception: `hello:latest`\n\n"),
            "{md}"
        );
        assert!(
            md.contains("| **runtime image** | **804.9 KiB** | +4.9 KiB (+0.61%) |\n"),
            "{md}"
        );
        assert!(
            md.contains("| added | `/extra.bin` |  | 4.9 KiB | +4.9 KiB |\n"),
            "{md}"
        );
        assert!(md.contains("```diff\n--- baseline\n+++ current\n"), "{md}");
        assert!(
            md.contains("| FAIL | growth | +4.9 KiB > max +3.9 KiB |\n"),
            "{md}"
        );
        assert!(md.ends_with("**gates: FAIL (1 failed)**\n"), "{md}");
    }

    #[test]
    fn long_change_lists_end_with_and_n_more() {
        let before = report(None);
        let mut after = report(None);
        for i in 0..13 {
            after.files.push(FileEntry {
                path: format!("/f{i:02}"),
                kind: FileKind::File,
                size: 100 + i,
                mode: "0644".into(),
                sha256: None,
                link: None,
            });
        }
        let d = diff(&before, &after);
        let doc = Document::new(after, Some((&before, "main.json".into())), Some(d), None);
        let text = doc.to_text();
        assert!(text.contains("\nchanges vs main.json\n"), "{text}");
        assert!(text.contains("    +  /f12  +112 B  (112 B)\n"), "{text}");
        assert!(text.contains("    ... and 3 more added\n"), "{text}");
        assert!(!text.contains("+  /f02"), "the smallest are cut: {text}");
    }

    #[test]
    fn json_keeps_raw_integers_and_round_trips() {
        let r = report(None);
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
