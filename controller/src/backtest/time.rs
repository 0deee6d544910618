//! Times on the command line: RFC 3339 (`2026-11-20T14:32:00Z`), `now`, or relative to now
//! (`-2h`, `-7d`, `-1h30m`).

use std::time::{Duration, SystemTime};

/// Parses a time given as `flag`; the error names the flag, the value and what to write.
pub fn parse_time(flag: &str, value: &str, now: SystemTime) -> Result<SystemTime, String> {
    let v = value.trim();
    if v == "now" {
        return Ok(now);
    }
    if let Some(rel) = v.strip_prefix('-') {
        let d = humantime::parse_duration(rel).map_err(|e| {
            format!("{flag} {value}: `{rel}` is not a duration ({e}); write e.g. -2h or -7d")
        })?;
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{flag} {value}: too far in the past"));
    }
    humantime::parse_rfc3339_weak(v).map_err(|e| {
        format!(
            "{flag} {value}: not a time ({e}); write RFC 3339 in UTC (2026-11-20T14:32:00Z), now, or a time relative to now (-2h)"
        )
    })
}

/// A duration given as `flag` (`7d`, `90m`).
pub fn parse_span(flag: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{flag} {value}: not a duration ({e}); write e.g. 7d or 12h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_now_or_relative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_time("--from", "now", now).unwrap(), now);
        assert_eq!(
            parse_time("--from", "-2h", now).unwrap(),
            now - Duration::from_secs(7200)
        );
        let t = parse_time("--to", "2027-01-15T08:00:00Z", now).unwrap();
        assert_eq!(
            humantime::format_rfc3339(t).to_string(),
            "2027-01-15T08:00:00Z"
        );
        let e = parse_time("--from", "yesterday", now).unwrap_err();
        assert!(
            e.contains("--from yesterday") && e.contains("RFC 3339"),
            "{e}"
        );
        assert!(
            parse_time("--from", "-2x", now)
                .unwrap_err()
                .contains("-2h")
        );
    }
}
