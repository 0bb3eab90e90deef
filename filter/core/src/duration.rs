//! Durations as written in the config: `250ms`, `30s`, `300s`, `1m`, `1h`, and sums like `1m30s`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected a whole number with a unit (ms, s, m, h), e.g. 250ms, 30s, 1m")]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `250ms`, `30s`, `1m`, `2h` and concatenations such as `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let ms = value
            .checked_mul(unit_ms)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
        total = total
            .checked_add(ms)
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way Envoy's proto JSON wants it (`"1.500s"`).
pub fn envoy_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_the_seed_config_uses() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_missing_units_unknown_units_and_garbage() {
        for bad in ["", "30", "s", "1.5s", "10x", "-1s", "1 s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Invalid(_)) | Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn renders_envoy_proto_durations() {
        assert_eq!(envoy_duration(Duration::from_secs(15)), "15s");
        assert_eq!(envoy_duration(Duration::from_millis(250)), "0.250s");
        assert_eq!(envoy_duration(Duration::from_millis(1500)), "1.500s");
    }
}
