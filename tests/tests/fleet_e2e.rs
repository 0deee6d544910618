//! A whole site failed back as a fleet, end to end: twenty services, each with its own
//! workload exporter following its own weights file, one real Prometheus scraping them
//! all every second, and `cutover fleet run` with the local executor.
//!
//! Given 20 services in 4 layers (5 each, one `after` chain per layer) and
//! `max_parallel: 5`, when the fleet runs, then every service is promoted in dependency
//! order with never more than 5 cutovers at once; and when a layer-2 service breaks at
//! 50 %, it rolls back, no layer-3 service ever gets traffic, and with `rollback_fleet`
//! every promoted service ends at 0 % primary, in reverse order, verified.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cutover_tests::cli::file_backend;
use cutover_tests::env::Env;
use cutover_tests::exporter::{Behaviour, Exporter};
use serde_json::Value;

const SERVICES: usize = 20;

fn name(i: usize) -> String {
    format!("svc{i:02}")
}

fn layer(i: usize) -> usize {
    i / 5
}

struct Site {
    env: Env,
    exporters: Vec<Exporter>,
    _weights: cutover_tests::TempDir,
}

impl Site {
    async fn start(test: &str, metrics_port: u16) -> Site {
        let weights = cutover_tests::TempDir::new(&format!("{test}-weights"));
        let dir = weights.path().to_path_buf();
        let mut exporters = Vec::new();
        // The fleet's own metrics, scraped like a service's.
        let mut builder = Env::builder(test)
            .rps(100.0)
            .scrape(format!("127.0.0.1:{metrics_port}"));
        for i in 0..SERVICES {
            let w = dir.join(format!("{}.json", name(i)));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&w, r#"{"primary":0,"dr":100}"#).unwrap();
            let e = Exporter::start_for(&name(i), w, 100.0).await;
            builder = builder.scrape(e.target());
            exporters.push(e);
        }
        let env = builder
            // Every service's DR traffic is in (the default workload's too).
            .ready_when(&ready_query())
            .start()
            .await;
        Site {
            env,
            exporters,
            _weights: weights,
        }
    }

    fn weights_file(&self, i: usize) -> PathBuf {
        self.exporters[i].weights_file()
    }

    fn primary(&self, i: usize) -> u64 {
        cutover_tests::primary_in(&self.weights_file(i))
    }

    /// The fleet file (and a policy per service) for `header`.
    fn fleet(&self, header: &str) -> PathBuf {
        let mut text = format!("fleet: site\nmax_parallel: 5\n{header}\nservices:\n");
        for i in 0..SERVICES {
            let policy = self
                .env
                .policy()
                .service(&name(i))
                .at(self.env.path(&format!("{}.yaml", name(i))))
                .backend(&file_backend(&self.weights_file(i)))
                .stages(&[50, 100])
                .write();
            let after = if i % 5 == 1 {
                format!("[{}]", name(i - 1))
            } else {
                "[]".into()
            };
            text.push_str(&format!(
                "  - {{ name: {}, policy: {}, layer: {}, after: {after} }}\n",
                name(i),
                policy.display(),
                layer(i)
            ));
        }
        let p = self.env.path("fleet.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn record(&self, dir: &std::path::Path, i: usize) -> Option<Value> {
        std::fs::read(dir.join(format!("{}.state.json", name(i))))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }
}

/// Every service's DR traffic is in (the default workload's too).
fn ready_query() -> String {
    format!(
        "count(rate(http_requests_total{{site=\"dr\",status=\"200\"}}[8s]) > 0) >= {}",
        SERVICES + 1
    )
}

/// A webhook that records the texts it is sent.
async fn recording_webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use cutover_tests::http1::{read_request, write_response};
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let s = said.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            if let Ok(Some(req)) = read_request(&mut sock).await {
                if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
                    s.lock()
                        .unwrap()
                        .push(v["text"].as_str().unwrap_or("").to_string());
                }
                let _ = write_response(&mut sock, 200, "text/plain", b"ok").await;
            }
        }
    });
    (url, said)
}

