//! `cockroach_pcr`: CockroachDB physical cluster replication, from
//! `SHOW VIRTUAL CLUSTER <name> WITH REPLICATION STATUS` on the standby cluster's system
//! virtual cluster. Its status (`status`, or `data_state` before v24.3) must be
//! `replicating`, and its lag is now minus `replicated_time` (which CockroachDB advances
//! about every 30 s, so `max_lag` below a minute would fail a healthy stream).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cutover_core::readiness::CockroachCheck;

use super::postgres::{Connection, col};
use super::{Finding, ReadinessCheck};

/// A `cockroach_pcr` check.
pub struct Cockroach<'a>(pub &'a CockroachCheck);

impl Cockroach<'_> {
    fn sql(&self) -> String {
        // The name is checked when the policy is compiled: letters, digits, - and _.
        format!(
            "SHOW VIRTUAL CLUSTER \"{}\" WITH REPLICATION STATUS",
            self.0.virtual_cluster
        )
    }
}

#[async_trait]
impl ReadinessCheck for Cockroach<'_> {
    fn asked(&self) -> String {
        format!("{} ({})", self.sql(), self.0.connection_file.display())
    }

    async fn check(&self, now: SystemTime) -> Finding {
        let cr = self.0;
        let c = match Connection::open(&cr.connection_file, cr.ca_file.as_deref()).await {
            Ok(c) => c,
            Err(e) => return Finding::fail(format!("standby cluster: {e}")),
        };
        let rows = match c.rows(&self.sql()).await {
            Ok(r) => r,
            Err(e) => return Finding::fail(format!("standby cluster: {e}")),
        };
        let Some(row) = rows.first() else {
            return Finding::fail(format!(
                "no virtual cluster named {} on the standby cluster",
                cr.virtual_cluster
            ));
        };
        let status = col(row, "status")
            .or_else(|| col(row, "data_state"))
            .unwrap_or("(none)");
        let replicated = col(row, "replicated_time");
        let at = replicated.and_then(parse_timestamp);
        let lag = at.map(|t| now.duration_since(t).unwrap_or(Duration::ZERO));
        let words = format!(
            "virtual cluster {} is {status}, replicated_time {}",
            cr.virtual_cluster,
            replicated.unwrap_or("NULL")
        );
        if status != "replicating" {
            return Finding {
                value: lag.map(|l| l.as_secs_f64()),
                ..Finding::fail(format!("{words}: not replicating"))
            };
        }
        let Some(lag) = lag else {
            return Finding::fail(format!("{words}: the lag is unknown"));
        };
        let secs = lag.as_secs_f64();
        let ok = lag <= cr.max_lag.get();
        Finding {
            ok,
            value: Some(secs),
            covers: None,
            detail: if ok {
                format!("{words}: lag {secs:.1}s within max_lag {}", cr.max_lag)
            } else {
                format!("{words}: lag {secs:.1}s is above max_lag {}", cr.max_lag)
            },
        }
    }
}

/// A `timestamptz` as text (`2023-10-26 17:36:52.27978+00`, offsets `+hh`, `+hh:mm`).
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let split = rest.rfind(['+', '-']).filter(|&i| i >= 8);
    let (time, offset) = match split {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest.trim_end_matches('Z'), "+00"),
    };
    let mut t = time.split(':');
    let (h, mi): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec: f64 = t.next()?.parse().ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut o = offset[1..].split(':');
    let oh: i64 = o.next()?.parse().ok()?;
    let om: i64 = o.next().map_or(Some(0), |m| m.parse().ok())?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 - sign * (oh * 3600 + om * 60);
    let total = secs as f64 + sec;
    (total >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_cockroach_and_postgres_print_them() {
        let t = parse_timestamp("2023-10-26 17:36:52.27978+00").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((secs - 1_698_341_812.279_78).abs() < 1e-3, "{secs}");
        let z = parse_timestamp("2023-10-26 19:36:52.27978+02:00").unwrap();
        assert_eq!(t, z);
        assert!(parse_timestamp("yesterday").is_none());
    }
}
