//! `cutover tune` against a real Prometheus serving two backfilled weeks of noisy healthy
//! two-site traffic (a daily cycle of 20 to 100 requests/s per site; error rate and latency
//! that wander from minute to minute), and a copy of the second week with the primary's
//! errors stepping from 1 % to 5 % half-way through it.
//!
//! Given a policy with guessed bounds, when `cutover tune --lookback 7d --write` learns from
//! the first week, then a backtest of the written policy over the *second* week rolls
//! nothing back, and the same policy catches the step within five minutes.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cutover_tests::TempDir;
use cutover_tests::backfill::{Backfilled, SiteAt, normal_at, openmetrics_of};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// Two weeks ending a day ago, from a day boundary.
fn start() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 15 * DAY) / DAY * DAY
}

/// A noisy healthy site at `t`: the daily cycle, and a per-minute wander of its error rate
/// and its share of slow requests (the same for both histories of the service).
fn noisy(t: i64, site: &str) -> SiteAt {
    let phase = 2.0 * std::f64::consts::PI * (t % DAY) as f64 / DAY as f64;
    let k = if site == "primary" { 1 } else { 2 };
    let mut a = SiteAt::healthy(60.0 + 40.0 * phase.sin(), 0.01);
    a.error_rate = 0.01 * (0.25 * normal_at(t, k) - 0.03).exp();
    a.slow_factor = (0.15 * normal_at(t, 10 + k)).exp();
    a
}

fn rfc(t: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn policy(dir: &Path, url: &str, service: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{service}.yaml"));
    std::fs::write(
        &path,
        format!(
            r#"# A first guess at the bounds, to be tuned on the service's history.
service: {service}
backend:
  file:
    path: {}/weights.json
prometheus:
  url: {url}
sites: {{ label: site, primary: primary, dr: dr }}
traffic:
  requests: http_requests_total{{service="{service}"}}
  errors: 'status=~"5.."'
  latency: http_request_duration_seconds_bucket{{service="{service}"}}
defaults:
  bake: 10m        # minimum soak per stage
  interval: 1m
  max_duration: 30m
stages:
  - weight: 10
  - weight: 50
  - weight: 100
gates:
  - name: errors
    window: 3m
    error_rate: {{ max: 1.5% }}   # a guess
  - name: p99
    window: 3m
    latency:
      quantile: 0.99
      max: 600ms                 # a guess
analysis:
  min_requests: 100
  failure_limit: 1
"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn cutover(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(cutover_tests::cutover_bin())
        .args(args)
        .output()
        .expect("cutover runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn backtest(policy: &Path, from: i64, to: i64) -> serde_json::Value {
    let (code, out, err) = cutover(&[
        "backtest",
        policy.to_str().unwrap(),
        "--from",
        &rfc(from),
        "--to",
        &rfc(to),
        "--assume-plan",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("exit {code}, not JSON ({e}): {out}\n{err}"));
    v
}

fn rollbacks(v: &serde_json::Value) -> Vec<f64> {
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["rollback"]["unix"].as_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuned_on_one_week_no_false_rollback_on_the_next_and_a_step_still_caught() {
    let w0 = start();
    let step = w0 + WEEK + 3 * DAY + DAY / 2;
    let stepped = move |t: i64, site: &str| {
        let mut a = noisy(t, site);
        if site == "primary" && t > step {
            a.error_rate *= 5.0;
        }
        a
    };
    let history = openmetrics_of(
        w0,
        w0 + 2 * WEEK,
        60,
        &[("shop", 1, &noisy), ("shop-step", 1, &stepped)],
    );
    let prom = Backfilled::start(&history, None).await;
    drop(history);
    let dir = TempDir::new("tune");
    let p = policy(dir.path(), &prom.url(), "shop");
    let before = std::fs::read_to_string(&p).unwrap();

    // Given the guessed bounds, the first week rolls healthy runs back.
    let guessed = backtest(&p, w0, w0 + WEEK);
    assert!(
        !rollbacks(&guessed).is_empty(),
        "the guess is too tight on noisy traffic: {guessed:#}"
    );

    // Without --write, a diff and nothing written.
    let to = rfc(w0 + WEEK);
    let (code, out, err) = cutover(&["tune", p.to_str().unwrap(), "--lookback", "7d", "--to", &to]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("@@ gates[errors].error_rate.max") && out.contains("- 1.5%"),
        "{out}"
    );
    assert!(out.contains("this gate alone on the history"), "{out}");
    assert!(out.contains("@@ gates[p99].latency.max"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        before,
        "nothing written without --write"
    );

    let (code, out, err) = cutover(&[
        "tune",
        p.to_str().unwrap(),
        "--lookback",
        "7d",
        "--to",
        &to,
        "--write",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let tuned = std::fs::read_to_string(&p).unwrap();
    assert!(
        tuned.starts_with("# A first guess"),
        "comments kept: {tuned}"
    );
    assert!(
        tuned.contains("# minimum soak per stage"),
        "comments kept: {tuned}"
    );
    assert_ne!(tuned, before, "{out}");
    let (code, vout, _) = cutover(&["validate", p.to_str().unwrap()]);
    assert_eq!(code, 0, "the written policy is valid: {vout}\n{tuned}");

    // Then the next week, never seen by tune: no false rollback.
    let next = backtest(&p, w0 + WEEK, w0 + 2 * WEEK);
    assert!(
        rollbacks(&next).is_empty(),
        "false rollbacks on the next healthy week with\n{tuned}\n{out}\n{next:#}"
    );
    assert!(next["promoted"].as_u64().unwrap() > 100, "{next:#}");

    // And the step injected into that week is caught within five minutes.
    let sp = dir.path().join("shop-step.yaml");
    std::fs::write(&sp, tuned.replace("shop", "shop-step")).unwrap();
    let caught = backtest(&sp, w0 + WEEK, w0 + 2 * WEEK);
    let r = rollbacks(&caught);
    let first = *r
        .first()
        .unwrap_or_else(|| panic!("the step was not caught: {caught:#}"));
    assert!(
        first > step as f64 && first <= (step + 300) as f64,
        "first rollback {}s after the step\n{tuned}",
        first - step as f64
    );
}
