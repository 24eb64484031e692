//! What written values mean where a string stands for more: durations, port specs, container
//! paths, and the names the engine and the kernel take (environment variables, users, volumes,
//! targets). The checks refuse what these do not read; the plan reads them again.

/// The longest `builder.warm`: a day. A longer idle builder is a forgotten one.
const MAX_WARM_SECS: u64 = 24 * 60 * 60;

/// How long the builder stays warm when the manifest does not say: ten minutes, an edit-build
/// loop's pause, short enough that a forgotten one is gone within a coffee break.
pub const DEFAULT_WARM_SECS: u64 = 10 * 60;

/// What `builder.warm` means: `Some(seconds)` to keep the builder running that long after its
/// last build (the default when unset: [`DEFAULT_WARM_SECS`]), `Some(None)` for `"off"` (a fresh
/// container per build), `None` when the text is neither a duration nor `"off"`.
pub fn parse_warm(text: Option<&str>) -> Option<Option<u64>> {
    match text.map(str::trim) {
        None => Some(Some(DEFAULT_WARM_SECS)),
        Some("off") => Some(None),
        Some(text) => parse_duration(text).map(Some),
    }
}

/// Seconds in a duration written `<whole number><s|m|h>` (`"90s"`, `"10m"`, `"1h"`), more than
/// zero and at most a day; `None` for anything else.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        _ => return None,
    };
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = number.parse::<u64>().ok()?.checked_mul(scale)?;
    (1..=MAX_WARM_SECS).contains(&secs).then_some(secs)
}

/// The bytes `builder.reuse_limit` stands for: a whole number of bytes, or a size with a unit
/// (`"2 GiB"`, `"500 MB"`); the reason it is not one otherwise.
pub fn parse_reuse_limit(value: &crate::manifest::gates::Threshold) -> Result<u64, String> {
    use crate::manifest::gates::Threshold;
    match value {
        Threshold::Number(n) if n.is_finite() && *n >= 0.0 && n.fract() == 0.0 => Ok(*n as u64),
        Threshold::Number(n) => Err(format!("{n} is not a whole number of bytes")),
        Threshold::Text(text) => crate::units::parse_size(text),
    }
}

/// A container path as the engine sees it (Go's `path.Clean`): `/out/`, `/out//` and
/// `/x/../out` are all `/out`, so two spellings of one path are found to be one.
pub(crate) fn normalise_container_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `"8080"`, `"8080/tcp"`, `"53/udp"` -> (port, protocol); port 0 is no port.
pub(crate) fn parse_port_spec(spec: &str) -> Option<(u16, &str)> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    matches!(proto, "tcp" | "udp" | "sctp").then_some((port, proto))
}

/// Why `name` cannot be an environment variable's name in a container (`KEY=value` lines: no
/// `=`, and nothing empty or invisible); `None` when it can.
pub(crate) fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('=') {
        Some("contains `=`, which ends the name in the container's KEY=value")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains a space or a control character")
    } else {
        None
    }
}

/// Why `user` is not `USER[:GROUP]` (each a name or a numeric id); `None` when it is.
pub(crate) fn user_problem(user: &str) -> Option<&'static str> {
    let mut parts = user.split(':');
    let (name, group, rest) = (parts.next(), parts.next(), parts.next());
    if rest.is_some() {
        return Some("has more than one `:`");
    }
    for part in [name, group].into_iter().flatten() {
        if part.is_empty() {
            return Some("has an empty user or group");
        }
        if part
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Some("contains a space, a `/` or a control character");
        }
        if part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u32>().is_err() {
            return Some("has an id larger than 4294967295");
        }
    }
    None
}

/// Whether the engine's local volume driver takes `name`: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn is_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `name` can name a target: its output folder (`.dockception/targets/NAME`), its cache
/// volumes and `--tag NAME=...` carry it, so `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub(crate) fn is_target_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_is_on_for_ten_minutes_unless_off() {
        assert_eq!(parse_warm(None), Some(Some(600)));
        assert_eq!(parse_warm(Some("off")), Some(None));
        assert_eq!(parse_warm(Some("90s")), Some(Some(90)));
        assert_eq!(parse_warm(Some("no")), None);
        assert_eq!(parse_warm(Some("0s")), None);
    }

    #[test]
    fn warm_durations_are_whole_seconds_minutes_or_hours() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("24h"), Some(86_400));
        for bad in [
            "", "s", "10", "0s", "1.5m", "-5s", "10 m", "1d", "25h", "5ms", "+5s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn port_specs_parse() {
        assert_eq!(parse_port_spec("53/udp"), Some((53, "udp")));
        assert_eq!(parse_port_spec("80"), Some((80, "tcp")));
        assert_eq!(parse_port_spec("65535/sctp"), Some((65535, "sctp")));
        for bad in [
            "x/tcp",
            "0",
            "0/udp",
            "+80",
            "80/TCP",
            "80/",
            "70000",
            "8000-8010",
        ] {
            assert_eq!(parse_port_spec(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn container_paths_are_cleaned_as_the_engine_cleans_them() {
        for (path, clean) in [
            ("/out", "/out"),
            ("/out/", "/out"),
            ("//out//bin/", "/out/bin"),
            ("/x/../out/./bin", "/out/bin"),
            ("/..", "/"),
            ("/", "/"),
        ] {
            assert_eq!(normalise_container_path(path), clean, "{path:?}");
        }
    }

    #[test]
    fn env_names_users_volumes_and_targets() {
        assert_eq!(env_name_problem("RUST_LOG"), None);
        assert_eq!(env_name_problem("a.b-c"), None);
        for bad in ["", "A=B", "A B", "A\nB"] {
            assert!(env_name_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["65534:65534", "root", "app:staff", "1000", "www-data"] {
            assert_eq!(user_problem(good), None, "{good:?}");
        }
        for bad in ["", ":", "1:", ":1", "a:b:c", "a b", "99999999999", "a/b"] {
            assert!(user_problem(bad).is_some(), "{bad:?}");
        }
        assert!(is_volume_name("go-cache.v1_x") && is_volume_name("ab"));
        for bad in ["a", "_ab", "-ab", "a b", "a:b", "a/b", ""] {
            assert!(!is_volume_name(bad), "{bad:?}");
        }
        assert!(is_target_name("run") && is_target_name("build-2.x_y") && is_target_name("A"));
        for bad in ["", "..", ".x", "a/b", "a=b", "a b", "-x"] {
            assert!(!is_target_name(bad), "{bad:?}");
        }
    }
}
