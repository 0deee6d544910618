//! Readiness: bad `preflight:`/`guards:` entries are refused naming file, field, value and
//! fix; what a result allows; how long preflight waits.

use std::time::{Duration, SystemTime};

use super::*;
use crate::policy::parse;

const CHECKOUT: &str = include_str!("../../../../policies/checkout.yaml");

fn with(extra: &str) -> String {
    format!("{CHECKOUT}\n{extra}\n")
}

#[test]
fn bad_guard_and_preflight_specs_are_refused_with_the_field_named() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "a guard with no kind",
            with("guards:\n  - name: lag\n"),
            "guards[0]",
            "give exactly one of query, postgres",
        ),
        (
            "a guard with two kinds",
            with(
                "guards:\n  - name: lag\n    query: up\n    max: 1\n    http: { url: 'http://x' }\n",
            ),
            "guards[0]",
            "has 2 kinds (query, http)",
        ),
        (
            "a guard that waits",
            with("guards:\n  - name: smoke\n    http: { url: 'http://x' }\n    wait: 5m\n"),
            "guards[0].wait",
            "a guard does not wait",
        ),
        (
            "postgres with no server",
            with("guards:\n  - name: lag\n    postgres: { max_lag: 60s }\n"),
            "guards[0].postgres",
            "give primary_connection_file",
        ),
        (
            "postgres with no limit",
            with("guards:\n  - name: lag\n    postgres: { dr_connection_file: /s/dr }\n"),
            "guards[0].postgres",
            "give max_lag",
        ),
        (
            "postgres with a typo",
            with("guards:\n  - name: lag\n    postgres: { max_lagg: 60s }\n"),
            "guards[0].postgres.max_lagg",
            "unknown field `max_lagg`",
        ),
        (
            "min/max on a postgres check",
            with(
                "guards:\n  - name: lag\n    postgres: { dr_connection_file: /s, max_lag: 1m }\n    max: 60\n",
            ),
            "guards[0]",
            "min/max bound a `query` check",
        ),
        (
            "capacity with nothing to compare",
            with(
                "guards:\n  - name: cap\n    kubernetes_capacity: { primary: { namespace: web, deployments: [api] } }\n",
            ),
            "guards[0].kubernetes_capacity",
            "give dr (DR's Deployments) or replicas",
        ),
        (
            "capacity headroom below 1",
            with(
                "guards:\n  - name: cap\n    kubernetes_capacity: { primary: { namespace: web, deployments: [api] }, replicas: 3, headroom: 0.5 }\n",
            ),
            "guards[0].kubernetes_capacity.headroom",
            "0.5 is outside 1 to 10",
        ),
        (
            "a deployment name that is not one",
            with(
                "guards:\n  - name: cap\n    kubernetes_capacity: { primary: { namespace: web, deployments: [Api_1] }, replicas: 3 }\n",
            ),
            "guards[0].kubernetes_capacity.primary.deployments",
            "`Api_1` is not a Kubernetes name",
        ),
        (
            "patroni with a bad regex",
            with(
                "guards:\n  - name: p\n    patroni: { url: 'http://p:8008', leader: '([', max_lag_bytes: 1 }\n",
            ),
            "guards[0].patroni.leader",
            "`([` is not a regular expression",
        ),
        (
            "patroni URL without scheme",
            with("guards:\n  - name: p\n    patroni: { url: 'p:8008', max_lag_bytes: 1 }\n"),
            "guards[0].patroni.url",
            "use http:// or https://",
        ),
        (
            "cockroach virtual cluster name that could inject",
            with(
                "guards:\n  - name: c\n    cockroach_pcr: { connection_file: /s, virtual_cluster: 'main; DROP', max_lag: 2m }\n",
            ),
            "guards[0].cockroach_pcr.virtual_cluster",
            "is not a virtual cluster name",
        ),
        (
            "http status out of range",
            with("guards:\n  - name: smoke\n    http: { url: 'http://x', status: 700 }\n"),
            "guards[0].http.status",
            "700 is not an HTTP status",
        ),
        (
            "two guards with one name",
            with(
                "guards:\n  - name: s\n    http: { url: 'http://x' }\n  - name: s\n    http: { url: 'http://y' }\n",
            ),
            "guards[1].name",
            "`s` names two checks of guards",
        ),
        (
            "a preflight wait above a day",
            CHECKOUT.replacen("    max: 60\n", "    max: 60\n    wait: 30d\n", 1),
            "preflight[0].wait",
            "is above 24h",
        ),
        (
            "guard_failure_limit of zero",
            with("guard_failure_limit: 0s\n"),
            "guard_failure_limit",
            "0s is outside (0s, 24h]",
        ),
        (
            "on_guard_failure unknown",
            with("on_guard_failure: panic\n"),
            "on_guard_failure",
            "unknown variant `panic`",
        ),
    ];
    for (case, text, field, words) in cases {
        let errors = parse("policies/checkout.yaml", &text, config::Map::new())
            .expect_err(case)
            .0;
        let Some(e) = errors.iter().find(|e| e.field == field) else {
            panic!("{case}: no error names field `{field}`; got {errors:?}");
        };
        let line = e.to_string();
        assert!(
            line.starts_with("policies/checkout.yaml: "),
            "{case}: {line}"
        );
        assert!(line.contains(words), "{case}: `{line}` lacks `{words}`");
    }
}

