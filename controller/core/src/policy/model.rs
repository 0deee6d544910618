//! The policy file's model: what serde reads, field for field, with the defaults. Nothing
//! here is checked; [`super::compile`] turns a model into typed values or into every error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::preflight::PreflightCheck;
use crate::policy::backend::BackendSpec;
use crate::policy::prometheus::PrometheusConfig;
use crate::{GateSpec, Percent, SitesSpec, Span, TrafficSpec};

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
    /// Keep this share of traffic on DR while the last stage is judged, e.g. `2%`: the last
    /// stage is judged at `100% - final_holdout`, harm against DR's concurrent traffic only
    /// (certification also against DR's earlier stages, pooled), then 100 % is written
    /// without judging again. Without it the 100 % stage has no concurrent DR data and
    /// compares with DR's earlier stages, so a rise common to both sites that starts there
    /// reads as harm. The price: a regression starting at that stage is seen through DR's
    /// small share, in minutes rather than seconds. A whole percent from 1 % to 50 %.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_holdout: Option<Percent>,
    /// The checks of the primary; at least one (never advance blind).
    pub gates: Vec<GateSpec>,
    /// How analyses become verdicts.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Checks that must hold before any weight changes.
    #[serde(default)]
    pub preflight: Vec<PreflightCheck>,
    /// Checks re-run at every analysis (same kinds as `preflight`): one that fails holds the
    /// run at its weight (nothing advances); `kubernetes_capacity` keeps a stage's weight
    /// from being written until the primary's ready capacity covers it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<PreflightCheck>,
    /// What a guard failing for `guard_failure_limit` does: `hold` (default: end, traffic
    /// held at its weight, exit 5) or `rollback`.
    #[serde(default)]
    pub on_guard_failure: crate::readiness::OnGuardFailure,
    /// How long a guard may fail, holding the run, before `on_guard_failure`. Default `10m`.
    #[serde(default = "d_guard_failure_limit")]
    pub guard_failure_limit: Span,
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

fn d_guard_failure_limit() -> Span {
    Span::secs(600)
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
    /// Wait for approval before this stage's weight is written: `manual` (`cutover
    /// approve`) or `{webhook: URL}` (a 2xx answer to a POST of the run's state). An
    /// approval never bypasses a gate: the stage before keeps being judged while waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::policy::approval::ApprovalSpec>,
    /// With `approval: manual`: distinct people who must approve, 1 to 5. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// Waiting longer than this for the approval holds the run (exit 5; `cutover resume`
    /// waits again). Default: no limit (the policy's `deadline` still applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<Span>,
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
    /// With `on_inconclusive: hold`: how long a stage held while judging goes on being judged
    /// at its weight — rolling back on harm, advancing only on `cutover promote` — before the
    /// run exits 5. Default `1h`; `0s` exits at once.
    #[serde(default = "d_watch_held")]
    pub watch_held: Span,
    /// How a stage is certified. `per_stage` (default): "no worse" evidence starts afresh at
    /// every stage. `cumulative`: it carries over from stage to stage (harm is still judged
    /// per stage): healthy services promote much sooner, at the risk of advancing past a
    /// regression that only appears at a higher weight before its harm is seen (measured in
    /// BENCHMARKS.md).
    #[serde(default)]
    pub certify: Certify,
    /// At a stage where DR serves nothing (100 %): when the primary's errors or latency rise
    /// above DR's earlier rate (nothing concurrent to compare with), how long to *probe* —
    /// write `probe_weight`, judge the primary against DR's concurrent traffic there, and
    /// go back to 100 % if it is no worse — instead of rolling back at once. A cause common
    /// to both sites (a shared dependency, a traffic peak) then never rolls back; a
    /// regression is rolled back from the probe, within a minute or so. Default `2m`;
    /// `0s` rolls back on the comparison with DR's earlier rate alone.
    #[serde(default = "d_probe")]
    pub probe: Span,
    /// The primary weight a probe writes: an earlier judged stage's weight. Default: the
    /// earlier judged stage nearest 50 % (half of the traffic on each site tells a
    /// regression apart fastest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_weight: Option<Percent>,
}

/// `analysis.certify`: whether "no worse" evidence carries over between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Certify {
    /// Each stage is certified on its own evidence.
    #[default]
    PerStage,
    /// "No worse" evidence accumulates across stages.
    Cumulative,
}

fn d_probe() -> Span {
    Span(std::time::Duration::from_secs(120))
}

fn d_watch_held() -> Span {
    Span(std::time::Duration::from_secs(3600))
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
            watch_held: d_watch_held(),
            certify: Certify::PerStage,
            probe: d_probe(),
            probe_weight: None,
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
