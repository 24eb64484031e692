//! Reading a manifest: the file (size limit, UTF-8), TOML syntax, variables, shape (keys and
//! types, against the schema), the types, then the semantic checks. Every problem found is
//! reported, not only the first.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::schema_check::{self, Problem};
use crate::manifest::vars::Overrides;
use crate::manifest::{
    check, expand, json_schema, Diagnostic, Error, LoadedManifest, Manifest, Result,
};

/// Read and check a manifest file, with variables overridden from outside.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<LoadedManifest> {
    use std::io::Read;
    let read_error = |source| Error::ReadManifest {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    parse_bytes_with(path, bytes, overrides)
}

/// The largest manifest dockception reads. Real manifests are a few KiB; a bigger file is
/// almost surely the wrong one, and refusing it keeps parsing time and memory bounded.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Parse and check manifest bytes as read from a file, with variables overridden from outside.
/// Bytes that are not UTF-8 are reported at the line and column of the first bad byte; anything
/// over [`MAX_MANIFEST_BYTES`] is refused.
pub fn parse_bytes_with(
    path: &Path,
    bytes: Vec<u8>,
    overrides: &Overrides,
) -> Result<LoadedManifest> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            path: path.to_path_buf(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    match String::from_utf8(bytes) {
        Ok(source) => parse_with(path, source, overrides),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes().get(at).copied().unwrap_or(0);
            // The text before the bad byte is the input itself, so its line and column hold.
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(Error::Invalid(vec![Diagnostic::at(
                path,
                &text,
                at..at + 1,
                format!("the manifest is not valid UTF-8 (byte 0x{bad:02x} at offset {at})"),
                Some("save the file as UTF-8".into()),
            )]))
        }
    }
}

/// The most problems reported from one file; the rest are counted.
const MAX_DIAGNOSTICS: usize = 50;

/// Parse and check manifest text; `path` is only used in messages and to resolve relative
/// paths. The checks that need the types run only once the document has them.
fn parse_with(path: &Path, source: String, overrides: &Overrides) -> Result<LoadedManifest> {
    let (vars, manifest, mut problems) = read_document(path, &source, overrides)?;
    let loaded = LoadedManifest {
        path: path.to_path_buf(),
        source,
        manifest,
        vars,
    };
    problems.extend(check::check(&loaded));
    problems.sort_by_key(|d| (d.line, d.column));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        problems.truncate(MAX_DIAGNOSTICS);
        Err(manifest_error(&loaded.source, problems))
    }
}

/// A diagnostic at a span of one manifest's text.
type Locate<'a> = dyn Fn(std::ops::Range<usize>, String, Option<String>) -> Diagnostic + 'a;

/// TOML syntax, variables, shape, then the types: the variables' values, the manifest and the
/// shape and variable problems found on the way; or the error that ends reading.
fn read_document(
    path: &Path,
    source: &str,
    overrides: &Overrides,
) -> Result<(BTreeMap<String, String>, Manifest, Vec<Diagnostic>)> {
    let diagnostic = |span: std::ops::Range<usize>, message: String, help: Option<String>| {
        Diagnostic::at(path, source, span, message, help)
    };
    let mut document = parse_toml(source, &diagnostic)?;
    let mut problems = Vec::new();
    let vars = expand::expand_variables(document.get_mut(), source, overrides, &mut problems);
    check_shape(&mut document, &mut problems);
    match Manifest::deserialize(toml::de::Deserializer::from(document)) {
        Ok(manifest) => Ok((vars, manifest, sorted_diagnostics(problems, &diagnostic))),
        Err(e) if problems.is_empty() => {
            let message = e.message().trim_end().to_string();
            let help = help_for_parse_error(&message);
            Err(manifest_error(
                source,
                vec![diagnostic(e.span().unwrap_or(0..0), message, help)],
            ))
        }
        Err(_) => Err(manifest_error(
            source,
            sorted_diagnostics(problems, &diagnostic),
        )),
    }
}