fn time(v: &Value) -> SystemTime {
    let secs = v["secs_since_epoch"].as_u64().unwrap();
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(secs)
        + Duration::from_nanos(v["nanos_since_epoch"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_services_fail_back_in_order_and_a_breach_rolls_the_fleet_back() {
    let port = cutover_tests::free_port();
    let site = Site::start("fleet", port).await;
    // 1. Everything healthy: all promoted, in dependency order, at most 5 at once.
    let (webhook, said) = recording_webhook().await;
    let fleet = site.fleet(&format!("notify: [{{ webhook: \"{webhook}\" }}]"));
    let dir = site.env.path("state-1");
    let begun = SystemTime::now();
    let run = site
        .env
        .cutover(["fleet", "run"])
        .arg(&fleet)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .finish(Duration::from_secs(900))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    // Notified at its boundaries: the start, each layer, the end.
    let texts = said.lock().unwrap().clone();
    assert!(texts.iter().any(|t| t.contains("starting")), "{texts:?}");
    assert!(
        (0..4).all(|l| texts
            .iter()
            .any(|t| t.contains(&format!("layer {l} promoted")))),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("finished (exit 0)")),
        "{texts:?}"
    );
    // The report says who did what, and the critical path.
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet-report.json")).unwrap()).unwrap();
    let path: Vec<&str> = report["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let layers: Vec<usize> = path
        .iter()
        .map(|n| layer(n[3..].parse().unwrap()))
        .collect();
    assert!(
        layers.first() == Some(&0)
            && layers.last() == Some(&3)
            && layers.windows(2).all(|w| w[0] <= w[1]),
        "the critical path runs through every layer in order: {path:?}"
    );
    assert!(
        std::fs::read_to_string(dir.join("fleet-report.md"))
            .unwrap()
            .contains("Critical path")
    );
    // Every query of the fleet dashboard returns data over the run.
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(cutover_tests::workspace().join("dashboards/fleet.json")).unwrap(),
    )
    .unwrap();
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let q = t["expr"].as_str().unwrap().replace("$fleet", "site");
            let r = site
                .env
                .prom()
                .query_range(&q, secs(begun), secs(SystemTime::now()))
                .await
                .unwrap();
            assert!(r.as_array().is_some_and(|a| !a.is_empty()), "no data: {q}");
        }
    }
    let mut spans = Vec::new();
    for i in 0..SERVICES {
        assert_eq!(site.primary(i), 100, "{} not promoted", name(i));
        let r = site.record(&dir, i).expect("a record");
        assert_eq!(r["phase"], "promoted");
        spans.push((time(&r["started"]), time(&r["ended"])));
    }
    for i in 0..SERVICES {
        for j in 0..SERVICES {
            if layer(j) < layer(i) || (i % 5 == 1 && j == i - 1) {
                assert!(
                    spans[j].1 <= spans[i].0,
                    "{} started before {} was promoted",
                    name(i),
                    name(j)
                );
            }
        }
    }
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(most <= 5, "{most} cutovers at once");
    println!("at most {most} cutovers at once");

    // 2. A layer-2 service breaks at 50 %: rolled back; layer 3 never gets traffic; the
    // fleet rolls back every promoted service in reverse order, verified.
    for i in 0..SERVICES {
        std::fs::write(site.weights_file(i), r#"{"primary":0,"dr":100}"#).unwrap();
        site.exporters[i].reset();
    }
    // DR serves them all again, and its traffic is in (its 8 s windows were empty at 100 %).
    site.env
        .prom()
        .wait_for_data(&ready_query(), Duration::from_secs(40))
        .await;
    site.exporters[12].on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        },
    );
    let fleet = site.fleet("on_failure: rollback_fleet");
    let dir = site.env.path("state-2");
    let run = site
        .env
        .cutover(["fleet", "run"])
        .arg(&fleet)
        .arg("--state-dir")
        .arg(&dir)
        .finish(Duration::from_secs(900))
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert!(
        run.output.contains("svc12` did not promote"),
        "{}",
        run.output
    );
    for i in 0..SERVICES {
        assert_eq!(
            site.primary(i),
            0,
            "{} still sends traffic to the primary",
            name(i)
        );
        if layer(i) == 3 {
            assert_eq!(
                site.exporters[i].max_weight_seen(),
                0,
                "{} got traffic",
                name(i)
            );
            assert!(site.record(&dir, i).is_none(), "{} was started", name(i));
        }
    }
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet.json")).unwrap()).unwrap();
    let mut rolled: Vec<(SystemTime, usize)> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1]["phase"] == "rolled_back")
        .map(|s| {
            assert_eq!(s[1]["ok"], true, "{s}");
            let n: usize = s[0].as_str().unwrap()[3..].parse().unwrap();
            (time(&s[1]["at"]), n)
        })
        .collect();
    rolled.sort();
    assert!(
        rolled.len() >= 10,
        "promoted services rolled back: {rolled:?}"
    );
    assert!(
        rolled.windows(2).all(|w| layer(w[0].1) >= layer(w[1].1)),
        "not in reverse dependency order: {rolled:?}"
    );
}
