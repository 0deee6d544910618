//! `patroni`: a Patroni cluster's members from its REST API (`GET /cluster`): a leader (or
//! a standby cluster's `standby_leader`) whose name matches `leader`, and every replica
//! named by `members` running or streaming on the leader's timeline with `lag` (bytes of
//! WAL) within `max_lag_bytes`. `lag: "unknown"` is a failure.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_core::readiness::PatroniCheck;
use serde_json::Value;

use super::{Finding, ReadinessCheck, redact, shown_url};

/// A `patroni` check.
pub struct Patroni<'a>(pub &'a PatroniCheck);

impl Patroni<'_> {
    fn url(&self) -> String {
        format!("{}/cluster", self.0.url.trim_end_matches('/'))
    }
}

#[async_trait]
impl ReadinessCheck for Patroni<'_> {
    fn asked(&self) -> String {
        format!("GET {}", shown_url(&self.url()).0)
    }

    async fn check(&self, _now: SystemTime) -> Finding {
        let p = self.0;
        let timeout = p.timeout.map_or(Duration::from_secs(5), |t| t.get());
        let client = match reqwest::Client::builder().timeout(timeout).build() {
            Ok(c) => c,
            Err(e) => return Finding::fail(e.to_string()),
        };
        let resp = match client.get(self.url()).send().await {
            Ok(r) => r,
            Err(e) => {
                let secret = shown_url(&p.url).1.unwrap_or_default();
                return Finding::fail(redact(&format!("unreachable: {e}"), &[&secret]));
            }
        };
        if !resp.status().is_success() {
            return Finding::fail(format!("GET /cluster answered {}", resp.status()));
        }
        match resp.json::<Value>().await {
            Ok(v) => judge(p, &v),
            Err(e) => Finding::fail(format!("GET /cluster is not JSON: {e}")),
        }
    }
}

/// Judges a `/cluster` response.
pub fn judge(p: &PatroniCheck, cluster: &Value) -> Finding {
    let Some(members) = cluster.get("members").and_then(Value::as_array) else {
        return Finding::fail("the /cluster response has no members list");
    };
    let re = |r: &Option<String>| r.as_deref().and_then(|r| regex::Regex::new(r).ok());
    let (leader_re, members_re) = (re(&p.leader), re(&p.members));
    let name = |m: &Value| {
        m.get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let leaders: Vec<&Value> = members
        .iter()
        .filter(|m| matches!(role(m).as_str(), "leader" | "standby_leader"))
        .collect();
    let Some(leader) = leaders.first() else {
        return Finding::fail("no member is leader (or standby_leader)");
    };
    if let Some(r) = &leader_re
        && !r.is_match(&name(leader))
    {
        return Finding::fail(format!(
            "the {} is {}, not on the expected site (/{}/)",
            role(leader),
            name(leader),
            r.as_str()
        ));
    }
    let timeline = leader.get("timeline").and_then(Value::as_u64);
    let mut worst = 0.0_f64;
    let mut problems = Vec::new();
    let mut checked = 0;
    for m in members.iter().filter(|m| !std::ptr::eq(*m, *leader)) {
        let n = name(m);
        if members_re.as_ref().is_some_and(|r| !r.is_match(&n)) {
            continue;
        }
        checked += 1;
        let state = m.get("state").and_then(Value::as_str).unwrap_or("?");
        if !matches!(state, "running" | "streaming") {
            problems.push(format!("{n} is {state}"));
        }
        let tl = m.get("timeline").and_then(Value::as_u64);
        if timeline.is_some() && tl != timeline {
            problems.push(format!(
                "{n} is on timeline {}, the leader on {}",
                tl.map_or("?".into(), |t| t.to_string()),
                timeline.unwrap_or_default()
            ));
        }
        match m.get("lag") {
            Some(Value::Number(l)) => {
                let l = l.as_f64().unwrap_or(f64::INFINITY);
                worst = worst.max(l);
                if l > p.max_lag_bytes as f64 {
                    problems.push(format!(
                        "{n} lags {l:.0} bytes, above max_lag_bytes {}",
                        p.max_lag_bytes
                    ));
                }
            }
            other => problems.push(format!(
                "{n} has lag {}; an unknown lag never holds",
                other.map_or("(none)".into(), Value::to_string)
            )),
        }
    }
    if checked == 0 {
        problems.push("no replica to check: none matches `members`".into());
    }
    let head = format!("{} {} leads", role(leader), name(leader));
    Finding {
        ok: problems.is_empty(),
        value: Some(worst),
        covers: None,
        detail: if problems.is_empty() {
            format!(
                "{head}; {checked} replica(s) within {} bytes (worst {worst:.0})",
                p.max_lag_bytes
            )
        } else {
            format!("{head}; {}", problems.join("; "))
        },
    }
}
