//! Wording both people-facing forms (text and markdown) share, so the two say the same thing
//! the same way: deltas, counts, history steps, the baseline's name, the cut listing diff.

use crate::report::diff::{Changes, Diff};
use crate::report::{Delivery, LAST_BUILD};
use crate::units::{human, signed_human};

/// How many entries of each change list the text and markdown forms show.
pub(super) const SHOWN: usize = 10;
/// How many lines of the listing diff the text and markdown forms show.
const SHOWN_DIFF_LINES: usize = 60;

/// `the last build` -> `since the last build`; anything else -> `vs X`.
pub(super) fn since(source: &str) -> String {
    if source == LAST_BUILD {
        format!("since {LAST_BUILD}")
    } else {
        format!("vs {source}")
    }
}

pub(super) fn counts(c: &Changes) -> String {
    format!(
        "{} added, {} removed, {} changed, {} in all",
        c.added.len(),
        c.removed.len(),
        c.changed.len(),
        signed_human(c.delta_bytes)
    )
}

pub(super) fn files(n: u64) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A history step without the classic builder's `/bin/sh -c #(nop)` noise, cut to 60
/// characters.
pub(super) fn step(created_by: &str) -> String {
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

pub(super) fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `+4.9 KiB (+0.73%)`; the percent is left out when the baseline was empty.
pub(super) fn delta_text(bytes: i64, percent: Option<f64>) -> String {
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

/// The change column of a size row: empty without a baseline.
pub(super) fn change(diff: Option<&Diff>, delta_bytes: impl Fn(&Diff) -> i64) -> String {
    diff.map_or(String::new(), |d| signed_human(delta_bytes(d)))
}

/// The first lines of the listing diff, each after `indent`, and how many more there are.
pub(super) fn listing_head(listing: &str, indent: &str) -> String {
    let lines: Vec<&str> = listing.lines().collect();
    let mut out = String::new();
    for line in lines.iter().take(SHOWN_DIFF_LINES) {
        out.push_str(&format!("{indent}{line}\n"));
    }
    if lines.len() > SHOWN_DIFF_LINES {
        out.push_str(&format!(
            "{indent}... and {} more lines\n",
            lines.len() - SHOWN_DIFF_LINES
        ));
    }
    out
}

/// Where the image went, in one phrase: `loaded into the engine as app:1 (12.0 KiB sent,
/// 1.0 MiB already there)`, `pushed to 127.0.0.1:5000/team/app (...)`, `written to FILE (...)`.
pub(super) fn delivery(d: &Delivery) -> String {
    let sent = match d.to.as_str() {
        "registry" => format!("{} uploaded", human(d.sent_bytes)),
        "engine" => format!("{} sent", human(d.sent_bytes)),
        _ => format!("{} written", human(d.sent_bytes)),
    };
    let skipped = if d.skipped_bytes > 0 {
        format!(", {} already there", human(d.skipped_bytes))
    } else {
        String::new()
    };
    let place = match d.to.as_str() {
        "engine" => format!("loaded into {}", d.destination),
        "registry" => format!("pushed to {}", d.destination),
        kind => format!("written as {kind} to {}", d.destination),
    };
    format!("{place} ({sent}{skipped})")
}

#[cfg(test)]
mod delivery_tests {
    use super::*;

    #[test]
    fn a_delivery_says_where_and_what_was_sent_and_skipped() {
        let d = |to: &str, destination: &str, sent, skipped| Delivery {
            to: to.into(),
            destination: destination.into(),
            sent_bytes: sent,
            skipped_bytes: skipped,
        };
        assert_eq!(
            delivery(&d("registry", "127.0.0.1:5000/team/app", 2048, 1 << 20)),
            "pushed to 127.0.0.1:5000/team/app (2.0 KiB uploaded, 1.0 MiB already there)"
        );
        assert_eq!(
            delivery(&d("engine", "the engine as app:1", 512, 0)),
            "loaded into the engine as app:1 (512 B sent)"
        );
        assert_eq!(
            delivery(&d("oci", "/tmp/app.tar", 4096, 0)),
            "written as oci to /tmp/app.tar (4.0 KiB written)"
        );
    }
}
