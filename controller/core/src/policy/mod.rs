//! The policy file: one per service.
//!
//! * [`model`] — what serde reads, with the defaults;
//! * [`load`](mod@load) — the file, its [`screen`]ing, YAML with `CUTOVER_SECTION__FIELD` environment
//!   overrides (via the `config` crate) and serde;
//! * [`validate`] — the checks serde cannot make, one function per section;
//! * [`plan`] — the result: a [`Plan`] of typed values, made once by [`compile`];
//! * [`backend`], [`prometheus`] — the models of those two sections.
//!
//! Every error names the file, the field path, the value at fault and the fix, e.g.
//! `policies/checkout.yaml: stages[2].weight: 125 is above 100; weights are percent of traffic to primary`.

pub mod approval;
pub mod backend;
pub mod backend_file;
pub mod backend_route53;
pub mod load;
pub mod model;
pub mod plan;
pub mod prometheus;
pub mod screen;
pub mod validate;

pub use approval::{ApprovalRule, StageApproval};
pub use load::{LoadedPolicy, PolicyError, PolicyErrors, env_overrides, from_model, load, parse};
pub use model::*;
pub use plan::{Compiled, Plan, ProbePlan, Stage, compile};
pub use validate::redact_url;

/// The policy's JSON Schema, as written to `policies/policy.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Policy);
    serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Span;
    use crate::policy::backend::Backend;

    const CHECKOUT: &str = include_str!("../../../../policies/checkout.yaml");

    fn parse_str(text: &str) -> Result<LoadedPolicy, PolicyErrors> {
        parse("p.yaml", text, config::Map::new())
    }

    #[test]
    fn the_contract_example_parses_and_means_what_it_says() {
        let loaded = parse_str(CHECKOUT).unwrap();
        let p = &loaded.policy;
        assert_eq!(p.service, "checkout");
        let Backend::Istio(istio) = &loaded.backend else {
            panic!("not istio: {:?}", loaded.backend)
        };
        assert_eq!(istio.route, "primary-dr");
        assert_eq!(istio.primary.subset.as_deref(), Some("primary"));
        assert_eq!(p.prometheus.timeout, Span::secs(10));
        let stages = &loaded.plan.stages;
        let weights: Vec<u8> = stages.iter().map(|s| s.weight.get()).collect();
        assert_eq!(weights, [10, 25, 50, 75, 100]);
        assert_eq!(stages[2].bake, Duration::from_secs(600));
        assert_eq!(stages[0].bake, Duration::from_secs(300));
        assert_eq!(stages[0].interval, Duration::from_secs(30));
        assert_eq!(stages[0].max_duration, Duration::from_secs(1800));
        let gates = &loaded.plan.gates;
        assert_eq!(gates.len(), 4);
        let max = |i: usize| gates[i].bounds().and_then(|b| b.max);
        assert_eq!(max(0), Some(0.01));
        assert_eq!(
            gates[1].bounds().and_then(|b| b.vs_dr).map(|v| v.0),
            Some(0.5)
        );
        assert_eq!(max(2), Some(0.5));
        assert_eq!(max(3), Some(1000.0));
        assert_eq!(p.analysis.min_requests, 200);
        assert_eq!(p.analysis.failure_limit, 2);
        assert_eq!(p.analysis.consecutive_error_limit, 3);
        assert_eq!(p.analysis.on_inconclusive, OnInconclusive::Hold);
        assert_eq!(p.preflight[0].max, Some(60.0));
        assert_eq!(p.rollback.mode, RollbackMode::Immediate);
        assert_eq!(p.notify.len(), 1);
    }

    #[test]
    fn environment_overrides_fields() {
        let mut env = config::Map::new();
        env.insert(
            "CUTOVER_PROMETHEUS__URL".to_string(),
            "http://127.0.0.1:9999".to_string(),
        );
        env.insert(
            "CUTOVER_ANALYSIS__MIN_REQUESTS".to_string(),
            "50".to_string(),
        );
        let p = parse("p.yaml", CHECKOUT, env).unwrap().policy;
        assert_eq!(p.prometheus.url, "http://127.0.0.1:9999");
        assert_eq!(p.analysis.min_requests, 50);
    }

    #[test]
    fn schema_file_is_current() {
        let on_disk = include_str!("../../../../policies/policy.schema.json");
        assert!(
            on_disk == json_schema(),
            "policies/policy.schema.json is stale; regenerate it with \
             `cargo run -q -p cutover -- schema > policies/policy.schema.json`"
        );
    }
}

#[cfg(test)]
mod approval_tests;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod table_tests;
