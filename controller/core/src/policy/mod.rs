//! The policy file: one per service. Loading (YAML via the `config` crate, with
//! `CUTOVER_SECTION__FIELD` environment overrides), validation, and the derived [`Plan`].
//!
//! Every error names the file, the field path, the value at fault and the fix, e.g.
//! `policies/checkout.yaml: stages[2].weight: 125 is above 100; weights are percent of traffic to primary`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::judge::gate::{Gate, GateBudget, GateProblem};
use crate::judge::preflight::PreflightCheck;
use crate::judge::verdict::Limits;
use crate::policy::backend::BackendSpec;
use crate::policy::prometheus::PrometheusConfig;
use crate::{GateSpec, Percent, PromqlBuilder, SitesSpec, Span, TrafficSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod backend;
pub mod backend_file;
pub mod backend_route53;
pub mod prometheus;
pub mod screen;

/// A cutover policy: how one service's traffic moves back from DR to the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The service's name: lowercase letters, digits and dashes (a DNS label).
    pub service: String,
    /// Where the split is written: exactly one of istio, gateway_api, route53, file.
    pub backend: BackendSpec,
    /// The Prometheus the gates query.
    pub prometheus: PrometheusConfig,
    /// How the two sites are told apart in the metrics.
    pub sites: SitesSpec,
    /// What "requests", "errors" and "latency" mean for this service.
    pub traffic: TrafficSpec,
    /// Settings of every stage unless the stage says otherwise.
    #[serde(default)]
    pub defaults: StageDefaults,
    /// Primary weights in percent, strictly increasing, the last one 100.
    pub stages: Vec<StageSpec>,
    /// The checks of the primary; at least one (never advance blind).
    pub gates: Vec<GateSpec>,
    /// How analyses become verdicts.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Checks that must hold before any weight changes.
    #[serde(default)]
    pub preflight: Vec<PreflightCheck>,
    /// When a new weight counts as in force.
    #[serde(default)]
    pub settle: SettleSpec,
    /// How traffic goes back to DR.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// Webhooks told of start, stages, rollback and finish.
    #[serde(default)]
    pub notify: Vec<NotifySpec>,
    /// What SIGTERM/SIGINT do: `hold` (default; a restarted Job resumes) or `rollback`.
    #[serde(default)]
    pub on_signal: OnSignal,
    /// What a drift does — live weights that are not the run's last confirmed write
    /// (someone else changed them) or that cannot be read: `hold` (default: no stage
    /// advances, judging goes on and harm still rolls back; the stage re-bakes once the
    /// split is the run's again), `reassert` (write the stage's weights again and re-bake)
    /// or `rollback`.
    #[serde(default)]
    pub on_drift: OnDrift,
    /// The longest a whole run may take; past it, traffic goes back to DR. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Span>,
}

/// `defaults:` of every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDefaults {
    /// Minimum time at a stage before it may advance, at most `7d`. Default `5m`.
    #[serde(default = "d_bake")]
    pub bake: Span,
    /// Time between two analyses, `1s` to `1h`. Default `30s`.
    #[serde(default = "d_interval")]
    pub interval: Span,
    /// Undecided this long at a stage: inconclusive; at most `7d`. Default `30m`.
    #[serde(default = "d_max_duration")]
    pub max_duration: Span,
}

fn d_bake() -> Span {
    Span::secs(300)
}
fn d_interval() -> Span {
    Span::secs(30)
}
fn d_max_duration() -> Span {
    Span::secs(1800)
}

impl Default for StageDefaults {
    fn default() -> Self {
        StageDefaults {
            bake: d_bake(),
            interval: d_interval(),
            max_duration: d_max_duration(),
        }
    }
}

/// One stage: a primary weight and, optionally, its own timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Percent of traffic to the primary, 1 to 100.
    pub weight: u32,
    /// Overrides `defaults.bake`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Span>,
    /// Overrides `defaults.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Span>,
    /// Overrides `defaults.max_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<Span>,
}

/// What an inconclusive stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Keep traffic where it is, alert, exit 5.
    #[default]
    Hold,
    /// Put all traffic back on DR, exit 1.
    Rollback,
}

