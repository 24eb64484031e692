//! Manifest variables: `${NAME}` and `${NAME:-default}` in string values, `$${` for a literal
//! `${` (for instance in a build command that uses the shell's own `${HOME}`). Values come from
//! the manifest's `[vars]`, then the environment (`DOCKCEPTION_VAR_NAME`), then `--set
//! NAME=VALUE`; a later source wins.

use std::collections::BTreeMap;

/// The prefix of environment variables that set manifest variables.
pub const ENV_PREFIX: &str = "DOCKCEPTION_VAR_";

/// Variable values from outside the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// From the environment, prefix removed.
    pub env: BTreeMap<String, String>,
    /// From `--set NAME=VALUE`.
    pub set: BTreeMap<String, String>,
}

impl Overrides {
    /// Pick the `DOCKCEPTION_VAR_*` variables out of an environment.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
        vars.into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ENV_PREFIX)
                    .filter(|name| !name.is_empty())
                    .map(|name| (name.to_string(), v))
            })
            .collect()
    }

    /// Parse `NAME=VALUE` pairs from the command line.
    pub fn parse_set(pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for pair in pairs {
            let (name, value) = pair
                .split_once('=')
                .filter(|(name, _)| is_name(name))
                .ok_or_else(|| {
                    format!("--set {pair:?} is not NAME=VALUE (NAME: letters, digits and _)")
                })?;
            out.insert(name.to_string(), value.to_string());
        }
        Ok(out)
    }
}

/// A variable reference that has no value, at a byte range of the string it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undefined {
    /// The variable's name.
    pub name: String,
    /// Byte range of `${NAME}` in the string.
    pub range: std::ops::Range<usize>,
}

/// A malformed reference such as `${` without `}` or `${1x}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong.
    pub message: String,
    /// Byte range in the string.
    pub range: std::ops::Range<usize>,
}

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// A variable without a value and without a default.
    Undefined(Undefined),
    /// A reference that is not `${NAME}` or `${NAME:-default}`.
    Malformed(Malformed),
}

/// Expand every reference in `text` with `values`.
pub fn expand(text: &str, values: &BTreeMap<String, String>) -> Result<String, Vec<ExpandError>> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            offset += dollar + 3;
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            offset += dollar + 1;
            rest = &after[1..];
            continue;
        };
        let start = offset + dollar;
        let Some(close) = body_start.find('}') else {
            errors.push(ExpandError::Malformed(Malformed {
                message: "`${` without a closing `}`".into(),
                range: start..offset + dollar + after.len(),
            }));
            break;
        };
        let body = &body_start[..close];
        let end = start + 2 + close + 1;
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_name(name) {
            errors.push(ExpandError::Malformed(Malformed {
                message: format!("`${{{body}}}` is not a variable reference"),
                range: start..end,
            }));
        } else {
            match (values.get(name), default) {
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => errors.push(ExpandError::Undefined(Undefined {
                    name: name.to_string(),
                    range: start..end,
                })),
            }
        }
        offset = end;
        rest = &body_start[close + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Variable names, the manifest's and the environment's alike (a manifest variable can come
/// from `DOCKCEPTION_VAR_NAME`): a letter or `_`, then letters, digits or `_`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Merge the three sources: manifest, then environment, then `--set`.
pub fn resolve(
    manifest: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> BTreeMap<String, String> {
    let mut values = manifest.clone();
    values.extend(overrides.env.clone());
    values.extend(overrides.set.clone());
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("VERSION".to_string(), "1.2".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    #[test]
    fn expands_names_and_defaults() {
        let v = values();
        assert_eq!(expand("app:${VERSION}", &v).as_deref(), Ok("app:1.2"));
        assert_eq!(expand("${MISSING:-dev}-x", &v).as_deref(), Ok("dev-x"));
        assert_eq!(expand("${VERSION:-dev}", &v).as_deref(), Ok("1.2"));
        assert_eq!(expand("[${EMPTY}]", &v).as_deref(), Ok("[]"));
        assert_eq!(expand("${MISSING:-}", &v).as_deref(), Ok(""));
    }

    #[test]
    fn shell_dollars_are_left_alone_and_can_be_escaped() {
        let v = values();
        assert_eq!(
            expand("echo $HOME $1 $", &v).as_deref(),
            Ok("echo $HOME $1 $")
        );
        assert_eq!(
            expand("echo $${HOME} ${VERSION}", &v).as_deref(),
            Ok("echo ${HOME} 1.2")
        );
    }

    #[test]
    fn undefined_and_malformed_references_have_ranges() {
        let v = values();
        let errors = expand("a ${NOPE} b ${1x} c ${OPEN", &v).expect_err("errors");
        assert_eq!(
            errors,
            [
                ExpandError::Undefined(Undefined {
                    name: "NOPE".into(),
                    range: 2..9
                }),
                ExpandError::Malformed(Malformed {
                    message: "`${1x}` is not a variable reference".into(),
                    range: 12..17
                }),
                ExpandError::Malformed(Malformed {
                    message: "`${` without a closing `}`".into(),
                    range: 20..26
                }),
            ]
        );
    }

    #[test]
    fn later_sources_win() {
        let manifest = BTreeMap::from([
            ("A".to_string(), "manifest".to_string()),
            ("B".to_string(), "manifest".to_string()),
            ("C".to_string(), "manifest".to_string()),
        ]);
        let overrides = Overrides {
            env: Overrides::from_env([
                ("DOCKCEPTION_VAR_B".to_string(), "env".to_string()),
                ("DOCKCEPTION_VAR_C".to_string(), "env".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ]),
            set: Overrides::parse_set(&["C=set".to_string()]).expect("parses"),
        };
        let values = resolve(&manifest, &overrides);
        assert_eq!(values["A"], "manifest");
        assert_eq!(values["B"], "env");
        assert_eq!(values["C"], "set");
        assert!(!values.contains_key("PATH"));
    }

    #[test]
    fn bad_set_pairs_are_refused() {
        assert!(Overrides::parse_set(&["novalue".to_string()]).is_err());
        assert!(Overrides::parse_set(&["1X=a".to_string()]).is_err());
        assert_eq!(
            Overrides::parse_set(&["X=a=b".to_string()]).expect("parses")["X"],
            "a=b"
        );
    }
}
