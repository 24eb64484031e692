//! Sizes for people: binary units with one decimal in text, and sizes as written in gates
//! (`"20 MiB"`). JSON carries raw integers; only text and markdown use these.

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A signed size: `+4.9 KiB`, `-50 B`, `0 B`.
pub fn signed_human(delta: i64) -> String {
    match delta.signum() {
        1 => format!("+{}", human(delta.unsigned_abs())),
        -1 => format!("-{}", human(delta.unsigned_abs())),
        _ => "0 B".into(),
    }
}

/// Seconds as the manifest writes durations: `10m`, `1h`, `90s` (the largest whole unit).
pub fn duration_words(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `"20 MiB"` -> 20971520. Binary units (KiB, MiB, GiB, TiB) and decimal ones (kB, MB, GB,
/// TB); `B` or no unit is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    Ok((value * factor as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_manifest_writes_them() {
        assert_eq!(duration_words(600), "10m");
        assert_eq!(duration_words(3600), "1h");
        assert_eq!(duration_words(90), "90s");
        assert_eq!(duration_words(0), "0s");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(signed_human(-1536), "-1.5 KiB");
        assert_eq!(signed_human(0), "0 B");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("20 MiB"), Ok(20 << 20));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("512 kib"), Ok(512 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("10 XB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
