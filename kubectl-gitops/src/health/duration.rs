//! `--timeout` durations, written and read the way kubectl users know them from Go.

use std::time::Duration;

use shared::{Error, Result};

/// Formats like Go's `time.Duration` (`5m0s`, `1h0m0s`, `1.5s`), the notation kubectl users
/// know from `--timeout`.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        let ms = d.as_millis();
        return if ms == 0 {
            "0s".to_string()
        } else {
            format!("{ms}ms")
        };
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let millis = d.subsec_millis();
    let secs = if millis == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{millis:03}").trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// Parses `--timeout`: numbers with units h, m, s or ms, concatenated (`2m30s`).
pub fn parse_timeout(s: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::invalid(format!("--timeout {s:?}: {why}"))
            .hint("give a duration such as 90s, 5m, 2m30s or 1h")
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(bad("empty duration"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if digits.is_empty() {
            return Err(bad("expected a whole number before each unit"));
        }
        let millis_per = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            "" => return Err(bad("missing unit (h, m, s or ms)")),
            other => return Err(bad(&format!("unknown unit {other:?} (use h, m, s or ms)"))),
        };
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| bad("too large"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_timeout_accepts_go_style_durations() {
        let secs = |s| parse_timeout(s).unwrap().as_secs();
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("2m30s"), 150);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("0"), 0);
        assert_eq!(
            parse_timeout("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn parse_timeout_rejects_nonsense_naming_the_flag() {
        for bad in [
            "",
            "5",
            "-5m",
            "5x",
            "m",
            "1.5m",
            "5 m",
            "99999999999999999999h",
        ] {
            let err = parse_timeout(bad).unwrap_err();
            assert_eq!(err.kind, shared::error::ErrorKind::Invalid, "{bad:?}");
            assert!(err.message.starts_with("--timeout"), "{}", err.message);
        }
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
