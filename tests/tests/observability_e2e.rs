//! What people see: metrics scraped by a real Prometheus and every query of the Grafana
//! dashboard answered from them, the run report with its chart, webhook notifications.
//!
//! Given a workload whose primary starts failing at 25 %, a Prometheus scraping both the
//! workload and the controller, a recording webhook and one that hangs,
//! when `cutover run` rolls back,
//! then the dashboard's queries all return data, the report names the breach, the chart
//! has its series, the notifications arrived in order, and the hanging webhook delayed
//! neither the rollback nor the exit beyond its timeout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover_tests::cli::INTERVAL;
use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::exporter::Behaviour;
use cutover_tests::{free_port, workspace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Records the JSON bodies POSTed to it, in order.
async fn recording_webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        for _ in 0..200 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            // Read head and body (Content-Length).
            loop {
                let n = sock.read(&mut tmp).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text[..i]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        rec.lock().unwrap().push(text[i + 4..].to_string());
                        break;
                    }
                }
            }
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        }
    });
    (url, seen)
}

/// Accepts connections and never answers.
async fn hanging_webhook() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hang", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..200 {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            held.push(sock);
        }
    });
    url
}

fn exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for a in dashboard["annotations"]["list"].as_array().unwrap() {
        out.push(a["expr"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_seen_through_metrics_dashboard_report_and_webhooks() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let env = Env::builder("observe")
        .scrape(metrics.clone())
        .start()
        .await;
    env.exporter().on_weight(
        25,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let (hook, received) = recording_webhook().await;
    let hang = hanging_webhook().await;
    let policy = env
        .policy()
        .extra(&format!(
            "notify:\n  - webhook: {hook}\n    timeout: 2s\n  - webhook: {hang}\n    timeout: 2s\n"
        ))
        .write();
    let report = env.path("report");
    let start = SystemTime::now();
    let run = env
        .cutover(["run"])
        .arg(&policy)
        .args(["--metrics-addr", &metrics, "--report"])
        .arg(&report)
        .state_file(&env.path("state.json"))
        .finish(RUN_LIMIT)
        .await;
    let exited = SystemTime::now();
    assert_eq!(run.code, 1, "{}", run.output);

    // The hanging webhook delayed neither the rollback nor the exit beyond its timeout.
    let jump = env.exporter().changed_at().unwrap();
    let rolled_back = run.last_change_at();
    assert!(rolled_back.duration_since(jump).unwrap() <= Duration::from_secs(3 * INTERVAL));
    let tail = exited.duration_since(rolled_back).unwrap();
    assert!(
        tail <= Duration::from_secs(2 + 2),
        "exit {tail:?} after the rollback; webhook timeout 2s"
    );

    // The recording webhook heard everything, in order.
    let texts: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expect = [
        "starting",
        "stage 1",
        "stage 2",
        "ROLLING BACK",
        "RolledBack (exit 1)",
    ];
    assert_eq!(texts.len(), expect.len(), "{texts:#?}");
    for (t, e) in texts.iter().zip(expect) {
        assert!(t.contains(e), "`{t}` should mention `{e}`; all: {texts:#?}");
    }

    // Every query of the dashboard returns data over the run, as Grafana would ask.
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("dashboards/cutover.json")).unwrap(),
    )
    .unwrap();
    let (from, to) = (
        start.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() - 5.0,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64(),
    );
    let queries = exprs(&dashboard);
    assert!(queries.len() >= 10);
    for q in queries {
        let q = q
            .replace("$service", "checkout")
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s");
        let r = env.prom().query_range(&q, from, to).await.unwrap();
        assert!(
            r.as_array().is_some_and(|a| !a.is_empty()),
            "dashboard query returned no data: {q}"
        );
    }

    // The report names the breach: gate, value, threshold, when.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["outcome"]["exit_code"], 1);
    let gate = &json["rollback"]["gate"];
    assert_eq!(gate["gate"], "error-rate", "{json:#}");
    assert!(gate["value"].as_f64().unwrap() > 0.01);
    assert_eq!(gate["threshold"].as_f64(), Some(0.01));
    assert!(gate["at"]["time"].as_str().unwrap().starts_with("20"));
    assert!(json["rollback"]["at"]["time"].is_string());
    let weights: Vec<u64> = json["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["primary"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [10, 25, 0]);
    assert!(json["decisions"].as_array().unwrap().len() >= 3);

    // The chart parses as SVG and has its series.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("](chart.svg)") && !md.contains("<svg") && md.contains("RolledBack"));
    let svg = std::fs::read_to_string(report.join("chart.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("chart.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect();
    for series in [
        "target weight",
        "observed primary share",
        "error-rate (primary)",
        "error-rate (DR)",
        "rollback",
    ] {
        assert!(
            texts.iter().any(|t| t == series),
            "legend lacks `{series}`: {texts:?}"
        );
    }
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(lines >= 4, "{lines} polylines");
}

#[test]
fn the_grafana_configmap_holds_the_same_dashboard() {
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("dashboards/cutover.json")).unwrap(),
    )
    .unwrap();
    let cm: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(workspace().join("dashboards/cutover-configmap.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let embedded: serde_json::Value =
        serde_json::from_str(cm["data"]["cutover.json"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, json, "dashboards/cutover-configmap.yaml is stale");
    let fleet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(workspace().join("dashboards/fleet.json")).unwrap())
            .unwrap();
    let embedded: serde_json::Value =
        serde_json::from_str(cm["data"]["fleet.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        embedded, fleet,
        "dashboards/cutover-configmap.yaml is stale (fleet.json)"
    );
    // Variables: a datasource and a multi-select service.
    let vars = json["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource"));
    assert!(
        vars.iter()
            .any(|v| v["name"] == "service" && v["multi"] == true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_to_a_real_pushgateway_at_exit() {
    let env = Env::new("pushgateway");
    let port = free_port();
    let mut gw = env.logs.daemon(
        "prometheus-pushgateway",
        std::process::Command::new(cutover_tests::require_program("prometheus-pushgateway"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                env.path("pgw.data").display()
            )),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/-/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No Prometheus there: preflight fails at once, and the run still pushes what happened.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let policy = env.policy_judged_by(&nowhere).stages(&[10, 100]).write();
    let run = env
        .cutover(["run"])
        .arg(&policy)
        .args(["--pushgateway-url", &url])
        .state_file(&env.path("state.json"))
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    gw.stop();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("cutover_phase{") && l.contains("service=\"checkout\""))
        .unwrap_or_else(|| panic!("no cutover_phase pushed:\n{metrics}"));
    assert!(line.ends_with(" 6"), "phase 6 = preflight failed: {line}");
    assert!(metrics.contains("cutover_run_info{"), "{metrics}");
    assert!(metrics.contains("cutover_rollbacks_total{"), "{metrics}");
}
