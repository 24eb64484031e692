//! Check a parsed TOML document against the manifest's JSON Schema (generated from the Rust
//! types), collecting every unknown key and wrong type with its span, where serde would stop at
//! the first. Unknown keys get a "did you mean" for a near miss.

use std::ops::Range;

use serde_json::Value;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::suggest::{quoted, suggestion};

/// One problem found in the document's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range in the source.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

/// Check `document` against `schema`; returns every problem, in document order.
pub fn check(document: &Spanned<DeTable<'_>>, schema: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let walker = Walker { root: schema };
    walker.table(
        document.get_ref(),
        document.span(),
        schema,
        "",
        &mut problems,
    );
    problems.sort_by_key(|p| p.span.start);
    problems
}

/// Remove the keys the schema does not know, and optional scalar values of the wrong type, so
/// that the rest of a document with mistakes can still be checked (and every error of the file
/// reported at once).
pub fn strip_unknown(document: &mut DeTable<'_>, schema: &Value) {
    let walker = Walker { root: schema };
    walker.strip_table(document, schema);
}

struct Walker<'s> {
    root: &'s Value,
}

impl<'s> Walker<'s> {
    /// Follow `$ref`s to the schema that describes the value.
    fn resolve(&self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(target) = reference
                .strip_prefix("#/")
                .and_then(|pointer| self.root.pointer(&format!("/{pointer}")))
            else {
                break;
            };
            schema = target;
        }
        schema
    }

    fn strip_table(&self, table: &mut DeTable<'_>, schema: &'s Value) {
        let schema = self.object_schema(schema);
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        // Optional values of the wrong type go too: serde would stop at them.
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let wrong: Vec<String> = table
            .iter()
            .filter(|(key, _)| !required.contains(&key.get_ref().as_ref()))
            .filter(|(key, value)| {
                let Some(property) = properties
                    .and_then(|p| p.get(key.get_ref().as_ref()))
                    .or(additional)
                else {
                    return false;
                };
                let mut problems = Vec::new();
                self.value(value, property, "", &mut problems);
                !problems.is_empty()
                    && !matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_))
            })
            .map(|(key, _)| key.get_ref().to_string())
            .collect();
        for key in wrong {
            table.remove(key.as_str());
        }
        if properties.is_some() && additional.is_none() {
            let unknown: Vec<String> = table
                .keys()
                .map(|k| k.get_ref().to_string())
                .filter(|k| properties.is_some_and(|p| !p.contains_key(k)))
                .collect();
            for key in unknown {
                table.remove(key.as_str());
            }
        }
        for (key, value) in table.iter_mut() {
            let child = properties
                .and_then(|p| p.get(key.get_ref().as_ref()))
                .or(additional);
            if let Some(child) = child {
                self.strip_value(value.get_mut(), child);
            }
        }
    }

    fn strip_value(&self, value: &mut DeValue<'_>, schema: &'s Value) {
        match value {
            DeValue::Table(table) => self.strip_table(table, schema),
            DeValue::Array(items) => {
                let schema = self.object_schema(schema);
                if let Some(item_schema) = schema.get("items") {
                    for item in items.iter_mut() {
                        self.strip_value(item.get_mut(), item_schema);
                    }
                }
            }
            _ => {}
        }
    }

    /// The schema itself, or the first alternative that describes a table or an array.
    fn object_schema(&self, schema: &'s Value) -> &'s Value {
        let schema = self.resolve(schema);
        schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
            .and_then(|alternatives| {
                alternatives
                    .iter()
                    .map(|a| self.resolve(a))
                    .find(|a| types_of(a).iter().any(|t| *t == "object" || *t == "array"))
            })
            .unwrap_or(schema)
    }

    fn value(
        &self,
        value: &Spanned<DeValue<'_>>,
        schema: &'s Value,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let schema = self.resolve(schema);
        if let Some(alternatives) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.alternatives(value, alternatives, path, out);
            return;
        }
        let expected = types_of(schema);
        if !expected.is_empty() && !expected.iter().any(|t| accepts(t, value.get_ref())) {
            out.push(wrong_type(value, path, &expected));
            return;
        }
        match value.get_ref() {
            DeValue::Table(table) => self.table(table, value.span(), schema, path, out),
            DeValue::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, item_schema, &format!("{path}[{i}]"), out);
                    }
                }
            }
            DeValue::Integer(i) => out.extend(out_of_range(value.span(), i, schema, path)),
            _ => {}
        }
    }

    fn alternatives(
        &self,
        value: &Spanned<DeValue<'_>>,
        alternatives: &'s [Value],
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let candidates: Vec<&Value> = alternatives
            .iter()
            .map(|a| self.resolve(a))
            .filter(|a| types_of(a) != ["null"])
            .collect();
        let mut best: Option<Vec<Problem>> = None;
        for candidate in &candidates {
            let mut problems = Vec::new();
            self.value(value, candidate, path, &mut problems);
            if problems.is_empty() {
                return;
            }
            let same_type = types_of(candidate)
                .iter()
                .any(|t| accepts(t, value.get_ref()));
            if same_type && best.is_none() {
                best = Some(problems);
            }
        }
        match best {
            Some(problems) => out.extend(problems),
            None => {
                let expected: Vec<&str> = candidates.iter().flat_map(|c| types_of(c)).collect();
                out.push(wrong_type(value, path, &expected));
            }
        }
    }

    fn table(
        &self,
        table: &DeTable<'_>,
        span: Range<usize>,
        schema: &'s Value,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let schema = self.resolve(schema);
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let child_path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                self.value(value, property, &child_path, out);
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                self.value(value, extra, &child_path, out);
            } else if additional == Some(&Value::Bool(false)) || properties.is_some() {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let help = suggestion(name, &known, || {
                    format!(
                        "remove it; {} takes {}",
                        if path.is_empty() {
                            "the manifest".to_string()
                        } else {
                            format!("`{path}`")
                        },
                        quoted(&known)
                    )
                });
                out.push(Problem {
                    span: key.span(),
                    message: format!("unknown key `{name}`{}", in_table(path)),
                    help: Some(help),
                });
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if table.get(key).is_none() {
                    out.push(Problem {
                        span: span.clone(),
                        message: format!("missing key `{key}`{}", in_table(path)),
                        help: Some(format!(
                            "add `{key} = …`; see README.md for the manifest's keys"
                        )),
                    });
                }
            }
        }
    }
}

