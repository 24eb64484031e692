//! Variables expanded in the TOML document, before it has types: every string value may use
//! them, whatever key it is under. `vars` does the expanding of one string; this walks the
//! document and points each bad reference at its spot in the file.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::schema_check::Problem;
use crate::manifest::vars::{self, ExpandError, Overrides};

/// The variables' values (`[vars]`, then the environment, then `--set`), expanded in every
/// string value except `[vars]` itself; references that cannot be expanded are `problems`.
pub(crate) fn expand_variables(
    document: &mut DeTable<'_>,
    source: &str,
    overrides: &Overrides,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let values = vars::resolve(&declared_vars(document), overrides);
    for (key, value) in document.iter_mut() {
        if key.get_ref() == "vars" {
            continue;
        }
        expand_value(value, &values, source, problems);
    }
    values
}

/// The `[vars]` table's string values; other shapes are reported by the shape check.
fn declared_vars(document: &DeTable<'_>) -> BTreeMap<String, String> {
    let Some(DeValue::Table(vars)) = document.get("vars").map(|v| v.get_ref()) else {
        return BTreeMap::new();
    };
    vars.iter()
        .filter_map(|(k, v)| match v.get_ref() {
            DeValue::String(s) => Some((k.get_ref().to_string(), s.to_string())),
            _ => None,
        })
        .collect()
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    values: &BTreeMap<String, String>,
    source: &str,
    problems: &mut Vec<Problem>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) => match vars::expand(text, values) {
            Ok(expanded) => {
                if expanded != *text {
                    *text = std::borrow::Cow::Owned(expanded);
                }
            }
            Err(errors) => {
                for error in errors {
                    problems.push(variable_problem(&error, text, span.clone(), source));
                }
            }
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                expand_value(item, values, source, problems);
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                expand_value(item, values, source, problems);
            }
        }
        _ => {}
    }
}

/// Point at the reference inside the string literal when it is written there as is.
fn variable_problem(
    error: &ExpandError,
    text: &str,
    literal: std::ops::Range<usize>,
    source: &str,
) -> Problem {
    let (range, message, help) = match error {
        ExpandError::Undefined(u) => (
            u.range.clone(),
            format!("variable `{}` is not defined", u.name),
            format!(
                "define it in [vars], set {}{} or pass --set {}=VALUE, give a default with ${{{}:-VALUE}}, or write $${{ for a literal ${{",
                vars::ENV_PREFIX,
                u.name,
                u.name,
                u.name
            ),
        ),
        ExpandError::Malformed(m) => (
            m.range.clone(),
            m.message.clone(),
            "write ${NAME} or ${NAME:-default}, or $${ for a literal ${".to_string(),
        ),
    };
    let reference = text.get(range).unwrap_or_default();
    let span = source
        .get(literal.clone())
        .and_then(|written| written.find(reference))
        .filter(|_| !reference.is_empty())
        .map(|at| literal.start + at..literal.start + at + reference.len())
        .unwrap_or(literal);
    Problem {
        span,
        message,
        help: Some(help),
    }
}
