//! Table-driven: broken variants of the contract example, each error naming its field.

use std::time::Duration;

use super::*;
use crate::Span;

pub(super) const CHECKOUT: &str = include_str!("../../../../policies/checkout.yaml");

pub(super) fn edit(from: &str, to: &str) -> String {
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
        (
            "interval of a nanosecond",
            edit("interval: 30s", "interval: 1ns"),
            "defaults.interval",
            "shorter than 1s",
        ),
        (
            "stage interval of an hour and a half",
            edit("    bake: 10m\n", "    bake: 10m\n    interval: 90m\n"),
            "stages[2].interval",
            "longer than 1h",
        ),
        (
            "gate window of 10^11 days",
            edit(
                "error_rate: { max: 1% }",
                "window: 100000000000days\n    error_rate: { max: 1% }",
            ),
            "gates[0].window",
            "longer than 30 days",
        ),
        (
            "gate window below a second",
            edit(
                "error_rate: { max: 1% }",
                "window: 10ms\n    error_rate: { max: 1% }",
            ),
            "gates[0].window",
            "shorter than 1s",
        ),
        (
            "bake of ten years",
            edit("bake: 5m ", "bake: 3650days "),
            "defaults.bake",
            "longer than 7days",
        ),
        (
            "rollback max_attempts of u32::MAX",
            edit(
                "mode: immediate",
                "mode: immediate\n  max_attempts: 4294967295",
            ),
            "rollback.max_attempts",
            "4294967295 is above 100",
        ),
        (
            "consecutive_error_limit that never trips",
            edit(
                "consecutive_error_limit: 3",
                "consecutive_error_limit: 100000",
            ),
            "analysis.consecutive_error_limit",
            "above 100",
        ),
        (
            "prometheus timeout of a day",
            edit("timeout: 10s", "timeout: 1day"),
            "prometheus.timeout",
            "longer than 5m",
        ),
        (
            "NaN bound",
            edit("    max: 1000\n", "    max: .nan\n"),
            "gates[3].max",
            "`.nan` is not a number a policy can use",
        ),
        (
            "infinite bound",
            edit("    max: 1000\n", "    max: -.inf\n"),
            "gates[3].max",
            "NaN or infinite",
        ),
        (
            "float overflow",
            edit("    max: 60\n", "    max: 1e999\n"),
            "preflight[0].max",
            "`1e999`",
        ),
        (
            "{{site}} in a preflight query",
            edit(
                "query: max(pg_replication_lag_seconds)",
                "query: 'max(pg_replication_lag_seconds{site=\"{{site}}\"})'",
            ),
            "preflight[0].query",
            "runs once, for no site",
        ),
        (
            "final_holdout not a whole percent",
            format!("{CHECKOUT}\nfinal_holdout: 2.5%\n"),
            "final_holdout",
            "whole percent",
        ),
        (
            "final_holdout above 50%",
            format!("{CHECKOUT}\nfinal_holdout: 60%\n"),
            "final_holdout",
            "from 1% to 50%",
        ),
        (
            "final_holdout at or below the stage before the last",
            format!("{CHECKOUT}\nfinal_holdout: 25%\n"),
            "final_holdout",
            "not above the stage before it (75%)",
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
fn a_nul_byte_is_refused_with_its_line_and_column_not_read_as_the_end() {
    // Before the fix the loader stopped at the NUL: the policy validated, and ran with
    // the default `on_signal: hold` instead of the `rollback` written after it.
    let text = format!("{CHECKOUT}\n\0\non_signal: rollback\n");
    let line = text[..text.find('\0').unwrap()].lines().count() + 1;
    let e = parse("p.yaml", &text, config::Map::new()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("p.yaml: line {line}, column 1: a NUL byte")),
        "{e}"
    );
    for c in ['\u{1}', '\u{7f}', '\u{85}', '\u{1b}'] {
        let text = edit("service: checkout", &format!("service: check{c}out"));
        let e = parse("p.yaml", &text, config::Map::new()).unwrap_err();
        assert!(e.to_string().contains("line 3, column 15"), "{c:?}: {e}");
    }
    // Tabs and CRLF line ends are fine.
    let crlf = CHECKOUT.replace('\n', "\r\n").replace("# The", "#\tThe");
    parse("p.yaml", &crlf, config::Map::new()).unwrap();
}

#[test]
fn a_policy_that_is_not_utf8_is_refused_with_its_line_and_column() {
    let path = std::env::temp_dir().join(format!("cutover-latin1-{}.yaml", std::process::id()));
    let mut bytes = CHECKOUT
        .replacen("service: checkout", "service: caf", 1)
        .into_bytes();
    let at = bytes.windows(3).position(|w| w == b"caf").unwrap() + 3;
    bytes.insert(at, 0xE9); // é in Latin-1
    std::fs::write(&path, bytes).unwrap();
    let e = load(&path).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(
        e.contains("line 3, column 13: not UTF-8 (byte 0xE9); save the policy as UTF-8"),
        "{e}"
    );
}

#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let p = parse("p.yaml", &format!("\u{feff}{CHECKOUT}"), config::Map::new()).unwrap();
    assert_eq!(p.policy.service, "checkout");
}

