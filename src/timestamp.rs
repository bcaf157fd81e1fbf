//! The report's timestamps: RFC 3339 in UTC, `2026-01-31T12:00:05.25Z`, with as many fractional digits as
//! the instant has (none for a whole second).

use chrono::{DateTime, Utc};
use std::time::SystemTime;

/// `t` as RFC 3339 in UTC, the fraction without trailing zeros.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    let mut text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Now, as [`rfc3339`].
pub(crate) fn now_rfc3339() -> String {
    rfc3339(DateTime::<Utc>::from(SystemTime::now()))
}

/// Seconds since the Unix epoch (as the collector reports them), to the microsecond, as [`rfc3339`].
pub(crate) fn rfc3339_from_epoch(secs: f64) -> Option<String> {
    DateTime::from_timestamp_micros((secs * 1e6) as i64).map(rfc3339)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// An RFC 3339 time (any offset) in milliseconds since the Unix epoch.
pub(crate) fn parse_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Milliseconds since the Unix epoch as [`rfc3339`], rounded to the nearest whole second.
pub(crate) fn rfc3339_whole_seconds(ms: i64) -> Option<String> {
    let secs = (ms + 500).div_euclid(1000);
    DateTime::from_timestamp(secs, 0).map(rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_has_the_digits_the_instant_has() {
        let at = |secs: f64| rfc3339_from_epoch(secs).unwrap();
        assert_eq!(at(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_764_000_000.0), "2025-11-24T16:00:00Z");
        assert_eq!(at(1_764_000_000.5), "2025-11-24T16:00:00.5Z");
        assert_eq!(at(1_764_000_000.123_456), "2025-11-24T16:00:00.123456Z");
        assert_eq!(at(1_764_000_000.000_001), "2025-11-24T16:00:00.000001Z");
        let nanos = |n: i64| rfc3339(DateTime::from_timestamp_nanos(n));
        assert_eq!(
            nanos(1_764_000_000_000_000_001),
            "2025-11-24T16:00:00.000000001Z"
        );
        assert_eq!(nanos(120_000_000), "1970-01-01T00:00:00.12Z");
        assert_eq!(parse_ms("2025-11-24T16:00:00.5Z"), Some(1_764_000_000_500));
        assert_eq!(
            parse_ms("2025-11-24T17:00:00+01:00"),
            Some(1_764_000_000_000)
        );
        assert_eq!(parse_ms("yesterday"), None);
        assert_eq!(
            rfc3339_whole_seconds(1_764_000_000_500).as_deref(),
            Some("2025-11-24T16:00:01Z")
        );
        assert_eq!(
            rfc3339_whole_seconds(1_764_000_000_499).as_deref(),
            Some("2025-11-24T16:00:00Z")
        );
        let now = now_rfc3339();
        assert!(DateTime::parse_from_rfc3339(&now).is_ok(), "{now}");
    }
}
