//! The report as a pull-request comment or CI step summary (GitHub-flavoured markdown): the
//! sizes table in the open, the layers and the listing diff folded in `<details>`.

use crate::report::diff::{Changes, Diff};
use crate::report::gates::GateOutcome;
use crate::report::wording::{change, counts, delta_text, files, listing_head, since, step, SHOWN};
use crate::report::{Document, Report};
use crate::units::{human, signed_human};

impl Document {
    /// A pull-request comment or CI step summary (GitHub-flavoured markdown).
    pub fn to_markdown(&self) -> String {
        let r = &self.report;
        let mut out = format!(
            "### dockception: `{}`\n\n{}\n\n",
            r.name(),
            md(&self.summary())
        );
        out.push_str(&self.sizes_markdown());
        out.push_str(&layers_markdown(r));
        if let (Some(diff), Some(baseline)) = (&self.diff, &self.baseline) {
            out.push_str(&format!(
                "\n#### Changes {}\n\n",
                md(&since(&baseline.source))
            ));
            out.push_str(&changes_markdown(diff));
        }
        if let Some(gates) = &self.gates {
            out.push_str(&gates_markdown(gates));
        }
        out
    }

    fn sizes_markdown(&self) -> String {
        let r = &self.report;
        let diff = self.diff.as_ref();
        let mut out = String::from("| | size | change |\n|---|---:|---:|\n");
        for (what, image) in [("builder", &r.builder), ("base", &r.base)] {
            if let Some(b) = image {
                out.push_str(&format!(
                    "| {what} image `{}` | {} | |\n",
                    b.image,
                    human(b.bytes)
                ));
            }
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
            change(diff, |d| d.gzip.delta_bytes)
        ));
        if let Some(left) = r.left_behind_bytes {
            out.push_str(&format!("| left behind | {} | |\n", human(left)));
        }
        out.push_str(&format!(
            "| artifacts ({}) | {} | {} |\n",
            files(r.artifacts.len() as u64),
            human(r.artifact_bytes),
            change(diff, |d| d.artifacts.delta_bytes)
        ));
        out.push_str(&format!(
            "| waste | {} | {} |\n",
            human(r.waste.total_bytes),
            change(diff, |d| d.waste.delta_bytes)
        ));
        if let Some(digest) = &r.digest {
            out.push_str(&format!("\ndigest `{digest}`\n"));
        }
        for d in &r.delivered {
            out.push_str(&format!("\n- {}", md(&super::wording::delivery(d))));
        }
        if !r.delivered.is_empty() {
            out.push('\n');
        }
        out
    }
}

fn layers_markdown(r: &Report) -> String {
    let mut out = String::from("\n<details><summary>Layers</summary>\n\n");
    out.push_str("| # | role | size | tar | gzip | created by |\n|---:|---|---:|---:|---:|---|\n");
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
    out
}

/// The files changed (the first of each kind), then the listing diff, folded.
fn changes_markdown(diff: &Diff) -> String {
    let mut out = format!("Files: {}.\n\n", counts(&diff.files));
    if !diff.files.is_empty() {
        out.push_str(&file_changes_markdown(&diff.files));
    }
    if !diff.listing.is_empty() {
        out.push_str("\n<details><summary>File listing diff</summary>\n\n```diff\n");
        out.push_str(&listing_head(&diff.listing, ""));
        out.push_str("```\n\n</details>\n");
    }
    out
}

fn file_changes_markdown(files: &Changes) -> String {
    let mut out = String::from("| | path | before | after | change |\n|---|---|---:|---:|---:|\n");
    for (mark, list) in [
        ("added", &files.added),
        ("removed", &files.removed),
        ("changed", &files.changed),
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
    out
}

fn gates_markdown(gates: &GateOutcome) -> String {
    let mut out = String::from("\n#### Gates\n\n| result | gate | detail |\n|---|---|---|\n");
    for c in &gates.checks {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            c.status.name(),
            c.gate,
            md(&c.detail)
        ));
    }
    out.push_str(&format!("\n**{}**\n", gates.summary));
    out
}

/// Markdown table cells cannot hold `|` or newlines.
fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use crate::report::fixtures::grown_document;

    #[test]
    fn markdown_shows_the_diff_and_the_gates() {
        let md = grown_document().to_markdown();
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
}
