//! End to end on Route 53: the real `aws-sdk-route53` (real serialization and request
//! signing) against a real `moto` server, through a fault-injecting proxy, with the gates
//! judged by a real Prometheus scraping a workload that follows the records' weights.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use cutover_backends::traffic::route53::Route53Backend;
use cutover_core::TrafficBackend;
use cutover_core::policy::backend::Route53Config;
use cutover_tests::cli::Finished;
use cutover_tests::env::{Env, RUN_LIMIT};
use cutover_tests::exporter::Behaviour;
use cutover_tests::moto::Moto;
use cutover_tests::proxy::{FaultProxy, Faults, weights_in};
use cutover_tests::{assert_one_refused, race, silent_server};

const NAME: &str = "api.example.com.";

/// The test credentials of moto, for `cutover`.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// A hosted zone in moto with two weighted records, and a workload following them.
struct Zone {
    env: Env,
    moto: Moto,
    zone: String,
}

impl std::ops::Deref for Zone {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

fn record(id: &str, weight: i64, alias: bool) -> ResourceRecordSet {
    let b = ResourceRecordSet::builder()
        .name(NAME)
        .set_identifier(id)
        .weight(weight);
    let b = if alias {
        b.r#type(RrType::A).alias_target(
            AliasTarget::builder()
                .hosted_zone_id("Z35SXDOTRQ7X7K")
                .dns_name(format!("{id}-lb-123.us-east-1.elb.amazonaws.com."))
                .evaluate_target_health(true)
                .build()
                .unwrap(),
        )
    } else {
        b.r#type(RrType::Cname).ttl(2).resource_records(
            ResourceRecord::builder()
                .value(format!("{id}.example.net"))
                .build()
                .unwrap(),
        )
    };
    b.build().unwrap()
}

fn route53_config(zone: &str, rtype: &str, primary_id: &str) -> Route53Config {
    Route53Config {
        hosted_zone_id: zone.into(),
        record_name: "api.example.com".into(),
        record_type: rtype.into(),
        primary_set_identifier: primary_id.into(),
        dr_set_identifier: "dr".into(),
        endpoint_url: None,
        insync_timeout: Duration::from_secs(30),
        max_attempts: 8,
    }
}

impl Zone {
    /// Given a zone with two weighted records (primary 0, DR 100) in moto, a workload
    /// whose split follows them, and a Prometheus scraping it.
    async fn start(name: &str, alias: bool) -> Zone {
        let moto = Moto::start().await;
        let client = moto.client().await;
        let zone = client
            .create_hosted_zone()
            .name("example.com.")
            .caller_reference(format!("cutover-{name}"))
            .send()
            .await
            .expect("create zone")
            .hosted_zone()
            .unwrap()
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string();
        let batch = ChangeBatch::builder()
            .changes(
                Change::builder()
                    .action(ChangeAction::Create)
                    .resource_record_set(record("primary", 0, alias))
                    .build()
                    .unwrap(),
            )
            .changes(
                Change::builder()
                    .action(ChangeAction::Create)
                    .resource_record_set(record("dr", 100, alias))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        client
            .change_resource_record_sets()
            .hosted_zone_id(&zone)
            .change_batch(batch)
            .send()
            .await
            .expect("create records");
        let mut env = Env::with_prometheus(name).await;
        // The workload follows the records, as resolvers would (without their cache).
        let rtype = if alias { "A" } else { "CNAME" };
        let reader = Arc::new(Route53Backend::from_client(
            client.clone(),
            &route53_config(&zone, rtype, "primary"),
        ));
        env.follow(Duration::from_millis(250), move || {
            let reader = reader.clone();
            async move {
                let w = reader.get_weights().await.ok()?;
                Some((u64::from(w.primary()), u64::from(w.dr())))
            }
        });
        Zone { env, moto, zone }
    }

    fn policy_for(
        &self,
        proxy: &FaultProxy,
        rtype: &str,
        primary_id: &str,
        stages: &[u8],
    ) -> PathBuf {
        self.policy_with(proxy, rtype, primary_id, stages, "")
    }

    fn policy_with(
        &self,
        proxy: &FaultProxy,
        rtype: &str,
        primary_id: &str,
        stages: &[u8],
        extra: &str,
    ) -> PathBuf {
        let backend = format!(
            "  route53:\n    hosted_zone_id: {}\n    record_name: api.example.com\n    record_type: {rtype}\n    primary_set_identifier: {primary_id}\n    dr_set_identifier: dr\n    endpoint_url: {}\n    insync_timeout: 30s",
            self.zone, proxy.url
        );
        self.env
            .policy()
            .backend(&backend)
            .stages(stages)
            .extra(extra)
            .at(self.path("api.yaml"))
            .write()
    }

    async fn run(&self, policy: &Path) -> Finished {
        self.cutover_on("run", policy, &self.path("state.json"))
            .envs(&AWS_ENV)
            .env("RUST_LOG", "cutover=info,warn")
            .finish(RUN_LIMIT)
            .await
    }

    /// Every record set of the zone.
    async fn all_records(&self) -> Vec<ResourceRecordSet> {
        self.moto
            .client()
            .await
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone)
            .send()
            .await
            .unwrap()
            .resource_record_sets()
            .to_vec()
    }

