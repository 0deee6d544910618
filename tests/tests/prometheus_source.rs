//! The Prometheus metric source against a real server and against misbehaving ones:
//! one number or nothing is accepted; several series, a matrix, bad PromQL, a down server
//! and an HTTP error page are clear errors; credentials are sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_analyzers::prometheus::PrometheusSource;
use cutover_core::policy::prometheus::{BasicAuth, PrometheusConfig};
use cutover_core::{MetricError, PromqlBuilder, SitesSpec, Span, TrafficSpec};
use cutover_tests::env::Env;
use cutover_tests::logs::Logs;
use cutover_tests::prometheus::Prometheus;
use cutover_tests::{TempDir, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The source's settings for the Prometheus at `url`: a 2 s timeout, no credentials.
fn config(url: &str) -> PrometheusConfig {
    PrometheusConfig {
        url: url.into(),
        timeout: Span::secs(2),
        bearer_token_file: None,
        basic_auth: None,
        ca_file: None,
        insecure_skip_verify: false,
    }
}

/// The queries of `checkout` whose primary site has the label value `primary`.
fn promql(primary: &str) -> PromqlBuilder {
    PromqlBuilder::new(
        "checkout",
        &TrafficSpec {
            requests: "http_requests_total".into(),
            errors: "status=~\"5..\"".into(),
            latency: "http_request_duration_seconds_bucket".into(),
        },
        &SitesSpec {
            label: "site".into(),
            primary: primary.into(),
            dr: "dr".into(),
        },
    )
    .unwrap()
}

fn source(url: &str, f: impl FnOnce(&mut PrometheusConfig)) -> PrometheusSource {
    let mut cfg = config(url);
    f(&mut cfg);
    PrometheusSource::new(&cfg, promql("primary")).unwrap()
}

/// A workload of 100 requests/s, all on DR, and a Prometheus with its data in.
async fn workload(name: &str, ready_when: &str) -> Env {
    Env::builder(name)
        .rps(100.0)
        .ready_when(ready_when)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_refusals_of_a_real_prometheus() {
    let env = workload("source", "http_requests_total").await;
    let s = source(&env.prom().url(), |_| {});

    let one = s.query_one("sum(http_requests_total)").await.unwrap();
    assert!(one.is_some_and(|v| v > 0.0), "{one:?}");
    assert_eq!(
        s.query_one("sum(no_such_metric)").await.unwrap(),
        None,
        "empty vector is no data"
    );
    let nan = s.query_one("vector(0) / vector(0)").await.unwrap().unwrap();
    assert!(
        nan.is_nan(),
        "0/0 comes back as NaN for the gate to call no data"
    );
    assert_eq!(s.query_one("scalar(vector(3))").await.unwrap(), Some(3.0));

    let e = s.query_one("http_requests_total").await.unwrap_err();
    assert!(matches!(e, MetricError::NotOneNumber { .. }), "{e}");
    assert!(
        e.to_string().contains("series") && e.to_string().contains("sum()"),
        "{e}"
    );
    let e = s.query_one("http_requests_total[5s]").await.unwrap_err();
    assert!(e.to_string().contains("range vector"), "{e}");
    let e = s.query_one("sum(rate(x[5m]").await.unwrap_err();
    assert!(matches!(e, MetricError::Refused { .. }), "{e}");

    // Range queries: raw counter samples per series, in time order.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let series = s
        .query_range(
            "http_requests_total{site=\"dr\"}",
            now - 5,
            // A second ahead: the first scrape may be later than `now` truncated to seconds.
            now + 2,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(series.len(), 2, "a 200 and a 500 series: {series:?}");
    for x in &series {
        assert_eq!(x.labels["site"], "dr");
        assert!(
            x.samples
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{x:?}"
        );
    }
    let e = s
        .query_range("sum(rate(x[5m]", now - 5, now, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, MetricError::Refused { .. }), "{e}");

    let down = source(&format!("http://127.0.0.1:{}", free_port()), |_| {});
    let e = down.query_one("up").await.unwrap_err();
    assert!(matches!(e, MetricError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

/// A loopback HTTP server that records request heads and answers with `status` and `body`.
async fn fake_server(
    status: &'static str,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    fake_server_typed(status, "application/json", body).await
}

/// [`fake_server`] with another content type (a proxy's plain-text error page).
async fn fake_server_typed(
    status: &'static str,
    content_type: &'static str,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            rec.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (url, seen)
}

/// Sequential gates count from raw samples: adjacent intervals add up exactly, a counter
/// reset (a restarted pod) is counted from zero, and errors and slow requests come out in
/// the proportions the exporter serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_partition_time_and_survive_a_counter_reset() {
    use cutover_core::Site;
    use cutover_core::metrics::source::{CountQuery, Counted, MetricSource};
    use std::time::SystemTime;

    // All 100 requests/s go to DR.
    let env = workload("counts", "http_requests_total{site=\"dr\"}").await;
    let s = source(&env.prom().url(), |_| {});
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = SystemTime::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let b = SystemTime::now();
    env.exporter().restart_site(1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c = SystemTime::now();
    // Let the scrapes up to `c` land before asking about them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let q = |counted, from| CountQuery {
        counted,
        site: Site::Dr,
        from,
    };
    let whole = s.count(&q(Counted::Errors, a), c).await.unwrap();
    let first = s.count(&q(Counted::Errors, a), b).await.unwrap();
    let second = s.count(&q(Counted::Errors, b), c).await.unwrap();
    println!("whole {whole:?} = {first:?} + {second:?}");
    assert!(
        (first.total + second.total - whole.total).abs() < 1e-6,
        "adjacent intervals add up: {first:?} + {second:?} vs {whole:?}"
    );
    assert!(
        (first.bad + second.bad - whole.bad).abs() < 1e-6,
        "{first:?} {second:?} {whole:?}"
    );
    assert!(whole.resets >= 1, "the reset was seen: {whole:?}");
    // 12 s at 100 requests/s, give or take a scrape at each edge and the second before the
    // reset (lost, as Prometheus loses it).
    assert!(
        (900.0..=1400.0).contains(&whole.total),
        "a reset must not lose or invent the counts: {whole:?}"
    );
    assert!(
        (whole.bad / whole.total - 0.002).abs() < 1e-4,
        "errors are 0.2 %: {whole:?}"
    );
    // Slower than 250 ms with a 50 ms median (log-normal, sigma 0.5): P = 0.064 %.
    let slow = s.count(&q(Counted::SlowerThan(0.25), a), c).await.unwrap();
    assert!(
        (slow.total - whole.total).abs() / whole.total < 0.05,
        "{slow:?}"
    );
    assert!(
        (slow.bad / slow.total - 0.00064).abs() < 1e-4,
        "share above 250ms: {slow:?}"
    );
    // An edge the histogram does not have is an error naming the field to fix.
    let e = s
        .count(&q(Counted::SlowerThan(0.3), a), c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("latency.above"), "{e}");
    // The primary serves nothing here: zero counts, not an error.
    let p = s
        .count(
            &CountQuery {
                counted: Counted::Errors,
                site: Site::Primary,
                from: a,
            },
            c,
        )
        .await
        .unwrap();
    assert_eq!(p.total, 0.0);
}

/// A series first seen inside an interval (the first errors of a label set: client
/// libraries create a labelled counter at its first increment) counts from zero, because
/// Prometheus scraped its target without it just before: no first errors are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_born_inside_an_interval_counts_from_zero() {
    use cutover_core::Site;
    use cutover_core::metrics::source::{CountQuery, Counted, MetricSource};
    use std::time::SystemTime;

    let env = workload("births", "http_requests_total{site=\"dr\"}").await;
    let promql = PromqlBuilder::new(
        "checkout",
        &TrafficSpec {
            requests: "late_requests_total".into(),
            errors: "status=~\"5..\"".into(),
            latency: "http_request_duration_seconds_bucket".into(),
        },
        &SitesSpec {
            label: "site".into(),
            primary: "primary".into(),
            dr: "dr".into(),
        },
    )
    .unwrap();
    let s = PrometheusSource::new(&config(&env.prom().url()), promql).unwrap();
    let errors = "late_requests_total{site=\"dr\",status=\"500\"}";
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = SystemTime::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.exporter().set_gauge(errors, 4.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = SystemTime::now();
    env.exporter().set_gauge(errors, 6.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = SystemTime::now();
    // Let the scrapes up to `b` land before asking about them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let q = |from| CountQuery {
        counted: Counted::Errors,
        site: Site::Dr,
        from,
    };
    let whole = s.count(&q(a), b).await.unwrap();
    assert_eq!((whole.total, whole.bad), (6.0, 6.0), "{whole:?}");
    let first = s.count(&q(a), m).await.unwrap();
    let second = s.count(&q(m), b).await.unwrap();
    assert_eq!((first.bad, second.bad), (4.0, 2.0), "{first:?} {second:?}");
}

#[tokio::test]
async fn an_http_error_page_is_a_clear_error() {
    let (url, _) = fake_server("502 Bad Gateway", "<html>bad gateway</html>").await;
    let e = source(&url, |_| {}).query_one("up").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&url), "names the source: {text}");
    assert!(
        !text.contains("query="),
        "does not repeat the URL with the query: {text}"
    );
}

#[tokio::test]
async fn bearer_token_and_basic_auth_are_sent_from_files() {
    const OK: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let dir = TempDir::new("auth");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (url, seen) = fake_server("200 OK", OK).await;
    let s = source(&url, |c| c.bearer_token_file = Some(token.clone()));
    assert_eq!(s.query_one("up").await.unwrap(), None);
    // A rotated token is picked up on the next query.
    std::fs::write(&token, "rotated-token").unwrap();
    s.query_one("up").await.unwrap();
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret-token"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("authorization: bearer rotated-token"),
        "{}",
        heads[1]
    );

    let pw = dir.path().join("pw");
    std::fs::write(&pw, "open sesame").unwrap();
    let (url, seen) = fake_server("200 OK", OK).await;
    let s = source(&url, |c| {
        c.basic_auth = Some(BasicAuth {
            username: "ops".into(),
            password_file: pw.clone(),
        })
    });
    s.query_one("up").await.unwrap();
    // base64("ops:open sesame")
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.contains("b3BzOm9wZW4gc2VzYW1l"), "{head}");

    let s = source(&url, |c| {
        c.bearer_token_file = Some(dir.path().join("missing"))
    });
    let e = s.query_one("up").await.unwrap_err();
    assert!(e.to_string().contains("bearer_token_file"), "{e}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let bin = cutover_tests::require_program("openssl");
    let out = std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real Prometheus serving HTTPS with a certificate from a private CA: trusted through
/// `ca_file`, refused without it, accepted with `insecure_skip_verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = TempDir::new("tls");
    let logs = Logs::new("tls");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=cutover test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    std::fs::write(
        d.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    std::fs::write(d.join("prometheus.yml"), "global:\n  scrape_interval: 1s\n").unwrap();
    let port = free_port();
    let mut prom = logs.daemon(
        "prometheus (TLS)",
        std::process::Command::new(cutover_tests::require_program("prometheus"))
            .current_dir(d)
            .arg("--config.file=prometheus.yml")
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.config.file=web.yml"),
    );
    let url = format!("https://127.0.0.1:{port}");
    let trusted = source(&url, |c| c.ca_file = Some(d.join("ca.crt")));
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(v) = trusted.query_one("vector(1)").await {
            answer = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let untrusted = source(&url, |_| {}).query_one("vector(1)").await;
    let skip = source(&url, |c| c.insecure_skip_verify = true)
        .query_one("vector(1)")
        .await;
    prom.stop();
    assert_eq!(answer, Some(Some(1.0)), "trusted through ca_file");
    let e = untrusted.unwrap_err();
    assert!(matches!(e, MetricError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().to_lowercase().contains("certificate"),
        "says why: {e}"
    );
    assert_eq!(skip.unwrap(), Some(1.0));
}

#[tokio::test]
async fn http_error_statuses_say_what_they_mean_not_cannot_reach() {
    for (status, words) in [
        ("401 Unauthorized", "check prometheus.bearer_token_file"),
        ("403 Forbidden", "not allowed to query"),
        ("500 Internal Server Error", "reachable, but erroring"),
        ("503 Service Unavailable", "a proxy or load balancer"),
    ] {
        let (url, _) = fake_server_typed(status, "text/plain", "go away").await;
        let e = source(&url, |_| {}).query_one("up").await.unwrap_err();
        assert!(matches!(e, MetricError::HttpStatus { .. }), "{status}: {e}");
        let text = e.to_string();
        assert!(!text.contains("cannot reach"), "{text}");
        assert!(
            text.contains(&format!("answered HTTP {status}: ")) && text.contains(words),
            "{text}"
        );
    }
}

/// Site label values with quotes and backslashes make PromQL that Prometheus parses, and
/// whose string literals mean exactly the value (read back through `label_replace`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_with_quotes_are_escaped_the_way_prometheus_reads_them() {
    let prom = Prometheus::start(&[]).await;
    let site = "o'brien \"dr\" \\ 2\tb";
    let cfg = PrometheusConfig {
        timeout: Span::secs(5),
        ..config(&prom.url())
    };
    let promql = promql(site);
    let s = PrometheusSource::new(&cfg, promql.clone()).unwrap();
    let w = Duration::from_secs(30);
    let primary = cutover_core::Site::Primary;
    for q in [
        promql.request_rate(primary, w),
        promql.error_ratio(primary, w),
        promql.latency_quantile(0.99, primary, w),
        promql.custom("max(queue_depth{site='{{site}}'})", primary),
        promql.custom("max(queue_depth{site=\"{{site}}\"})", primary),
    ] {
        let r = s.query_one(&q).await;
        assert!(r.is_ok(), "Prometheus refused `{q}`: {r:?}");
    }
    for template in [
        "label_replace(vector(1), \"v\", \"{{site}}\", \"\", \"\")",
        "label_replace(vector(1), 'v', '{{site}}', '', '')",
    ] {
        let q = promql.custom(template, primary);
        let result = prom.query(&q).await.unwrap();
        assert_eq!(result[0]["metric"]["v"], site, "`{q}` gave {result}");
    }
}