#[test]
fn a_policy_with_every_kind_compiles_and_plans_without_secrets() {
    let text = with(concat!(
        "guards:\n",
        "  - name: pg\n    postgres: { primary_connection_file: /secrets/pg, max_lag: 60s }\n",
        "  - name: cap\n    kubernetes_capacity: { primary: { namespace: web, deployments: [api] }, dr: { namespace: web-dr, deployments: [api] }, headroom: 1.2 }\n",
        "  - name: smoke\n    http: { url: 'https://checkout.example/healthz', body: 'ok' }\n",
        "  - name: patroni\n    patroni: { url: 'http://patroni:8008', leader: '^pg-primary-', max_lag_bytes: 1048576 }\n",
        "  - name: crdb\n    cockroach_pcr: { connection_file: /secrets/crdb, virtual_cluster: main, max_lag: 2m }\n",
        "on_guard_failure: rollback\nguard_failure_limit: 5m\n",
    ));
    let p = parse("policies/checkout.yaml", &text, config::Map::new()).unwrap();
    let r = &p.plan.readiness;
    assert_eq!(r.guards.len(), 5);
    assert_eq!(r.on_guard_failure, OnGuardFailure::Rollback);
    assert_eq!(r.guard_failure_limit, Duration::from_secs(300));
    let kinds: Vec<&str> = r.guards.iter().map(PreflightCheck::kind).collect();
    assert_eq!(
        kinds,
        [
            "postgres",
            "kubernetes_capacity",
            "http",
            "patroni",
            "cockroach_pcr"
        ]
    );
    assert!(describe(&r.guards[0]).contains("/secrets/pg"));
}

fn result(name: &str, ok: bool, covers: Option<f64>) -> PreflightResult {
    PreflightResult {
        name: name.into(),
        ok,
        covers,
        kind: "t".into(),
        detail: "d".into(),
        ..PreflightResult::default()
    }
}

#[test]
fn capacity_allows_only_the_weights_it_covers() {
    let cap = result("cap", true, Some(30.0));
    assert!(allows(&cap, 10) && allows(&cap, 25) && allows(&cap, 30));
    assert!(!allows(&cap, 50));
    assert!(
        blocking(&[cap], 50)
            .unwrap()
            .contains("covers 30% of traffic")
    );
    assert!(!allows(&result("lag", false, None), 10));
}

#[test]
fn preflight_waits_only_while_every_failing_check_has_wait_left() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let check = |name: &str, wait: u64| PreflightCheck {
        name: name.into(),
        query: Some("up".into()),
        max: Some(1.0),
        wait: (wait > 0).then(|| Span::secs(wait)),
        interval: Some(Span::secs(5)),
        ..PreflightCheck::default()
    };
    let readiness = Readiness {
        preflight: vec![check("lag", 20), check("other", 0)],
        guards: vec![check("cap", 0)],
        ..Readiness::default()
    };
    let lag_fails = [result("lag", false, None), result("other", true, None)];
    assert_eq!(
        preflight_retry(&readiness, &lag_fails, 10, t0, t0),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        preflight_retry(&readiness, &lag_fails, 10, t0, t0 + Duration::from_secs(18)),
        Some(Duration::from_secs(2)),
        "never sleeps past the wait"
    );
    assert_eq!(
        preflight_retry(&readiness, &lag_fails, 10, t0, t0 + Duration::from_secs(20)),
        None
    );
    let other_fails = [result("lag", false, None), result("other", false, None)];
    assert_eq!(
        preflight_retry(&readiness, &other_fails, 10, t0, t0),
        None,
        "no wait: fail now"
    );
    let guard = [result("guard cap", true, Some(5.0))];
    assert_eq!(
        preflight_retry(&readiness, &guard, 10, t0, t0 + Duration::from_secs(10)),
        Some(Duration::from_secs(5)),
        "a guard waits as long as the longest preflight wait"
    );
    assert_eq!(
        preflight_retry(&readiness, &guard, 10, t0, t0 + Duration::from_secs(20)),
        None
    );
    let gate = [result("gate errors has DR data", false, None)];
    assert_eq!(preflight_retry(&readiness, &gate, 10, t0, t0), None);
}