/// What a termination signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSignal {
    /// Keep traffic at the current stage (a restarted Job resumes), exit 4.
    #[default]
    Hold,
    /// Put all traffic back on DR, exit 4.
    Rollback,
}

/// What a drift of the live weights does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDrift {
    /// Advance no further; keep judging (harm still rolls back); re-bake once the split is
    /// the run's again; undecided at `max_duration`: inconclusive.
    #[default]
    Hold,
    /// Write the stage's weights again, then re-bake the stage.
    Reassert,
    /// Put all traffic back on DR (exit 1).
    Rollback,
}

/// `analysis:` of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Primary requests in a gate's window before the gate may pass. Default 100.
    #[serde(default = "d_min_requests")]
    pub min_requests: u64,
    /// Failed analyses at one stage (not necessarily consecutive) before rollback. Default 2.
    #[serde(default = "d_failure_limit")]
    pub failure_limit: u32,
    /// Analyses in a row whose queries fail before rollback (fail-safe). Default 3.
    #[serde(default = "d_error_limit")]
    pub consecutive_error_limit: u32,
    /// What a stage undecided at its `max_duration` does. Default `hold`.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

fn d_min_requests() -> u64 {
    100
}
fn d_failure_limit() -> u32 {
    2
}
fn d_error_limit() -> u32 {
    3
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            min_requests: d_min_requests(),
            failure_limit: d_failure_limit(),
            consecutive_error_limit: d_error_limit(),
            on_inconclusive: OnInconclusive::Hold,
        }
    }
}

/// `settle:` — when a new weight counts as in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleSpec {
    /// How close (in percentage points) the observed primary share of requests must come
    /// to the target weight. Default `5%`.
    #[serde(default = "d_tolerance")]
    pub tolerance: Percent,
    /// Time after a weight change that is never judged (caches, warm-up). Default `0s`.
    #[serde(default)]
    pub burn_in: Span,
}

fn d_tolerance() -> Percent {
    Percent::from_fraction(0.05)
}

impl Default for SettleSpec {
    fn default() -> Self {
        SettleSpec {
            tolerance: d_tolerance(),
            burn_in: Span::default(),
        }
    }
}

/// How a rollback moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// One write puts the primary at 0 %.
    #[default]
    Immediate,
    /// Down through the plan's lower stages, `step_interval` apart, then 0 % (for DR capacity).
    Stepped,
}

/// `rollback:` of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    /// `immediate` (default) or `stepped`.
    #[serde(default)]
    pub mode: RollbackMode,
    /// With `stepped`: the pause between two steps. Default `30s`.
    #[serde(default = "d_step_interval")]
    pub step_interval: Span,
    /// Writes that fail are retried, this far apart at first, doubling up to 30s. Default `1s`.
    #[serde(default = "d_retry_interval")]
    pub retry_interval: Span,
    /// Failed rollback writes before giving up with exit 10 (page now), 1 to 100. Default 20.
    #[serde(default = "d_max_attempts")]
    pub max_attempts: u32,
}

fn d_step_interval() -> Span {
    Span::secs(30)
}
fn d_retry_interval() -> Span {
    Span::secs(1)
}
fn d_max_attempts() -> u32 {
    20
}

impl Default for RollbackSpec {
    fn default() -> Self {
        RollbackSpec {
            mode: RollbackMode::Immediate,
            step_interval: d_step_interval(),
            retry_interval: d_retry_interval(),
            max_attempts: d_max_attempts(),
        }
    }
}

/// One notification target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// A Slack-compatible incoming-webhook URL (kept out of logs: it usually holds a token).
    pub webhook: String,
    /// Timeout of one request. Default `5s`.
    #[serde(default = "d_webhook_timeout")]
    pub timeout: Span,
}

fn d_webhook_timeout() -> Span {
    Span::secs(5)
}

