//! Durations as the configuration writes them: the compact form Prometheus uses, one or more
//! `<whole number><unit>` with units `ms`, `s`, `m`, `h`, `d`, `w` from largest to smallest,
//! each at most once (`500ms`, `30s`, `1m30s`, `1h`, `2d`); `0` alone is zero. A bare number
//! (which unit?), spaces and long unit names (`10 seconds`) are refused with an example.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub(super) const DURATION_EXAMPLES: &str =
    "durations look like 30s, 5m, 1h30m (units ms, s, m, h, d, w)";

const UNITS: [(&str, u64); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Why a text is not a duration; the text itself is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a number without a unit; {DURATION_EXAMPLES}")]
    NoUnit,
    #[error("not a duration; {DURATION_EXAMPLES}, without spaces")]
    Malformed,
    #[error("too long a duration")]
    TooLong,
}

/// Parses the compact form (see the module documentation).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(DurationError::NoUnit);
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the largest unit still allowed
    if rest.is_empty() {
        return Err(DurationError::Malformed);
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 15 {
            return Err(if digits > 15 {
                DurationError::TooLong
            } else {
                DurationError::Malformed
            });
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Malformed)?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(i) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::Malformed);
        };
        if i < next_unit {
            return Err(DurationError::Malformed);
        }
        next_unit = i + 1;
        total = n
            .checked_mul(UNITS[i].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(DurationError::TooLong)?;
    }
    Ok(Duration::from_millis(total))
}

/// The compact form of `d` (whole milliseconds), which [`parse_duration`] reads back:
/// `1h30m`, `500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    // weeks are left to days: `14d` reads better than `2w`
    for (unit, size) in &UNITS[1..] {
        if ms >= *size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms() {
        let ok = [
            ("500ms", 500),
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("1h30m15s250ms", 5_415_250),
            ("0", 0),
            ("0s", 0),
            (" 5m ", 300_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn ambiguous_and_long_forms_are_refused() {
        assert_eq!(parse_duration("10"), Err(DurationError::NoUnit));
        assert_eq!(parse_duration("1.5"), Err(DurationError::NoUnit));
        for s in [
            "10 seconds",
            "10s 5ms",
            "1m 30s",
            "10sec",
            "1.5s",
            "30s1m",
            "1m1m",
            "",
            "s",
            "-5s",
            "5 m",
            "10S",
            "1us",
            "5 parsecs",
        ] {
            assert_eq!(parse_duration(s), Err(DurationError::Malformed), "{s:?}");
        }
        assert_eq!(
            parse_duration("99999999999999w"),
            Err(DurationError::TooLong)
        );
        assert!(DurationError::NoUnit.to_string().contains("30s, 5m, 1h30m"));
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1, 999, 1000, 90_000, 3_600_000, 5_415_250, 1_209_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
