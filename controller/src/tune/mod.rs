//! `cutover tune`: bounds and settings suggested from the service's own history, each
//! with the false-rollback rate it would have had on that history.
//!
//! * Gates with bounds (threshold and relative): the per-interval values of the gate's own
//!   query at the policy's interval, at both sites, over the look-back; the suggested bound
//!   is the largest value seen times `headroom` (a relative gate's `slack`: the largest
//!   excess of the primary over DR), rounded up to two digits.
//! * Sequential gates: the dispersion of bad counts per interval against chance (a
//!   count-based test assumes 1); when the counts are overdispersed, an
//!   `absolute_tolerance` above the per-interval bad shares seen.
//! * `analysis.min_requests`: enough requests for about ten errors at the service's usual
//!   error rate; `defaults.bake` long enough for the first stage to serve them at the
//!   service's quiet hours (5th percentile of its request rate).
//! * `defaults.max_duration`: twice the longest stage of the replayed runs (the time to
//!   certify, as the real state machine took it on this history).
//!
//! "False rollback" takes the history as healthy: every rollback of a replay over it is
//! counted as false. Replays re-weight the sites to the plan (`--assume-plan`).

pub mod edit;
pub mod stats;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cutover_core::Site;
use cutover_core::judge::gate::GateSpec;
use cutover_core::metrics::source::Measure;
use cutover_core::policy::{self, LoadedPolicy};
use cutover_core::run::{EventKind, Phase};

use crate::backtest::{self, Backtest, Replayer};
use edit::{Edit, Place};
use stats::{dispersion, percent, quantile, round_down, round_up, span};

/// What to tune on.
#[derive(Debug, Clone)]
pub struct Options {
    /// The start of the look-back.
    pub from: SystemTime,
    /// Its end.
    pub to: SystemTime,
    /// Bounds are the largest value seen times this.
    pub headroom: f64,
    /// The server's `--query.max-samples`.
    pub max_samples: usize,
}

/// Runs and rollbacks of a replay over the look-back.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Runs rolled back (taken as false: the history is taken as healthy).
    pub rolled_back: usize,
    /// Runs held.
    pub held: usize,
    /// Runs replayed.
    pub runs: usize,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} runs rolled back ({:.1}%)",
            self.rolled_back,
            self.runs,
            100.0 * self.rolled_back as f64 / self.runs.max(1) as f64
        )?;
        if self.held > 0 {
            write!(f, ", {} held", self.held)?;
        }
        Ok(())
    }
}

fn rate_of(b: &Backtest) -> Rate {
    Rate {
        rolled_back: b.runs.iter().filter(|r| r.rollback.is_some()).count(),
        held: b.count(Phase::Held),
        runs: b.runs.len(),
    }
}

/// One suggested value.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// What to write where.
    pub edit: Edit,
    /// The value in the policy now, as written (`None`: not set).
    pub current: Option<String>,
    /// Where the value comes from, in words.
    pub why: String,
    /// The gate alone, replayed with its current bound and with the suggested one.
    pub rates: Option<(Rate, Rate)>,
}

/// The result of tuning.
pub struct Tuning {
    /// The suggestions, in policy order.
    pub suggestions: Vec<Suggestion>,
    /// Findings that are not a value to write (dispersion, blind spots).
    pub notes: Vec<String>,
    /// The whole policy replayed as it is, and with every suggestion.
    pub current: Rate,
    /// With every suggestion.
    pub suggested: Rate,
    /// The policy text with every suggestion written.
    pub text: String,
    /// Intervals of history read per gate.
    pub intervals: usize,
}

/// A sequential gate's `absolute_tolerance`, as written.
fn written_seq(spec: &GateSpec) -> Option<String> {
    let v = serde_json::to_value(spec).ok()?;
    ["error_rate", "latency"]
        .iter()
        .find_map(|k| v.get(k)?.get("vs_dr")?.get("absolute_tolerance").cloned())
        .map(|x| x.to_string().trim_matches('"').to_string())
}

/// The value of `spec`'s bound `key` as written, for the diff.
fn written(spec: &GateSpec, key: &str) -> Option<String> {
    let v = serde_json::to_value(spec).ok()?;
    let find = |m: &serde_json::Value| {
        m.get(key)
            .map(|x| x.to_string().trim_matches('"').to_string())
    };
    for kind in ["error_rate", "latency"] {
        if let Some(m) = v.get(kind) {
            return find(m);
        }
    }
    find(&v)
}

