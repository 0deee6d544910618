//! Checking `preflight:` and `guards:` entries: one kind each, and every field of that kind
//! sound. Messages name the field, the value and the fix; the loader adds the file.

use std::time::Duration;

use crate::judge::preflight::PreflightCheck;
use crate::policy::validate::Problems;
use crate::units::Span;

/// Checks every entry of the list `list` (`preflight` or `guards`); `preflight` says
/// whether `wait` may be given (a guard never waits: it holds the run instead).
pub fn checks(list: &str, cs: &[PreflightCheck], preflight: bool, out: &mut Problems) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        let at = format!("{list}[{i}]");
        if c.name.trim().is_empty() {
            out.push(
                &format!("{at}.name"),
                "the name is empty; name the check for logs and reports".into(),
            );
        } else if seen.contains(&c.name.as_str()) {
            out.push(
                &format!("{at}.name"),
                format!(
                    "`{}` names two checks of {list}; give each its own name",
                    c.name
                ),
            );
        }
        seen.push(&c.name);
        let kinds: Vec<&str> = [
            ("query", c.query.is_some()),
            ("postgres", c.postgres.is_some()),
            ("patroni", c.patroni.is_some()),
            ("cockroach_pcr", c.cockroach_pcr.is_some()),
            ("kubernetes_capacity", c.kubernetes_capacity.is_some()),
            ("http", c.http.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        match kinds.len() {
            0 => {
                out.push(
                    &at,
                    format!(
                        "check `{}` has no kind; give exactly one of query, postgres, patroni, cockroach_pcr, kubernetes_capacity, http",
                        c.name
                    ),
                );
                continue;
            }
            1 => {}
            _ => {
                out.push(
                    &at,
                    format!(
                        "check `{}` has {} kinds ({}); give exactly one, and split the others into their own checks",
                        c.name,
                        kinds.len(),
                        kinds.join(", ")
                    ),
                );
                continue;
            }
        }
        if c.query.is_none() && (c.min.is_some() || c.max.is_some()) {
            out.push(
                &at,
                format!(
                    "min/max bound a `query` check; a {} check has its own limits (e.g. max_lag)",
                    kinds[0]
                ),
            );
        }
        if let Some(w) = c.wait {
            if !preflight {
                out.push(
                    &format!("{at}.wait"),
                    format!("{w}: a guard does not wait, it holds the run; bound it with guard_failure_limit instead"),
                );
            } else if w.get() > Duration::from_secs(24 * 3600) {
                out.push(
                    &format!("{at}.wait"),
                    format!("{w} is above 24h; a runbook waits minutes, e.g. 30m"),
                );
            }
        }
        if let Some(iv) = c.interval
            && (iv.get() < Duration::from_secs(1) || iv.get() > Duration::from_secs(3600))
        {
            out.push(
                &format!("{at}.interval"),
                format!("{iv} is outside 1s to 1h, e.g. 10s"),
            );
        }
        if let Some(q) = &c.query {
            query(&at, c, q, out);
        }
        if let Some(pg) = &c.postgres {
            if pg.primary_connection_file.is_none() && pg.dr_connection_file.is_none() {
                out.push(
                    &format!("{at}.postgres"),
                    "no server to ask; give primary_connection_file (the primary-to-be) and/or dr_connection_file (DR's writer)".into(),
                );
            }
            if pg.max_lag.is_none() && pg.max_lag_bytes.is_none() {
                out.push(
                    &format!("{at}.postgres"),
                    "no limit; give max_lag (e.g. 60s) and/or max_lag_bytes".into(),
                );
            }
            positive(&format!("{at}.postgres.max_lag"), pg.max_lag, out);
        }
        if let Some(p) = &c.patroni {
            url(&format!("{at}.patroni.url"), &p.url, out);
            regex(&format!("{at}.patroni.leader"), p.leader.as_deref(), out);
            regex(&format!("{at}.patroni.members"), p.members.as_deref(), out);
            positive(&format!("{at}.patroni.timeout"), p.timeout, out);
        }
        if let Some(cr) = &c.cockroach_pcr {
            let name = &cr.virtual_cluster;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                out.push(
                    &format!("{at}.cockroach_pcr.virtual_cluster"),
                    format!("`{name}` is not a virtual cluster name (letters, digits, - and _), e.g. main"),
                );
            }
            positive(
                &format!("{at}.cockroach_pcr.max_lag"),
                Some(cr.max_lag),
                out,
            );
        }
        if let Some(k) = &c.kubernetes_capacity {
            capacity(&format!("{at}.kubernetes_capacity"), k, out);
        }
        if let Some(h) = &c.http {
            url(&format!("{at}.http.url"), &h.url, out);
            regex(&format!("{at}.http.body"), h.body.as_deref(), out);
            positive(&format!("{at}.http.timeout"), h.timeout, out);
            if let Some(m) = &h.method
                && !matches!(m.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "OPTIONS")
            {
                out.push(
                    &format!("{at}.http.method"),
                    format!("`{m}` is not one of GET, HEAD, POST, PUT, OPTIONS"),
                );
            }
            if let Some(s) = h.status
                && !(100..=599).contains(&s)
            {
                out.push(
                    &format!("{at}.http.status"),
                    format!("{s} is not an HTTP status (100 to 599), e.g. 200"),
                );
            }
        }
    }
}