    /// The record sets named `name`.
    async fn records_named(&self, name: &str) -> Vec<ResourceRecordSet> {
        let name = name.trim_end_matches('.');
        let mut all = self.all_records().await;
        all.retain(|r| r.name().trim_end_matches('.') == name);
        all
    }

    /// The weighted record sets (those with a SetIdentifier).
    async fn records(&self) -> Vec<ResourceRecordSet> {
        let mut all = self.all_records().await;
        all.retain(|r| r.set_identifier().is_some());
        all
    }
}

fn weight_of(records: &[ResourceRecordSet], id: &str) -> Option<i64> {
    records
        .iter()
        .find(|r| r.set_identifier() == Some(id))
        .and_then(|r| r.weight)
}

fn assert_no_both_zero(proxy: &FaultProxy) {
    assert!(
        proxy.both_zero_batches().is_empty(),
        "a batch set both weights to 0: {:?}",
        proxy.both_zero_batches()
    );
    for b in &proxy.seen.lock().unwrap().change_batches {
        assert_eq!(
            weights_in(b).len(),
            2,
            "both weights in one ChangeBatch: {b}"
        );
        assert!(
            b.contains("<Comment>cutover: "),
            "the batch names the run: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_step_through_every_stage_and_keep_their_fields() {
    let env = Zone::start("r53-promote", false).await;
    let before = env.records().await;
    let proxy = FaultProxy::start(env.moto.url(), 0).await;
    let run = env
        .run(&env.policy_for(&proxy, "CNAME", "primary", &[10, 50, 100]))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.primary_history(), [10, 50, 100]);
    let after = env.records().await;
    assert_eq!(weight_of(&after, "primary"), Some(100));
    assert_eq!(weight_of(&after, "dr"), Some(0));
    // Everything but the weights is as it was: TTL, identifiers, values.
    for id in ["primary", "dr"] {
        let strip = |rs: &[ResourceRecordSet]| {
            let mut r = rs
                .iter()
                .find(|r| r.set_identifier() == Some(id))
                .unwrap()
                .clone();
            r.weight = None;
            r
        };
        assert_eq!(
            strip(&before),
            strip(&after),
            "record {id} changed beyond its weight"
        );
    }
    assert_no_both_zero(&proxy);
    let batches = proxy.seen.lock().unwrap().change_batches.clone();
    assert!(
        batches[0].contains("run checkout-") && batches[0].contains("stage 1/3"),
        "the comment names run and stage: {}",
        batches[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_puts_all_traffic_back_on_dr() {
    let env = Zone::start("r53-breach", false).await;
    env.exporter().on_weight(
        50,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let proxy = FaultProxy::start(env.moto.url(), 0).await;
    let run = env
        .run(&env.policy_for(&proxy, "CNAME", "primary", &[10, 50, 100]))
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    let after = env.records().await;
    assert_eq!(weight_of(&after, "primary"), Some(0));
    assert_eq!(weight_of(&after, "dr"), Some(100));
    assert_no_both_zero(&proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_records_keep_their_alias_targets() {
    let env = Zone::start("r53-alias", true).await;
    let before = env.records().await;
    let proxy = FaultProxy::start(env.moto.url(), 0).await;
    let run = env
        .run(&env.policy_for(&proxy, "A", "primary", &[50, 100]))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let after = env.records().await;
    assert_eq!(weight_of(&after, "primary"), Some(100));
    for id in ["primary", "dr"] {
        let alias = |rs: &[ResourceRecordSet]| {
            rs.iter()
                .find(|r| r.set_identifier() == Some(id))
                .unwrap()
                .alias_target
                .clone()
        };
        assert!(alias(&after).is_some());
        assert_eq!(
            alias(&before),
            alias(&after),
            "alias target of {id} untouched"
        );
    }
    assert_no_both_zero(&proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_record_is_refused_and_nothing_changes() {
    let env = Zone::start("r53-missing", false).await;
    let proxy = FaultProxy::start(env.moto.url(), 0).await;
    let run = env
        .run(&env.policy_for(&proxy, "CNAME", "primray", &[10, 100]))
        .await;
    assert_eq!(run.code, 3, "{}", run.output);
    assert!(
        run.output.contains("`primray`"),
        "names the missing identifier: {}",
        run.output
    );
    assert!(
        run.output.contains("SetIdentifiers: "),
        "lists what is there: {}",
        run.output
    );
    assert!(
        proxy.seen.lock().unwrap().change_batches.is_empty(),
        "nothing written"
    );
    assert_eq!(weight_of(&env.records().await, "dr"), Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_three_throttled_still_completes_with_retries_logged() {
    let env = Zone::start("r53-throttle", false).await;
    let proxy = FaultProxy::start(env.moto.url(), 3).await;
    let run = env
        .run(&env.policy_for(&proxy, "CNAME", "primary", &[10, 50, 100]))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let throttled = proxy.seen.lock().unwrap().throttled;
    assert!(throttled >= 3, "the proxy throttled {throttled} requests");
    assert!(
        run.output.contains("retrying after"),
        "the log shows the retries: {}",
        run.output
    );
    assert_eq!(weight_of(&env.records().await, "primary"), Some(100));
    assert_no_both_zero(&proxy);
    println!(
        "throttled {throttled} of {} requests",
        proxy.seen.lock().unwrap().requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_change_is_waited_for_until_insync() {
    let env = Zone::start("r53-pending", false).await;
    let proxy = FaultProxy::with_faults(
        env.moto.url(),
        Faults {
            pending_get_changes: 2,
            ..Faults::default()
        },
    )
    .await;
    let run = env
        .run(&env.policy_for(&proxy, "CNAME", "primary", &[50, 100]))
        .await;
    assert_eq!(run.code, 0, "{}", run.output);
    let seen = proxy.seen.lock().unwrap();
    // Two batches; the first was polled through two PENDING answers before INSYNC.
    assert_eq!(seen.change_batches.len(), 2);
    assert!(
        seen.get_changes >= 4,
        "GetChange polled until INSYNC: {} calls",
        seen.get_changes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_is_never_retried_and_a_refused_rollback_pages_only_if_traffic_moved() {
    // Every weight change refused from the first: the stage never lands, the rollback
    // write is refused too, but the live split reads all-DR — no false "page now".
    let env = Zone::start("r53-invalid", false).await;
    let proxy = FaultProxy::with_faults(
        env.moto.url(),
        Faults {
            invalid_batches: true,
            ..Faults::default()
        },
    )
    .await;
    let extra = "rollback:\n  retry_interval: 1s\n  max_attempts: 2\n";
    let run = env
        .run(&env.policy_with(&proxy, "CNAME", "primary", &[10, 100], extra))
        .await;
    assert_eq!(run.code, 1, "{}", run.output);
    assert!(!run.output.contains("PAGE NOW"), "{}", run.output);
    assert!(run.output.contains("InvalidChangeBatch"), "{}", run.output);
    // One call for the stage (not retried: a validation error), one for the rollback, whose
    // failure is answered by reading the live split: all on DR.
    assert_eq!(proxy.seen.lock().unwrap().change_calls, 2);
    assert_eq!(
        weight_of(&env.records().await, "dr"),
        Some(100),
        "nothing was ever changed"
    );

    // The stage lands, then a breach, and every rollback write is refused: page now,
    // saying what is live.
    env.exporter().on_weight(
        10,
        0,
        Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        },
    );
    let proxy = FaultProxy::with_faults(
        env.moto.url(),
        Faults {
            invalid_batches: true,
            invalid_after: 1,
            ..Faults::default()
        },
    )
    .await;
    let _ = std::fs::remove_file(env.path("state.json"));
    let run = env
        .run(&env.policy_with(&proxy, "CNAME", "primary", &[10, 100], extra))
        .await;
    assert_eq!(run.code, 10, "{}", run.output);
    assert!(run.output.contains("PAGE NOW"), "{}", run.output);
    assert!(
        run.output.contains("the live weights read primary 10%"),
        "states what is live: {}",
        run.output
    );
    assert_eq!(weight_of(&env.records().await, "primary"), Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_record_set_never_both_drive_it() {
    let env = Zone::start("r53-race", false).await;
    let proxy = FaultProxy::start(env.moto.url(), 0).await;
    for round in 0..10 {
        // A Prometheus that does not answer at first keeps the winner in preflight, holding
        // the lock record while the other run looks; then preflight fails, nothing written.
        let prom = silent_server(Duration::from_millis(1500)).await;
        let text = std::fs::read_to_string(env.policy_for(&proxy, "CNAME", "primary", &[10, 100]))
            .unwrap()
            .replace(&env.prom().url(), &prom);
        let run = |name: &str| {
            let p = env.path(&format!("{name}-{round}.yaml"));
            std::fs::write(&p, &text).unwrap();
            env.cutover_on("run", &p, &env.path(&format!("{name}-{round}.json")))
                .envs(&AWS_ENV)
                .command()
        };
        let results = race(run("a"), run("b")).await;
        assert_one_refused(&results, round);
        // The winner released the lock record on its way out.
        let locks: Vec<String> = env
            .records_named("_cutover-lock.api.example.com.")
            .await
            .iter()
            .flat_map(|r| r.resource_records().iter().map(|v| v.value().to_string()))
            .collect();
        assert!(
            locks.len() == 1 && locks[0].contains(r#"\"holder\":null"#),
            "round {round}: released: {locks:?}; lock batches: {:#?}\n{results:#?}",
            proxy.seen.lock().unwrap().lock_batches
        );
    }
    assert!(
        proxy.seen.lock().unwrap().change_batches.is_empty(),
        "no weight was written"
    );
    assert!(
        !proxy.seen.lock().unwrap().lock_batches.is_empty(),
        "the lock record was written through the Route 53 API"
    );
}
