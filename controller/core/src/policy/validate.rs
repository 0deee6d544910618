//! The checks serde cannot make, one function per section of the policy. Each records
//! every problem with its field path in [`Problems`] and, for a section that becomes a typed
//! value of the plan, returns that value when the section is sound. [`super::compile`] calls
//! them in file order and builds the plan only when no section had a problem.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::PromqlBuilder;
use crate::judge::gate::{Gate, GateBudget, GateProblem};
use crate::policy::backend::Backend;
use crate::policy::model::{Policy, RollbackMode, StageDefaults, StageSpec};
use crate::policy::plan::Stage;
use crate::weights::StageWeight;
use crate::{Percent, Span};

mod probe;
pub use probe::probe;

/// Every problem found so far: `(field path, message)`.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    /// Records a problem of `field`.
    pub fn push(&mut self, field: &str, message: String) {
        self.0.push((field.to_string(), message));
    }

    /// How many problems so far; a section compares before and after to know if it was sound.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    fn span(&mut self, field: &str, span: Span, b: &SpanBounds) {
        if let Some(message) = check_span(span, b) {
            self.push(field, message);
        }
    }

    fn url(&mut self, field: &str, u: &str, example: &str) {
        match url::Url::parse(u) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
            _ => self.push(
                field,
                format!(
                    "`{}` is not an http(s) URL; write e.g. {example}",
                    redact_url(u)
                ),
            ),
        }
    }
}

/// `service`: a DNS label.
pub fn service(p: &Policy, out: &mut Problems) {
    if !is_dns_label(&p.service) {
        out.push(
            "service",
            format!(
                "`{}` is not a valid service name; use lowercase letters, digits and dashes (e.g. checkout)",
                p.service
            ),
        );
    }
}

/// `backend`: exactly one kind, and that kind's fields consistent.
pub fn backend(p: &Policy, out: &mut Problems) -> Option<Backend> {
    let backend = match p.backend.resolve() {
        Err(e) => {
            out.push("backend", e);
            return None;
        }
        Ok(b) => b,
    };
    let before = out.count();
    match &backend {
        Backend::File(f) => {
            if f.path.as_os_str().is_empty() {
                out.push("backend.file.path", "the path is empty".into());
            }
        }
        Backend::Route53(r) => {
            let t = r.record_type.to_ascii_uppercase();
            if ![
                "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "PTR", "SPF", "NAPTR", "DS",
            ]
            .contains(&t.as_str())
            {
                out.push(
                    "backend.route53.record_type",
                    format!(
                        "`{}` is not a Route 53 record type; write e.g. CNAME or A",
                        r.record_type
                    ),
                );
            }
            if r.primary_set_identifier == r.dr_set_identifier {
                out.push(
                    "backend.route53.dr_set_identifier",
                    format!(
                        "`{}` is also the primary's; the two records need different SetIdentifiers",
                        r.dr_set_identifier
                    ),
                );
            }
        }
        Backend::Istio(i) => {
            if i.primary == i.dr {
                out.push(
                    "backend.istio.dr",
                    "primary and dr name the same destination".into(),
                );
            }
        }
        Backend::GatewayApi(g) => {
            if g.primary == g.dr {
                out.push(
                    "backend.gateway_api.dr",
                    "primary and dr name the same backendRef".into(),
                );
            }
            if g.rule.is_some() && g.rule_index.is_some() {
                out.push(
                    "backend.gateway_api.rule_index",
                    "give rule or rule_index, not both".into(),
                );
            }
        }
    }
    (out.count() == before).then_some(backend)
}

/// `prometheus`: a URL, a sane timeout, one way to authenticate.
pub fn prometheus(p: &Policy, out: &mut Problems) {
    out.url(
        "prometheus.url",
        &p.prometheus.url,
        "http://prometheus.monitoring:9090",
    );
    out.span("prometheus.timeout", p.prometheus.timeout, &QUERY_TIMEOUT);
    if p.prometheus.bearer_token_file.is_some() && p.prometheus.basic_auth.is_some() {
        out.push(
            "prometheus.basic_auth",
            "give bearer_token_file or basic_auth, not both".into(),
        );
    }
}

/// `sites` and `traffic`: two different label values, and selectors PromQL can carry.
pub fn sites_and_traffic(p: &Policy, out: &mut Problems) -> Option<PromqlBuilder> {
    let before = out.count();
    if p.sites.primary.is_empty() || p.sites.dr.is_empty() {
        out.push("sites", "both sites need a label value".into());
    } else if p.sites.primary == p.sites.dr {
        out.push(
            "sites.dr",
            format!(
                "`{}` is also the primary's label value; the sites must differ",
                p.sites.dr
            ),
        );
    }
    for (field, v) in [
        ("sites.primary", &p.sites.primary),
        ("sites.dr", &p.sites.dr),
    ] {
        if v.contains('`') {
            out.push(
                field,
                format!(
                    "`{v}` holds a backtick, which a PromQL raw string (`...`) cannot hold; rename the label value"
                ),
            );
        }
    }
    match PromqlBuilder::new(&p.service, &p.traffic, &p.sites) {
        Err((field, msg)) => {
            out.push(&field, msg);
            None
        }
        Ok(b) => (out.count() == before).then_some(b),
    }
}