#[test]
fn an_alias_bomb_is_refused_quickly_and_small() {
    // Eight levels of ten aliases: 10^8 values once expanded, in under 1 KB of text.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let text = format!("{CHECKOUT}\n{bomb}");
    let t = std::time::Instant::now();
    let e = parse("p.yaml", &text, config::Map::new()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let e = &e.0[0];
    assert_eq!(e.field, "a4[0]", "{e}");
    assert!(e.message.contains("more than 20000 values"), "{e}");
    // A policy that uses an alias or two is fine.
    let text =
        edit("  bake: 5m ", "  bake: &bake 5m ").replacen("    bake: 10m", "    bake: *bake", 1);
    let p = parse("p.yaml", &text, config::Map::new()).unwrap();
    assert_eq!(p.policy.stages[2].bake, Some(Span::secs(300)));
}

#[test]
fn oversized_policies_are_refused() {
    let text = format!("{CHECKOUT}\n# {}\n", "x".repeat(screen::MAX_POLICY_BYTES));
    let e = parse("p.yaml", &text, config::Map::new()).unwrap_err();
    assert!(
        e.to_string().contains("more than the 1048576 accepted"),
        "{e}"
    );
}

#[test]
fn secrets_in_invalid_urls_are_not_echoed() {
    let text = edit(
        "url: http://prometheus.monitoring:9090",
        "url: ftp://admin:hunter2@prometheus.monitoring:9090/api?token=s3cret",
    )
    .replacen(
        "webhook: https://hooks.example.com/services/cutover",
        "webhook: hooks.slack.com/services/T000/B000/XXXXSECRET",
        1,
    );
    let e = parse("p.yaml", &text, config::Map::new())
        .unwrap_err()
        .to_string();
    for secret in ["admin", "hunter2", "s3cret", "XXXXSECRET", "T000"] {
        assert!(!e.contains(secret), "`{secret}` echoed: {e}");
    }
    assert!(
        e.contains(
            "prometheus.url: `ftp://***@prometheus.monitoring:9090/…` is not an http(s) URL"
        ),
        "{e}"
    );
    assert!(
        e.contains("notify[0].webhook: `hooks.slack.com/…` is not an http(s) URL"),
        "{e}"
    );
    assert_eq!(redact_url("http://a:b@h:1"), "http://***@h:1");
    assert_eq!(redact_url("prometheus:9090"), "prometheus:9090");
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

/// Nested aliases: `levels` anchors of `fanout` references each to the one before, so the
/// last expands to `fanout^levels` values; written as top-level keys after the policy.
fn alias_bomb(levels: u32, fanout: usize, leaf: &str) -> String {
    let mut bomb = format!("bomb0: &b0 [{}]\n", vec![leaf; fanout].join(", "));
    for i in 1..levels {
        let refs = vec![format!("*b{}", i - 1); fanout].join(", ");
        bomb.push_str(&format!("bomb{i}: &b{i} [{refs}]\n"));
    }
    bomb
}

/// A property test of the parser and validator: no input makes them panic, and none takes
/// long. Bounded and seeded (repeatable): mutations of the contract example (byte flips,
/// cuts, insertions of YAML-significant characters, control bytes, BOMs, extreme numbers
/// and durations, duplicated lines), alias bombs, inputs grown to 64 KB, and plain garbage.
/// Alias bombs that expand past the limit are refused as such. (The memory bound, 64 MB
/// for any 64 KB input, is measured on the `cutover validate` process in
/// `tests/tests/cli_e2e.rs`, where peak memory can be read reliably.)
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
        "\u{1}",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\u{feff}",
        "\r\n",
        ".nan",
        ".inf",
        "-.inf",
        "1e-320",
        "4294967295",
        "18446744073709551616",
        "-9223372036854775809",
        "1ns",
        "100000000000days",
        "584942417355y",
        "&b ",
        "*b",
        "<<: *a",
        "!!binary ",
        "? ",
        "---\n",
    ];
    let lines: Vec<&str> = CHECKOUT.lines().collect();
    let mut accepted = 0;
    for i in 0..3000 {
        let text = match i % 6 {
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
            3 => (0..rng.random_range(0..200))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect(),
            4 => {
                // An alias bomb after the policy; refused when it expands past the limit.
                let levels = rng.random_range(2..10);
                let fanout = rng.random_range(2..16);
                let leaf = [
                    "x",
                    "{a: 1, b: [2, 3]}",
                    &"z".repeat(rng.random_range(1..4000)),
                ][rng.random_range(0..3)]
                .to_string();
                let text = format!("{CHECKOUT}\n{}", alias_bomb(levels, fanout, &leaf));
                if (fanout as f64).powi(levels as i32) > screen::MAX_VALUES as f64 {
                    let e = parse("fuzz.yaml", &text, config::Map::new())
                        .expect_err("an alias bomb is refused");
                    assert!(e.to_string().contains("aliases"), "{levels}x{fanout}: {e}");
                }
                text
            }
            _ => {
                // Grown to about 64 KB: a repeated line, piece or the whole policy.
                let unit = match rng.random_range(0..3) {
                    0 => lines[rng.random_range(0..lines.len())].to_string() + "\n",
                    1 => pieces[rng.random_range(0..pieces.len())].to_string(),
                    _ => CHECKOUT.to_string(),
                };
                let mut t = String::from(CHECKOUT);
                while t.len() + unit.len() <= 64 * 1024 {
                    t.push_str(&unit);
                }
                t
            }
        };
        let started = std::time::Instant::now();
        if parse("fuzz.yaml", &text, config::Map::new()).is_ok() {
            accepted += 1;
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "case {i} took {took:?}: {:?}",
            &text[..text.len().min(200)]
        );
    }
    // Most mutations are refused; some (inside comments) are harmless. Neither panics.
    assert!(accepted < 3000);
}

#[test]
fn a_final_holdout_judges_the_last_stage_below_100_then_writes_100() {
    let p = parse(
        "p.yaml",
        &format!("{CHECKOUT}\nfinal_holdout: 2%\n"),
        config::Map::new(),
    )
    .unwrap();
    let stages: Vec<(u8, bool)> = p
        .plan
        .stages
        .iter()
        .map(|s| (s.weight.get(), s.judged))
        .collect();
    assert_eq!(
        stages,
        [
            (10, true),
            (25, true),
            (50, true),
            (75, true),
            (98, true),
            (100, false)
        ]
    );
    // The holdout stage keeps the last stage's timings.
    assert_eq!(p.plan.stages[4].bake, p.plan.stages[5].bake);
}
