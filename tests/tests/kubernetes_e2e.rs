//! End to end on Kubernetes objects: kube-rs's real client, through a generated kubeconfig,
//! against the API-server emulation in `tests/src/kube_api.rs`, with the gates judged by a
//! real Prometheus scraping a workload that follows the object's weights.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cutover_tests::TempDir;
use cutover_tests::cli::{Finished, policy_text, run_cutover};
use cutover_tests::exporter::{Behaviour, Exporter};
use cutover_tests::kube_api::KubeApi;
use cutover_tests::prometheus::Prometheus;
use serde_json::{Value, json};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/production/virtualservices/checkout";
const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/production/httproutes/checkout";

/// A VirtualService as a team runs it: several routes, matches, headers, retries, a mirror.
fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "production", "uid": "6a1f0c2e-1111-4c5e-9d3b-0d7e0a1b2c3d",
            "generation": 7, "creationTimestamp": "2026-10-01T08:00:00Z",
            "labels": {"app": "checkout", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}"}},
        "spec": {
            "hosts": ["checkout.production.svc.cluster.local", "checkout.example.com"],
            "gateways": ["mesh", "istio-system/public"],
            "http": [
                {"name": "healthz", "match": [{"uri": {"exact": "/healthz"}}],
                 "route": [{"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary", "port": {"number": 8080}}}]},
                {"name": "beta-testers", "match": [{"headers": {"x-beta": {"exact": "1"}}}],
                 "route": [{"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary"}}],
                 "retries": {"attempts": 2, "perTryTimeout": "1s"}},
                {"name": "primary-dr",
                 "route": [
                    {"destination": {"host": "checkout.production.svc.cluster.local", "subset": "primary"}, "weight": 0,
                     "headers": {"request": {"set": {"x-site": "primary"}}}},
                    {"destination": {"host": "checkout.production.svc.cluster.local", "subset": "dr"}, "weight": 100,
                     "headers": {"request": {"set": {"x-site": "dr"}}}}],
                 "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,connect-failure"},
                 "timeout": "10s",
                 "mirror": {"host": "checkout-shadow.production.svc.cluster.local"}, "mirrorPercentage": {"value": 1.0},
                 "corsPolicy": {"allowOrigins": [{"exact": "https://shop.example.com"}], "allowMethods": ["GET", "POST"]}}
            ]
        }
    })
}

/// An HTTPRoute with two rules; the `api` rule is the one cut over.
fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "checkout", "namespace": "production", "uid": "0b9e...-route", "generation": 3,
            "labels": {"app": "checkout"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["checkout.example.com"],
            "rules": [
                {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "cdn-origin", "port": 80}]},
                {"name": "api", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-via", "value": "gw"}]}}],
                 "backendRefs": [
                    {"name": "checkout-primary", "port": 8080, "weight": 0},
                    {"name": "checkout-dr", "port": 8080, "weight": 100}],
                 "timeouts": {"request": "10s"}}
            ]
        }
    })
}

/// The object with what cutover may change blanked: the two weights, its annotations, and
/// the server-set resourceVersion and generation.
fn without_our_changes(mut o: Value, weights: &[&str]) -> Value {
    for w in weights {
        *o.pointer_mut(w).unwrap() = Value::Null;
    }
    let m = o["metadata"].as_object_mut().unwrap();
    m.remove("resourceVersion");
    m.remove("generation");
    if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
        a.retain(|k, _| !k.starts_with("cutover.dev/"));
    }
    if m.get("annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.is_empty())
    {
        m.remove("annotations");
    }
    o
}

