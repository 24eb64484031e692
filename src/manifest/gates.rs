//! The manifest's `[gates]` table as written; `report::gates` checks a report against it.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// The `[gates]` table of a manifest: thresholds a build or `dockception report` checks. Sizes
/// are a number of bytes or a string with a unit (`"20 MiB"`, `"1.5 MB"`, `"512 KiB"`);
/// percents a number or `"5%"`; ratios a number or `"10x"`. Command-line flags of the same name
/// (`--max-image-size` ...) override them.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatesTable {
    /// FAIL when the runtime image (its size as the engine reports it) is larger than this.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub max_image_size: Option<Spanned<Threshold>>,
    /// WARN when the runtime image is larger than this (a softer level below
    /// `max_image_size`).
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub warn_image_size: Option<Spanned<Threshold>>,
    /// FAIL when the image grew by more than this many bytes since the baseline (the previous
    /// build, or `--baseline`). SKIP without a baseline.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub max_growth: Option<Spanned<Threshold>>,
    /// FAIL when the image grew by more than this percent since the baseline, but only once it
    /// grew by at least `growth_floor` bytes, so tiny images do not flap. SKIP without a
    /// baseline.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub max_growth_percent: Option<Spanned<Threshold>>,
    /// The growth in bytes below which `max_growth_percent` is skipped (default 64 KiB).
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub growth_floor: Option<Spanned<Threshold>>,
    /// FAIL when any shipped file (artifact) is larger than this.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub max_artifact_size: Option<Spanned<Threshold>>,
    /// FAIL when the image wastes more than this: bytes of deleted or overwritten copies plus
    /// duplicate content (`waste.total_bytes` of the report). `0` demands a clean image.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub max_waste: Option<Spanned<Threshold>>,
    /// FAIL when the image is fewer than this many times smaller than the builder image
    /// (`reduction_ratio`). SKIP when the builder is unknown.
    #[serde(default)]
    #[schemars(with = "Option<Threshold>")]
    pub min_reduction: Option<Spanned<Threshold>>,
    /// Exit with status 3 when there is no baseline to compare with (no previous build and no
    /// `--baseline`), instead of skipping the growth gates.
    #[serde(default)]
    pub require_baseline: bool,
}

/// A threshold as written: a number, or a string with a unit (`"20 MiB"`, `"5%"`, `"10x"`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Threshold {
    /// A plain number: bytes, percent or ratio depending on the gate.
    Number(f64),
    /// A number with a unit.
    Text(String),
}