/// `PATH must be TYPES, not A TYPE`, with an example of what it takes.
fn wrong_type(value: &Spanned<DeValue<'_>>, path: &str, expected: &[&str]) -> Problem {
    Problem {
        span: value.span(),
        message: format!(
            "{} must be {}, not {}",
            display_path(path),
            describe_types(expected),
            with_article(type_of(value.get_ref()))
        ),
        help: example_for(expected),
    }
}

/// An integer outside the schema's `minimum`..=`maximum` (a port, for instance).
fn out_of_range(
    span: Range<usize>,
    integer: &toml::de::DeInteger<'_>,
    schema: &Value,
    path: &str,
) -> Option<Problem> {
    let n = i64::from_str_radix(&integer.as_str().replace('_', ""), integer.radix()).ok()?;
    let min = schema.get("minimum").and_then(Value::as_i64);
    let max = schema.get("maximum").and_then(Value::as_i64);
    if !(min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m)) {
        return None;
    }
    let (min, max) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
    Some(Problem {
        span,
        message: format!("{} is {n}, outside {min}..={max}", display_path(path)),
        help: Some(format!("use a number from {min} to {max}")),
    })
}

/// ` in `path`` after a key's name, nothing at the top level.
fn in_table(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn accepts(schema_type: &str, value: &DeValue<'_>) -> bool {
    matches!(
        (schema_type, value),
        ("string", DeValue::String(_))
            | ("integer", DeValue::Integer(_))
            | ("number", DeValue::Integer(_) | DeValue::Float(_))
            | ("boolean", DeValue::Boolean(_))
            | ("array", DeValue::Array(_))
            | ("object", DeValue::Table(_))
    )
}

fn type_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

fn toml_name(schema_type: &str) -> &str {
    match schema_type {
        "object" => "table",
        "number" => "number",
        other => other,
    }
}

fn with_article(name: &str) -> String {
    match name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {name}"),
        _ => format!("a {name}"),
    }
}

fn describe_types(types: &[&str]) -> String {
    let mut names: Vec<String> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| with_article(toml_name(t)))
        .collect();
    names.dedup();
    match names.len() {
        0 => "something else".into(),
        1 => names.remove(0),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} or {last}", names.join(", "))
        }
    }
}

fn example_for(types: &[&str]) -> Option<String> {
    let examples: Vec<&str> = types
        .iter()
        .filter_map(|t| match *t {
            "string" => Some("\"text\""),
            "integer" => Some("8080"),
            "boolean" => Some("true"),
            "array" => Some("[\"a\", \"b\"]"),
            "object" => Some("{ key = \"value\" }"),
            _ => None,
        })
        .collect();
    (!examples.is_empty()).then(|| format!("write it like {}", examples.join(" or ")))
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the manifest".into()
    } else {
        format!("`{path}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<Problem> {
        let schema: Value =
            serde_json::from_str(&crate::manifest::json_schema()).expect("schema parses");
        let document = DeTable::parse(src).expect("valid TOML");
        check(&document, &schema)
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported() {
        let src = "[builder]\nimage = 3\nrun = \"make\"\nimgae = \"x\"\n\n[[mount]]\nsorce = \".\"\ntarget = \"/src\"\nsource = \".\"\n\n[artifacts]\ninclude = \"app\"\n";
        let p = problems(src);
        let messages: Vec<_> = p.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`builder.image` must be a string, not an integer",
                "unknown key `imgae` in `builder`",
                "unknown key `sorce` in `mount[0]`",
                "`artifacts.include` must be an array, not a string",
            ]
        );
        assert_eq!(p[1].help.as_deref(), Some("did you mean `image`?"));
        assert_eq!(p[2].help.as_deref(), Some("did you mean `source`?"));
        assert_eq!(&src[p[0].span.clone()], "3");
    }

    #[test]
    fn untagged_alternatives_accept_either_form() {
        let ok = "[builder]\nimage = \"i\"\nrun = [\"make\", \"-j2\"]\n[artifacts]\ninclude = [\"a\"]\n[runtime]\nexpose = [80, \"53/udp\"]\n";
        assert_eq!(problems(ok), []);
        let bad = "[builder]\nimage = \"i\"\nrun = 5\n[artifacts]\ninclude = [\"a\"]\n[runtime]\nexpose = [true, 70000]\n";
        let messages: Vec<_> = problems(bad).into_iter().map(|p| p.message).collect();
        assert_eq!(
            messages,
            [
                "`builder.run` must be a string or an array, not an integer",
                "`runtime.expose[0]` must be an integer or a string, not a boolean",
                "`runtime.expose[1]` is 70000, outside 1..=65535",
            ]
        );
    }
}
