//! Table-driven: the approval fields of stages, refused with their field named, and compiled.

use std::time::Duration;

use super::table_tests::edit;
use super::*;

#[test]
fn broken_approval_fields_are_refused_with_the_field_named() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "approvals without approval",
            edit("  - weight: 25\n", "  - weight: 25\n    approvals: 2\n"),
            "stages[1].approvals",
            "add `approval: manual`",
        ),
        (
            "six approvers",
            edit(
                "  - weight: 25\n",
                "  - weight: 25\n    approval: manual\n    approvals: 6\n",
            ),
            "stages[1].approvals",
            "6 is not 1 to 5",
        ),
        (
            "approval webhook not a URL",
            edit(
                "  - weight: 25\n",
                "  - weight: 25\n    approval: { webhook: approvals.example }\n",
            ),
            "stages[1].approval.webhook",
            "not an http:// or https:// URL",
        ),
        (
            "approvals with a webhook",
            edit(
                "  - weight: 25\n",
                "  - weight: 25\n    approval: { webhook: 'https://a.example/x' }\n    approvals: 2\n",
            ),
            "stages[1].approvals",
            "a webhook is one approver",
        ),
        (
            "approval_timeout without approval",
            edit(
                "  - weight: 25\n",
                "  - weight: 25\n    approval_timeout: 1h\n",
            ),
            "stages[1].approval_timeout",
            "without `approval`",
        ),
        (
            "approval_timeout too long",
            edit(
                "  - weight: 25\n",
                "  - weight: 25\n    approval: manual\n    approval_timeout: 30d\n",
            ),
            "stages[1].approval_timeout",
            "outside 1s to 7d",
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
        assert!(line.contains(words), "{case}: `{line}` lacks `{words}`");
    }
}

#[test]
fn approvals_compile_per_stage_with_their_timeout() {
    let text = edit(
        "  - weight: 50\n",
        "  - weight: 50\n    approval: manual\n    approvals: 2\n    approval_timeout: 4h\n",
    )
    .replacen(
        "  - weight: 100\n",
        "  - weight: 100\n    approval: { webhook: 'https://approvals.example/cutover?token=s3cret' }\n",
        1,
    );
    let p = parse("policies/checkout.yaml", &text, config::Map::new()).expect("valid");
    let a = &p.plan.approvals;
    assert_eq!(a.len(), 2);
    assert_eq!(
        a[&2].rule,
        crate::policy::ApprovalRule::Manual { approvals: 2 }
    );
    assert_eq!(a[&2].timeout, Some(Duration::from_secs(4 * 3600)));
    assert!(matches!(
        a[&4].rule,
        crate::policy::ApprovalRule::Webhook { .. }
    ));
    assert!(!a[&4].describe().contains("s3cret"), "{}", a[&4].describe());
    // A misspelt keyword is refused, naming the stage.
    let bad = edit("  - weight: 50\n", "  - weight: 50\n    approval: manul\n");
    let errors = parse("policies/checkout.yaml", &bad, config::Map::new())
        .expect_err("a typo")
        .0;
    assert!(
        errors.iter().any(|e| e.field.starts_with("stages[2]")),
        "{errors:?}"
    );
}