/// One stage with every timing resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Primary weight in percent.
    pub weight: u8,
    /// Minimum time at the stage.
    #[serde(with = "crate::serde_secs")]
    pub bake: Duration,
    /// Time between analyses.
    #[serde(with = "crate::serde_secs")]
    pub interval: Duration,
    /// Undecided this long: inconclusive.
    #[serde(with = "crate::serde_secs")]
    pub max_duration: Duration,
}

/// Everything the state machine needs, derived from a valid policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The service.
    pub service: String,
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// The gates.
    pub gates: Vec<Gate>,
    /// `analysis.min_requests`.
    pub min_requests: u64,
    /// `failure_limit` and `consecutive_error_limit`.
    pub limits: Limits,
    /// `analysis.on_inconclusive`.
    pub on_inconclusive: OnInconclusive,
    /// `settle.tolerance` as a fraction.
    pub settle_tolerance: f64,
    /// `settle.burn_in`.
    pub burn_in: Duration,
    /// How long clients may keep the old split (DNS TTL), from the backend.
    pub propagation: Duration,
    /// `rollback.*`.
    pub rollback: RollbackSpec,
    /// `on_signal`.
    pub on_signal: OnSignal,
    /// `on_drift`.
    pub on_drift: OnDrift,
    /// The overall deadline.
    pub deadline: Option<Duration>,
}

/// One problem in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// The field path, e.g. `stages[2].weight`; empty for the whole file.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Every problem found in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A loaded, validated policy and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The file.
    pub path: PathBuf,
    /// The policy.
    pub policy: Policy,
}

/// Environment variables that override policy fields: `CUTOVER_PROMETHEUS__URL` sets
/// `prometheus.url`. Only names with a `__` count, so other `CUTOVER_*` settings never
/// become unknown policy fields.
pub fn env_overrides() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.strip_prefix("CUTOVER_")
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect()
}

/// Loads and validates a policy file, with environment overrides applied. Reads at most
/// [`screen::MAX_POLICY_BYTES`] (and one more byte, to tell that a file is too large).
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyErrors> {
    use std::io::Read as _;
    let file = path.display().to_string();
    let one = |message: String| {
        PolicyErrors(vec![PolicyError {
            file: file.clone(),
            field: String::new(),
            message,
        }])
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(screen::MAX_POLICY_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| one(format!("cannot read the policy: {e}")))?;
    if bytes.len() > screen::MAX_POLICY_BYTES {
        return Err(one(format!(
            "the policy is larger than {} bytes; a policy is a few KB: is this the right file?",
            screen::MAX_POLICY_BYTES
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or_default();
        let (line, col) = screen::line_col(valid, at);
        one(format!(
            "line {line}, column {col}: not UTF-8 (byte 0x{:02X}); save the policy as UTF-8",
            e.as_bytes()[at]
        ))
    })?;
    let policy = parse(&file, &text, env_overrides())?;
    Ok(LoadedPolicy {
        path: path.to_path_buf(),
        policy,
    })
}

/// Parses and validates policy text; `file` names it in errors. The text is screened first
/// (see [`screen`]): a leading byte-order mark is dropped; control characters, oversized
/// documents and alias bombs are refused before the YAML loader sees them.
pub fn parse(
    file: &str,
    text: &str,
    env: config::Map<String, String>,
) -> Result<Policy, PolicyErrors> {
    let one = |field: String, message: String| {
        PolicyErrors(vec![PolicyError {
            file: file.to_string(),
            field,
            message,
        }])
    };
    let text = screen::screen(text).map_err(|(field, message)| one(field, message))?;
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .add_source(
            config::Environment::with_prefix("CUTOVER")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .map_err(|e| one(String::new(), format!("not valid YAML: {e}")))?;
    let value: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| one(String::new(), format!("cannot read the policy: {e}")))?;
    if !value.is_object() || value.as_object().is_some_and(|o| o.is_empty()) {
        return Err(one(
            String::new(),
            "the policy is empty; see policies/checkout.yaml for a complete example".into(),
        ));
    }
    let policy: Policy = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        one(field, explain_serde(&e.into_inner().to_string()))
    })?;
    let problems = validate(&policy);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(PolicyErrors(
            problems
                .into_iter()
                .map(|(field, message)| PolicyError {
                    file: file.to_string(),
                    field,
                    message,
                })
                .collect(),
        ))
    }
}

