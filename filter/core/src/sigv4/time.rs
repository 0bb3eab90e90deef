//! The UTC timestamps SigV4 uses, from Unix milliseconds (no clock here: the caller passes it).

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)`.
pub fn amz_dates(unix_ms: u64) -> (String, String) {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (date, stamp)
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_aws_expects() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        // 2015-08-30T12:36:00Z, the date of AWS's own SigV4 examples.
        assert_eq!(
            amz_dates(1_440_938_160_000),
            ("20150830".into(), "20150830T123600Z".into())
        );
        // A leap day.
        assert_eq!(amz_dates(1_709_208_000_999).1, "20240229T120000Z");
    }
}
