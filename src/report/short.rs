//! The short answer a build prints by default: the summary line, only what changed since the
//! baseline, and the gates. A rebuild where one artifact changed is two lines (three with a
//! gate); the full tables are `--report full` and `dockception report`.

use crate::report::diff::{Changes, Diff};
use crate::report::gates::GateOutcome;
use crate::report::table::Table;
use crate::report::wording::{delta_text, since};
use crate::report::Document;
use crate::units::{human, signed_human};

/// How many files of each kind of change (added, removed, changed) the short answer names.
const SHORT_SHOWN: usize = 5;

impl Document {
    /// The short answer for people: the summary line, then only what changed (files added,
    /// removed or changed, and the waste when it moved), then the gates, each check on a line,
    /// and their result.
    pub fn to_short_text(&self) -> String {
        if self.report.up_to_date {
            return self.to_text();
        }
        let mut out = self.summary();
        out.push('\n');
        if let Some(print) = &self.report.reused_from {
            out.push_str(&format!(
                "  reused an earlier build with the same inputs ({}): no build ran\n",
                print.chars().take(12).collect::<String>()
            ));
        }
        // Where it went, when that is more than the engine (a push, a file).
        for d in self.report.delivered.iter().filter(|d| d.to != "engine") {
            out.push_str(&format!("  {}\n", crate::report::wording::delivery(d)));
        }
        match (&self.diff, &self.baseline) {
            (Some(diff), Some(baseline)) => out.push_str(&changed_lines(diff, &baseline.source)),
            (_, None) => out.push_str(
                "  no baseline yet: the next build says what changed; `dockception report` shows the full report\n",
            ),
            (None, Some(_)) => {}
        }
        if let Some(gates) = &self.gates {
            out.push_str(&gate_lines(gates));
        }
        out
    }
}

/// The files added, removed and changed (at most [`SHORT_SHOWN`] of each kind), and the waste
/// when it moved; one line saying so when nothing did.
fn changed_lines(diff: &Diff, source: &str) -> String {
    let mut out = files_changed(&diff.files);
    if diff.waste.delta_bytes != 0 {
        out.push_str(&format!(
            "  waste {} -> {}: {}\n",
            human(diff.waste.before),
            human(diff.waste.after),
            delta_text(diff.waste.delta_bytes, diff.waste.delta_percent)
        ));
    }
    if out.is_empty() {
        out = format!("  no file changed {}\n", since(source));
    }
    out
}

fn files_changed(c: &Changes) -> String {
    let mut table = Table::new(&[false, false, true, false]);
    let mut more = Vec::new();
    for (mark, kind, list) in [
        ("+", "added", &c.added),
        ("-", "removed", &c.removed),
        ("~", "changed", &c.changed),
    ] {
        for change in list.iter().take(SHORT_SHOWN) {
            table.row(vec![
                mark.into(),
                change.path.clone(),
                signed_human(change.delta_bytes),
                super::text::sizes_of(change),
            ]);
        }
        if list.len() > SHORT_SHOWN {
            more.push(format!(
                "  ... and {} more {kind}\n",
                list.len() - SHORT_SHOWN
            ));
        }
    }
    let mut out = table.render("  ");
    for line in more {
        out.push_str(&line);
    }
    out
}

/// Each gate's status and detail, aligned, then the result line.
fn gate_lines(gates: &GateOutcome) -> String {
    let mut table = Table::new(&[false, false, false]);
    for c in &gates.checks {
        table.row(vec![
            c.status.name().into(),
            c.gate.clone(),
            c.detail.clone(),
        ]);
    }
    format!("{}{}\n", table.render("  "), gates.summary)
}

#[cfg(test)]
mod tests {
    use crate::report::diff::diff;
    use crate::report::fixtures::{grown_document, sample_report};
    use crate::report::Document;

    #[test]
    fn one_changed_artifact_is_a_two_line_answer() {
        let before = sample_report(None);
        let mut after = sample_report(None);
        let hello = after
            .files
            .iter_mut()
            .find(|f| f.path == "/hello")
            .expect("the sample has /hello");
        hello.size += 128;
        hello.sha256 = Some("changed".into());
        after.runtime_bytes += 128;
        let d = diff(&before, &after);
        let doc = Document::new(
            after,
            Some((&before, "the last build".into())),
            Some(d),
            None,
        );
        let text = doc.to_short_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("since the last build"), "{text}");
        assert_eq!(
            lines[1], "  ~  /hello  +128 B  (800.0 KiB -> 800.1 KiB)",
            "{text}"
        );
    }

    #[test]
    fn the_short_answer_keeps_the_gates_and_drops_the_tables() {
        let doc = grown_document();
        let text = doc.to_short_text();
        assert!(
            text.contains("\n  +  /extra.bin  +4.9 KiB  (4.9 KiB)\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  FAIL  growth  +4.9 KiB > max +3.9 KiB\n"),
            "{text}"
        );
        assert!(text.ends_with("gates: FAIL (1 failed)\n"), "{text}");
        for table in ["layers", "largest files", "0 removed", "builder image"] {
            assert!(!text.contains(table), "{table} in: {text}");
        }
        assert!(text.lines().count() <= 10, "{text}");
    }

    #[test]
    fn a_first_build_says_there_is_nothing_to_compare_with() {
        let text = Document::new(sample_report(None), None, None, None).to_short_text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("no baseline yet"), "{text}");
    }
}
