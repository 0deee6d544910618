//! `cutover backtest` against a real Prometheus serving two hours of backfilled two-site
//! traffic (Debian's `promtool tsdb create-blocks-from openmetrics`) with a known incident:
//! the primary's errors go from 1 % to 10 % at minute 75. A DR restart and a primary scrape
//! gap are in the history too.
//!
//! Given that history, when the policy is replayed over it, then a threshold gate rolls back
//! within two analysis intervals of the incident, a sequential gate within the benchmark's
//! medians (59 s from a stage's start, 90 s minutes into one; BENCHMARKS.md) — and over the
//! hour before the incident nothing rolls back (in under 30 s).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cutover_tests::TempDir;
use cutover_tests::backfill::{Backfilled, SiteAt, openmetrics};

/// The incident: minutes after the start of the history.
const INCIDENT_MIN: i64 = 75;

/// Two hours starting three days ago, on a two-hour boundary (one TSDB block).
fn start() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 3 * 86_400) / 7200 * 7200
}

fn history(t0: i64) -> String {
    let incident = t0 + INCIDENT_MIN * 60;
    openmetrics(t0, t0 + 7200, 15, 16, |t, site| {
        let mut a = SiteAt::healthy(100.0, 0.01);
        if site == "primary" && t > incident {
            a.error_rate = 0.10;
        }
        // DR restarts at minute 30; the primary misses two scrapes at minute 40.
        a.restart = site == "dr" && t == t0 + 30 * 60;
        a.gap = site == "primary" && (t == t0 + 40 * 60 || t == t0 + 40 * 60 + 15);
        a
    })
}

