//! One parser for every duration flag of both tools (`--timeout`, `--request-timeout`) and of
//! gitops.yaml (a gate's `soak`), so they all accept the same spellings: jiff's friendly format,
//! which reads Go's (`90s`, `2m30s`, `1h30m`, `1.5s`, `500ms`) and longer ones (`1h 30m`,
//! `2 minutes`). `0` means none. Given to clap as value parsers, so a bad value stops the run
//! before any request.

use std::time::Duration;

const EXAMPLES: &str = "a duration such as 30s, 5m, 1h30m or 0";

/// A duration with a unit on every number (`0` needs none).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty; expected {EXAMPLES}"));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{t:?} has no unit; expected {EXAMPLES}"));
    }
    let signed: jiff::SignedDuration = t
        .parse()
        .map_err(|_| format!("{t:?} is not a duration; expected {EXAMPLES}"))?;
    Duration::try_from(signed).map_err(|_| format!("{t:?} is negative; expected {EXAMPLES}"))
}

/// [`parse`], and also a plain number of seconds, as kubectl's `--request-timeout` takes it.
pub fn parse_seconds_or_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{t:?} is too large; expected {EXAMPLES}"));
    }
    parse(t)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse(s).unwrap().as_secs()
    }

    #[test]
    fn go_style_and_longer_spellings() {
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("2m30s"), 150);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("2 minutes"), 120);
        assert_eq!(secs("0"), 0);
        assert_eq!(parse("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn nonsense_is_refused_with_examples() {
        for bad in ["", "5", "-5m", "5x", "m", "soon", "99999999999999999999h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("30s, 5m, 1h30m"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn request_timeouts_also_take_plain_seconds() {
        let p = parse_seconds_or_duration;
        assert_eq!(p("0").unwrap(), Duration::ZERO);
        assert_eq!(p("15").unwrap(), Duration::from_secs(15));
        assert_eq!(p("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(p("2m").unwrap(), Duration::from_secs(120));
        assert!(p("soon").is_err());
        assert!(p("-1").is_err());
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
