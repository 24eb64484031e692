//! One problem in a manifest at `file:line:col`, with the source line, a caret and a fix.

use std::fmt;
use std::path::PathBuf;

/// One problem in a manifest, located at `file:line:col`, with the source line and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The source line the error is on (empty when unknown).
    pub source_line: String,
    /// How many characters the caret underlines (at least 1).
    pub width: usize,
    /// A one-line fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// Locate `span` (byte offsets into `source`) and build a diagnostic for it.
    pub fn at(
        path: impl Into<PathBuf>,
        source: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(source, span.end.clamp(start, line_end));
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            path: path.into(),
            line,
            column,
            message: message.into(),
            source_line,
            width,
            help,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        let gutter = self.line.to_string();
        let pad = " ".repeat(gutter.len());
        let (shown, caret_at, width) = clip_line(&self.source_line, self.column, self.width);
        writeln!(f, "{pad} |")?;
        writeln!(f, "{gutter} | {shown}")?;
        write!(f, "{pad} | {}{}", " ".repeat(caret_at), "^".repeat(width))?;
        if let Some(help) = &self.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// The most characters of a source line a diagnostic shows.
const MAX_SHOWN_CHARS: usize = 100;

/// A window of at most [`MAX_SHOWN_CHARS`] characters of `line` around the caret (a minified or
/// generated line can be megabytes long), with `…` where it was cut; returns the text, the
/// caret's offset in it and the caret's width.
fn clip_line(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let at = column.saturating_sub(1);
    let width = width.max(1);
    if chars.len() <= MAX_SHOWN_CHARS {
        return (line.to_string(), at, width);
    }
    let start = at.saturating_sub(MAX_SHOWN_CHARS / 3).min(chars.len());
    let end = (start + MAX_SHOWN_CHARS).min(chars.len());
    let mut shown = String::new();
    let mut caret_at = at - start;
    if start > 0 {
        shown.push('…');
        caret_at += 1;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let width = width.min(end.saturating_sub(at).max(1));
    (shown, caret_at, width)
}

pub(crate) fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&d.to_string());
    }
    if diagnostics.len() > 1 {
        out.push_str(&format!("\n\n{} errors in the manifest", diagnostics.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_points_at_line_and_column() {
        let src = "[builder]\nimage = 3\n";
        let d = Diagnostic::at("m.toml", src, 18..19, "expected a string", None);
        assert_eq!((d.line, d.column, d.width), (2, 9, 1));
        assert_eq!(
            d.to_string(),
            "m.toml:2:9: expected a string\n  |\n2 | image = 3\n  |         ^"
        );
    }

    #[test]
    fn a_very_long_line_is_shown_as_a_window_around_the_caret() {
        let src = format!("a = {}x{}\n", "[".repeat(5000), "]".repeat(5000));
        let d = Diagnostic::at("m.toml", &src, 5004..5005, "bad", None);
        assert_eq!((d.line, d.column), (1, 5005));
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("1 | …[[["), "{text}");
        assert!(lines[2].ends_with("]]]…"), "{text}");
        assert!(lines[2].chars().count() < 120, "{text}");
        let caret = lines[3].find('^').expect("a caret");
        assert_eq!(lines[2].chars().nth(caret), Some('x'), "{text}");
    }
}