fn explain_serde(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!(
            "{msg}; remove it or fix its spelling (policies/policy.schema.json lists every field)"
        )
    } else if msg.starts_with("missing field") {
        format!("{msg}; it is required")
    } else {
        msg.to_string()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_url(field: &str, u: &str, example: &str, out: &mut Vec<(String, String)>) {
    match url::Url::parse(u) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
        _ => out.push((
            field.to_string(),
            format!(
                "`{}` is not an http(s) URL; write e.g. {example}",
                redact_url(u)
            ),
        )),
    }
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

/// Checks everything serde cannot; returns `(field, message)` for each problem.
pub fn validate(p: &Policy) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut bad = |f: &str, m: String| out.push((f.to_string(), m));

    if !is_dns_label(&p.service) {
        bad(
            "service",
            format!(
                "`{}` is not a valid service name; use lowercase letters, digits and dashes (e.g. checkout)",
                p.service
            ),
        );
    }
    match p.backend.kind() {
        Err(e) => bad("backend", e),
        Ok(_) => {
            if let Some(f) = &p.backend.file
                && f.path.as_os_str().is_empty()
            {
                bad("backend.file.path", "the path is empty".into());
            }
            if let Some(r) = &p.backend.route53 {
                let t = r.record_type.to_ascii_uppercase();
                if ![
                    "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "PTR", "SPF", "NAPTR",
                    "DS",
                ]
                .contains(&t.as_str())
                {
                    bad(
                        "backend.route53.record_type",
                        format!(
                            "`{}` is not a Route 53 record type; write e.g. CNAME or A",
                            r.record_type
                        ),
                    );
                }
                if r.primary_set_identifier == r.dr_set_identifier {
                    bad(
                        "backend.route53.dr_set_identifier",
                        format!(
                            "`{}` is also the primary's; the two records need different SetIdentifiers",
                            r.dr_set_identifier
                        ),
                    );
                }
            }
            if let Some(i) = &p.backend.istio
                && i.primary == i.dr
            {
                bad(
                    "backend.istio.dr",
                    "primary and dr name the same destination".into(),
                );
            }
            if let Some(g) = &p.backend.gateway_api {
                if g.primary == g.dr {
                    bad(
                        "backend.gateway_api.dr",
                        "primary and dr name the same backendRef".into(),
                    );
                }
                if g.rule.is_some() && g.rule_index.is_some() {
                    bad(
                        "backend.gateway_api.rule_index",
                        "give rule or rule_index, not both".into(),
                    );
                }
            }
        }
    }
    check_url(
        "prometheus.url",
        &p.prometheus.url,
        "http://prometheus.monitoring:9090",
        &mut out,
    );
    check_span(
        &mut out,
        "prometheus.timeout",
        p.prometheus.timeout,
        &QUERY_TIMEOUT,
    );
    let mut bad = |f: &str, m: String| out.push((f.to_string(), m));
    if p.prometheus.bearer_token_file.is_some() && p.prometheus.basic_auth.is_some() {
        bad(
            "prometheus.basic_auth",
            "give bearer_token_file or basic_auth, not both".into(),
        );
    }
    if p.sites.primary.is_empty() || p.sites.dr.is_empty() {
        bad("sites", "both sites need a label value".into());
    } else if p.sites.primary == p.sites.dr {
        bad(
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
            bad(
                field,
                format!(
                    "`{v}` holds a backtick, which a PromQL raw string (`...`) cannot hold; rename the label value"
                ),
            );
        }
    }
    if let Err((field, msg)) = PromqlBuilder::new(&p.service, &p.traffic, &p.sites) {
        bad(&field, msg);
    }

    // Stages.
    let d = &p.defaults;
    check_span(&mut out, "defaults.interval", d.interval, &INTERVAL);
    check_span(&mut out, "defaults.bake", d.bake, &BAKE);
    check_span(
        &mut out,
        "defaults.max_duration",
        d.max_duration,
        &MAX_DURATION,
    );
    let mut bad = |f: &str, m: String| out.push((f.to_string(), m));
    if d.bake > d.max_duration {
        bad(
            "defaults.bake",
            format!(
                "{} is longer than defaults.max_duration {}; a stage could never advance",
                d.bake, d.max_duration
            ),
        );
    }
    if p.stages.is_empty() {
        bad(
            "stages",
            "no stages; write e.g. weights 10, 25, 50, 75, 100".into(),
        );
    }
    let mut prev: Option<u32> = None;
    let mut timings = Vec::new();
    for (i, s) in p.stages.iter().enumerate() {
        let f = |n: &str| format!("stages[{i}].{n}");
        if s.weight == 0 {
            bad(
                &f("weight"),
                "0 is where a cutover starts, not a stage; stages start at 1".into(),
            );
        } else if s.weight > 100 {
            bad(
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
            bad(
                &f("weight"),
                format!(
                    "{} does not go up from the previous stage's {pw}; stages must strictly increase",
                    s.weight
                ),
            );
        }
        prev = Some(s.weight);
        let bake = s.bake.unwrap_or(d.bake);
        let maxd = s.max_duration.unwrap_or(d.max_duration);
        for (name, span, bounds) in [
            ("interval", s.interval, &INTERVAL),
            ("bake", s.bake, &BAKE),
            ("max_duration", s.max_duration, &MAX_DURATION),
        ] {
            if let Some(span) = span {
                check_span(&mut timings, &f(name), span, bounds);
            }
        }
        if bake > maxd && (s.bake.is_some() || s.max_duration.is_some()) {
            bad(
                &f("bake"),
                format!(
                    "{bake} is longer than this stage's max_duration {maxd}; the stage could never advance"
                ),
            );
        }
    }
    out.append(&mut timings);
    let mut bad = |f: &str, m: String| out.push((f.to_string(), m));
    if let Some(last) = p.stages.last()
        && last.weight != 100
    {
        bad(
            &format!("stages[{}].weight", p.stages.len() - 1),
            format!(
                "the last stage is {}, not 100; a cutover ends with all traffic on the primary",
                last.weight
            ),
        );
    }

    // Gates.
    if p.gates.is_empty() {
        bad(
            "gates",
            "no gates; cutover never advances blind, so give at least one (e.g. error_rate)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let budget = p.gate_budget();
    for (i, g) in p.gates.iter().enumerate() {
        if !names.insert(g.name.clone()) {
            bad(
                &format!("gates[{i}].name"),
                format!(
                    "`{}` is used by an earlier gate; names must be unique",
                    g.name
                ),
            );
        }
        if let Err(problems) = g.compile(&budget) {
            for GateProblem { field, message } in problems {
                let path = if field.is_empty() {
                    format!("gates[{i}]")
                } else {
                    format!("gates[{i}].{field}")
                };
                bad(&path, message);
            }
        }
    }

    let a = &p.analysis;
    if a.min_requests == 0 {
        bad(
            "analysis.min_requests",
            "0 would let a gate pass on no traffic; write e.g. 200".into(),
        );
    }
    if a.failure_limit == 0 {
        bad(
            "analysis.failure_limit",
            "0 is not a limit; write 1 to roll back on the first failure".into(),
        );
    }
    if a.consecutive_error_limit == 0 {
        bad(
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
            bad(
                field,
                format!(
                    "{v} is above {MAX_LIMIT}: a breach would practically never roll back; write e.g. {example}"
                ),
            );
        }
    }
    for (i, c) in p.preflight.iter().enumerate() {
        if c.query.trim().is_empty() {
            bad(
                &format!("preflight[{i}].query"),
                "the query is empty".into(),
            );
        }
        if c.query.contains("{{site}}") {
            bad(
                &format!("preflight[{i}].query"),
                format!(
                    "`{}` uses {{{{site}}}}, but a preflight check runs once, for no site; write the site's label value out, or check it in a gate",
                    c.query
                ),
            );
        }
        if c.min.is_none() && c.max.is_none() {
            bad(
                &format!("preflight[{i}]"),
                format!("check `{}` has no bound; give min or max", c.name),
            );
        }
        if let (Some(lo), Some(hi)) = (c.min, c.max)
            && lo > hi
        {
            bad(
                &format!("preflight[{i}].min"),
                format!("min {lo} is above max {hi}"),
            );
        }
    }
    if p.settle.tolerance.fraction() <= 0.0 || p.settle.tolerance.fraction() > 0.5 {
        bad(
            "settle.tolerance",
            format!(
                "{} is outside (0%, 50%]; it is the allowed gap between observed share and target weight",
                p.settle.tolerance
            ),
        );
    }
    if p.rollback.max_attempts == 0 {
        bad(
            "rollback.max_attempts",
            "0 would never try to roll back; write e.g. 20".into(),
        );
    } else if p.rollback.max_attempts > MAX_ROLLBACK_ATTEMPTS {
        bad(
            "rollback.max_attempts",
            format!(
                "{} is above {MAX_ROLLBACK_ATTEMPTS}: a rollback that cannot be written must page someone (exit 10) within minutes; write e.g. 20",
                p.rollback.max_attempts
            ),
        );
    }
    check_span(&mut out, "settle.burn_in", p.settle.burn_in, &BURN_IN);
    if p.rollback.mode == RollbackMode::Stepped {
        check_span(
            &mut out,
            "rollback.step_interval",
            p.rollback.step_interval,
            &STEP_INTERVAL,
        );
    }
    check_span(
        &mut out,
        "rollback.retry_interval",
        p.rollback.retry_interval,
        &RETRY_INTERVAL,
    );
    if let Some(d) = p.deadline {
        check_span(&mut out, "deadline", d, &DEADLINE);
    }
    for (i, n) in p.notify.iter().enumerate() {
        check_url(
            &format!("notify[{i}].webhook"),
            &n.webhook,
            "https://hooks.slack.com/services/…",
            &mut out,
        );
        check_span(
            &mut out,
            &format!("notify[{i}].timeout"),
            n.timeout,
            &WEBHOOK_TIMEOUT,
        );
    }
    out
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

fn check_span(out: &mut Vec<(String, String)>, field: &str, span: Span, b: &SpanBounds) {
    let d = span.get();
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if d < b.min {
        let message = if d.is_zero() {
            format!("0s is too short for {}; write e.g. {}", b.why, b.example)
        } else {
            format!(
                "{} is shorter than {}, the least for {}; write e.g. {}",
                show(d),
                show(b.min),
                b.why,
                b.example
            )
        };
        out.push((field.to_string(), message));
    } else if d > b.max {
        out.push((
            field.to_string(),
            format!(
                "{} is longer than {}, the most for {}; write e.g. {}",
                show(d),
                show(b.max),
                b.why,
                b.example
            ),
        ));
    }
}

impl Policy {
    /// The stages with defaults resolved.
    pub fn resolved_stages(&self) -> Vec<Stage> {
        self.stages
            .iter()
            .map(|s| Stage {
                weight: s.weight.min(100) as u8,
                bake: s.bake.unwrap_or(self.defaults.bake).get(),
                interval: s.interval.unwrap_or(self.defaults.interval).get(),
                max_duration: s.max_duration.unwrap_or(self.defaults.max_duration).get(),
            })
            .collect()
    }

    /// What the gates are compiled with: `analysis.min_requests`, and each sequential
    /// gate's alpha split evenly over the stages and the sequential gates, so that a whole
    /// run of an acceptable primary rolls back with probability at most the largest gate
    /// alpha.
    pub fn gate_budget(&self) -> GateBudget {
        let sequential = self.gates.iter().filter(|g| g.is_sequential()).count();
        GateBudget::new(self.analysis.min_requests, self.stages.len(), sequential)
    }

    /// The compiled gates; the policy must be valid.
    pub fn compiled_gates(&self) -> Vec<Gate> {
        let budget = self.gate_budget();
        self.gates
            .iter()
            .filter_map(|g| g.compile(&budget).ok())
            .collect()
    }

    /// The PromQL renderer; the policy must be valid.
    pub fn promql(&self) -> PromqlBuilder {
        PromqlBuilder::new(&self.service, &self.traffic, &self.sites)
            .expect("validated policies have valid traffic selectors")
    }

    /// The plan the state machine runs; `propagation` comes from the backend.
    pub fn plan(&self, propagation: Duration) -> Plan {
        Plan {
            service: self.service.clone(),
            stages: self.resolved_stages(),
            gates: self.compiled_gates(),
            min_requests: self.analysis.min_requests,
            limits: Limits {
                failure_limit: self.analysis.failure_limit,
                consecutive_error_limit: self.analysis.consecutive_error_limit,
            },
            on_inconclusive: self.analysis.on_inconclusive,
            settle_tolerance: self.settle.tolerance.fraction(),
            burn_in: self.settle.burn_in.get(),
            propagation,
            rollback: self.rollback.clone(),
            on_signal: self.on_signal,
            on_drift: self.on_drift,
            deadline: self.deadline.map(Span::get),
        }
    }
}

/// The policy's JSON Schema, as written to `policies/policy.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Policy);
    serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKOUT: &str = include_str!("../../../../policies/checkout.yaml");

    fn parse_str(text: &str) -> Result<Policy, PolicyErrors> {
        parse("p.yaml", text, config::Map::new())
    }

    #[test]
    fn the_contract_example_parses_and_means_what_it_says() {
        let p = parse_str(CHECKOUT).unwrap();
        assert_eq!(p.service, "checkout");
        let istio = p.backend.istio.as_ref().unwrap();
        assert_eq!(istio.route, "primary-dr");
        assert_eq!(istio.primary.subset.as_deref(), Some("primary"));
        assert_eq!(p.prometheus.timeout, Span::secs(10));
        let stages = p.resolved_stages();
        let weights: Vec<u8> = stages.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [10, 25, 50, 75, 100]);
        assert_eq!(stages[2].bake, Duration::from_secs(600));
        assert_eq!(stages[0].bake, Duration::from_secs(300));
        assert_eq!(stages[0].interval, Duration::from_secs(30));
        assert_eq!(stages[0].max_duration, Duration::from_secs(1800));
        let gates = p.compiled_gates();
        assert_eq!(gates.len(), 4);
        let max = |i: usize| gates[i].bounds().and_then(|b| b.max);
        assert_eq!(max(0), Some(0.01));
        assert_eq!(
            gates[1].bounds().and_then(|b| b.vs_dr).map(|v| v.0),
            Some(0.5)
        );
        assert_eq!(max(2), Some(0.5));
        assert_eq!(max(3), Some(1000.0));
        assert_eq!(p.analysis.min_requests, 200);
        assert_eq!(p.analysis.failure_limit, 2);
        assert_eq!(p.analysis.consecutive_error_limit, 3);
        assert_eq!(p.analysis.on_inconclusive, OnInconclusive::Hold);
        assert_eq!(p.preflight[0].max, Some(60.0));
        assert_eq!(p.rollback.mode, RollbackMode::Immediate);
        assert_eq!(p.notify.len(), 1);
    }

    #[test]
    fn environment_overrides_fields() {
        let mut env = config::Map::new();
        env.insert(
            "CUTOVER_PROMETHEUS__URL".to_string(),
            "http://127.0.0.1:9999".to_string(),
        );
        env.insert(
            "CUTOVER_ANALYSIS__MIN_REQUESTS".to_string(),
            "50".to_string(),
        );
        let p = parse("p.yaml", CHECKOUT, env).unwrap();
        assert_eq!(p.prometheus.url, "http://127.0.0.1:9999");
        assert_eq!(p.analysis.min_requests, 50);
    }

    #[test]
    fn schema_file_is_current() {
        let on_disk = include_str!("../../../../policies/policy.schema.json");
        assert!(
            on_disk == json_schema(),
            "policies/policy.schema.json is stale; regenerate it with \
             `cargo run -q -p cutover -- schema > policies/policy.schema.json`"
        );
    }
}

#[cfg(test)]
mod table_tests;
