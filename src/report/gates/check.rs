//! Checking a report against a [`GateSet`]: one function a gate, each giving its check with the
//! actual value, the threshold and the comparison in words; then the outcome of them all.

use crate::report::diff::Diff;
use crate::report::gates::{
    GateCheck, GateOutcome, GateSet, Status, Unit, Value, DEFAULT_GROWTH_FLOOR,
};
use crate::report::Report;
use crate::units::{human, signed_human};

const NO_BASELINE: &str = "no baseline to compare with";

/// Check `report` (and its `diff` against the baseline, when there is one).
pub fn evaluate(gates: &GateSet, report: &Report, diff: Option<&Diff>) -> GateOutcome {
    let floor = gates.growth_floor.unwrap_or(DEFAULT_GROWTH_FLOOR);
    let checks = [
        image_size(gates.max_image_size, gates.warn_image_size, report),
        gates.max_growth.map(|max| growth(max, diff)),
        gates
            .max_growth_percent
            .map(|max| growth_percent(max, floor, diff)),
        gates
            .max_artifact_size
            .map(|max| artifact_size(max, report)),
        gates.max_waste.map(|max| waste(max, report)),
        gates.min_reduction.map(|min| reduction(min, report)),
        gates.require_baseline.then(|| baseline(diff)),
    ];
    let baseline_missing = gates.require_baseline && diff.is_none();
    outcome(checks.into_iter().flatten().collect(), baseline_missing)
}

/// A byte count as a gate's number (saturating: no image is 8 EiB).
fn bytes(v: u64) -> Option<Value> {
    Some(Value::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
}

/// FAIL when over the threshold, else PASS; and the comparison's sign.
fn over_or_within(over: bool) -> (Status, &'static str) {
    if over {
        (Status::Fail, ">")
    } else {
        (Status::Pass, "<=")
    }
}

/// The image's size against its maximum and its warning level (off when neither is set).
fn image_size(max: Option<u64>, warn: Option<u64>, report: &Report) -> Option<GateCheck> {
    let actual = report.runtime_bytes;
    let (status, detail) = match (max, warn) {
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
        (None, None) => return None,
    };
    Some(GateCheck {
        gate: "image_size".into(),
        status,
        unit: Unit::Bytes,
        actual: bytes(actual),
        threshold: max.or(warn).and_then(bytes),
        warn: warn.and_then(bytes),
        detail,
    })
}

/// Bytes grown since the baseline.
fn growth(max: u64, diff: Option<&Diff>) -> GateCheck {
    let (status, actual, detail) = match diff {
        None => (Status::Skip, None, NO_BASELINE.to_string()),
        Some(d) => {
            let grew = d.image.delta_bytes;
            let (status, sign) = over_or_within(grew > i64::try_from(max).unwrap_or(i64::MAX));
            (
                status,
                Some(Value::Bytes(grew)),
                format!("{} {sign} max +{}", signed_human(grew), human(max)),
            )
        }
    };
    GateCheck {
        gate: "growth".into(),
        status,
        unit: Unit::Bytes,
        actual,
        threshold: bytes(max),
        warn: None,
        detail,
    }
}

/// Percent grown since the baseline; growth under `floor` bytes is not checked.
fn growth_percent(max: f64, floor: u64, diff: Option<&Diff>) -> GateCheck {
    let (status, actual, detail) = match diff.map(|d| (d.image.delta_bytes, d.image.delta_percent))
    {
        None => (Status::Skip, None, NO_BASELINE.to_string()),
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
            let (status, sign) = over_or_within(pct > max);
            (
                status,
                Some(Value::Float(pct)),
                format!("{pct:+.2}% {sign} max +{max}%"),
            )
        }
    };
    GateCheck {
        gate: "growth_percent".into(),
        status,
        unit: Unit::Percent,
        actual,
        threshold: Some(Value::Float(max)),
        warn: None,
        detail,
    }
}

/// The largest artifact (the first path among equals).
fn artifact_size(max: u64, report: &Report) -> GateCheck {
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
            let (status, sign) = over_or_within(a.bytes > max);
            (
                status,
                bytes(a.bytes),
                format!(
                    "largest {} {} {sign} max {}",
                    a.path,
                    human(a.bytes),
                    human(max)
                ),
            )
        }
    };
    GateCheck {
        gate: "artifact_size".into(),
        status,
        unit: Unit::Bytes,
        actual,
        threshold: bytes(max),
        warn: None,
        detail,
    }
}

fn waste(max: u64, report: &Report) -> GateCheck {
    let actual = report.waste.total_bytes;
    let (status, sign) = over_or_within(actual > max);
    GateCheck {
        gate: "waste".into(),
        status,
        unit: Unit::Bytes,
        actual: bytes(actual),
        threshold: bytes(max),
        warn: None,
        detail: format!("{} {sign} max {}", human(actual), human(max)),
    }
}

/// How many times smaller than the builder the image is.
fn reduction(min: f64, report: &Report) -> GateCheck {
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
    GateCheck {
        gate: "reduction".into(),
        status,
        unit: Unit::Ratio,
        actual,
        threshold: Some(Value::Float(min)),
        warn: None,
        detail,
    }
}

/// Whether there is a baseline at all (its absence exits 3, see [`outcome`]).
fn baseline(diff: Option<&Diff>) -> GateCheck {
    let missing = diff.is_none();
    GateCheck {
        gate: "baseline".into(),
        status: if missing { Status::Fail } else { Status::Pass },
        unit: Unit::Bytes,
        actual: None,
        threshold: None,
        warn: None,
        detail: if missing {
            "required, but there is none (no previous build and no --baseline)".into()
        } else {
            "present".into()
        },
    }
}

/// FAIL with exit status 1 when a gate failed, else with 3 when the required baseline is missing;
/// WARN or PASS (status 0) otherwise; and the result line.
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

    fn statuses(o: &GateOutcome) -> Vec<(&str, Status)> {
        o.checks
            .iter()
            .map(|c| (c.gate.as_str(), c.status))
            .collect()
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
}
