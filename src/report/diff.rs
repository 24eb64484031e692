//! What changed between two reports: the image size (bytes and percent), the layers by role,
//! the artifact rules, the artifacts and the files added, removed and changed (sorted by the
//! size of their change), and a unified diff of the file listing made with `similar`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::measure::{ArtifactSize, FileEntry, Role};
use crate::report::Report;

/// How the current report differs from the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Diff {
    /// The image size as the engine reports it (`runtime_bytes`).
    pub image: Delta,
    /// The gzip estimate of the layers (`sizes.gzip_bytes`).
    pub gzip: Delta,
    /// Content bytes per layer role (`base`, `artifacts`, `metadata`, `other`).
    pub roles: Vec<RoleDelta>,
    /// Files and bytes per artifact rule (include glob), in either report.
    pub rules: Vec<RuleDelta>,
    /// The shipped files.
    pub artifacts: Changes,
    /// Every file of the image (folders left out).
    pub files: Changes,
    /// Waste (`waste.total_bytes`).
    pub waste: Delta,
    /// A unified diff of the file listings, one line per file: `path size mode`. Empty when
    /// they are the same.
    pub listing: String,
}

/// A number before and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delta {
    /// In the baseline.
    pub before: u64,
    /// Now.
    pub after: u64,
    /// `after - before`: positive when it grew.
    pub delta_bytes: i64,
    /// The change in percent of `before`; absent when `before` is 0.
    pub delta_percent: Option<f64>,
}

impl Delta {
    /// Compare two byte counts.
    pub fn new(before: u64, after: u64) -> Delta {
        let delta_bytes = signed(before, after);
        Delta {
            before,
            after,
            delta_bytes,
            delta_percent: (before > 0).then(|| delta_bytes as f64 * 100.0 / before as f64),
        }
    }
}

/// Content bytes of the layers of one role, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleDelta {
    /// The role.
    pub role: Role,
    /// Content bytes in the baseline.
    pub before: u64,
    /// Content bytes now.
    pub after: u64,
    /// `after - before`.
    pub delta_bytes: i64,
}

/// One artifact rule, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleDelta {
    /// The include glob.
    pub include: String,
    /// Files it shipped in the baseline (absent when the baseline has no such rule).
    pub before_files: Option<u64>,
    /// Files it ships now (absent when the rule is gone).
    pub after_files: Option<u64>,
    /// Content bytes in the baseline.
    pub before_bytes: u64,
    /// Content bytes now.
    pub after_bytes: u64,
    /// `after_bytes - before_bytes`.
    pub delta_bytes: i64,
}

/// Paths added, removed and changed, each list sorted by the absolute size change, largest
/// first (then by path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Changes {
    /// Paths only in the current image.
    pub added: Vec<Change>,
    /// Paths only in the baseline.
    pub removed: Vec<Change>,
    /// Paths in both whose size, content, mode, kind or link differ.
    pub changed: Vec<Change>,
    /// The sum of all changes' `delta_bytes`.
    pub delta_bytes: i64,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One path that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// Absolute path in the image.
    pub path: String,
    /// Its bytes in the baseline (absent when added).
    pub before: Option<u64>,
    /// Its bytes now (absent when removed).
    pub after: Option<u64>,
    /// `after - before`, missing sides counted as 0.
    pub delta_bytes: i64,
}

fn signed(before: u64, after: u64) -> i64 {
    let d = i128::from(after) - i128::from(before);
    i64::try_from(d).unwrap_or(if d > 0 { i64::MAX } else { i64::MIN })
}

/// Compare `current` with `baseline`.
pub fn diff(baseline: &Report, current: &Report) -> Diff {
    Diff {
        image: Delta::new(baseline.runtime_bytes, current.runtime_bytes),
        gzip: Delta::new(baseline.sizes.gzip_bytes, current.sizes.gzip_bytes),
        roles: roles(baseline, current),
        rules: rules(baseline, current),
        artifacts: artifact_changes(baseline, current),
        files: file_changes(&baseline.files, &current.files),
        waste: Delta::new(baseline.waste.total_bytes, current.waste.total_bytes),
        listing: listing_diff(&baseline.files, &current.files),
    }
}

