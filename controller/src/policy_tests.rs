//! Table-driven: broken variants of the contract example, each error naming its field.

use super::*;

const CHECKOUT: &str = include_str!("../../policies/checkout.yaml");

fn edit(from: &str, to: &str) -> String {
    assert!(CHECKOUT.contains(from), "fixture text not found: {from}");
    CHECKOUT.replacen(from, to, 1)
}

#[test]
fn broken_policies_are_refused_with_the_field_named() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (case, policy text, field path expected, words expected in the message)
        (
            "unknown top-level field",
            format!("{CHECKOUT}\nservce: typo\n"),
            "servce",
            "unknown field `servce`",
        ),
        (
            "unknown nested field",
            edit("error_rate: { max: 1% }", "error_rate: { maxx: 1% }"),
            "gates[0].error_rate.maxx",
            "unknown field `maxx`",
        ),
        (
            "weight above 100",
            edit("  - weight: 50\n", "  - weight: 125\n"),
            "stages[2].weight",
            "125 is above 100",
        ),
        (
            "stages that go down",
            edit("  - weight: 75\n", "  - weight: 40\n"),
            "stages[3].weight",
            "strictly increase",
        ),
        (
            "last stage not 100",
            edit("  - weight: 100\n", "  - weight: 90\n"),
            "stages[4].weight",
            "not 100",
        ),
        (
            "stage weight 0",
            edit("  - weight: 10\n", "  - weight: 0\n"),
            "stages[0].weight",
            "start at 1",
        ),
        (
            "negative weight",
            edit("  - weight: 10\n", "  - weight: -5\n"),
            "stages[0].weight",
            "-5",
        ),
        (
            "malformed duration",
            edit("bake: 5m ", "bake: 5 minutes please "),
            "defaults.bake",
            "not a duration",
        ),
        (
            "duration without unit",
            edit("interval: 30s", "interval: 30"),
            "defaults.interval",
            "no unit",
        ),
        (
            "zero interval",
            edit("interval: 30s", "interval: 0s"),
            "defaults.interval",
            "0s",
        ),
        (
            "percent without sign",
            edit("error_rate: { max: 1% }", "error_rate: { max: 1 }"),
            "gates[0].error_rate.max",
            "percent sign",
        ),
        (
            "quantile out of range",
            edit("quantile: 0.99", "quantile: 1.5"),
            "gates[2].latency.quantile",
            "between 0 and 1",
        ),
        (
            "sequential alpha out of range",
            edit(
                "error_rate: { max_vs_dr: 50% }",
                "error_rate: { vs_dr: { tolerance: 50%, alpha: 1.5 } }",
            ),
            "gates[1].error_rate.vs_dr.alpha",
            "at most 0.5",
        ),
        (
            "sequential tolerance of zero",
            edit(
                "error_rate: { max_vs_dr: 50% }",
                "error_rate: { vs_dr: { tolerance: 0% } }",
            ),
            "gates[1].error_rate.vs_dr.tolerance",
            "e.g. 50%",
        ),
        (
            "sequential gate mixed with a threshold",
            edit(
                "error_rate: { max_vs_dr: 50% }",
                "error_rate: { max: 2%, vs_dr: { tolerance: 50% } }",
            ),
            "gates[1].error_rate.vs_dr",
            "judges alone",
        ),
        (
            "sequential latency gate without a bucket edge",
            edit(
                "latency: { quantile: 0.99, max: 500ms }",
                "latency: { vs_dr: { tolerance: 50% } }",
            ),
            "gates[2].latency.above",
            "bucket edge",
        ),
        (
            "sequential gate with a window",
            edit(
                "error_rate: { max_vs_dr: 50% }",
                "window: 1m\n    error_rate: { vs_dr: { tolerance: 50% } }",
            ),
            "gates[1].window",
            "no window",
        ),
        (
            "sequential unknown field",
            edit(
                "error_rate: { max_vs_dr: 50% }",
                "error_rate: { vs_dr: { tolerance: 50%, alhpa: 0.01 } }",
            ),
            "gates[1].error_rate.vs_dr.alhpa",
            "unknown field `alhpa`",
        ),
        (
            "duplicate gate names",
            edit("name: error-rate-vs-dr", "name: error-rate"),
            "gates[1].name",
            "unique",
        ),
        (
            "bake longer than max_duration",
            edit("    bake: 10m\n", "    bake: 45m\n"),
            "stages[2].bake",
            "max_duration",
        ),
        (
            "two backends",
            edit(
                "  # file:\n  #   path: /var/run/cutover/checkout-weights.json",
                "  file:\n    path: /tmp/w.json",
            ),
            "backend",
            "2 backends",
        ),
        (
            "same label value for both sites",
            edit("  dr: dr\n", "  dr: primary\n"),
            "sites.dr",
            "must differ",
        ),
        (
            "bad Prometheus URL",
            edit(
                "url: http://prometheus.monitoring:9090",
                "url: prometheus:9090",
            ),
            "prometheus.url",
            "not an http(s) URL",
        ),
        (
            "bad requests selector",
            edit(
                "requests: http_requests_total{service=\"checkout\"}",
                "requests: rate(http_requests_total[5m])",
            ),
            "traffic.requests",
            "not a metric name",
        ),
        (
            "unknown on_inconclusive",
            edit("on_inconclusive: hold", "on_inconclusive: maybe"),
            "analysis.on_inconclusive",
            "maybe",
        ),
        (
            "zero failure_limit",
            edit("failure_limit: 2", "failure_limit: 0"),
            "analysis.failure_limit",
            "not a limit",
        ),
        (
            "gate with two kinds",
            edit(
                "    query: 'max(queue_depth{site=\"{{site}}\"})'",
                "    query: 'max(queue_depth{site=\"{{site}}\"})'\n    error_rate: { max: 1% }",
            ),
            "gates[3]",
            "exactly one",
        ),
        (
            "preflight without bounds",
            edit("    max: 60\n", "\n"),
            "preflight[0]",
            "no bound",
        ),
        (
            "bad webhook URL",
            edit(
                "webhook: https://hooks.example.com/services/cutover",
                "webhook: hooks.example.com",
            ),
            "notify[0].webhook",
            "not an http(s) URL",
        ),
    ];
    assert!(cases.len() >= 12);
    for (case, text, field, words) in cases {
        let errors = parse("policies/checkout.yaml", &text, config::Map::new())
            .expect_err(case)
            .0;
        let hit = errors.iter().find(|e| e.field == field);
        let Some(e) = hit else {
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
fn every_problem_is_reported_at_once() {
    let text = edit("  - weight: 50\n", "  - weight: 125\n").replacen(
        "failure_limit: 2",
        "failure_limit: 0",
        1,
    );
    let errors = parse("p.yaml", &text, config::Map::new()).unwrap_err().0;
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert!(
        fields.contains(&"stages[2].weight") && fields.contains(&"analysis.failure_limit"),
        "{fields:?}"
    );
}

#[test]
fn empty_or_non_yaml_files_are_refused() {
    assert!(parse("p.yaml", "", config::Map::new()).is_err());
    let e = parse("p.yaml", "service: [unclosed", config::Map::new()).unwrap_err();
    assert!(e.to_string().starts_with("p.yaml: "), "{e}");
}

/// A property test of the parser and validator: no input makes them panic. Bounded and
/// seeded (repeatable): mutations of the contract example (byte flips, cuts, insertions of
/// YAML-significant characters, duplicated lines) and plain garbage.
#[test]
fn no_input_makes_the_parser_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC07);
    let pieces: &[&str] = &[
        ":",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "'",
        "\"",
        "%",
        "\n",
        "  ",
        "#",
        "&a",
        "*a",
        "!!int ",
        "~",
        "0",
        "-1",
        "1e309",
        "NaN",
        "100%",
        "999999999999999999999",
        "weight: ",
        "bake: ",
        "{{site}}",
        "\t",
        "\u{0}",
    ];
    let lines: Vec<&str> = CHECKOUT.lines().collect();
    let mut accepted = 0;
    for i in 0..3000 {
        let text = match i % 4 {
            0 => {
                let mut b = CHECKOUT.as_bytes().to_vec();
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random::<u8>();
                }
                String::from_utf8_lossy(&b).to_string()
            }
            1 => {
                let mut t = CHECKOUT.to_string();
                for _ in 0..rng.random_range(1..6) {
                    let mut at = rng.random_range(0..t.len());
                    while !t.is_char_boundary(at) {
                        at -= 1;
                    }
                    t.insert_str(at, pieces[rng.random_range(0..pieces.len())]);
                }
                t
            }
            2 => {
                let mut ls = lines.clone();
                for _ in 0..rng.random_range(1..5) {
                    let a = rng.random_range(0..ls.len());
                    if rng.random_bool(0.5) {
                        ls.remove(a);
                    } else {
                        let l = ls[a];
                        ls.insert(rng.random_range(0..ls.len()), l);
                    }
                }
                ls.join("\n")
            }
            _ => (0..rng.random_range(0..200))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect(),
        };
        if parse("fuzz.yaml", &text, config::Map::new()).is_ok() {
            accepted += 1;
        }
    }
    // Most mutations are refused; some (inside comments) are harmless. Neither panics.
    assert!(accepted < 3000);
}