/// `defaults` and `stages`: sane timings, weights from 1 strictly up to 100.
pub fn stages(p: &Policy, out: &mut Problems) -> Option<Vec<Stage>> {
    let before = out.count();
    let d: &StageDefaults = &p.defaults;
    out.span("defaults.interval", d.interval, &INTERVAL);
    out.span("defaults.bake", d.bake, &BAKE);
    out.span("defaults.max_duration", d.max_duration, &MAX_DURATION);
    if d.bake > d.max_duration {
        out.push(
            "defaults.bake",
            format!(
                "{} is longer than defaults.max_duration {}; a stage could never advance",
                d.bake, d.max_duration
            ),
        );
    }
    if p.stages.is_empty() {
        out.push(
            "stages",
            "no stages; write e.g. weights 10, 25, 50, 75, 100".into(),
        );
    }
    let mut prev: Option<u32> = None;
    let mut timings = Problems::default();
    let mut resolved = Vec::new();
    for (i, s) in p.stages.iter().enumerate() {
        if let Some(stage) = stage(i, s, d, prev, out, &mut timings) {
            resolved.push(stage);
        }
        prev = Some(s.weight);
    }
    out.0.append(&mut timings.0);
    if let Some(last) = p.stages.last()
        && last.weight != 100
    {
        out.push(
            &format!("stages[{}].weight", p.stages.len() - 1),
            format!(
                "the last stage is {}, not 100; a cutover ends with all traffic on the primary",
                last.weight
            ),
        );
    }
    if let Some(h) = p.final_holdout {
        final_holdout(h, p, &mut resolved, out);
    }
    (out.count() == before).then_some(resolved)
}

/// `final_holdout`: the last stage is judged at `100 - h` and 100 % follows unjudged.
fn final_holdout(h: Percent, p: &Policy, resolved: &mut Vec<Stage>, out: &mut Problems) {
    let points = h.fraction() * 100.0;
    if points.fract() != 0.0 || !(1.0..=50.0).contains(&points) {
        out.push(
            "final_holdout",
            format!("{h} is not a whole percent from 1% to 50%; write e.g. 2%"),
        );
        return;
    }
    let judged_at = 100 - points as u32;
    let before = p.stages.len().checked_sub(2).map(|i| p.stages[i].weight);
    if let Some(w) = before
        && w >= judged_at
    {
        out.push(
            "final_holdout",
            format!(
                "{h} leaves the last stage judged at {judged_at}%, not above the stage before it ({w}%); write a smaller holdout or lower that stage"
            ),
        );
        return;
    }
    let (Some(last), Some(weight)) = (resolved.last().copied(), StageWeight::new(judged_at)) else {
        return;
    };
    if last.weight != StageWeight::FULL {
        return; // reported as the last stage's problem
    }
    let n = resolved.len();
    resolved[n - 1].weight = weight;
    resolved.push(Stage {
        judged: false,
        ..last
    });
}

/// One stage; its timing problems go to `timings` (reported after every stage's weight).
fn stage(
    i: usize,
    s: &StageSpec,
    d: &StageDefaults,
    prev: Option<u32>,
    out: &mut Problems,
    timings: &mut Problems,
) -> Option<Stage> {
    let f = |n: &str| format!("stages[{i}].{n}");
    let weight = StageWeight::new(s.weight);
    if s.weight == 0 {
        out.push(
            &f("weight"),
            "0 is where a cutover starts, not a stage; stages start at 1".into(),
        );
    } else if s.weight > 100 {
        out.push(
            &f("weight"),
            format!(
                "{} is above 100; weights are percent of traffic to primary",
                s.weight
            ),
        );
    }
    if let Some(pw) = prev
        && s.weight <= pw
    {
        out.push(
            &f("weight"),
            format!(
                "{} does not go up from the previous stage's {pw}; stages must strictly increase",
                s.weight
            ),
        );
    }
    let bake = s.bake.unwrap_or(d.bake);
    let interval = s.interval.unwrap_or(d.interval);
    let max_duration = s.max_duration.unwrap_or(d.max_duration);
    for (name, span, bounds) in [
        ("interval", s.interval, &INTERVAL),
        ("bake", s.bake, &BAKE),
        ("max_duration", s.max_duration, &MAX_DURATION),
    ] {
        if let Some(span) = span {
            timings.span(&f(name), span, bounds);
        }
    }
    if bake > max_duration && (s.bake.is_some() || s.max_duration.is_some()) {
        out.push(
            &f("bake"),
            format!(
                "{bake} is longer than this stage's max_duration {max_duration}; the stage could never advance"
            ),
        );
    }
    Some(Stage {
        weight: weight?,
        bake: bake.get(),
        interval: interval.get(),
        max_duration: max_duration.get(),
        judged: true,
    })
}