fn roles(baseline: &Report, current: &Report) -> Vec<RoleDelta> {
    let mut by_role: BTreeMap<Role, (u64, u64)> = BTreeMap::new();
    for layer in &baseline.layers {
        by_role.entry(layer.role).or_default().0 += layer.sizes.content_bytes;
    }
    for layer in &current.layers {
        by_role.entry(layer.role).or_default().1 += layer.sizes.content_bytes;
    }
    by_role
        .into_iter()
        .map(|(role, (before, after))| RoleDelta {
            role,
            before,
            after,
            delta_bytes: signed(before, after),
        })
        .collect()
}

fn rules(baseline: &Report, current: &Report) -> Vec<RuleDelta> {
    let mut out: Vec<RuleDelta> = Vec::new();
    for rule in &current.rules {
        let before = baseline.rules.iter().find(|r| r.include == rule.include);
        let before_bytes = before.map_or(0, |b| b.content_bytes);
        out.push(RuleDelta {
            include: rule.include.clone(),
            before_files: before.map(|b| b.files),
            after_files: Some(rule.files),
            before_bytes,
            after_bytes: rule.content_bytes,
            delta_bytes: signed(before_bytes, rule.content_bytes),
        });
    }
    for rule in &baseline.rules {
        if !current.rules.iter().any(|r| r.include == rule.include) {
            out.push(RuleDelta {
                include: rule.include.clone(),
                before_files: Some(rule.files),
                after_files: None,
                before_bytes: rule.content_bytes,
                after_bytes: 0,
                delta_bytes: signed(rule.content_bytes, 0),
            });
        }
    }
    out
}

/// Artifacts compared by size and, through the report's file listing, by content and mode.
fn artifact_changes(baseline: &Report, current: &Report) -> Changes {
    fn keyed(report: &Report) -> BTreeMap<String, (u64, String)> {
        let ids: BTreeMap<&str, String> = report
            .files
            .iter()
            .map(|f| (f.path.as_str(), identity(f)))
            .collect();
        report
            .artifacts
            .iter()
            .map(|a: &ArtifactSize| {
                let id = ids.get(a.path.as_str()).cloned().unwrap_or_default();
                (a.path.clone(), (a.bytes, id))
            })
            .collect()
    }
    changes(keyed(baseline), keyed(current))
}

fn file_changes(before: &[FileEntry], after: &[FileEntry]) -> Changes {
    let key = |f: &FileEntry| (f.path.clone(), (f.size, identity(f)));
    changes(
        before.iter().map(key).collect(),
        after.iter().map(key).collect(),
    )
}

/// What makes two entries of one path the same beyond their size.
fn identity(f: &FileEntry) -> String {
    format!(
        "{:?} {} {} {}",
        f.kind,
        f.mode,
        f.sha256.as_deref().unwrap_or(""),
        f.link.as_deref().unwrap_or("")
    )
}

fn changes(
    before: BTreeMap<String, (u64, String)>,
    after: BTreeMap<String, (u64, String)>,
) -> Changes {
    let mut out = Changes::default();
    for (path, (size, id)) in &after {
        match before.get(path) {
            None => out.added.push(Change {
                path: path.clone(),
                before: None,
                after: Some(*size),
                delta_bytes: signed(0, *size),
            }),
            Some((old_size, old_id)) if old_size != size || old_id != id => {
                out.changed.push(Change {
                    path: path.clone(),
                    before: Some(*old_size),
                    after: Some(*size),
                    delta_bytes: signed(*old_size, *size),
                })
            }
            Some(_) => {}
        }
    }
    for (path, (size, _)) in &before {
        if !after.contains_key(path) {
            out.removed.push(Change {
                path: path.clone(),
                before: Some(*size),
                after: None,
                delta_bytes: signed(*size, 0),
            });
        }
    }
    for list in [&mut out.added, &mut out.removed, &mut out.changed] {
        list.sort_by(|a, b| {
            b.delta_bytes
                .unsigned_abs()
                .cmp(&a.delta_bytes.unsigned_abs())
                .then_with(|| a.path.cmp(&b.path))
        });
    }
    out.delta_bytes = out
        .added
        .iter()
        .chain(&out.removed)
        .chain(&out.changed)
        .map(|c| c.delta_bytes)
        .sum();
    out
}

/// One line per file: `path size mode`, plus `-> target` for links.
pub fn listing(files: &[FileEntry]) -> String {
    let mut out = String::new();
    for f in files {
        out.push_str(&format!("{} {} {}", f.path, f.size, f.mode));
        if let Some(link) = &f.link {
            out.push_str(&format!(" -> {link}"));
        }
        out.push('\n');
    }
    out
}

