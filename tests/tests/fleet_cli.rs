//! `cutover fleet validate|plan|export|schema` on the shipped example and on generated
//! fleets: the Argo Workflow export checked against Argo's own schema, the fleet schema
//! current, a 200-service fleet planned in under a second with its query load printed.

use std::time::{Duration, Instant};

use cutover_tests::cli::cutover;
use cutover_tests::{TempDir, workspace};
use serde_json::Value;

const EXAMPLE: &str = "policies/fleets/eu-west.yaml";

/// Checks `v` against a (trimmed, inlined) JSON Schema: type, const, enum, required, known
/// properties, items. Returns every problem with its path.
fn validate(v: &Value, s: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(t) = s["type"].as_str() {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            out.push(format!("{path}: {v} is not a {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        out.push(format!("{path}: {v} is not {c}"));
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        out.push(format!("{path}: {v} is not one of {e:?}"));
    }
    if let Some(o) = v.as_object() {
        for r in s["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                out.push(format!("{path}: `{r}` is required"));
            }
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, x) in o {
                match props.get(k) {
                    Some(ps) => validate(x, ps, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: not a field of the schema")),
                }
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), s.get("items")) {
        for (i, x) in a.iter().enumerate() {
            validate(x, items, &format!("{path}[{i}]"), out);
        }
    }
}

#[test]
fn the_argo_workflow_export_validates_against_argos_schema_and_keeps_the_dag() {
    let (code, text) = cutover(&["fleet", "export", "--json", EXAMPLE]);
    assert_eq!(code, 0, "{text}");
    let wf: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let schema: Value = serde_json::from_slice(
        &std::fs::read(workspace().join("tests/fixtures/argo/workflow.schema.json")).unwrap(),
    )
    .unwrap();
    let mut problems = Vec::new();
    validate(&wf, &schema, "Workflow", &mut problems);
    assert!(
        problems.is_empty(),
        "against Argo's Workflow schema (regenerate the trimmed copy with tests/fixtures/argo/trim.py if a new field is Argo's): {problems:#?}"
    );
    // The same DAG: a task per service, `depends` naming tasks that exist, the fleet's
    // parallelism, failFast, and the YAML form parses to the same document.
    let dag = &wf["spec"]["templates"][0]["dag"];
    assert_eq!(dag["failFast"], true);
    assert_eq!(wf["spec"]["parallelism"], 3);
    let tasks = dag["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for s in [
        "ledger",
        "accounts",
        "orders",
        "api",
        "batch-api",
        "checkout",
        "shop",
        "storefront",
    ] {
        assert!(names.contains(&s), "{s} has no task: {names:?}");
    }
    for t in tasks {
        for d in t["depends"].as_str().unwrap_or("").split("&&") {
            let d = d.trim().trim_end_matches(".Succeeded");
            assert!(d.is_empty() || names.contains(&d), "unknown dependency {d}");
        }
    }
    let shop = tasks.iter().find(|t| t["name"] == "shop").unwrap();
    assert!(
        shop["depends"].as_str().unwrap().contains("checkout"),
        "{shop}"
    );
    assert!(
        shop["depends"].as_str().unwrap().contains("soak-layer-1"),
        "{shop}"
    );
    let (code, yaml) = cutover(&["fleet", "export", EXAMPLE]);
    assert_eq!(code, 0);
    let from_yaml: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, wf, "the YAML and JSON exports differ");
}

#[test]
fn the_example_fleet_validates_and_the_fleet_schema_is_current() {
    let (code, text) = cutover(&["fleet", "validate", EXAMPLE]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("8 services in 4 layers"), "{text}");
    let (code, schema) = cutover(&["fleet", "schema"]);
    assert_eq!(code, 0);
    let file = std::fs::read_to_string(workspace().join("policies/fleet.schema.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&schema).unwrap(),
        serde_json::from_str::<Value>(&file).unwrap(),
        "policies/fleet.schema.json is stale; regenerate it with `cargo run -q -p cutover -- fleet schema > policies/fleet.schema.json`"
    );
}

#[test]
fn a_fleet_of_200_services_plans_in_under_a_second_with_its_query_load() {
    let dir = TempDir::new("fleet-200");
    let base = std::fs::read_to_string(workspace().join("policies/batch-file.yaml")).unwrap();
    let mut fleet = String::from("fleet: big\nmax_parallel: 20\nservices:\n");
    for i in 0..200 {
        let name = format!("s{i:03}");
        let text = base
            .replace("service: batch-api", &format!("service: {name}"))
            .replace("batch-api-weights.json", &format!("{name}.json"));
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
        let after = if i >= 20 {
            format!("[s{:03}]", i - 20)
        } else {
            "[]".into()
        };
        fleet.push_str(&format!(
            "  - {{ name: {name}, policy: {name}.yaml, layer: {}, after: {after} }}\n",
            i / 50
        ));
    }
    let path = dir.path().join("fleet.yaml");
    std::fs::write(&path, fleet).unwrap();
    cutover_tests::cutover_bin(); // built (once per test process) before the clock starts
    let started = Instant::now();
    let (code, text) = cutover(&["fleet", "plan", path.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{text}");
    println!("planned 200 services in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(text.contains("200 services in 4 layers"), "{text}");
    assert!(
        text.contains("reads/s with 20 cutover(s) at once"),
        "{text}"
    );
}

#[test]
fn broken_fleets_are_refused_with_the_field_and_change_nothing() {
    let dir = TempDir::new("fleet-bad");
    let base = std::fs::read_to_string(workspace().join("policies/batch-file.yaml")).unwrap();
    for n in ["a", "b"] {
        std::fs::write(
            dir.path().join(format!("{n}.yaml")),
            base.replace("service: batch-api", &format!("service: {n}"))
                .replace("batch-api-weights.json", &format!("{n}.json")),
        )
        .unwrap();
    }
    let cases = [
        (
            "services:\n  - { name: a, policy: a.yaml, after: [b] }\n  - { name: b, policy: b.yaml, after: [a] }\n",
            "cycle",
        ),
        (
            "services:\n  - { name: a, policy: a.yaml, after: [zz] }\n",
            "services[0].after[0]",
        ),
        (
            "services:\n  - { name: a, policy: a.yaml }\n  - { name: a, policy: a.yaml }\n",
            "listed twice",
        ),
        (
            "services:\n  - { name: a, policy: a.yaml }\n  - { name: b, policy: a.yaml }\n",
            "both write",
        ),
        ("max_parralel: 2\nservices: []\n", "unknown field"),
    ];
    for (body, words) in cases {
        let path = dir.path().join("fleet.yaml");
        std::fs::write(&path, format!("fleet: bad\n{body}")).unwrap();
        let (code, text) = cutover(&["fleet", "validate", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{body}: {text}");
        assert!(text.contains(words), "{body}: `{text}` lacks `{words}`");
        assert!(text.contains("fleet.yaml"), "the file is named: {text}");
        let (code, _) = cutover(&[
            "fleet",
            "run",
            path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ]);
        assert_eq!(code, 2);
        assert!(
            !dir.path().join("state").exists(),
            "a bad fleet changed something"
        );
    }
}
