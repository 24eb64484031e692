//! What written values mean where a string stands for more: durations, port specs and
//! container paths. The checks refuse what these do not read; the plan reads them again.

/// The longest `builder.warm`: a day. A longer idle builder is a forgotten one.
const MAX_WARM_SECS: u64 = 24 * 60 * 60;

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

/// `/out/` and `/out` are the same container path.
pub(crate) fn normalise_container_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// `"8080"`, `"8080/tcp"`, `"53/udp"` -> (port, protocol).
pub(crate) fn parse_port_spec(spec: &str) -> Option<(u16, &str)> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let port: u16 = port.parse().ok()?;
    matches!(proto, "tcp" | "udp" | "sctp").then_some((port, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_port_spec("x/tcp"), None);
    }
}
