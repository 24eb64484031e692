//! Gates that can fail CI: thresholds from the manifest's `[gates]` table and the command line,
//! checked against a report and its diff. Each gate ends PASS, WARN, FAIL or SKIP with its
//! actual value and threshold; the outcome carries the exit status (0 pass or warn, 1 a gate
//! failed, 3 a baseline was required and is missing; a misconfigured gate is an error with
//! status 2 before anything is checked).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::manifest::gates::Threshold;
use crate::manifest::LoadedManifest;
use crate::manifest::{Error, Result};
use crate::report::diff::Diff;
use crate::report::Report;
use crate::units::{human, parse_size, signed_human};

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

    /// The gates of the manifest's `target` (`[gates]` of a single-image manifest, or
    /// `[targets.NAME.gates]`; the first target when none is named), with the flags on top. Every
    /// problem is collected into one [`Error::GateConfig`] (exit status 2).
    pub fn resolve(
        manifest: Option<&LoadedManifest>,
        target: Option<&str>,
        flags: &GateFlags,
    ) -> Result<GateSet> {
        let mut problems = Vec::new();
        let table = manifest
            .and_then(|m| {
                m.manifest
                    .targets()
                    .into_iter()
                    .find(|t| target.is_none_or(|name| t.name == name))
            })
            .map(|t| t.target.gates)
            .unwrap_or_default();
        let table = &table;
        let mut size = |flag: &Option<String>, key: &Option<Spanned<Threshold>>, name: &str| {
            pick(flag, key, name, Kind::Size, manifest, &mut problems)
        };
        let max_image_size = size(
            &flags.max_image_size,
            &table.max_image_size,
            "max_image_size",
        );
        let warn_image_size = size(
            &flags.warn_image_size,
            &table.warn_image_size,
            "warn_image_size",
        );
        let max_growth = size(&flags.max_growth, &table.max_growth, "max_growth");
        let growth_floor = size(&flags.growth_floor, &table.growth_floor, "growth_floor");
        let max_artifact_size = size(
            &flags.max_artifact_size,
            &table.max_artifact_size,
            "max_artifact_size",
        );
        let max_waste = size(&flags.max_waste, &table.max_waste, "max_waste");
        let max_growth_percent = pick(
            &flags.max_growth_percent,
            &table.max_growth_percent,
            "max_growth_percent",
            Kind::Percent,
            manifest,
            &mut problems,
        );
        let min_reduction = pick(
            &flags.min_reduction,
            &table.min_reduction,
            "min_reduction",
            Kind::Ratio,
            manifest,
            &mut problems,
        );
        let set = GateSet {
            max_image_size: max_image_size.map(|v| v as u64),
            warn_image_size: warn_image_size.map(|v| v as u64),
            max_growth: max_growth.map(|v| v as u64),
            max_growth_percent,
            growth_floor: growth_floor.map(|v| v as u64),
            max_artifact_size: max_artifact_size.map(|v| v as u64),
            max_waste: max_waste.map(|v| v as u64),
            min_reduction,
            require_baseline: flags.require_baseline || table.require_baseline,
        };
        if let (Some(warn), Some(max)) = (set.warn_image_size, set.max_image_size) {
            if warn > max {
                problems.push(format!(
                    "warn_image_size ({}) is above max_image_size ({}), so the warning could never show\n  help: set the warning level below the maximum, or drop one of them",
                    human(warn),
                    human(max)
                ));
            }
        }
        if set.growth_floor.is_some() && set.max_growth_percent.is_none() {
            problems.push(
                "growth_floor is set but max_growth_percent is not; the floor only applies to the percent gate\n  help: add max_growth_percent, or remove growth_floor".into(),
            );
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(Error::GateConfig { problems })
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Size,
    Percent,
    Ratio,
}

/// The flag when given, else the manifest's value; checked. Problems are pushed, not returned.
fn pick(
    flag: &Option<String>,
    key: &Option<Spanned<Threshold>>,
    name: &str,
    kind: Kind,
    manifest: Option<&LoadedManifest>,
    problems: &mut Vec<String>,
) -> Option<f64> {
    if let Some(text) = flag {
        return match parse(&Threshold::Text(text.clone()), kind) {
            Ok(v) => Some(v),
            Err(why) => {
                problems.push(format!(
                    "--{} {text:?}: {why}\n  help: {}",
                    name.replace('_', "-"),
                    example(kind)
                ));
                None
            }
        };
    }
    let value = key.as_ref()?;
    match parse(value.get_ref(), kind) {
        Ok(v) => Some(v),
        Err(why) => {
            let message = format!("gates.{name}: {why}");
            let help = Some(example(kind).to_string());
            problems.push(match manifest {
                Some(m) => m.diagnostic(value.span(), message, help).to_string(),
                None => message,
            });
            None
        }
    }
}

fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Size => {
            "write a number of bytes or a size such as \"20 MiB\", \"1.5 MB\" or \"512 KiB\""
        }
        Kind::Percent => "write a percent such as 5 or \"5%\"",
        Kind::Ratio => "write how many times smaller, such as 10 or \"10x\"",
    }
}