/// Which mapping of a gate holds its bounds, and how its values are written.
fn kind_of(spec: &GateSpec) -> (Option<&'static str>, fn(f64) -> String) {
    if spec.error_rate.is_some() {
        (Some("error_rate"), percent)
    } else if spec.latency.is_some() {
        (Some("latency"), span)
    } else {
        (None, |x| format!("{}", round_up(x)))
    }
}

/// The policy `text` with `edits` applied, read back as a policy; the error names the edit
/// that could not be made.
pub fn with_edits(
    policy: &LoadedPolicy,
    text: &str,
    edits: &[&Edit],
) -> Result<(String, LoadedPolicy), String> {
    let mut t = text.to_string();
    for e in edits {
        t = edit::apply(&t, e).ok_or_else(|| {
            format!(
                "{}: cannot write {e} = {} in place (unusual layout); write it by hand",
                policy.path.display(),
                e.value
            )
        })?;
    }
    let file = policy.path.display().to_string();
    let loaded = policy::parse(&file, &t, policy::env_overrides()).map_err(|errs| {
        format!("{file}: the suggested values do not make a valid policy: {errs}")
    })?;
    Ok((t, loaded))
}

/// The policy with only the gate named `name` (the others removed), to replay it alone.
fn alone(p: &LoadedPolicy, name: &str) -> Option<LoadedPolicy> {
    let mut model = p.policy.clone();
    model.gates.retain(|g| g.name == name);
    policy::from_model(&p.path.display().to_string(), model).ok()
}

