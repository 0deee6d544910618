//! Approval gates on stages: `approval: manual` (people run `cutover approve`), or
//! `approval: {webhook: URL}` (a POST answered 2xx approves), `approvals: N` distinct
//! people, `approval_timeout` before the run holds. Model, checks and compiled rule.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::Problems;
use super::{Policy, StageSpec};

/// Who approves a stage before its weight is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ApprovalSpec {
    /// `manual`: people approve with `cutover approve POLICY [--stage N] [--as NAME]`.
    Mode(ApprovalMode),
    /// `{webhook: URL}`: the run POSTs its state every interval; a 2xx answer approves.
    Webhook(WebhookApproval),
}

/// The keyword form of [`ApprovalSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Wait for `cutover approve`.
    Manual,
}

/// `approval: {webhook: URL}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookApproval {
    /// An http(s) URL; POSTed the run's state as JSON, a 2xx answer approves the stage.
    pub webhook: String,
}

/// A stage's compiled approval rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRule {
    /// This many distinct people must run `cutover approve`.
    Manual {
        /// Distinct approvers needed, 1 to 5.
        approvals: u8,
    },
    /// A 2xx answer from this URL approves.
    Webhook {
        /// The URL.
        url: String,
    },
}

/// A stage's approval rule and how long the run waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageApproval {
    /// Who approves.
    pub rule: ApprovalRule,
    /// Waiting longer than this holds the run (exit 5); `None`: no limit but the deadline.
    pub timeout: Option<Duration>,
}

impl StageApproval {
    /// What the rule asks for, in words: `2 approvals (cutover approve)`.
    pub fn describe(&self) -> String {
        match &self.rule {
            ApprovalRule::Manual { approvals: 1 } => "an approval (cutover approve)".into(),
            ApprovalRule::Manual { approvals } => {
                format!("{approvals} approvals by distinct people (cutover approve)")
            }
            ApprovalRule::Webhook { url } => {
                format!("a 2xx answer from {}", super::redact_url(url))
            }
        }
    }
}

/// Checks every stage's approval fields and compiles them, keyed by stage index.
pub(super) fn approvals(p: &Policy, out: &mut Problems) -> BTreeMap<usize, StageApproval> {
    let mut compiled = BTreeMap::new();
    for (i, s) in p.stages.iter().enumerate() {
        if let Some(a) = stage(i, s, out) {
            compiled.insert(i, a);
        }
    }
    compiled
}

fn stage(i: usize, s: &StageSpec, out: &mut Problems) -> Option<StageApproval> {
    let f = |n: &str| format!("stages[{i}].{n}");
    let Some(spec) = &s.approval else {
        if let Some(n) = s.approvals {
            out.push(
                &f("approvals"),
                format!("{n} without `approval: manual`; add `approval: manual` to this stage or remove `approvals`"),
            );
        }
        if let Some(t) = s.approval_timeout {
            out.push(
                &f("approval_timeout"),
                format!(
                    "{t} without `approval`; add `approval: manual` (or a webhook) or remove it"
                ),
            );
        }
        return None;
    };
    let timeout = match s.approval_timeout {
        Some(t) if t.get() < Duration::from_secs(1) || t.get() > Duration::from_secs(7 * 86400) => {
            out.push(
                &f("approval_timeout"),
                format!("{t} is outside 1s to 7d; write e.g. 2h"),
            );
            None
        }
        t => t.map(|t| t.get()),
    };
    let rule = match spec {
        ApprovalSpec::Mode(ApprovalMode::Manual) => {
            let n = s.approvals.unwrap_or(1);
            if !(1..=5).contains(&n) {
                out.push(
                    &f("approvals"),
                    format!("{n} is not 1 to 5; two-person approval is `approvals: 2`"),
                );
                return None;
            }
            ApprovalRule::Manual { approvals: n as u8 }
        }
        ApprovalSpec::Webhook(w) => {
            if s.approvals.is_some() {
                out.push(
                    &f("approvals"),
                    "counts people, and a webhook is one approver; remove it, or use `approval: manual`".into(),
                );
                return None;
            }
            let url = w.webhook.trim();
            let ok = http_url_ok(url);
            if !ok {
                out.push(
                    &f("approval.webhook"),
                    format!(
                        "`{}` is not an http:// or https:// URL with a host; write e.g. https://approvals.example/cutover",
                        super::redact_url(url)
                    ),
                );
                return None;
            }
            ApprovalRule::Webhook {
                url: url.to_string(),
            }
        }
    };
    Some(StageApproval { rule, timeout })
}

/// An http(s) URL with a host and no whitespace (the core has no URL parser dependency;
/// the driver parses it for real, and reports a failure to parse as a refused approval).
fn http_url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_check_wants_a_scheme_and_a_host() {
        assert!(http_url_ok("https://a.example/x"));
        assert!(http_url_ok("http://127.0.0.1:8080"));
        assert!(!http_url_ok("ftp://a"));
        assert!(!http_url_ok("https:///x"));
        assert!(!http_url_ok("https://a b"));
    }
}