/// `guard_failure_limit`: long enough to ride out a blip, short enough to act.
pub fn guard_failure_limit(limit: Span, out: &mut Problems) {
    if limit.get().is_zero() || limit.get() > Duration::from_secs(24 * 3600) {
        out.push(
            "guard_failure_limit",
            format!("{limit} is outside (0s, 24h]; it is how long a failing guard holds the run before on_guard_failure, e.g. 10m"),
        );
    }
}

fn query(at: &str, c: &PreflightCheck, q: &str, out: &mut Problems) {
    if q.trim().is_empty() {
        out.push(&format!("{at}.query"), "the query is empty".into());
    }
    if q.contains("{{site}}") {
        out.push(
            &format!("{at}.query"),
            format!(
                "`{q}` uses {{{{site}}}}, but a preflight check runs once, for no site; write the site's label value out, or check it in a gate"
            ),
        );
    }
    if c.min.is_none() && c.max.is_none() {
        out.push(
            at,
            format!("check `{}` has no bound; give min or max", c.name),
        );
    }
    if let (Some(lo), Some(hi)) = (c.min, c.max)
        && lo > hi
    {
        out.push(&format!("{at}.min"), format!("min {lo} is above max {hi}"));
    }
}

fn capacity(at: &str, k: &crate::readiness::CapacityCheck, out: &mut Problems) {
    match (&k.dr, k.replicas) {
        (None, None) => out.push(
            at,
            "nothing to compare the primary with; give dr (DR's Deployments) or replicas (the ready replicas that serve all traffic)".into(),
        ),
        (Some(_), Some(_)) => out.push(at, "both dr and replicas; give one".into()),
        (None, Some(0)) => out.push(&format!("{at}.replicas"), "0 replicas cannot serve traffic; give at least 1".into()),
        _ => {}
    }
    for (side, d) in [("primary", Some(&k.primary)), ("dr", k.dr.as_ref())] {
        let Some(d) = d else { continue };
        if d.deployments.is_empty() {
            out.push(
                &format!("{at}.{side}.deployments"),
                "the list is empty; name the site's Deployments".into(),
            );
        }
        for (name, what) in d
            .deployments
            .iter()
            .map(|n| (n, "deployments"))
            .chain([(&d.namespace, "namespace")])
        {
            if !crate::policy::validate::is_dns_label(name) {
                out.push(
                    &format!("{at}.{side}.{what}"),
                    format!("`{name}` is not a Kubernetes name (lowercase letters, digits, -)"),
                );
            }
        }
    }
    if let Some(h) = k.headroom
        && !(h.is_finite() && (1.0..=10.0).contains(&h))
    {
        out.push(
            &format!("{at}.headroom"),
            format!("{h} is outside 1 to 10; 1.2 asks for 20% spare capacity"),
        );
    }
}

fn url(at: &str, u: &str, out: &mut Problems) {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") => {}
        Ok(p) => out.push(
            at,
            format!("`{u}` has scheme {}; use http:// or https://", p.scheme()),
        ),
        Err(e) => out.push(
            at,
            format!("`{u}` is not a URL ({e}); e.g. http://host:8008"),
        ),
    }
}

fn regex(at: &str, r: Option<&str>, out: &mut Problems) {
    if let Some(r) = r
        && let Err(e) = regex::Regex::new(r)
    {
        let first = e.to_string().lines().last().unwrap_or_default().to_string();
        out.push(at, format!("`{r}` is not a regular expression: {first}"));
    }
}

fn positive(at: &str, s: Option<Span>, out: &mut Problems) {
    if let Some(s) = s
        && s.get().is_zero()
    {
        out.push(
            at,
            format!("{s} is zero; give a positive duration, e.g. 60s"),
        );
    }
}
