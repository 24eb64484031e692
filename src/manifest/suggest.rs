//! "Did you mean" for a near miss, and names listed in backticks: how every message that
//! rejects a name (a key, a target, a group, a cache) offers the right one.

/// `did you mean `x`?` for a near miss of `name` among `known`, else `otherwise()`.
pub fn suggestion(name: &str, known: &[&str], otherwise: impl FnOnce() -> String) -> String {
    match did_you_mean(name, known) {
        Some(near) => format!("did you mean `{near}`?"),
        None => otherwise(),
    }
}

/// Names in backticks, comma-separated (`none` for no names).
pub fn quoted(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest of `known` to `name`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(distance, k)| *distance <= (k.len().max(name.len()) / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_a_suggestion() {
        assert_eq!(did_you_mean("sorce", &["source", "target"]), Some("source"));
        assert_eq!(
            did_you_mean("entrypint", &["entrypoint", "cmd"]),
            Some("entrypoint")
        );
        assert_eq!(did_you_mean("zzz", &["source", "target"]), None);
    }
}