/// The TOML document, or every syntax error in it.
fn parse_toml<'s>(source: &'s str, diagnostic: &Locate<'_>) -> Result<Spanned<DeTable<'s>>> {
    let (document, syntax) = DeTable::parse_recoverable(source);
    if syntax.is_empty() {
        return Ok(document);
    }
    let diagnostics = syntax
        .iter()
        .take(MAX_DIAGNOSTICS)
        .map(|e| {
            diagnostic(
                e.span().unwrap_or(0..0),
                e.message().trim_end().to_string(),
                Some("fix the TOML syntax; see https://toml.io".into()),
            )
        })
        .collect();
    Err(Error::Invalid(diagnostics))
}

/// Every unknown key and wrong type against the schema, then those removed: without them the
/// rest may still deserialize and be checked, so a typo does not hide the file's other mistakes.
fn check_shape(document: &mut Spanned<DeTable<'_>>, problems: &mut Vec<Problem>) {
    if let Ok(schema) = serde_json::from_str::<serde_json::Value>(&json_schema()) {
        problems.extend(schema_check::check(document, &schema));
        default_under_groups(document.get_mut(), problems);
        schema_check::strip_unknown(document.get_mut(), &schema);
    }
}

/// `default` written under `[groups]` (where it reads as a group named `default`, or a type
/// error) instead of at the top level, where it selects what a bare `build` builds.
fn default_under_groups(document: &mut DeTable<'_>, problems: &mut Vec<Problem>) {
    let Some(DeValue::Table(groups)) = document.get_mut("groups").map(|g| g.get_mut()) else {
        return;
    };
    let Some((key, value)) = groups.get_key_value("default") else {
        return;
    };
    let (key, value) = (key.span(), value.span());
    problems.retain(|p| p.span != value);
    problems.push(Problem {
        span: key,
        message: "`default` is a top-level key, not a group".into(),
        help: Some(
            "move `default = ...` above the first [table]: there it says what a bare `dockception build` builds"
                .into(),
        ),
    });
    groups.remove("default");
}

/// Mistakes only inside `[gates]` tables are a misconfigured gate (exit status 2), anything
/// else a broken manifest.
fn manifest_error(source: &str, problems: Vec<Diagnostic>) -> Error {
    let all_in_gates = problems
        .iter()
        .all(|d| in_gates_table(source, line_offset(source, d.line)));
    if all_in_gates {
        Error::GateConfig {
            problems: problems.iter().map(ToString::to_string).collect(),
        }
    } else {
        Error::Invalid(problems)
    }
}

/// The byte offset where 1-based `line` starts.
fn line_offset(source: &str, line: usize) -> usize {
    source
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

/// Whether byte `offset` of the manifest is inside a `[gates]` (or `[targets.NAME.gates]`)
/// table, or on a `gates…` key.
fn in_gates_table(source: &str, offset: usize) -> bool {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let here = source.get(offset.min(source.len())..).unwrap_or("");
    let line = here.lines().next().unwrap_or("").trim_start();
    let header = before
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))
        .map(|h| h.split('#').next().unwrap_or("").trim().to_string());
    let in_table = header
        .is_some_and(|h| h == "[gates]" || (h.starts_with("[targets.") && h.ends_with(".gates]")));
    in_table || line.starts_with("gates") || line.starts_with("[gates]")
}

fn sorted_diagnostics(mut problems: Vec<Problem>, diagnostic: &Locate<'_>) -> Vec<Diagnostic> {
    problems.sort_by_key(|p| p.span.start);
    problems.truncate(MAX_DIAGNOSTICS);
    problems
        .into_iter()
        .map(|p| diagnostic(p.span, p.message, p.help))
        .collect()
}

fn help_for_parse_error(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling; the schema in schema/dockception.schema.json lists every key".into())
    } else if message.starts_with("unknown variant") {
        Some("write one of the values it lists".into())
    } else if message.starts_with("missing field") {
        Some("add the key; see README.md for a manifest walk-through".into())
    } else {
        None
    }
}