/// Tunes `policy` (whose file reads `text`) on its history.
pub async fn tune(policy: &LoadedPolicy, text: &str, opts: &Options) -> anyhow::Result<Tuning> {
    let bt = backtest::Options {
        from: opts.from,
        to: opts.to,
        assume_plan: true,
        once: false,
        max_samples: opts.max_samples,
        max_runs: 100_000,
        reports: false,
        every_analysis: false,
    };
    let replayer = Replayer::new(policy, &bt)?;
    let src = replayer.source.clone();
    src.check(opts.from).await.map_err(|e| {
        anyhow::anyhow!("{e}; nothing was read (is prometheus.url of the policy right?)")
    })?;
    src.prefetch(&backtest::gate_queries(policy, &src), opts.from)
        .await;
    let interval = policy.plan.first_interval();
    let mut suggestions = Vec::new();
    let mut notes = Vec::new();
    let mut intervals = 0;
    let series = |m: Measure| {
        let q = policy.promql.render(&m);
        let src = src.clone();
        async move { src.series(&q, opts.from, opts.to).await }
    };

    for (spec, gate) in policy.policy.gates.iter().zip(&policy.plan.gates) {
        let window = gate.window(interval);
        if let Some(counted) = gate.counted() {
            let mut per_site = Vec::new();
            for site in [Site::Dr, Site::Primary] {
                let total = series(Measure::RequestCount {
                    site,
                    window: interval,
                })
                .await?;
                let share = series(Measure::BadShare {
                    counted,
                    site,
                    window: interval,
                })
                .await?;
                let share: BTreeMap<i64, f64> = share.into_iter().collect();
                let pairs: Vec<(f64, f64, f64)> = total
                    .iter()
                    .filter_map(|(t, n)| share.get(t).map(|s| (*n, s * n, *s)))
                    .collect();
                intervals = intervals.max(pairs.len());
                per_site.push(pairs);
            }
            let phi = dispersion(&per_site[0].iter().map(|x| (x.0, x.1)).collect::<Vec<_>>());
            let shares: Vec<f64> = per_site.iter().flatten().map(|x| x.2).collect();
            match phi {
                Some(phi) => notes.push(format!(
                    "gate {}: bad counts per {} interval are {:.2}x as dispersed as chance at DR ({} intervals){}",
                    gate.name,
                    span(interval.as_secs_f64()),
                    phi,
                    per_site[0].len(),
                    if phi > 2.0 { "; the counting test takes them as Poisson" } else { "" }
                )),
                None => notes.push(format!(
                    "gate {}: no bad requests at DR over the look-back: no dispersion to measure",
                    gate.name
                )),
            }
            if let (Some(phi), Some(q)) = (phi, quantile(&shares, 0.99))
                && phi > 2.0
            {
                // Nested under `vs_dr`: said, not written.
                notes.push(format!(
                    "gate {}: consider vs_dr.absolute_tolerance: {} (now {}): p99 of the per-interval bad share {} x {}, so that a primary like DR passes on its own rate",
                    gate.name,
                    percent(round_up(q * opts.headroom)),
                    written_seq(spec).unwrap_or_else(|| "not set".into()),
                    percent(q),
                    opts.headroom
                ));
            }
            continue;
        }
        let (kind, fmt) = kind_of(spec);
        let primary = series(gate.measure(Site::Primary, window)).await?;
        let dr = if gate.is_per_site() {
            series(gate.measure(Site::Dr, window)).await?
        } else {
            Vec::new()
        };
        intervals = intervals.max(primary.len());
        let pooled: Vec<f64> = primary.iter().chain(&dr).map(|x| x.1).collect();
        let (Some(max), Some(p999)) = (quantile(&pooled, 1.0), quantile(&pooled, 0.999)) else {
            notes.push(format!(
                "gate {}: its query had no data over the look-back; nothing to suggest",
                gate.name
            ));
            continue;
        };
        let mut push = |key: &'static str, value: f64, why: String| {
            suggestions.push(Suggestion {
                edit: Edit {
                    place: Place::Gate {
                        gate: gate.name.clone(),
                        kind,
                    },
                    key,
                    value: fmt(value),
                },
                current: written(spec, key),
                why,
                rates: None,
            });
        };
        let has = |key: &str| written(spec, key).is_some();
        if has("max") {
            push(
                "max",
                round_up(max * opts.headroom),
                format!(
                    "largest per-interval value at either site {} (p99.9 {}) over {} intervals x {}",
                    fmt(max),
                    fmt(p999),
                    pooled.len(),
                    opts.headroom
                ),
            );
        }
        if has("min") {
            let low = quantile(&pooled, 0.0).unwrap_or(0.0);
            push(
                "min",
                low / opts.headroom,
                format!(
                    "smallest per-interval value {} / {}",
                    fmt(low),
                    opts.headroom
                ),
            );
        }
        if has("max_vs_dr") && !dr.is_empty() {
            let rel = written(spec, "max_vs_dr")
                .and_then(|s| s.trim_end_matches('%').parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0;
            let dr: BTreeMap<i64, f64> = dr.iter().copied().collect();
            let excess: Vec<f64> = primary
                .iter()
                .filter_map(|(t, p)| dr.get(t).map(|d| p - d * (1.0 + rel)))
                .collect();
            if let Some(e) = quantile(&excess, 1.0).filter(|e| *e > 0.0) {
                push(
                    "slack",
                    round_up(e * opts.headroom),
                    format!(
                        "largest excess of the primary over DR x{} {} x {}",
                        1.0 + rel,
                        fmt(e),
                        opts.headroom
                    ),
                );
            }
        }
    }

    // min_requests and bake, from traffic.
    let rate = |site| Measure::RequestRate {
        site,
        window: interval,
    };
    let (rp, rd) = (
        series(rate(Site::Primary)).await?,
        series(rate(Site::Dr)).await?,
    );
    let rd: BTreeMap<i64, f64> = rd.into_iter().collect();
    let totals: Vec<f64> = rp
        .iter()
        .filter_map(|(t, p)| rd.get(t).map(|d| p + d))
        .collect();
    let errs = series(Measure::ErrorRatio {
        site: Site::Dr,
        window: interval,
    })
    .await?;
    let base = quantile(&errs.iter().map(|x| x.1).collect::<Vec<_>>(), 0.5);
    let first = policy.plan.stages.first();
    if let (Some(low), Some(base), Some(first)) = (quantile(&totals, 0.05), base, first) {
        let needed = round_up((10.0 / base.max(1e-4)).ceil()).ceil();
        let w1 = f64::from(first.weight.get()) / 100.0;
        let per_sec = low * w1;
        // A gate with bounds counts min_requests in its window; a sequential gate over the
        // stage. The first stage at the quiet hours must be able to reach it, with room.
        let windows: Vec<Duration> = policy
            .plan
            .gates
            .iter()
            .filter(|g| g.counted().is_none())
            .map(|g| g.window(interval))
            .collect();
        let (value, why) = match windows.iter().min() {
            Some(w) => {
                let room = (0.5 * per_sec * w.as_secs_f64()).floor();
                let v = if room >= needed {
                    needed
                } else {
                    round_down(room)
                };
                let mut why = format!(
                    "about 10 errors at the usual error rate {} (median at DR) need {needed} requests; the first stage ({}%) at the quiet hours' {:.1} requests/s (5th percentile) serves {:.0} in a {} gate window (half of it kept as room)",
                    percent(base),
                    first.weight.get(),
                    low,
                    per_sec * w.as_secs_f64(),
                    span(w.as_secs_f64()),
                );
                if room < needed {
                    let longer = ((needed / (0.5 * per_sec)) / 60.0).ceil() * 60.0;
                    why.push_str(&format!(
                        "; a window of {} would hold the {needed}",
                        span(longer)
                    ));
                }
                (v.max(1.0), why)
            }
            None => (
                needed,
                format!(
                    "about 10 errors at the usual error rate {} (median at DR), over the stage",
                    percent(base)
                ),
            ),
        };
        suggestions.push(Suggestion {
            edit: Edit {
                place: Place::Section("analysis"),
                key: "min_requests",
                value: format!("{value}"),
            },
            current: Some(policy.policy.analysis.min_requests.to_string()),
            why,
            rates: None,
        });
        if windows.is_empty() && per_sec > 0.0 {
            let bake_s = (needed / per_sec / 60.0).ceil() * 60.0;
            if bake_s > first.bake.as_secs_f64() {
                suggestions.push(Suggestion {
                    edit: Edit { place: Place::Section("defaults"), key: "bake", value: span(bake_s) },
                    current: Some(span(first.bake.as_secs_f64())),
                    why: format!(
                        "the first stage ({}%) serves {needed} requests in {} at the quiet hours' {:.1} requests/s (5th percentile)",
                        first.weight.get(),
                        span(bake_s),
                        low
                    ),
                    rates: None,
                });
            }
        }
    } else {
        notes.push(
            "no request rate at both sites over the look-back: min_requests and bake not suggested"
                .into(),
        );
    }

    // The gates alone, with their current and suggested bounds.
    for s in suggestions.iter_mut() {
        let Place::Gate { gate, .. } = &s.edit.place else {
            continue;
        };
        let (Some(cur), Ok((_, sug))) = (alone(policy, gate), with_edits(policy, text, &[&s.edit]))
        else {
            continue;
        };
        let Some(sug) = alone(&sug, gate) else {
            continue;
        };
        let a = rate_of(&backtest::replay(&replayer, &cur, &bt).await);
        let b = rate_of(&backtest::replay(&replayer, &sug, &bt).await);
        s.rates = Some((a, b));
    }

    let current = backtest::replay(&replayer, policy, &bt).await;
    let edits: Vec<&Edit> = suggestions.iter().map(|s| &s.edit).collect();
    let (mut text_out, suggested_policy) =
        with_edits(policy, text, &edits).map_err(|e| anyhow::anyhow!(e))?;
    let suggested = backtest::replay(&replayer, &suggested_policy, &bt).await;

    // max_duration from the time the replayed stages took.
    let mut longest = 0.0f64;
    for r in &suggested.runs {
        let mut since: Option<SystemTime> = None;
        for e in &r.events {
            match &e.kind {
                EventKind::WeightConfirmed { stage: Some(_), .. } => since = Some(e.at),
                EventKind::StagePassed { .. } => {
                    if let Some(s) = since.take() {
                        longest =
                            longest.max(e.at.duration_since(s).unwrap_or_default().as_secs_f64());
                    }
                }
                _ => {}
            }
        }
    }
    let now_max = policy
        .plan
        .stages
        .iter()
        .map(|s| s.max_duration)
        .max()
        .unwrap_or_default();
    let held = suggested.count(Phase::Held);
    let want = if held > 0 {
        Some((
            now_max.as_secs_f64() * 2.0,
            format!(
                "{held} replayed runs were held inconclusive at {}",
                span(now_max.as_secs_f64())
            ),
        ))
    } else if longest > 0.0 {
        let v = ((2.0 * longest) / 60.0).ceil() * 60.0;
        Some((
            v,
            format!(
                "twice the longest stage of the replayed runs ({})",
                span((longest / 60.0).ceil() * 60.0)
            ),
        ))
    } else {
        None
    };
    if let Some((v, why)) = want
        && (v - now_max.as_secs_f64()).abs() > 0.25 * now_max.as_secs_f64()
    {
        let e = Edit {
            place: Place::Section("defaults"),
            key: "max_duration",
            value: span(v),
        };
        if let Ok((t, _)) = with_edits(policy, &text_out, &[&e]) {
            text_out = t;
            suggestions.push(Suggestion {
                edit: e,
                current: Some(span(now_max.as_secs_f64())),
                why,
                rates: None,
            });
        }
    }
    let blind = src.blind();
    if blind.chunks_halved > 0 {
        notes.push(format!(
            "the server refused {} range queries as too large; they were asked in smaller chunks",
            blind.chunks_halved
        ));
    }
    for (m, n) in blind.errors {
        notes.push(format!("{n} x {m}"));
    }
    Ok(Tuning {
        suggestions,
        notes,
        current: rate_of(&current),
        suggested: rate_of(&suggested),
        text: text_out,
        intervals,
    })
}
