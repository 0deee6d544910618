//! From gate results to an analysis verdict, and from analysis verdicts to a stage verdict.
//!
//! Rules (DESIGN.md, "Judging"):
//! * no data is never a pass: any gate without data makes the analysis [`AnalysisVerdict::NoData`];
//! * a gate failure counts toward `failure_limit`; reaching it is a rollback;
//! * query errors in a row count toward `consecutive_error_limit`; reaching it is a
//!   rollback (fail-safe: we cannot see, so we stop exposing users to the primary);
//! * a failure that DR shares (DR breaches the same absolute bound) is a global incident:
//!   freeze rather than roll back into a site that is just as broken.

use serde::{Deserialize, Serialize};

use crate::judge::gate::{GateResult, GateStatus};

/// The verdict of one analysis (one evaluation of every gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum AnalysisVerdict {
    /// Every gate passed with enough data.
    Pass,
    /// At least one gate had no data (and none failed or errored).
    NoData {
        /// Which gates, and why.
        reason: String,
    },
    /// At least one gate's query failed (and none failed its bounds).
    Error {
        /// Which gates, and why.
        reason: String,
    },
    /// At least one gate failed on the primary alone.
    Fail {
        /// The failing gates, and why.
        reason: String,
    },
    /// Gates failed, and DR breaches the same bounds: the incident is global.
    GlobalIncident {
        /// The gates, and the values on both sites.
        reason: String,
    },
    /// A sequential gate's evidence of harm crossed its boundary: roll back now.
    Harm {
        /// The gates, and the evidence.
        reason: String,
    },
    /// Sequential gates are still collecting evidence (nothing failed, nothing lacks data).
    Undecided {
        /// The gates, and how far their evidence is.
        reason: String,
    },
}

/// Combines the gates' results of one analysis.
pub fn summarize(results: &[GateResult]) -> AnalysisVerdict {
    let with =
        |s: GateStatus| -> Vec<&GateResult> { results.iter().filter(|r| r.status == s).collect() };
    // Gates failing for the same reason (Prometheus down) are listed once.
    let list = |rs: &[&GateResult]| -> String {
        let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
        for r in rs {
            match groups.iter_mut().find(|(_, reason)| *reason == r.reason) {
                Some((names, _)) => names.push(&r.name),
                None => groups.push((vec![&r.name], &r.reason)),
            }
        }
        groups
            .iter()
            .map(|(names, reason)| format!("{}: {reason}", names.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let failed = with(GateStatus::Fail);
    if !failed.is_empty() {
        let primary_only: Vec<&GateResult> =
            failed.iter().copied().filter(|r| !r.dr_breaching).collect();
        let decisive: Vec<&GateResult> = primary_only
            .iter()
            .copied()
            .filter(|r| r.decisive)
            .collect();
        if !decisive.is_empty() {
            return AnalysisVerdict::Harm {
                reason: list(&decisive),
            };
        }
        return if primary_only.is_empty() {
            AnalysisVerdict::GlobalIncident {
                reason: format!("DR breaches the same bounds: {}", list(&failed)),
            }
        } else {
            AnalysisVerdict::Fail {
                reason: list(&primary_only),
            }
        };
    }
    let errors = with(GateStatus::Error);
    if !errors.is_empty() {
        return AnalysisVerdict::Error {
            reason: list(&errors),
        };
    }
    let nodata = with(GateStatus::NoData);
    if !nodata.is_empty() {
        return AnalysisVerdict::NoData {
            reason: list(&nodata),
        };
    }
    let undecided = with(GateStatus::Undecided);
    if !undecided.is_empty() {
        return AnalysisVerdict::Undecided {
            reason: list(&undecided),
        };
    }
    if results.is_empty() {
        return AnalysisVerdict::NoData {
            reason: "no gate was evaluated".into(),
        };
    }
    AnalysisVerdict::Pass
}

/// Counts kept for the current stage; reset when a new stage starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounters {
    /// Analyses at this stage.
    pub analyses: u32,
    /// Analyses that failed (not necessarily in a row).
    pub failures: u32,
    /// Analyses in a row whose queries failed.
    pub consecutive_errors: u32,
    /// Analyses in a row in which every gate passed.
    pub consecutive_passes: u32,
    /// Probes at this stage (`analysis.probe`).
    #[serde(default)]
    pub probes: u32,
}

/// The limits of `analysis:` in a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed analyses before rollback.
    pub failure_limit: u32,
    /// Query errors in a row before rollback.
    pub consecutive_error_limit: u32,
}

/// What the stage should do after an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum StageVerdict {
    /// Every gate passed: the stage may advance once its bake time is over.
    Passing,
    /// Keep the weight and look again after the interval.
    Hold {
        /// Why the stage cannot advance yet.
        reason: String,
    },
    /// Put all traffic back on DR.
    Rollback {
        /// The breach.
        reason: String,
    },
    /// Freeze traffic where it is and alert: DR is breaching too.
    Freeze {
        /// The global incident.
        reason: String,
    },
}