/// A unified diff of the two listings (empty when they are the same).
pub fn listing_diff(before: &[FileEntry], after: &[FileEntry]) -> String {
    let old = listing(before);
    let new = listing(after);
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(1)
        .header("baseline", "current")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::measure::{Layer, RuleSize, Sizes};
    use crate::report::scan::FileKind;

    fn file(path: &str, size: u64, sha: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileKind::File,
            size,
            mode: "0755".into(),
            sha256: Some(sha.into()),
            link: None,
        }
    }

    fn report(files: Vec<FileEntry>, rules: Vec<RuleSize>) -> Report {
        let mut r = Report::empty("sha256:x");
        r.runtime_bytes = files.iter().map(|f| f.size).sum();
        r.layers = vec![Layer {
            index: 0,
            role: Role::Artifacts,
            created_by: "COPY".into(),
            diff_id: Some("sha256:l".into()),
            files: files.len() as u64,
            sizes: Sizes {
                content_bytes: r.runtime_bytes,
                tar_bytes: 0,
                gzip_bytes: 0,
            },
        }];
        r.artifacts = files
            .iter()
            .map(|f| ArtifactSize {
                path: f.path.clone(),
                bytes: f.size,
                rule: None,
            })
            .collect();
        r.files = files;
        r.rules = rules;
        r
    }

    fn rule(include: &str, files: u64, bytes: u64) -> RuleSize {
        RuleSize {
            include: include.into(),
            files,
            content_bytes: bytes,
            tar_bytes: 0,
        }
    }

    #[test]
    fn one_more_file_is_exactly_one_addition() {
        let before = report(vec![file("/hello", 1000, "a")], vec![rule("*", 1, 1000)]);
        let after = report(
            vec![file("/extra.bin", 5000, "b"), file("/hello", 1000, "a")],
            vec![rule("*", 2, 6000)],
        );
        let d = diff(&before, &after);
        assert_eq!(d.image.delta_bytes, 5000);
        assert_eq!(d.image.delta_percent, Some(500.0));
        assert_eq!(
            d.files.added,
            [Change {
                path: "/extra.bin".into(),
                before: None,
                after: Some(5000),
                delta_bytes: 5000
            }]
        );
        assert!(d.files.removed.is_empty() && d.files.changed.is_empty());
        assert_eq!(d.artifacts.added.len(), 1);
        assert_eq!(d.roles[0].role, Role::Artifacts);
        assert_eq!(d.roles[0].delta_bytes, 5000);
        assert_eq!(d.rules[0].delta_bytes, 5000);
        assert_eq!(d.rules[0].before_files, Some(1));
        assert_eq!(
            d.listing,
            "--- baseline\n+++ current\n@@ -1 +1,2 @@\n+/extra.bin 5000 0755\n /hello 1000 0755\n"
        );
    }

    #[test]
    fn changes_are_signed_and_sorted_by_absolute_delta() {
        let before = report(
            vec![
                file("/a", 100, "a"),
                file("/b", 100, "b"),
                file("/c", 100, "c"),
                file("/gone", 7, "g"),
            ],
            vec![rule("old", 1, 7)],
        );
        let after = report(
            vec![
                file("/a", 50, "a2"),
                file("/b", 400, "b2"),
                file("/c", 100, "c2"),
            ],
            vec![],
        );
        let d = diff(&before, &after);
        let changed: Vec<(&str, i64)> = d
            .files
            .changed
            .iter()
            .map(|c| (c.path.as_str(), c.delta_bytes))
            .collect();
        assert_eq!(changed, [("/b", 300), ("/a", -50), ("/c", 0)]);
        assert_eq!(d.files.removed[0].delta_bytes, -7);
        assert_eq!(d.files.delta_bytes, 300 - 50 - 7);
        assert_eq!(d.image.delta_bytes, 550 - 307);
        assert_eq!(d.rules[0].after_files, None);
        assert_eq!(d.rules[0].delta_bytes, -7);
    }

    #[test]
    fn the_same_report_has_no_changes() {
        let r = report(vec![file("/hello", 1, "a")], vec![]);
        let d = diff(&r, &r);
        assert!(d.files.is_empty() && d.artifacts.is_empty());
        assert_eq!(d.listing, "");
        assert_eq!(d.image.delta_percent, Some(0.0));
        assert_eq!(Delta::new(0, 10).delta_percent, None);
    }
}
