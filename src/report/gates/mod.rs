//! Gates that can fail CI: thresholds from the manifest's `[gates]` table and the command line,
//! checked against a report and its diff. Each gate ends PASS, WARN, FAIL or SKIP with its
//! actual value and threshold; the outcome carries the exit status (0 pass or warn, 1 a gate
//! failed, 3 a baseline was required and is missing; a misconfigured gate is an error with
//! status 2 before anything is checked).
//!
//! Reading the thresholds ([`GateSet::resolve`], `config.rs`) is kept apart from checking them
//! ([`evaluate`], `check.rs`): only reading can fail, and it fails before anything is checked.

mod check;
mod config;

pub use check::evaluate;

/// The exit status of a run whose reports' gates asked for `codes` (0, 1 or 3 each): 1 when any
/// gate failed, even when another report's baseline is missing (1 wins over 3); 3 when only a
/// required baseline is missing; 0 otherwise.
pub fn combined_exit_code(codes: impl IntoIterator<Item = u8>) -> u8 {
    let codes: Vec<u8> = codes.into_iter().collect();
    if codes.contains(&1) {
        1
    } else {
        codes.into_iter().max().unwrap_or(0)
    }
}

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The growth floor when none is set: a percent gate ignores growth below 64 KiB.
pub const DEFAULT_GROWTH_FLOOR: u64 = 64 * 1024;

/// Gate thresholds given on the command line, as typed (checked like the manifest's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateFlags {
    /// `--max-image-size`.
    pub max_image_size: Option<String>,
    /// `--warn-image-size`.
    pub warn_image_size: Option<String>,
    /// `--max-growth`.
    pub max_growth: Option<String>,
    /// `--max-growth-percent`.
    pub max_growth_percent: Option<String>,
    /// `--growth-floor`.
    pub growth_floor: Option<String>,
    /// `--max-artifact-size`.
    pub max_artifact_size: Option<String>,
    /// `--max-waste`.
    pub max_waste: Option<String>,
    /// `--min-reduction`.
    pub min_reduction: Option<String>,
    /// `--require-baseline`.
    pub require_baseline: bool,
}

/// Checked thresholds; `None` means the gate is off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateSet {
    /// Bytes.
    pub max_image_size: Option<u64>,
    /// Bytes.
    pub warn_image_size: Option<u64>,
    /// Bytes.
    pub max_growth: Option<u64>,
    /// Percent.
    pub max_growth_percent: Option<f64>,
    /// Bytes ([`DEFAULT_GROWTH_FLOOR`] when unset).
    pub growth_floor: Option<u64>,
    /// Bytes.
    pub max_artifact_size: Option<u64>,
    /// Bytes.
    pub max_waste: Option<u64>,
    /// Times smaller than the builder.
    pub min_reduction: Option<f64>,
    /// Exit 3 without a baseline.
    pub require_baseline: bool,
}

impl GateSet {
    /// Whether any gate is on.
    pub fn any(&self) -> bool {
        self.max_image_size.is_some()
            || self.warn_image_size.is_some()
            || self.max_growth.is_some()
            || self.max_growth_percent.is_some()
            || self.max_artifact_size.is_some()
            || self.max_waste.is_some()
            || self.min_reduction.is_some()
            || self.require_baseline
    }
}

/// How a gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Within the threshold.
    Pass,
    /// Above the warning level, below the maximum.
    Warn,
    /// Over the threshold.
    Fail,
    /// Not checked: nothing to compare with, or under the growth floor.
    Skip,
}

impl Status {
    /// `PASS`, `WARN`, `FAIL` or `SKIP`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What a gate's numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Bytes (integers).
    Bytes,
    /// Percent.
    Percent,
    /// Times smaller.
    Ratio,
}

/// A gate's number: integer bytes, or a float for percents and ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    /// Bytes (signed, for growth).
    Bytes(i64),
    /// A percent or a ratio.
    Float(f64),
}

/// One gate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateCheck {
    /// The gate: `image_size`, `growth`, `growth_percent`, `artifact_size`, `waste`,
    /// `reduction` or `baseline`.
    pub gate: String,
    /// How it ended.
    pub status: Status,
    /// What `actual` and the thresholds count.
    pub unit: Unit,
    /// The measured value; absent when skipped for lack of data.
    pub actual: Option<Value>,
    /// The failing threshold (for `image_size` with only a warning level, that level).
    pub threshold: Option<Value>,
    /// The warning level (`image_size` only).
    pub warn: Option<Value>,
    /// The comparison in words, e.g. `678.7 KiB <= 1.0 MiB`.
    pub detail: String,
}

/// All gates' results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateOutcome {
    /// FAIL when a gate failed or a required baseline is missing, else WARN when one warned,
    /// else PASS.
    pub status: Status,
    /// The exit status the CLI ends with: 0 pass or warn, 1 a gate failed, 3 a required
    /// baseline is missing (1 wins when both).
    pub exit_code: u8,
    /// One entry per configured gate.
    pub checks: Vec<GateCheck>,
    /// The result line, e.g. `gates: PASS (3 passed, 1 skipped)`.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::combined_exit_code;

    #[test]
    fn a_failed_gate_wins_over_a_missing_baseline_in_any_order() {
        for (codes, expected) in [
            (vec![], 0),
            (vec![0, 0], 0),
            (vec![3], 3),
            (vec![0, 3], 3),
            (vec![1, 3], 1),
            (vec![3, 1], 1),
            (vec![3, 0, 1, 3], 1),
        ] {
            assert_eq!(combined_exit_code(codes.clone()), expected, "{codes:?}");
        }
    }
}