fn policy(dir: &Path, url: &str, gate: &str) -> std::path::PathBuf {
    let path = dir.join("shop.yaml");
    let text = format!(
        r#"service: shop
backend:
  file:
    path: {}/weights.json
prometheus:
  url: {url}
sites: {{ label: site, primary: primary, dr: dr }}
traffic:
  requests: http_requests_total{{service="shop"}}
  errors: 'status=~"5.."'
  latency: http_request_duration_seconds_bucket{{service="shop"}}
defaults:
  bake: 10m
  interval: 15s
  max_duration: 30m
stages:
  - weight: 10
  - weight: 50
  - weight: 100
gates:
{gate}
analysis:
  min_requests: 100
  failure_limit: 1
"#,
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const THRESHOLD: &str = "  - name: errors\n    window: 1m\n    error_rate: { max: 3% }";
const SEQUENTIAL: &str = "  - name: errors-vs-dr\n    error_rate:\n      vs_dr: { tolerance: 50%, absolute_tolerance: 2%, alpha: 0.01 }";

fn rfc(t: i64) -> String {
    humantime_like(t)
}

/// RFC 3339 of unix seconds (UTC), without a date library.
fn humantime_like(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Runs `cutover backtest ... --json`; returns the exit code, the JSON and the wall time.
fn backtest(
    policy: &Path,
    from: i64,
    to: i64,
    extra: &[&str],
) -> (i32, serde_json::Value, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(cutover_tests::cutover_bin())
        .arg("backtest")
        .arg(policy)
        .args(["--from", &rfc(from), "--to", &rfc(to), "--json"])
        .args(extra)
        .output()
        .expect("cutover runs");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v, wall)
}

/// The first rollback's unix time, if any.
fn first_rollback(v: &serde_json::Value) -> Option<f64> {
    v["runs"]
        .as_array()?
        .iter()
        .find_map(|r| r["rollback"]["unix"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_gate_catches_the_incident_within_two_intervals_and_a_quiet_hour_never_rolls_back()
 {
    let t0 = start();
    let prom = Backfilled::start(&history(t0), None).await;
    let dir = TempDir::new("backtest-threshold");
    let p = policy(dir.path(), &prom.url(), THRESHOLD);
    let incident = (t0 + INCIDENT_MIN * 60) as f64;

    let (code, v, _) = backtest(&p, t0 + 600, t0 + 7200, &["--assume-plan"]);
    assert_eq!(code, 1, "a rollback is exit 1: {v:#}");
    let at = first_rollback(&v).unwrap_or_else(|| panic!("no rollback: {v:#}"));
    assert!(
        at > incident && at <= incident + 30.0,
        "rolled back {}s after the incident, not within two 15 s intervals: {v:#}",
        at - incident
    );

    // The hour before the incident: runs back to back, none rolled back, under 30 s.
    let (code, v, wall) = backtest(&p, t0 + 600, t0 + 600 + 3600, &["--assume-plan"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(first_rollback(&v), None, "{v:#}");
    assert!(v["promoted"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(
        wall < Duration::from_secs(30),
        "one hour at a 15 s interval took {wall:?}"
    );
    // A replay writes nothing: not the policy's weights file, not a state file.
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, ["shop.yaml"], "a backtest wrote {written:?}");
    eprintln!(
        "measured: backtest of one hour at a 15 s interval, threshold gate: {:.2} s wall ({} runs, {} range queries)",
        wall.as_secs_f64(),
        v["runs"].as_array().unwrap().len(),
        v["queries"]["range"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_gate_catches_the_incident_within_the_benchmarks_median() {
    let t0 = start();
    let prom = Backfilled::start(&history(t0), None).await;
    let dir = TempDir::new("backtest-sequential");
    let p = policy(dir.path(), &prom.url(), SEQUENTIAL);
    let incident = (t0 + INCIDENT_MIN * 60) as f64;

    // The benchmark's setting: the regression is there from the start of the 10 % stage
    // (a failback started at the incident). Its median time to rollback (`step-1-5` in
    // BENCHMARKS.md) is 59 s.
    let from = t0 + INCIDENT_MIN * 60;
    let (code, v, _) = backtest(&p, from, from + 1800, &["--assume-plan", "--once"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "--once: {v:#}");
    let at = first_rollback(&v).unwrap_or_else(|| panic!("no rollback: {v:#}"));
    assert!(
        at > incident && at <= incident + 59.0,
        "rolled back {}s after the incident, not within 59 s: {v:#}",
        at - incident
    );

    // Runs back to back: the incident lands minutes into a stage whose counts so far are
    // healthy (a regression that starts late); still within the benchmark's median for
    // that (`onset-mid-stage`: 90 s).
    let (code, v, _) = backtest(&p, t0 + 600, t0 + 7200, &["--assume-plan"]);
    assert_eq!(code, 1, "{v:#}");
    let at = first_rollback(&v).unwrap_or_else(|| panic!("no rollback: {v:#}"));
    assert!(
        at > incident && at <= incident + 90.0,
        "rolled back {}s after the incident, not within 90 s: {v:#}",
        at - incident
    );
    let blind = v["blind"].to_string();
    assert!(
        blind.contains("counter resets"),
        "the DR restart is said: {blind}"
    );
    assert!(
        blind.contains("analyses without data"),
        "the primary's scrape gap is said: {blind}"
    );

    // tune on the quiet hour: the counts' dispersion is measured and said.
    let (code, out) = cutover_tests::cli::cutover(&[
        "tune",
        p.to_str().unwrap(),
        "--lookback",
        "1h",
        "--to",
        &rfc(t0 + 4200),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: gate errors-vs-dr: bad counts per 15s interval are")
            && out.contains("as dispersed as chance at DR"),
        "{out}"
    );
    assert!(out.contains("@@ analysis.min_requests"), "{out}");

    let (code, v, wall) = backtest(&p, t0 + 600, t0 + 4200, &["--assume-plan"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(first_rollback(&v), None, "{v:#}");
    assert!(
        wall < Duration::from_secs(30),
        "one hour at a 15 s interval took {wall:?}"
    );
    eprintln!(
        "measured: backtest of one hour at a 15 s interval, sequential gate: {:.2} s wall ({} runs, {} counts)",
        wall.as_secs_f64(),
        v["runs"].as_array().unwrap().len(),
        v["queries"]["counts"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_limits_samples_is_asked_in_smaller_chunks_and_says_so() {
    let t0 = start();
    let prom = Backfilled::start(&history(t0), Some(500)).await;
    let dir = TempDir::new("backtest-limited");
    let p = policy(dir.path(), &prom.url(), THRESHOLD);
    let incident = (t0 + INCIDENT_MIN * 60) as f64;
    let (code, v, _) = backtest(&p, t0 + 600, t0 + 7200, &["--assume-plan"]);
    assert_eq!(code, 1, "{v:#}");
    let at = first_rollback(&v).unwrap();
    assert!(at > incident && at <= incident + 30.0, "{v:#}");
    assert!(
        v["blind"].to_string().contains("smaller chunks"),
        "the refused range queries are said: {v:#}"
    );
    // A bound on the runs replayed is said, with where the replay stopped.
    let (_, v, _) = backtest(
        &p,
        t0 + 600,
        t0 + 7200,
        &["--assume-plan", "--max-runs", "1"],
    );
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(
        v["blind"]
            .to_string()
            .contains("stopped after 1 runs (--max-runs)"),
        "{v:#}"
    );
    // Told the limit, it chunks under it from the start.
    let (code, v, _) = backtest(
        &p,
        t0 + 600,
        t0 + 7200,
        &["--assume-plan", "--max-samples", "500"],
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(first_rollback(&v), Some(at), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_windows_are_refused_naming_the_flag() {
    let dir = TempDir::new("backtest-usage");
    let p = policy(dir.path(), "http://127.0.0.1:9", THRESHOLD);
    let (code, out) =
        cutover_tests::cli::cutover(&["backtest", p.to_str().unwrap(), "--from", "yesterday"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--from yesterday") && out.contains("RFC 3339"),
        "{out}"
    );
    let (code, out) = cutover_tests::cli::cutover(&[
        "backtest",
        p.to_str().unwrap(),
        "--from",
        "-1h",
        "--to",
        "-2h",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not before --to"), "{out}");
    // No Prometheus there: nothing replayed, said, exit 3 (as a preflight that fails).
    let (code, out) =
        cutover_tests::cli::cutover(&["backtest", p.to_str().unwrap(), "--from", "-1h"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("nothing was replayed") && out.contains("127.0.0.1:9"),
        "{out}"
    );
    // tune: bad flags are exit 2, an unreachable server exit 3, and nothing is written.
    let before = std::fs::read(&p).unwrap();
    let (code, out) =
        cutover_tests::cli::cutover(&["tune", p.to_str().unwrap(), "--headroom", "0.5", "--write"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--headroom 0.5"), "{out}");
    let (code, out) =
        cutover_tests::cli::cutover(&["tune", p.to_str().unwrap(), "--lookback", "1week?"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--lookback 1week?"), "{out}");
    let (code, out) = cutover_tests::cli::cutover(&["tune", p.to_str().unwrap(), "--write"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("nothing was read"), "{out}");
    assert_eq!(std::fs::read(&p).unwrap(), before, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_split_is_replayed_as_it_was_and_the_text_names_each_decision() {
    let t0 = start();
    let prom = Backfilled::start(&history(t0), None).await;
    let dir = TempDir::new("backtest-real-split");
    // The history's split is 50/50 all along: a 50 % stage settles on it, a 100 % stage
    // never does (the real traffic did not follow this plan), which is a hold, not a pass.
    let p = policy(dir.path(), &prom.url(), THRESHOLD);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  - weight: 10\n", "");
    std::fs::write(&p, text).unwrap();
    let (code, v, _) = backtest(&p, t0 + 600, t0 + 600 + 3600, &["--once"]);
    assert_eq!(code, 5, "held: {v:#}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v:#}");
    assert_eq!(runs[0]["phase"], "held", "{v:#}");
    let weights: Vec<u64> = runs[0]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["primary"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [50, 100], "{v:#}");

    // The text: the timeline, the hold with its moment and reason, and a report per run.
    let report = dir.path().join("report");
    let out = std::process::Command::new(cutover_tests::cutover_bin())
        .arg("backtest")
        .arg(&p)
        .args(["--from", &rfc(t0 + 600), "--to", &rfc(t0 + 4200), "--once"])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("traffic split as it really was"), "{text}");
    assert!(text.contains("stage 1 at 50% primary"), "{text}");
    assert!(text.contains("stage 2 at 100% primary"), "{text}");
    assert!(text.contains("hold:     backtest-1 at "), "{text}");
    assert!(
        text.contains("runs:     1 — promoted 0, rolled back 0, held 1"),
        "{text}"
    );
    for f in ["report.json", "report.md", "chart.svg"] {
        assert!(report.join("backtest-1").join(f).exists(), "{f}: {text}");
    }
    let summary = cutover_tests::read_json(&report.join("backtest.json"));
    assert_eq!(summary["held"], 1, "{summary:#}");
}