/// `gates`: at least one, unique names, each compiled once with its budget: the policy's
/// `analysis.min_requests`, and each sequential gate's alpha split evenly over the stages
/// and the sequential gates, so that a whole run of an acceptable primary rolls back with
/// probability at most the largest gate alpha.
pub fn gates(p: &Policy, out: &mut Problems) -> Option<Vec<Gate>> {
    let sequential = p.gates.iter().filter(|g| g.is_sequential()).count();
    let budget = GateBudget::new(p.analysis.min_requests, p.stages.len(), sequential);
    let before = out.count();
    if p.gates.is_empty() {
        out.push(
            "gates",
            "no gates; cutover never advances blind, so give at least one (e.g. error_rate)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let mut compiled = Vec::new();
    for (i, g) in p.gates.iter().enumerate() {
        if !names.insert(g.name.clone()) {
            out.push(
                &format!("gates[{i}].name"),
                format!(
                    "`{}` is used by an earlier gate; names must be unique",
                    g.name
                ),
            );
        }
        match g.compile(&budget) {
            Ok(gate) => compiled.push(gate),
            Err(problems) => {
                for GateProblem {
                    field,
                    message: msg,
                } in problems
                {
                    let path = if field.is_empty() {
                        format!("gates[{i}]")
                    } else {
                        format!("gates[{i}].{field}")
                    };
                    out.push(&path, msg);
                }
            }
        }
    }
    (out.count() == before).then_some(compiled)
}

/// `analysis`: limits that are limits.
pub fn analysis(p: &Policy, out: &mut Problems) {
    let a = &p.analysis;
    if a.min_requests == 0 {
        out.push(
            "analysis.min_requests",
            "0 would let a gate pass on no traffic; write e.g. 200".into(),
        );
    }
    if a.failure_limit == 0 {
        out.push(
            "analysis.failure_limit",
            "0 is not a limit; write 1 to roll back on the first failure".into(),
        );
    }
    if a.consecutive_error_limit == 0 {
        out.push(
            "analysis.consecutive_error_limit",
            "0 is not a limit; write e.g. 3".into(),
        );
    }
    for (field, v, example) in [
        ("analysis.failure_limit", a.failure_limit, 2),
        (
            "analysis.consecutive_error_limit",
            a.consecutive_error_limit,
            3,
        ),
    ] {
        if v > MAX_LIMIT {
            out.push(
                field,
                format!(
                    "{v} is above {MAX_LIMIT}: a breach would practically never roll back; write e.g. {example}"
                ),
            );
        }
    }
}

/// `preflight` and `guards`: exactly one kind per check, each kind's fields (see
/// [`crate::readiness::validate`]).
pub fn preflight(p: &Policy, out: &mut Problems) {
    crate::readiness::validate::checks("preflight", &p.preflight, true, out);
    crate::readiness::validate::checks("guards", &p.guards, false, out);
    crate::readiness::validate::guard_failure_limit(p.guard_failure_limit, out);
}

/// `settle` and `rollback`: a tolerance that is a tolerance, attempts and pauses in range.
pub fn settle_and_rollback(p: &Policy, out: &mut Problems) {
    if p.settle.tolerance.fraction() <= 0.0 || p.settle.tolerance.fraction() > 0.5 {
        out.push(
            "settle.tolerance",
            format!(
                "{} is outside (0%, 50%]; it is the allowed gap between observed share and target weight",
                p.settle.tolerance
            ),
        );
    }
    if p.rollback.max_attempts == 0 {
        out.push(
            "rollback.max_attempts",
            "0 would never try to roll back; write e.g. 20".into(),
        );
    } else if p.rollback.max_attempts > MAX_ROLLBACK_ATTEMPTS {
        out.push(
            "rollback.max_attempts",
            format!(
                "{} is above {MAX_ROLLBACK_ATTEMPTS}: a rollback that cannot be written must page someone (exit 10) within minutes; write e.g. 20",
                p.rollback.max_attempts
            ),
        );
    }
    out.span("settle.burn_in", p.settle.burn_in, &BURN_IN);
    if p.rollback.mode == RollbackMode::Stepped {
        out.span(
            "rollback.step_interval",
            p.rollback.step_interval,
            &STEP_INTERVAL,
        );
    }
    out.span(
        "rollback.retry_interval",
        p.rollback.retry_interval,
        &RETRY_INTERVAL,
    );
}

/// `deadline` and `notify`: in range; webhooks are URLs.
pub fn deadline_and_notify(p: &Policy, out: &mut Problems) {
    if let Some(d) = p.deadline {
        out.span("deadline", d, &DEADLINE);
    }
    for (i, n) in p.notify.iter().enumerate() {
        out.url(
            &format!("notify[{i}].webhook"),
            &n.webhook,
            "https://hooks.slack.com/services/…",
        );
        out.span(&format!("notify[{i}].timeout"), n.timeout, &WEBHOOK_TIMEOUT);
    }
}

/// A Kubernetes DNS label (RFC 1123): 1 to 63 lowercase letters, digits and `-`, not
/// starting or ending with `-`. Service, fleet and object names.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A URL fit for an error message: its user information (`user:password@`) becomes `***@`,
/// and its path, query and fragment (where webhook tokens live) become `/…`. Works on text
/// that is not a valid URL too, since that is when it is shown.
pub fn redact_url(u: &str) -> String {
    let (scheme, rest) = match u.find("://") {
        Some(i) => (&u[..i + 3], &u[i + 3..]),
        None => ("", u),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let tail = if tail.is_empty() || tail == "/" {
        tail
    } else {
        "/…"
    };
    format!("{scheme}{host}{tail}")
}

/// The sane range of one kind of duration, and why.
struct SpanBounds {
    /// The shortest accepted.
    min: Duration,
    /// The longest accepted.
    max: Duration,
    /// Why the range, for the error.
    why: &'static str,
    /// A good value, for the error.
    example: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const DAY: u64 = 86_400;

/// `interval`: at least a second (Prometheus resolves time in milliseconds and scrapes every
/// few seconds); at most an hour (it is also the window of the request rates).
const INTERVAL: SpanBounds = SpanBounds {
    min: secs(1),
    max: secs(3600),
    why: "the time between two analyses (and their request-rate window)",
    example: "30s",
};
/// `bake`: up to a week.
const BAKE: SpanBounds = SpanBounds {
    min: secs(0),
    max: secs(7 * DAY),
    why: "the minimum time at a stage",
    example: "5m",
};
/// `max_duration`: a stage that cannot decide within a week never will.
const MAX_DURATION: SpanBounds = SpanBounds {
    min: secs(1),
    max: secs(7 * DAY),
    why: "how long a stage may stay undecided",
    example: "30m",
};
/// `prometheus.timeout`: an answer slower than five minutes is no answer.
const QUERY_TIMEOUT: SpanBounds = SpanBounds {
    min: secs(1),
    max: secs(300),
    why: "how long one query may take",
    example: "10s",
};
/// `settle.burn_in`: up to a day.
const BURN_IN: SpanBounds = SpanBounds {
    min: secs(0),
    max: secs(DAY),
    why: "the time after a weight change that is never judged",
    example: "1m",
};
/// `rollback.step_interval`: a stepped rollback must still end within the hour.
const STEP_INTERVAL: SpanBounds = SpanBounds {
    min: secs(1),
    max: secs(600),
    why: "the pause between two steps of a stepped rollback",
    example: "30s",
};
/// `rollback.retry_interval`: the first pause between failed rollback writes (it doubles up
/// to 30 s).
const RETRY_INTERVAL: SpanBounds = SpanBounds {
    min: Duration::from_millis(100),
    max: secs(30),
    why: "the first pause between two failed rollback writes",
    example: "1s",
};
/// `deadline`: a whole run within 30 days.
const DEADLINE: SpanBounds = SpanBounds {
    min: secs(1),
    max: secs(30 * DAY),
    why: "the longest a whole run may take",
    example: "2h",
};
/// `notify[].timeout`: a webhook must not hold up a rollback.
const WEBHOOK_TIMEOUT: SpanBounds = SpanBounds {
    min: Duration::from_millis(100),
    max: secs(60),
    why: "how long one webhook request may take",
    example: "5s",
};

/// The most failed analyses or query errors a policy may wait for before rolling back.
const MAX_LIMIT: u32 = 100;
/// The most failed rollback writes before exit 10 (page now).
const MAX_ROLLBACK_ATTEMPTS: u32 = 100;

/// The problem with `span` for a field bounded by `b`, if any.
fn check_span(span: Span, b: &SpanBounds) -> Option<String> {
    let d = span.get();
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if d < b.min {
        Some(if d.is_zero() {
            format!("0s is too short for {}; write e.g. {}", b.why, b.example)
        } else {
            format!(
                "{} is shorter than {}, the least for {}; write e.g. {}",
                show(d),
                show(b.min),
                b.why,
                b.example
            )
        })
    } else if d > b.max {
        Some(format!(
            "{} is longer than {}, the most for {}; write e.g. {}",
            show(d),
            show(b.max),
            b.why,
            b.example
        ))
    } else {
        None
    }
}
