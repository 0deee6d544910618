//! `analysis.probe` and `analysis.probe_weight`: defaults, and bad values refused with the
//! field named.

use super::parse;
use super::table_tests::{CHECKOUT, edit};

#[test]
fn a_bad_probe_is_refused_with_the_field_named() {
    let cases = [
        (
            "probe_weight not a stage of the plan",
            edit(
                "  on_inconclusive: hold ",
                "  probe_weight: 60%\n  on_inconclusive: hold ",
            ),
            "analysis.probe_weight",
            "not the weight of a judged stage below the last one (100%; stages below: 10%, 25%, 50%, 75%)",
        ),
        (
            "probe longer than half an hour",
            edit(
                "  on_inconclusive: hold ",
                "  probe: 2h\n  on_inconclusive: hold ",
            ),
            "analysis.probe",
            "2h",
        ),
        (
            "probe shorter than two analyses",
            edit(
                "  on_inconclusive: hold ",
                "  probe: 45s\n  on_inconclusive: hold ",
            ),
            "analysis.probe",
            "45s is shorter than two analyses at the last stage (100%, interval 30s)",
        ),
        (
            "probe malformed",
            edit(
                "  on_inconclusive: hold ",
                "  probe: soon\n  on_inconclusive: hold ",
            ),
            "analysis.probe",
            "`soon` is not a duration",
        ),
    ];
    for (case, text, field, words) in cases {
        let errors = parse("policies/checkout.yaml", &text, config::Map::new())
            .expect_err(case)
            .0;
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.message.contains(words)),
            "{case}: {errors:?}"
        );
    }
}

#[test]
fn a_probe_defaults_to_two_minutes_at_the_stage_nearest_half() {
    let probe = |text: &str| {
        parse("p.yaml", text, config::Map::new())
            .unwrap()
            .plan
            .probe
            .map(|p| (p.weight.get(), p.duration.as_secs()))
    };
    assert_eq!(probe(CHECKOUT), Some((50, 120)));
    let with = |line: &str| {
        edit(
            "  on_inconclusive: hold ",
            &format!("  {line}\n  on_inconclusive: hold "),
        )
    };
    assert_eq!(probe(&with("probe_weight: 75%")), Some((75, 120)));
    assert_eq!(probe(&with("probe: 90s")), Some((50, 90)));
    assert_eq!(probe(&with("probe: 0s")), None, "0s turns probes off");
    // With a final holdout, its stage (98 %) is the one probed, from below it.
    assert_eq!(
        probe(&format!("{CHECKOUT}\nfinal_holdout: 2%\n")),
        Some((50, 120))
    );
    // Nearest 50 %, the higher on a tie (40 and 60 are both 10 points away).
    let stages = CHECKOUT
        .replacen("  - weight: 25\n", "  - weight: 40\n", 1)
        .replacen("  - weight: 50\n", "  - weight: 60\n", 1);
    assert_eq!(probe(&stages), Some((60, 120)));
}