/// Updates the stage's counters with one analysis and says what to do. Pure.
pub fn judge(
    counters: &mut StageCounters,
    verdict: &AnalysisVerdict,
    limits: Limits,
) -> StageVerdict {
    counters.analyses += 1;
    if !matches!(verdict, AnalysisVerdict::Error { .. }) {
        counters.consecutive_errors = 0;
    }
    if !matches!(verdict, AnalysisVerdict::Pass) {
        counters.consecutive_passes = 0;
    }
    match verdict {
        AnalysisVerdict::Pass => {
            counters.consecutive_passes += 1;
            StageVerdict::Passing
        }
        AnalysisVerdict::NoData { reason } => StageVerdict::Hold {
            reason: format!("no data, never a pass: {reason}"),
        },
        AnalysisVerdict::Error { reason } => {
            counters.consecutive_errors += 1;
            if counters.consecutive_errors >= limits.consecutive_error_limit {
                StageVerdict::Rollback {
                    reason: format!(
                        "{} analyses in a row could not query their gates (consecutive_error_limit {}): {reason}",
                        counters.consecutive_errors, limits.consecutive_error_limit
                    ),
                }
            } else {
                StageVerdict::Hold {
                    reason: format!(
                        "query error {}/{}: {reason}",
                        counters.consecutive_errors, limits.consecutive_error_limit
                    ),
                }
            }
        }
        AnalysisVerdict::Fail { reason } => {
            counters.failures += 1;
            if counters.failures >= limits.failure_limit {
                StageVerdict::Rollback {
                    reason: format!(
                        "failed analysis {}/{} (failure_limit): {reason}",
                        counters.failures, limits.failure_limit
                    ),
                }
            } else {
                StageVerdict::Hold {
                    reason: format!(
                        "failed analysis {}/{}: {reason}",
                        counters.failures, limits.failure_limit
                    ),
                }
            }
        }
        AnalysisVerdict::Harm { reason } => {
            counters.failures += 1;
            StageVerdict::Rollback {
                reason: format!("anytime-valid evidence of harm: {reason}"),
            }
        }
        AnalysisVerdict::Undecided { reason } => StageVerdict::Hold {
            reason: format!("sequential gates undecided: {reason}"),
        },
        AnalysisVerdict::GlobalIncident { reason } => StageVerdict::Freeze {
            reason: format!("global incident, not rolling back into DR: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: GateStatus, dr_breaching: bool) -> GateResult {
        GateResult {
            name: "g".into(),
            status,
            primary: None,
            dr: None,
            min: None,
            max: None,
            dr_breaching,
            unit: crate::judge::gate::Unit::Number,
            reason: "r".into(),
            decisive: false,
            evidence: None,
            no_worse: None,
            suspect: false,
        }
    }

    const LIMITS: Limits = Limits {
        failure_limit: 2,
        consecutive_error_limit: 3,
    };

    #[test]
    fn summary_precedence() {
        use GateStatus::*;
        assert_eq!(summarize(&[result(Pass, false)]), AnalysisVerdict::Pass);
        assert!(matches!(summarize(&[]), AnalysisVerdict::NoData { .. }));
        assert!(matches!(
            summarize(&[result(Pass, false), result(NoData, false)]),
            AnalysisVerdict::NoData { .. }
        ));
        assert!(matches!(
            summarize(&[result(NoData, false), result(Error, false)]),
            AnalysisVerdict::Error { .. }
        ));
        assert!(matches!(
            summarize(&[result(Error, false), result(Fail, false)]),
            AnalysisVerdict::Fail { .. }
        ));
        assert!(matches!(
            summarize(&[result(Fail, true)]),
            AnalysisVerdict::GlobalIncident { .. }
        ));
        assert!(matches!(
            summarize(&[result(Fail, true), result(Fail, false)]),
            AnalysisVerdict::Fail { .. }
        ));
    }

    #[test]
    fn failure_limit_counts_non_consecutive_failures() {
        let mut c = StageCounters::default();
        let fail = AnalysisVerdict::Fail { reason: "x".into() };
        assert!(matches!(
            judge(&mut c, &fail, LIMITS),
            StageVerdict::Hold { .. }
        ));
        assert_eq!(
            judge(&mut c, &AnalysisVerdict::Pass, LIMITS),
            StageVerdict::Passing
        );
        assert!(matches!(
            judge(&mut c, &fail, LIMITS),
            StageVerdict::Rollback { .. }
        ));
    }

    #[test]
    fn consecutive_errors_reset_on_a_good_analysis() {
        let mut c = StageCounters::default();
        let err = AnalysisVerdict::Error {
            reason: "down".into(),
        };
        judge(&mut c, &err, LIMITS);
        judge(&mut c, &err, LIMITS);
        judge(
            &mut c,
            &AnalysisVerdict::NoData { reason: "n".into() },
            LIMITS,
        );
        assert_eq!(c.consecutive_errors, 0);
        judge(&mut c, &err, LIMITS);
        judge(&mut c, &err, LIMITS);
        assert!(matches!(
            judge(&mut c, &err, LIMITS),
            StageVerdict::Rollback { .. }
        ));
    }

    #[test]
    fn no_data_holds_and_global_incident_freezes() {
        let mut c = StageCounters::default();
        let v = judge(
            &mut c,
            &AnalysisVerdict::NoData {
                reason: "NaN".into(),
            },
            LIMITS,
        );
        assert!(matches!(v, StageVerdict::Hold { .. }));
        assert_eq!(c.consecutive_passes, 0);
        let v = judge(
            &mut c,
            &AnalysisVerdict::GlobalIncident {
                reason: "both".into(),
            },
            LIMITS,
        );
        assert!(matches!(v, StageVerdict::Freeze { .. }));
    }
}
