//! `cutover backtest`: replay a policy over a past window of its Prometheus; print the
//! timeline of decisions, every rollback and hold with its moment and reason, and what could
//! not be seen; `--report DIR` writes each run's report as a live run does.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cutover::backtest::time::parse_time;
use cutover::backtest::{self, Backtest, Options};
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::{EventKind, Phase, fmt_d};
use serde_json::json;

use super::EXIT_USAGE;
use super::out::{chatter, err, line};

/// `cutover backtest POLICY --from T1 --to T2`.
#[derive(clap::Args)]
pub(crate) struct BacktestArgs {
    /// The policy file.
    policy: PathBuf,
    /// The start of the window: RFC 3339 (2026-11-20T14:00:00Z) or relative to now (-2h).
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// The end of the window (default: now).
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// Re-weight each site's requests to the replayed run's split (thinning the
    /// over-represented site); without it the split is what really happened.
    #[arg(long)]
    assume_plan: bool,
    /// Replay one run from --from (a past failback) instead of runs back to back.
    #[arg(long)]
    once: bool,
    /// The Prometheus server's --query.max-samples: range queries are chunked under it.
    #[arg(long, default_value_t = 50_000_000)]
    max_samples: usize,
    /// At most this many runs back to back.
    #[arg(long, default_value_t = 10_000)]
    max_runs: usize,
    /// Print every analysis, not only the decisions.
    #[arg(long)]
    every_analysis: bool,
    /// Print the result as one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Write each run's report (report.json, report.md, chart.svg) into DIR/run-N, and the
    /// summary into DIR/backtest.json.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Exit code when Prometheus cannot be asked: nothing was replayed (as preflight failing).
const EXIT_PREFLIGHT: u8 = 3;

/// Rollbacks and holds listed in the text summary.
const MAX_LISTED: usize = 20;

fn t(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Parses the window; the error names the flag and the fix.
pub(crate) fn window(from: &str, to: &str) -> Result<(SystemTime, SystemTime), String> {
    let now = SystemTime::now();
    let (f, t) = (
        parse_time("--from", from, now)?,
        parse_time("--to", to, now)?,
    );
    if f >= t {
        return Err(format!(
            "--from {from} is not before --to {to}; the window must not be empty"
        ));
    }
    Ok((f, t))
}

/// Runs the command.
pub(crate) async fn backtest(args: BacktestArgs) -> anyhow::Result<u8> {
    let Some(policy) = super::load_or_report(&args.policy) else {
        return Ok(EXIT_USAGE);
    };
    let (from, to) = match window(&args.from, &args.to) {
        Ok(w) => w,
        Err(e) => {
            err(&format!("error: {e}"));
            return Ok(EXIT_USAGE);
        }
    };
    if args.max_samples == 0 {
        err("error: --max-samples 0: must be at least 1 (the server's --query.max-samples)");
        return Ok(EXIT_USAGE);
    }
    let opts = Options {
        from,
        to,
        assume_plan: args.assume_plan,
        once: args.once,
        max_samples: args.max_samples,
        max_runs: args.max_runs,
        reports: args.report.is_some(),
        every_analysis: args.every_analysis,
    };
    if !args.json {
        chatter(&format!(
            "cutover backtest {}: {} .. {} ({}), traffic split {}, against {}",
            policy.plan.service,
            t(from),
            t(to),
            fmt_d(to.duration_since(from).unwrap_or_default()),
            if args.assume_plan {
                "re-weighted to the plan (--assume-plan)"
            } else {
                "as it really was"
            },
            cutover_core::policy::prometheus::redact_url(&policy.policy.prometheus.url)
        ));
    }
    let b = match backtest::backtest(&policy, &opts).await {
        Ok(b) => b,
        Err(e) => {
            err(&format!("error: {e:#}"));
            return Ok(EXIT_PREFLIGHT);
        }
    };
    if let Some(dir) = &args.report {
        write_reports(&b, dir)?;
    }
    if args.json {
        line(&serde_json::to_string_pretty(&summary(&b, &policy)).unwrap_or_default());
    } else {
        print_timeline(&b, args.every_analysis);
        print_summary(&b);
        if let Some(dir) = &args.report {
            chatter(&format!(
                "report:   {}",
                dir.join("backtest.json").display()
            ));
        }
    }
    Ok(b.exit_code())
}

fn write_reports(b: &Backtest, dir: &std::path::Path) -> anyhow::Result<()> {
    for r in &b.runs {
        let outcome = r.outcome.clone().unwrap_or(cutover_core::run::Outcome {
            phase: r.state.phase,
            reason: "the backtest's window ended with the run under way".into(),
        });
        let d = dir.join(&r.id);
        let Some(report) = &r.report else { continue };
        report
            .write(&d, &r.state, &outcome)
            .with_context(|| format!("cannot write the report to {}", d.display()))?;
    }
    std::fs::write(
        dir.join("backtest.json"),
        serde_json::to_vec_pretty(&summary_runs(b)).unwrap_or_default(),
    )
    .with_context(|| format!("cannot write {}", dir.join("backtest.json").display()))
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled back",
        Phase::Held => "held",
        Phase::PreflightFailed => "preflight failed",
        Phase::Aborted => "aborted",
        Phase::RollbackFailed => "rollback failed",
        _ => "under way at the window's end",
    }
}

fn print_timeline(b: &Backtest, every: bool) {
    for r in &b.runs {
        chatter(&format!("\n{}  started {}", r.id, t(r.started)));
        for e in &r.events {
            let text = match &e.kind {
                EventKind::WeightConfirmed { weights, stage } => Some(match stage {
                    Some(i) => format!("stage {} at {}% primary", i + 1, weights.primary()),
                    None => format!("rollback step: {}% primary", weights.primary()),
                }),
                EventKind::StagePassed { stage } => Some(format!("stage {} passed", stage + 1)),
                EventKind::Settled { stage, share } => Some(format!(
                    "stage {} settled at an observed share of {:.1}%",
                    stage + 1,
                    share * 100.0
                )),
                EventKind::Analyzed {
                    results, decision, ..
                } if every
                    || results
                        .iter()
                        .any(|g| g.status == cutover_core::GateStatus::Fail) =>
                {
                    let gates: Vec<String> = results
                        .iter()
                        .map(|g| format!("{} {:?}", g.name, g.status))
                        .collect();
                    Some(format!("analysis: {} — {decision}", gates.join(", ")))
                }
                EventKind::PreflightFailed { reason } => {
                    Some(format!("preflight failed: {reason}"))
                }
                EventKind::RollbackStarted { reason, .. } => Some(format!("ROLLBACK: {reason}")),
                EventKind::Finished { outcome } => {
                    Some(format!("{}: {}", phase_word(outcome.phase), outcome.reason))
                }
                _ => None,
            };
            if let Some(text) = text {
                chatter(&format!("  {}  {text}", t(e.at)));
            }
        }
        if r.outcome.is_none() {
            chatter(&format!(
                "  {}  window ended: {} at stage {}",
                t(r.ended),
                format!("{:?}", r.state.phase).to_lowercase(),
                r.state.stage.map(|s| s + 1).unwrap_or(0)
            ));
        }
    }
}

fn print_summary(b: &Backtest) {
    let o = &b.options;
    line("");
    line(&format!(
        "runs:     {} — promoted {}, rolled back {}, held {}, preflight failed {}, under way at the end {}",
        b.runs.len(),
        b.count(Phase::Promoted),
        b.count(Phase::RolledBack),
        b.count(Phase::Held),
        b.count(Phase::PreflightFailed),
        b.runs.iter().filter(|r| r.outcome.is_none()).count()
    ));
    // Every rollback and hold, up to a screenful (a broken primary rolls back every run).
    let mut told = 0;
    let mut more = 0;
    for r in &b.runs {
        let held = r.outcome.as_ref().filter(|o| o.phase == Phase::Held);
        let said = match (&r.rollback, held) {
            (Some((at, why)), _) => format!("rollback: {} at {}: {why}", r.id, t(*at)),
            (None, Some(o)) => format!("hold:     {} at {}: {}", r.id, t(r.ended), o.reason),
            (None, None) => continue,
        };
        if told < MAX_LISTED {
            line(&said);
            told += 1;
        } else {
            more += 1;
        }
    }
    if more > 0 {
        line(&format!(
            "          ... and {more} more (all of them in --json and --report)"
        ));
    }
    let blind = blind_lines(b);
    if blind.is_empty() {
        line("blind:    nothing: every analysis had data");
    }
    for l in blind {
        line(&format!("blind:    {l}"));
    }
    chatter(&format!(
        "time:     {} of history replayed in {:.1}s ({} range, {} instant queries, {} counts)",
        fmt_d(o.to.duration_since(o.from).unwrap_or_default()),
        b.wall.as_secs_f64(),
        b.blind.queries.0,
        b.blind.queries.1,
        b.blind.queries.2
    ));
}

/// What the backtest could not see, in words.
fn blind_lines(b: &Backtest) -> Vec<String> {
    let mut out = Vec::new();
    for (g, x) in &b.gates {
        let first = x
            .first
            .as_ref()
            .map(|(at, why)| format!("; first at {}: {why}", t(*at)))
            .unwrap_or_default();
        out.push(format!(
            "gate {g}: {} analyses without data, {} with query errors{first}",
            x.no_data, x.errors
        ));
    }
    if b.blind.chunks_halved > 0 {
        out.push(format!(
            "the server refused {} range queries as too large (--query.max-samples); they were asked in smaller chunks",
            b.blind.chunks_halved
        ));
    }
    if b.blind.resets > 0 {
        out.push(format!(
            "{} counter resets (restarts) were counted across",
            b.blind.resets
        ));
    }
    for (msg, n) in &b.blind.errors {
        out.push(format!("{n} x {msg}"));
    }
    out.extend(b.left_out.iter().cloned());
    out
}

fn summary_runs(b: &Backtest) -> serde_json::Value {
    let runs: Vec<_> = b
        .runs
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "started": t(r.started),
                "ended": t(r.ended),
                "phase": phase_word(r.phase()),
                "finished": r.outcome.is_some(),
                "reason": r.outcome.as_ref().map(|o| o.reason.clone()),
                "rollback": r.rollback.as_ref().map(|(at, why)| json!({"at": t(*at), "unix": secs(*at), "reason": why})),
                "weights": r.state.history.iter().map(|h| json!({"at": t(h.at), "unix": secs(h.at), "primary": h.weights.primary()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "service": b.service,
        "from": t(b.options.from),
        "to": t(b.options.to),
        "assume_plan": b.options.assume_plan,
        "runs": runs,
        "promoted": b.count(Phase::Promoted),
        "rolled_back": b.count(Phase::RolledBack),
        "held": b.count(Phase::Held),
        "blind": blind_lines(b),
        "wall_seconds": b.wall.as_secs_f64(),
        "queries": { "range": b.blind.queries.0, "instant": b.blind.queries.1, "counts": b.blind.queries.2 },
    })
}

fn secs(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

fn summary(b: &Backtest, policy: &LoadedPolicy) -> serde_json::Value {
    let mut v = summary_runs(b);
    v["policy"] = json!(policy.path.display().to_string());
    v
}