fn parse(value: &Threshold, kind: Kind) -> Result<f64, String> {
    let number = match (value, kind) {
        (Threshold::Number(n), _) => *n,
        (Threshold::Text(t), Kind::Size) => parse_size(t)? as f64,
        (Threshold::Text(t), Kind::Percent) => parse_number(t.trim().trim_end_matches('%'))?,
        (Threshold::Text(t), Kind::Ratio) => parse_number(t.trim().trim_end_matches(['x', 'X']))?,
    };
    if !number.is_finite() || number < 0.0 {
        return Err(format!(
            "{number} is not a valid threshold (it must be 0 or more)"
        ));
    }
    if matches!(kind, Kind::Ratio) && number == 0.0 {
        return Err("a reduction of 0x is always met".into());
    }
    Ok(number)
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a number"))
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

/// Check `report` (and its `diff` against the baseline, when there is one).
pub fn evaluate(gates: &GateSet, report: &Report, diff: Option<&Diff>) -> GateOutcome {
    let mut checks = Vec::new();
    let bytes = |v: u64| Some(Value::Bytes(i64::try_from(v).unwrap_or(i64::MAX)));

    if gates.max_image_size.is_some() || gates.warn_image_size.is_some() {
        let actual = report.runtime_bytes;
        let (status, detail) = match (gates.max_image_size, gates.warn_image_size) {
            (Some(max), _) if actual > max => (
                Status::Fail,
                format!("{} > max {}", human(actual), human(max)),
            ),
            (_, Some(warn)) if actual > warn => (
                Status::Warn,
                format!("{} > warn {}", human(actual), human(warn)),
            ),
            (Some(max), _) => (
                Status::Pass,
                format!("{} <= max {}", human(actual), human(max)),
            ),
            (None, Some(warn)) => (
                Status::Pass,
                format!("{} <= warn {}", human(actual), human(warn)),
            ),
            (None, None) => unreachable!("one of them is set"),
        };
        checks.push(GateCheck {
            gate: "image_size".into(),
            status,
            unit: Unit::Bytes,
            actual: bytes(actual),
            threshold: gates
                .max_image_size
                .or(gates.warn_image_size)
                .and_then(bytes),
            warn: gates.warn_image_size.and_then(bytes),
            detail,
        });
    }

    if let Some(max) = gates.max_growth {
        let (status, actual, detail) = match diff {
            None => (
                Status::Skip,
                None,
                "no baseline to compare with".to_string(),
            ),
            Some(d) => {
                let grew = d.image.delta_bytes;
                let over = grew > i64::try_from(max).unwrap_or(i64::MAX);
                (
                    if over { Status::Fail } else { Status::Pass },
                    Some(Value::Bytes(grew)),
                    format!(
                        "{} {} max +{}",
                        signed_human(grew),
                        if over { ">" } else { "<=" },
                        human(max)
                    ),
                )
            }
        };
        checks.push(GateCheck {
            gate: "growth".into(),
            status,
            unit: Unit::Bytes,
            actual,
            threshold: bytes(max),
            warn: None,
            detail,
        });
    }

    if let Some(max) = gates.max_growth_percent {
        let floor = gates.growth_floor.unwrap_or(DEFAULT_GROWTH_FLOOR);
        let (status, actual, detail) =
            match diff.map(|d| (d.image.delta_bytes, d.image.delta_percent)) {
                None => (
                    Status::Skip,
                    None,
                    "no baseline to compare with".to_string(),
                ),
                Some((_, None)) => (
                    Status::Skip,
                    None,
                    "the baseline is empty (0 B)".to_string(),
                ),
                Some((grew, Some(pct))) if grew < i64::try_from(floor).unwrap_or(i64::MAX) => (
                    Status::Skip,
                    Some(Value::Float(pct)),
                    format!(
                        "grew {}, under the {} floor",
                        signed_human(grew),
                        human(floor)
                    ),
                ),
                Some((_, Some(pct))) => {
                    let over = pct > max;
                    (
                        if over { Status::Fail } else { Status::Pass },
                        Some(Value::Float(pct)),
                        format!("{pct:+.2}% {} max +{max}%", if over { ">" } else { "<=" }),
                    )
                }
            };
        checks.push(GateCheck {
            gate: "growth_percent".into(),
            status,
            unit: Unit::Percent,
            actual,
            threshold: Some(Value::Float(max)),
            warn: None,
            detail,
        });
    }

    if let Some(max) = gates.max_artifact_size {
        let largest = report
            .artifacts
            .iter()
            .max_by(|a, b| a.bytes.cmp(&b.bytes).then_with(|| b.path.cmp(&a.path)));
        let (status, actual, detail) = match largest {
            None => (
                Status::Skip,
                None,
                "the image has no artifacts layer".to_string(),
            ),
            Some(a) => {
                let over = a.bytes > max;
                (
                    if over { Status::Fail } else { Status::Pass },
                    bytes(a.bytes),
                    format!(
                        "largest {} {} {} max {}",
                        a.path,
                        human(a.bytes),
                        if over { ">" } else { "<=" },
                        human(max)
                    ),
                )
            }
        };
        checks.push(GateCheck {
            gate: "artifact_size".into(),
            status,
            unit: Unit::Bytes,
            actual,
            threshold: bytes(max),
            warn: None,
            detail,
        });
    }

    if let Some(max) = gates.max_waste {
        let actual = report.waste.total_bytes;
        let over = actual > max;
        checks.push(GateCheck {
            gate: "waste".into(),
            status: if over { Status::Fail } else { Status::Pass },
            unit: Unit::Bytes,
            actual: bytes(actual),
            threshold: bytes(max),
            warn: None,
            detail: format!(
                "{} {} max {}",
                human(actual),
                if over { ">" } else { "<=" },
                human(max)
            ),
        });
    }

    if let Some(min) = gates.min_reduction {
        let (status, actual, detail) = match report.reduction_ratio {
            None => (
                Status::Skip,
                None,
                "the builder image is unknown".to_string(),
            ),
            Some(ratio) => {
                let under = ratio < min;
                (
                    if under { Status::Fail } else { Status::Pass },
                    Some(Value::Float(ratio)),
                    format!("{ratio:.1}x {} min {min}x", if under { "<" } else { ">=" }),
                )
            }
        };
        checks.push(GateCheck {
            gate: "reduction".into(),
            status,
            unit: Unit::Ratio,
            actual,
            threshold: Some(Value::Float(min)),
            warn: None,
            detail,
        });
    }

    let baseline_missing = gates.require_baseline && diff.is_none();
    if gates.require_baseline {
        checks.push(GateCheck {
            gate: "baseline".into(),
            status: if baseline_missing {
                Status::Fail
            } else {
                Status::Pass
            },
            unit: Unit::Bytes,
            actual: None,
            threshold: None,
            warn: None,
            detail: if baseline_missing {
                "required, but there is none (no previous build and no --baseline)".into()
            } else {
                "present".into()
            },
        });
    }
    outcome(checks, baseline_missing)
}

fn outcome(checks: Vec<GateCheck>, baseline_missing: bool) -> GateOutcome {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let failed = checks
        .iter()
        .filter(|c| c.status == Status::Fail && c.gate != "baseline")
        .count();
    let (passed, warned, skipped) = (
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Skip),
    );
    let (status, exit_code) = if failed > 0 {
        (Status::Fail, 1)
    } else if baseline_missing {
        (Status::Fail, 3)
    } else if warned > 0 {
        (Status::Warn, 0)
    } else {
        (Status::Pass, 0)
    };
    let mut parts = Vec::new();
    if baseline_missing {
        parts.push("a baseline was required and is missing".to_string());
    }
    for (n, what) in [
        (failed, "failed"),
        (warned, "warned"),
        (passed, "passed"),
        (skipped, "skipped"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    GateOutcome {
        status,
        exit_code,
        summary: format!("gates: {} ({})", status.name(), parts.join(", ")),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::diff::diff;
    use crate::report::measure::ArtifactSize;
    use std::path::Path;

    fn report(bytes: u64) -> Report {
        let mut r = Report::empty("sha256:x");
        r.runtime_bytes = bytes;
        r.artifacts = vec![ArtifactSize {
            path: "/app".into(),
            bytes,
            rule: None,
        }];
        r
    }

    fn flags(f: impl FnOnce(&mut GateFlags)) -> GateFlags {
        let mut flags = GateFlags::default();
        f(&mut flags);
        flags
    }

    fn statuses(o: &GateOutcome) -> Vec<(&str, Status)> {
        o.checks
            .iter()
            .map(|c| (c.gate.as_str(), c.status))
            .collect()
    }

    #[test]
    fn percents_and_ratios_parse() {
        assert_eq!(parse(&Threshold::Text("5%".into()), Kind::Percent), Ok(5.0));
        assert_eq!(parse(&Threshold::Text("10x".into()), Kind::Ratio), Ok(10.0));
        assert!(parse(&Threshold::Number(-1.0), Kind::Size).is_err());
    }

    #[test]
    fn the_image_size_gate_passes_warns_and_fails() {
        let gates = GateSet {
            max_image_size: Some(1000),
            warn_image_size: Some(800),
            ..Default::default()
        };
        for (size, status, exit) in [
            (700, Status::Pass, 0),
            (900, Status::Warn, 0),
            (1001, Status::Fail, 1),
        ] {
            let o = evaluate(&gates, &report(size), None);
            assert_eq!(
                (o.checks[0].status, o.status, o.exit_code),
                (status, status, exit),
                "{size}"
            );
        }
        let o = evaluate(&gates, &report(1001), None);
        assert_eq!(o.summary, "gates: FAIL (1 failed)");
        assert_eq!(o.checks[0].detail, "1001 B > max 1000 B");
    }

    #[test]
    fn growth_gates_skip_without_a_baseline_and_under_the_floor() {
        let gates = GateSet {
            max_growth: Some(100),
            max_growth_percent: Some(10.0),
            growth_floor: Some(50),
            ..Default::default()
        };
        let o = evaluate(&gates, &report(1000), None);
        assert_eq!(
            statuses(&o),
            [("growth", Status::Skip), ("growth_percent", Status::Skip)]
        );
        assert_eq!(o.exit_code, 0);

        // +40 B is +40 % of a 100 B image, but under the 50 B floor.
        let d = diff(&report(100), &report(140));
        let o = evaluate(&gates, &report(140), Some(&d));
        assert_eq!(
            statuses(&o),
            [("growth", Status::Pass), ("growth_percent", Status::Skip)]
        );
        assert_eq!(o.checks[1].detail, "grew +40 B, under the 50 B floor");

        let d = diff(&report(1000), &report(1150));
        let o = evaluate(&gates, &report(1150), Some(&d));
        assert_eq!(
            statuses(&o),
            [("growth", Status::Fail), ("growth_percent", Status::Fail)]
        );
        assert_eq!(o.checks[0].actual, Some(Value::Bytes(150)));
        assert_eq!(o.exit_code, 1);

        let d = diff(&report(1000), &report(900));
        let o = evaluate(&gates, &report(900), Some(&d));
        assert_eq!(
            statuses(&o),
            [("growth", Status::Pass), ("growth_percent", Status::Skip)]
        );
    }

    #[test]
    fn artifact_waste_and_reduction_gates() {
        let mut r = report(5000);
        r.waste.total_bytes = 10;
        r.reduction_ratio = Some(50.0);
        let gates = GateSet {
            max_artifact_size: Some(4000),
            max_waste: Some(10),
            min_reduction: Some(100.0),
            ..Default::default()
        };
        let o = evaluate(&gates, &r, None);
        assert_eq!(
            statuses(&o),
            [
                ("artifact_size", Status::Fail),
                ("waste", Status::Pass),
                ("reduction", Status::Fail)
            ]
        );
        assert_eq!(o.summary, "gates: FAIL (2 failed, 1 passed)");
        r.reduction_ratio = None;
        r.artifacts.clear();
        let o = evaluate(&gates, &r, None);
        assert_eq!(
            statuses(&o),
            [
                ("artifact_size", Status::Skip),
                ("waste", Status::Pass),
                ("reduction", Status::Skip)
            ]
        );
    }

    #[test]
    fn a_required_baseline_that_is_missing_exits_3_unless_a_gate_failed() {
        let gates = GateSet {
            require_baseline: true,
            ..Default::default()
        };
        let o = evaluate(&gates, &report(1), None);
        assert_eq!((o.status, o.exit_code), (Status::Fail, 3));
        assert_eq!(
            o.summary,
            "gates: FAIL (a baseline was required and is missing)"
        );
        let with_max = GateSet {
            max_image_size: Some(0),
            ..gates.clone()
        };
        assert_eq!(evaluate(&with_max, &report(1), None).exit_code, 1);
        let d = diff(&report(1), &report(1));
        assert_eq!(evaluate(&gates, &report(1), Some(&d)).exit_code, 0);
    }

    #[test]
    fn flags_override_the_manifest_and_problems_are_collected() {
        let text = r#"
[builder]
image = "gcc:local"
run = "true"

[artifacts]
include = ["app"]

[gates]
max_image_size = "1 MiB"
warn_image_size = 2097152
max_waste = "lots"
"#;
        let loaded = crate::manifest::parse_bytes_with(
            Path::new("dockception.toml"),
            text.into(),
            &Default::default(),
        )
        .expect("parses");
        let Err(Error::GateConfig { problems }) =
            GateSet::resolve(Some(&loaded), None, &GateFlags::default())
        else {
            panic!("expected a gate error");
        };
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("dockception.toml:12:13: gates.max_waste: \"lots\" is not a size"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].starts_with("warn_image_size (2.0 MiB) is above max_image_size (1.0 MiB)"),
            "{}",
            problems[1]
        );

        let set = GateSet::resolve(
            Some(&loaded),
            None,
            &flags(|f| {
                f.max_waste = Some("0".into());
                f.warn_image_size = Some("512 KiB".into());
            }),
        )
        .expect("the flags fix it");
        assert_eq!(set.max_image_size, Some(1 << 20));
        assert_eq!(set.warn_image_size, Some(512 << 10));
        assert_eq!(set.max_waste, Some(0));

        let Err(Error::GateConfig { problems }) = GateSet::resolve(
            None,
            None,
            &flags(|f| f.max_growth_percent = Some("five".into())),
        ) else {
            panic!("expected a gate error");
        };
        assert!(
            problems[0].starts_with("--max-growth-percent \"five\": \"five\" is not a number"),
            "{problems:?}"
        );
        assert!(!GateSet::resolve(None, None, &GateFlags::default())
            .expect("no gates")
            .any());
    }
}
