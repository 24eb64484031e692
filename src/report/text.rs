//! The report for people in a terminal: the summary line, then aligned tables in human units,
//! one section after the other.

use crate::report::diff::{Change, Changes, Diff};
use crate::report::gates::GateOutcome;
use crate::report::table::Table;
use crate::report::waste::Waste;
use crate::report::wording::{
    change, counts, delta_text, files, listing_head, short_id, since, step, SHOWN,
};
use crate::report::{Document, Report};
use crate::units::{human, signed_human};

impl Document {
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
        if r.up_to_date {
            return self.up_to_date_text();
        }
        let mut out = self.summary();
        out.push('\n');
        if let Some(ms) = r.build_command_ms {
            out.push_str(&format!("  build command ran {}\n", human_ms(ms)));
        }
        if let Some(print) = &r.reused_from {
            out.push_str(&format!(
                "  reused an earlier build with the same inputs ({}): no build ran\n",
                print.chars().take(12).collect::<String>()
            ));
        }
        out.push_str(&self.sizes_text());
        out.push_str(&layers_text(r));
        out.push_str(&self.rules_text());
        out.push_str(&r.libs.to_text());
        out.push_str(&largest_files_text(r));
        out.push_str(&waste_text(&r.waste));
        out.push_str(&self.changes_text());
        if let Some(gates) = &self.gates {
            out.push_str(&gates_text(gates));
        }
        out
    }

    /// Nothing was built: one line, and the gates' result when there are gates.
    fn up_to_date_text(&self) -> String {
        let r = &self.report;
        let mut out = format!(
            "{} is up to date: nothing changed since the last build (image {}, {}); --force rebuilds\n",
            r.name(),
            short_id(&r.image_id),
            human(r.runtime_bytes)
        );
        if let Some(gates) = &self.gates {
            out.push_str(&gates.summary);
            out.push('\n');
        }
        out
    }

    /// The images, the artifacts and what the build left out, then the tags.
    fn sizes_text(&self) -> String {
        let r = &self.report;
        let mut sizes = Table::new(&[false, true, false]);
        self.image_rows(&mut sizes);
        self.shipped_rows(&mut sizes);
        let mut out = sizes.render("  ");
        if !r.tags.is_empty() {
            // A build tagged the image; a measured image just has tags.
            let verb = if r.builder.is_some() {
                "tagged"
            } else {
                "tags"
            };
            out.push_str(&format!("  {verb} {}\n", r.tags.join(", ")));
        }
        if let Some(digest) = &r.digest {
            out.push_str(&format!("  digest {digest}\n"));
        }
        for d in &r.delivered {
            out.push_str(&format!("  {}\n", super::wording::delivery(d)));
        }
        out
    }

    /// Builder, base and runtime image, and the runtime image as tars and gzipped.
    fn image_rows(&self, sizes: &mut Table) {
        let r = &self.report;
        for (what, image) in [("builder", &r.builder), ("base", &r.base)] {
            if let Some(b) = image {
                sizes.row(vec![
                    format!("{what} image {}", b.image),
                    human(b.bytes),
                    String::new(),
                ]);
            }
        }
        let diff = self.diff.as_ref();
        sizes.row(vec![
            format!("runtime image {}", short_id(&r.image_id)),
            human(r.runtime_bytes),
            diff.map_or(String::new(), |d| {
                delta_text(d.image.delta_bytes, d.image.delta_percent)
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
            change(diff, |d| d.gzip.delta_bytes),
        ]);
    }

    /// Each artifact and their total, what was not shipped or sent, what was left behind and
    /// the waste.
    fn shipped_rows(&self, sizes: &mut Table) {
        let r = &self.report;
        let diff = self.diff.as_ref();
        for a in &r.artifacts {
            sizes.row(vec![format!("  {}", a.path), human(a.bytes), String::new()]);
        }
        sizes.row(vec![
            format!("artifacts ({})", files(r.artifacts.len() as u64)),
            human(r.artifact_bytes),
            change(diff, |d| d.artifacts.delta_bytes),
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
            change(diff, |d| d.waste.delta_bytes),
        ]);
    }

    /// Files and bytes per artifact rule, with the change of each (nothing without rules).
    fn rules_text(&self) -> String {
        let r = &self.report;
        if r.rules.is_empty() {
            return String::new();
        }
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
        format!("\nartifact rules\n{}", rules.render("  "))
    }

    /// What changed since the baseline, or that there is none.
    fn changes_text(&self) -> String {
        match (&self.diff, &self.baseline) {
            (Some(diff), Some(baseline)) => {
                format!("\nchanges {}\n{}", since(&baseline.source), diff_text(diff))
            }
            (_, None) => "\nno baseline: this is the first report to compare with\n".into(),
            (None, Some(_)) => String::new(),
        }
    }
}

/// The history, one row per step.
fn layers_text(r: &Report) -> String {
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
    format!("\nlayers\n{}", layers.render("  "))
}

fn largest_files_text(r: &Report) -> String {
    if r.largest_files.is_empty() {
        return String::new();
    }
    let mut largest = Table::new(&[false, true]);
    for f in &r.largest_files {
        largest.row(vec![f.path.clone(), human(f.bytes)]);
    }
    format!("\nlargest files\n{}", largest.render("  "))
}

/// The totals, then the first reclaimable paths and duplicate contents.
fn waste_text(waste: &Waste) -> String {
    let mut out = format!(
        "\nwaste: {} reclaimable, {} duplicated\n",
        human(waste.reclaimable_bytes),
        human(waste.duplicate_bytes)
    );
    let mut table = Table::new(&[false, true, false]);
    for w in waste.reclaimable.iter().take(SHOWN) {
        table.row(vec![
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
    for d in waste.duplicates.iter().take(SHOWN) {
        let more = d.paths.len().saturating_sub(1);
        table.row(vec![
            format!(
                "{} and {more} more",
                d.paths.first().map_or("", String::as_str)
            ),
            human(d.wasted_bytes),
            format!("same {} content", human(d.bytes)),
        ]);
    }
    out.push_str(&table.render("  "));
    out
}

/// The image, the layers by role, the artifacts and files changed, and the listing diff.
fn diff_text(diff: &Diff) -> String {
    let mut out = format!(
        "  image {} -> {}: {}\n",
        human(diff.image.before),
        human(diff.image.after),
        delta_text(diff.image.delta_bytes, diff.image.delta_percent)
    );
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
        out.push_str(&listing_head(&diff.listing, "    "));
    }
    out
}

/// The first changes of each kind, aligned, and how many more of each there are.
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

pub(super) fn sizes_of(c: &Change) -> String {
    match (c.before, c.after) {
        (Some(b), Some(a)) => format!("({} -> {})", human(b), human(a)),
        (None, Some(a)) => format!("({})", human(a)),
        (Some(b), None) => format!("(was {})", human(b)),
        (None, None) => String::new(),
    }
}

fn gates_text(gates: &GateOutcome) -> String {
    let mut table = Table::new(&[false, false, false]);
    for c in &gates.checks {
        table.row(vec![
            c.status.name().into(),
            c.gate.clone(),
            c.detail.clone(),
        ]);
    }
    format!("\ngates\n{}{}\n", table.render("  "), gates.summary)
}

/// `850 ms`, `12.3 s`.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::report::diff::diff;
    use crate::report::fixtures::{grown_document, sample_report};
    use crate::report::measure::FileEntry;
    use crate::report::scan::FileKind;
    use crate::report::Document;

    #[test]
    fn text_starts_with_a_summary_and_aligns() {
        let text = sample_report(None).to_text();
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
    fn text_shows_the_diff_and_the_gates() {
        let doc = grown_document();
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
    }

    #[test]
    fn long_change_lists_end_with_and_n_more() {
        let before = sample_report(None);
        let mut after = sample_report(None);
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
}
