//! The thresholds of the manifest's `[gates]` table and of the command line, checked and
//! resolved into a [`GateSet`]; every problem is collected, none stops the others.

use toml::Spanned;

use crate::manifest::gates::{GatesTable, Threshold};
use crate::manifest::LoadedManifest;
use crate::manifest::{Error, Result};
use crate::report::gates::{GateFlags, GateSet};
use crate::units::{human, parse_size};

impl GateSet {
    /// The gates of the manifest's `target` (`[gates]` of a single-image manifest, or
    /// `[targets.NAME.gates]`; the first target when none is named), with the flags on top. Every
    /// problem is collected into one [`Error::GateConfig`] (exit status 2).
    pub fn resolve(
        manifest: Option<&LoadedManifest>,
        target: Option<&str>,
        flags: &GateFlags,
    ) -> Result<GateSet> {
        let table = target_gates(manifest, target);
        let mut picker = Picker {
            manifest,
            problems: Vec::new(),
        };
        let set = picker.thresholds(flags, &table);
        let mut problems = picker.problems;
        problems.extend(contradictions(&set));
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(Error::GateConfig { problems })
        }
    }
}

/// The `[gates]` of the named target (the first when none is named); empty without a manifest.
fn target_gates(manifest: Option<&LoadedManifest>, target: Option<&str>) -> GatesTable {
    manifest
        .and_then(|m| {
            m.manifest
                .targets()
                .into_iter()
                .find(|t| target.is_none_or(|name| t.name == name))
        })
        .map(|t| t.target.gates)
        .unwrap_or_default()
}

/// Picks each threshold from the flags or the manifest, keeping the problems it meets.
struct Picker<'a> {
    manifest: Option<&'a LoadedManifest>,
    problems: Vec<String>,
}

impl Picker<'_> {
    /// Every threshold, read in the order their problems are listed.
    fn thresholds(&mut self, flags: &GateFlags, table: &GatesTable) -> GateSet {
        let max_image_size = self.size(
            &flags.max_image_size,
            &table.max_image_size,
            "max_image_size",
        );
        let warn_image_size = self.size(
            &flags.warn_image_size,
            &table.warn_image_size,
            "warn_image_size",
        );
        let max_growth = self.size(&flags.max_growth, &table.max_growth, "max_growth");
        let growth_floor = self.size(&flags.growth_floor, &table.growth_floor, "growth_floor");
        let max_artifact_size = self.size(
            &flags.max_artifact_size,
            &table.max_artifact_size,
            "max_artifact_size",
        );
        let max_waste = self.size(&flags.max_waste, &table.max_waste, "max_waste");
        let max_growth_percent = self.pick(
            &flags.max_growth_percent,
            &table.max_growth_percent,
            "max_growth_percent",
            Kind::Percent,
        );
        let min_reduction = self.pick(
            &flags.min_reduction,
            &table.min_reduction,
            "min_reduction",
            Kind::Ratio,
        );
        GateSet {
            max_image_size,
            warn_image_size,
            max_growth,
            max_growth_percent,
            growth_floor,
            max_artifact_size,
            max_waste,
            min_reduction,
            require_baseline: flags.require_baseline || table.require_baseline,
        }
    }

    /// A size in bytes.
    fn size(
        &mut self,
        flag: &Option<String>,
        key: &Option<Spanned<Threshold>>,
        name: &str,
    ) -> Option<u64> {
        self.pick(flag, key, name, Kind::Size).map(|v| v as u64)
    }

    /// The flag when given, else the manifest's value; checked. Problems are kept, not
    /// returned.
    fn pick(
        &mut self,
        flag: &Option<String>,
        key: &Option<Spanned<Threshold>>,
        name: &str,
        kind: Kind,
    ) -> Option<f64> {
        if let Some(text) = flag {
            return match parse(&Threshold::Text(text.clone()), kind) {
                Ok(v) => Some(v),
                Err(why) => {
                    self.problems.push(format!(
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
                self.problems.push(match self.manifest {
                    Some(m) => m.diagnostic(value.span(), message, help).to_string(),
                    None => message,
                });
                None
            }
        }
    }
}

/// Thresholds that are each valid but make no sense together.
fn contradictions(set: &GateSet) -> Vec<String> {
    let mut problems = Vec::new();
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
    problems
}

#[derive(Clone, Copy)]
enum Kind {
    Size,
    Percent,
    Ratio,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn flags(f: impl FnOnce(&mut GateFlags)) -> GateFlags {
        let mut flags = GateFlags::default();
        f(&mut flags);
        flags
    }

    #[test]
    fn percents_and_ratios_parse() {
        assert_eq!(parse(&Threshold::Text("5%".into()), Kind::Percent), Ok(5.0));
        assert_eq!(parse(&Threshold::Text("10x".into()), Kind::Ratio), Ok(10.0));
        assert!(parse(&Threshold::Number(-1.0), Kind::Size).is_err());
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