struct Env {
    dir: TempDir,
    api: Arc<KubeApi>,
    exporter: Exporter,
    prom: Prometheus,
    follower: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn start(name: &str, path: &'static str, weights: [&'static str; 2]) -> Env {
        let dir = TempDir::new(name);
        let api = Arc::new(KubeApi::start(vec![virtual_service(), http_route()]).await);
        let file = dir.path().join("weights.json");
        std::fs::write(&file, r#"{"primary":0,"dr":100}"#).unwrap();
        // The mesh follows the object's weights.
        let (a, f) = (api.clone(), file.clone());
        let follower = tokio::spawn(async move {
            loop {
                if let Some(o) = a.object(path) {
                    let p = o.pointer(weights[0]).and_then(Value::as_u64).unwrap_or(0);
                    let d = o.pointer(weights[1]).and_then(Value::as_u64).unwrap_or(0);
                    if let Some(pp) = (p * 100).checked_div(p + d) {
                        let json = format!("{{\"primary\":{pp},\"dr\":{}}}", 100 - pp);
                        let _ = std::fs::write(&f, json);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let exporter = Exporter::start(file, 200.0).await;
        let prom = Prometheus::start(&[exporter.target()]).await;
        prom.wait_for_data(
            "sum(rate(http_requests_total{site=\"dr\"}[8s])) > 0",
            Duration::from_secs(40),
        )
        .await;
        api.kubeconfig(&dir.path().join("kubeconfig"));
        Env {
            dir,
            api,
            exporter,
            prom,
            follower,
        }
    }

    fn policy(&self, backend: &str, stages: &[u8], extra: &str) -> PathBuf {
        let p = self.dir.path().join("checkout.yaml");
        std::fs::write(
            &p,
            policy_text(backend, &self.prom.url(), stages, "60s", extra),
        )
        .unwrap();
        p
    }

    async fn cutover(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        let kc = self.dir.path().join("kubeconfig");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--kubeconfig", kc.to_str().unwrap()]);
        run_cutover(
            &all,
            &self.dir.path().join("state.json"),
            env,
            Duration::from_secs(180),
        )
        .await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

const ISTIO: &str = "  istio:\n    namespace: production\n    virtual_service: checkout\n    route: primary-dr\n    primary: { host: checkout.production.svc.cluster.local, subset: primary }\n    dr: { host: checkout.production.svc.cluster.local, subset: dr }";
const VS_WEIGHTS: [&str; 2] = ["/spec/http/2/route/0/weight", "/spec/http/2/route/1/weight"];
const GATEWAY: &str = "  gateway_api:\n    namespace: production\n    http_route: checkout\n    rule: api\n    primary: { name: checkout-primary, port: 8080 }\n    dr: { name: checkout-dr, port: 8080 }";
const ROUTE_WEIGHTS: [&str; 2] = [
    "/spec/rules/1/backendRefs/0/weight",
    "/spec/rules/1/backendRefs/1/weight",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_service_is_promoted_changing_two_numbers_and_nothing_else() {
    let env = Env::start("k8s-istio", VS, VS_WEIGHTS).await;
    let before = env.api.object(VS).unwrap();
    let run = env
        .cutover(
            &[
                "run",
                env.policy(ISTIO, &[10, 50, 100], "").to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 50, 100]);
    let after = env.api.object(VS).unwrap();
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(100)));
    assert_eq!(after.pointer(VS_WEIGHTS[1]), Some(&json!(0)));
    // Byte-level: everything else, serialized, is what it was.
    let (b, a) = (
        without_our_changes(before, &VS_WEIGHTS),
        without_our_changes(after.clone(), &VS_WEIGHTS),
    );
    assert_eq!(
        serde_json::to_string(&b).unwrap(),
        serde_json::to_string(&a).unwrap(),
        "fields beyond the weights changed"
    );
    assert!(
        after["metadata"]["annotations"]["cutover.dev/run"]
            .as_str()
            .unwrap()
            .contains("stage 3/3")
    );
    let reasons: Vec<String> = env
        .api
        .events()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "CutoverStarted",
            "StageStarted",
            "StageStarted",
            "StageStarted",
            "Promoted"
        ],
        "Events on the VirtualService"
    );
    assert!(env.api.events().iter().all(
        |e| e["regarding"]["name"] == "checkout" && e["regarding"]["kind"] == "VirtualService"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_route_is_promoted_and_a_breach_on_a_virtual_service_rolls_back() {
    let env = Env::start("k8s-gw", ROUTE, ROUTE_WEIGHTS).await;
    let before = env.api.object(ROUTE).unwrap();
    let run = env
        .cutover(
            &["run", env.policy(GATEWAY, &[25, 100], "").to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let after = env.api.object(ROUTE).unwrap();
    assert_eq!(after.pointer(ROUTE_WEIGHTS[0]), Some(&json!(100)));
    assert_eq!(
        serde_json::to_string(&without_our_changes(before, &ROUTE_WEIGHTS)).unwrap(),
        serde_json::to_string(&without_our_changes(after, &ROUTE_WEIGHTS)).unwrap()
    );
    drop(env);

    let env = Env::start("k8s-breach", VS, VS_WEIGHTS).await;
    env.exporter.on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let run = env
        .cutover(
            &[
                "run",
                env.policy(ISTIO, &[10, 50, 100], "").to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    let after = env.api.object(VS).unwrap();
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(0)));
    assert_eq!(after.pointer(VS_WEIGHTS[1]), Some(&json!(100)));
    assert!(
        env.api
            .events()
            .iter()
            .any(|e| e["reason"] == "RollingBack" && e["type"] == "Warning")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_writer_causes_a_retry_not_a_lost_update() {
    let env = Env::start("k8s-conflict", VS, VS_WEIGHTS).await;
    // Another controller changes the beta route's retries between our read and our write.
    env.api.foreign_write_before_next_update(json!({"metadata": {"labels": {"touched-by": "other-controller"}},
        "spec": {"http": virtual_service()["spec"]["http"].as_array().unwrap().iter().enumerate().map(|(i, r)| {
            let mut r = r.clone();
            if i == 1 { r["retries"]["attempts"] = json!(5); }
            r
        }).collect::<Vec<_>>()}}));
    let run = env
        .cutover(
            &["run", env.policy(ISTIO, &[50, 100], "").to_str().unwrap()],
            &[("RUST_LOG", "cutover=info,cutover_backends=warn")],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let after = env.api.object(VS).unwrap();
    assert_eq!(
        after["metadata"]["labels"]["touched-by"], "other-controller",
        "the other writer's change survived"
    );
    assert_eq!(after["spec"]["http"][1]["retries"]["attempts"], 5);
    assert_eq!(after.pointer(VS_WEIGHTS[0]), Some(&json!(100)));
    let conflicts = env.api.log().iter().filter(|l| l.code == 409).count();
    assert_eq!(conflicts, 1, "one stale write, answered 409");
    assert!(
        run.output.contains("resourceVersion conflict"),
        "{}",
        run.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_missing_objects_say_which_verb_on_which_object_and_the_fix() {
    let env = Env::start("k8s-rbac", VS, VS_WEIGHTS).await;
    env.api.forbid("update", "virtualservices");
    let policy = env.policy(ISTIO, &[50, 100], "rollback:\n  max_attempts: 1\n");
    let run = env
        .cutover(&["rollback", policy.to_str().unwrap()], &[])
        .await;
    assert_eq!(run.code, 10, "{}", run.output);
    assert!(
        run.output
            .contains("`update` on VirtualService production/checkout was refused"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains(
            r#"resources: ["virtualservices"], resourceNames: ["checkout"], verbs: ["update"]"#
        ),
        "{}",
        run.output
    );

    let missing = ISTIO.replace("virtual_service: checkout", "virtual_service: checkuot");
    let run = env
        .cutover(
            &[
                "run",
                env.policy(&missing, &[50, 100], "").to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output
            .contains("VirtualService production/checkuot was not found"),
        "{}",
        run.output
    );
    let wrong_route = ISTIO.replace("route: primary-dr", "route: primary");
    let run = env
        .cutover(
            &[
                "run",
                env.policy(&wrong_route, &[50, 100], "").to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output.contains("healthz, beta-testers, primary-dr"),
        "lists the routes there are: {}",
        run.output
    );
}

const STATE_CM: &str = "/api/v1/namespaces/cutover/configmaps/checkout-run";
/// The lock of the VirtualService route: a Lease in the object's namespace, named from it.
fn lease_path() -> String {
    let (_, name) = cutover_backends::k8s_lock::lease_for(
        "VirtualService",
        "production",
        "checkout",
        "route primary-dr",
    );
    format!("/apis/coordination.k8s.io/v1/namespaces/production/leases/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_keeps_its_state_in_a_configmap_holds_a_lease_and_survives_kill_9() {
    let env = Env::start("k8s-state", VS, VS_WEIGHTS).await;
    let policy = env.policy(ISTIO, &[25, 50, 100], "");
    let kc = env.dir.path().join("kubeconfig");
    let args = |bin: &mut tokio::process::Command| {
        bin.args([
            "run",
            policy.to_str().unwrap(),
            "--kubeconfig",
            kc.to_str().unwrap(),
        ])
        .args([
            "--state-configmap",
            "cutover/checkout-run",
            "--lock-ttl",
            "6s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    };
    let mut first = tokio::process::Command::new(cutover_tests::cutover_bin());
    args(&mut first);
    let mut first = first.spawn().unwrap();
    // Wait until the first stage is written and recorded.
    for _ in 0..300 {
        if env
            .api
            .object(VS)
            .and_then(|o| o.pointer(VS_WEIGHTS[0]).and_then(Value::as_u64))
            == Some(25)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = env
        .api
        .object(&lease_path())
        .expect("a Lease is held during the run");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        holder.contains(&format!("#{}", first.id().unwrap())),
        "{holder}"
    );

    // A second controller on the same service is refused, naming the holder.
    let second = tokio::process::Command::new(cutover_tests::cutover_bin())
        .args([
            "run",
            policy.to_str().unwrap(),
            "--kubeconfig",
            kc.to_str().unwrap(),
        ])
        // Another Job, another state ConfigMap: the VirtualService's own lock refuses it.
        .args(["--state-configmap", "cutover/another-run"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&second.stderr).to_string();
    assert_eq!(second.status.code(), Some(2), "{text}");
    let pid = first.id().unwrap();
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains("cutover/checkout-run"),
        "names the holder and its state: {text}"
    );

    // kill -9, as a node drain does; the Job's next pod resumes from the ConfigMap.
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let recorded: Value = serde_json::from_str(
        env.api.object(STATE_CM).unwrap()["data"]["state.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let run_id = recorded["run_id"].as_str().unwrap().to_string();
    let mut again = tokio::process::Command::new(cutover_tests::cutover_bin());
    args(&mut again);
    let status = tokio::time::timeout(Duration::from_secs(150), again.spawn().unwrap().wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let state: Value = serde_json::from_str(
        env.api.object(STATE_CM).unwrap()["data"]["state.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["run_id"], run_id.as_str(), "the same run, resumed");
    assert_eq!(state["restarts"], 1);
    assert_eq!(state["phase"], "promoted");
    let history: Vec<u64> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["weights"]["primary"].as_u64().unwrap())
        .collect();
    assert_eq!(history.first(), Some(&25));
    assert_eq!(history.last(), Some(&100));
    assert!(
        history.windows(2).all(|w| w[0] <= w[1]),
        "no stage skipped or repeated out of order: {history:?}"
    );
    assert_eq!(
        env.api.object(&lease_path()).unwrap()["spec"]["holderIdentity"],
        Value::Null,
        "released at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_with_different_state_configmaps_never_both_drive_one_route_in_20_races() {
    let env = Env::start("k8s-race", VS, VS_WEIGHTS).await;
    let kc = env.dir.path().join("kubeconfig");
    for round in 0..20 {
        // A Prometheus that does not answer at first keeps the winner in preflight, holding
        // the lock while the other Job looks; then preflight fails and nothing is written.
        let prom = cutover_tests::silent_server(Duration::from_millis(1500)).await;
        let policy = env.dir.path().join(format!("race-{round}.yaml"));
        std::fs::write(
            &policy,
            cutover_tests::cli::policy_text(ISTIO, &prom, &[10, 100], "60s", ""),
        )
        .unwrap();
        let job = |cm: &str| {
            let mut c = tokio::process::Command::new(cutover_tests::cutover_bin());
            c.args(["run", policy.to_str().unwrap(), "--kubeconfig"])
                .arg(&kc)
                .args(["--state-configmap", cm]);
            c
        };
        let results = cutover_tests::race(
            job(&format!("cutover/job-a-{round}")),
            job(&format!("cutover/job-b-{round}")),
        )
        .await;
        cutover_tests::assert_one_refused(&results, round);
        assert_eq!(
            env.api.object(VS).unwrap().pointer(VS_WEIGHTS[0]),
            Some(&json!(0)),
            "round {round}: nothing was written"
        );
    }
}
