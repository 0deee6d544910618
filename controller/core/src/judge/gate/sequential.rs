//! Sequential gates (`vs_dr:` in `error_rate:` or `latency:`): bad requests counted at both
//! sites, fed interval by interval to the stage's e-process (see [`crate::judge::eprocess`]),
//! which concludes harm (roll back), "no worse" (certify the stage) or not yet.

use std::time::{Duration, SystemTime};

use super::spec::{
    DEFAULT_HISTORY, DispersionSpec, GateBudget, MAX_HISTORY, MIN_HISTORY, Problems, SequentialSpec,
};
use super::{Gate, GateKind, GateMeasurement, GateResult, GateStatus, Unit};
use crate::judge::eprocess::{Conclusion, Dispersion, EProcess, Tally, Test};
use crate::metrics::source::{CountReading, Counted, Counts};
use crate::units::{Percent, Span};

/// A compiled sequential test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sequential {
    /// Relative tolerance: `ρ₀ = 1 + tolerance`.
    pub tolerance: f64,
    /// Absolute tolerance `δ` (0: none).
    pub absolute: f64,
    /// The gate's alpha over the whole run.
    pub alpha: f64,
    /// This gate's alpha per stage: `alpha / (stages x sequential gates)`, its share of the
    /// run's [`GateBudget`].
    pub alpha_stage: f64,
    /// The false-certification budget per stage.
    pub beta: f64,
    /// How far back DR's history is counted to calibrate the dispersion (tempering);
    /// `None` with `dispersion: poisson` (no tempering).
    pub history: Option<Duration>,
}

impl Sequential {
    /// The test of one stage.
    pub fn test(&self) -> Test {
        Test {
            ratio: 1.0 + self.tolerance,
            absolute: self.absolute,
            alpha: self.alpha_stage,
            beta: self.beta,
        }
    }

    /// A human description, e.g. `error rate <= DR x1.5 (sequential: ...)`.
    pub fn describe(&self, counted: Counted, unit: Unit) -> String {
        let what = match counted {
            Counted::SlowerThan(e) => format!("share slower than {}", Unit::Seconds.format(e)),
            Counted::Errors => "error rate".into(),
        };
        format!(
            "{what} <= DR x{}{} (sequential: rollback at alpha {} over the run, {:.2e} per stage; certify at beta {} per stage)",
            1.0 + self.tolerance,
            if self.absolute > 0.0 {
                format!(" or {}", unit.format(self.absolute))
            } else {
                String::new()
            },
            self.alpha,
            self.alpha_stage,
            self.beta
        )
    }
}

impl SequentialSpec {
    /// Checks the test's numbers and takes the test's share of `budget`'s alpha split;
    /// problems name `field.*`. A sequential gate has no
    /// `window`: with valid numbers and one, that is reported after the kind's problems.
    pub(super) fn compile(
        &self,
        field: &str,
        budget: &GateBudget,
        window: Option<Span>,
        p: &mut Problems,
    ) -> Option<Sequential> {
        let mut ok = true;
        let tol = self.tolerance.fraction();
        if !(tol > 0.0 && tol <= 10.0) {
            p.push(
                &format!("{field}.tolerance"),
                format!(
                    "{} is not a tolerance; write how much worse than DR is acceptable, between 1% and 1000%, e.g. 50%",
                    self.tolerance
                ),
            );
            ok = false;
        }
        for (name, v, what, example) in [
            ("alpha", self.alpha, "false-rollback", "0.01"),
            ("beta", self.beta, "false-certification", "0.05"),
        ] {
            if !(v > 0.0 && v <= 0.5) {
                p.push(
                    &format!("{field}.{name}"),
                    format!(
                        "{v} is not a {what} budget; write a probability above 0 and at most 0.5, e.g. {example}"
                    ),
                );
                ok = false;
            }
        }
        let absolute = self
            .absolute_tolerance
            .map(Percent::fraction)
            .unwrap_or(0.0);
        if absolute >= 1.0 {
            p.push(
                &format!("{field}.absolute_tolerance"),
                format!(
                    "{} accepts every rate; write a rate below 100%, e.g. 0.1%",
                    self.absolute_tolerance
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                ),
            );
            ok = false;
        }
        let history = self.history.map(|h| h.0).unwrap_or(DEFAULT_HISTORY);
        if !(MIN_HISTORY..=MAX_HISTORY).contains(&history) {
            p.push(
                &format!("{field}.history"),
                format!(
                    "{} is not a history to calibrate dispersion on; write 10m to 24h, e.g. 1h",
                    humantime::format_duration(history)
                ),
            );
            ok = false;
        }
        if ok && window.is_some() {
            p.push_last(
                "window",
                "a sequential gate has no window: it counts every request since the stage began; remove window",
            );
        }
        ok.then_some(Sequential {
            tolerance: tol,
            absolute,
            alpha: self.alpha,
            alpha_stage: self.alpha / budget.alpha_shares,
            beta: self.beta,
            history: match self.dispersion {
                DispersionSpec::Auto => Some(history),
                DispersionSpec::Poisson => None,
            },
        })
    }
}

impl Gate {
    /// Evaluates a sequential gate: feeds the interval's counts to the stage's e-process and
    /// reads its conclusion. `dr_baseline` is DR's earlier rate, for a stage where DR serves
    /// nothing. Pure apart from `ep`, which is the gate's state within the stage.
    pub fn evaluate_sequential(
        &self,
        m: &GateMeasurement,
        at: SystemTime,
        ep: &mut EProcess,
        dr_baseline: Option<f64>,
    ) -> GateResult {
        let min_requests = self.min_requests;
        let mut r = self.no_result();
        let GateKind::Sequential { test: seq, .. } = self.kind else {
            return r.error("not a sequential gate".into());
        };
        let Some(c) = &m.counts else {
            return r.error("no counts were taken".into());
        };
        let (p, d) = match (&c.primary, &c.dr) {
            (CountReading::Error(e), _) => {
                return r.error(format!(
                    "counting at the primary failed: {e}; the interval is counted with the next analysis"
                ));
            }
            (_, CountReading::Error(e)) => {
                return r.error(format!(
                    "counting at DR failed: {e}; the interval is counted with the next analysis"
                ));
            }
            (CountReading::Counted(p), CountReading::Counted(d)) => (*p, *d),
        };
        for (site, c) in [("primary", p), ("DR", d)] {
            if c.total < 0.0 || c.bad < 0.0 || !c.total.is_finite() || !c.bad.is_finite() {
                return r.error(format!(
                    "counted {} requests ({} bad) at the {site}: a count is a finite number of zero or more; check that the traffic: selectors select counters",
                    c.total, c.bad
                ));
            }
        }
        let tally = |c: Counts| Tally {
            total: c.total.max(0.0),
            bad: c.bad.clamp(0.0, c.total.max(0.0)),
        };
        let test = seq.test();
        let dispersion = match (seq.history, c.dispersion) {
            (None, _) => Dispersion::POISSON,
            (Some(_), Some(d)) => d,
            (Some(_), None) => {
                return r.error(
                    "DR's dispersion was not calibrated (its history could not be counted); the interval is counted with the next analysis".into(),
                );
            }
        };
        let dt = at
            .duration_since(ep.counted_to.unwrap_or(c.from))
            .unwrap_or_default();
        ep.observe(&test, dr_baseline, tally(p), tally(d), &dispersion, dt);
        ep.counted_to = Some(at);
        let j = ep.judge(test, dr_baseline);
        r.primary = ep.primary.rate();
        r.dr = dr_baseline.or(ep.dr.rate());
        r.max = match dr_baseline {
            Some(_) => Some(ep.bounds(&test, dr_baseline).0),
            None => r.dr.map(|d| (d * test.ratio).max(test.absolute)),
        };
        r.evidence = Some(j.harm);
        r.no_worse = Some(j.no_worse);
        r.suspect = j.suspect;
        let fmt = |t: Tally| match t.rate() {
            Some(x) => format!("{} ({}/{})", self.unit().format(x), t.bad, t.total),
            None => "no requests".into(),
        };
        let numbers = format!(
            "primary {} vs DR {} this stage",
            fmt(ep.primary),
            match (dr_baseline, ep.reference) {
                (Some(_), Some(r)) if r.total > 0.0 => format!(
                    "{} (earlier stages; harm only above {})",
                    fmt(r),
                    self.unit().format(ep.bounds(&test, dr_baseline).0)
                ),
                (Some(b), _) => format!("{} (earlier stages)", self.unit().format(b)),
                (None, Some(r)) if r.total > 0.0 => format!(
                    "{} (concurrent, at this stage; certification may also rest on DR's earlier stages, {}: no worse below {})",
                    fmt(ep.dr),
                    fmt(r),
                    self.unit().format(ep.bounds(&test, dr_baseline).1)
                ),
                (None, _) => fmt(ep.dr),
            }
        );
        let bound = format!(
            "DR x{}{}",
            test.ratio,
            if test.absolute > 0.0 {
                format!(" or {}", self.unit().format(test.absolute))
            } else {
                String::new()
            }
        );
        let tempered = if dispersion.kappa > 0.0 {
            format!(
                "; tempered for bursts (DR's bad requests per minute: dispersion index {:.1} over {} minutes of history)",
                dispersion.index, dispersion.blocks
            )
        } else {
            String::new()
        };
        match j.conclusion {
            Conclusion::Harm if j.detector => {
                r.status = GateStatus::Fail;
                r.decisive = true;
                r.reason = format!(
                    "the change detector saw harm start during the stage (after {} intervals; budget {:.2e}): the primary is worse than {bound}; {numbers}{tempered}",
                    ep.intervals, test.alpha
                );
            }
            Conclusion::Harm => {
                r.status = GateStatus::Fail;
                r.decisive = true;
                // Without concurrent DR traffic, say what the evidence cannot tell apart.
                let common = if dr_baseline.is_some() {
                    "; DR serves nothing at this stage, so a cause common to both sites (a shared dependency, a traffic peak) is not ruled out: analysis.probe checks it against DR's concurrent traffic before a rollback, and final_holdout judges the whole stage against it"
                } else {
                    ""
                };
                r.reason = format!(
                    "evidence of harm crossed its boundary (e >= 1/{:.2e}): the primary is worse than {bound}; {numbers}{tempered}{common}",
                    test.alpha
                );
            }
            Conclusion::NoWorse if p.total <= 0.0 => {
                r.reason = format!(
                    "certified no worse than {bound}, but no primary requests in the last interval; {numbers}"
                );
            }
            Conclusion::NoWorse if ep.primary.total < min_requests as f64 => {
                r.status = GateStatus::Undecided;
                r.reason = format!(
                    "certified, but {} primary requests this stage, fewer than min_requests {min_requests}; {numbers}",
                    ep.primary.total
                );
            }
            Conclusion::NoWorse => {
                r.status = GateStatus::Pass;
                r.reason = format!("certified no worse than {bound}; {numbers}");
            }
            Conclusion::Undecided if ep.primary.total <= 0.0 => {
                r.reason = format!("no primary requests counted yet; {numbers}");
            }
            Conclusion::Undecided => {
                r.status = GateStatus::Undecided;
                r.reason = format!(
                    "collecting evidence (harm {:.2}, no worse {:.2} of their boundaries); {numbers}",
                    j.harm, j.no_worse
                );
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::super::testing::{gate, gate_with, m, problems};
    use crate::judge::eprocess::EProcess;
    use crate::judge::gate::{GateBudget, GateKind, GateMeasurement, GateStatus, IntervalCounts};
    use crate::metrics::source::{CountReading, Counts, Reading};

    fn seq() -> serde_json::Value {
        serde_json::json!({"name": "s", "error_rate": {"vs_dr": {"tolerance": "50%", "alpha": 0.02, "beta": 0.1}}})
    }

    /// An interval's counts: `(total, bad)` at the primary and at DR.
    fn counted(p: (f64, f64), d: (f64, f64)) -> GateMeasurement {
        let c = |(total, bad)| {
            CountReading::Counted(Counts {
                total,
                bad,
                resets: 0,
            })
        };
        let mut x = m(Reading::Empty, Reading::Empty, Reading::Empty);
        x.counts = Some(IntervalCounts {
            from: SystemTime::UNIX_EPOCH,
            primary: c(p),
            dr: c(d),
            dispersion: Some(crate::judge::eprocess::Dispersion::POISSON),
        });
        x
    }

    /// Feeds the same interval `n` times to the gate compiled with `min_requests`; the last
    /// result.
    fn feed(x: &GateMeasurement, n: u64, min_requests: u64) -> GateStatus {
        let budget = GateBudget {
            min_requests,
            alpha_shares: 1.0,
        };
        let g = gate_with(seq(), budget);
        let mut ep = EProcess::default();
        let mut last = GateStatus::NoData;
        for i in 1..=n {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(15 * i);
            let r = g.evaluate_sequential(x, at, &mut ep, None);
            last = r.status;
            if r.status == GateStatus::Fail {
                assert!(r.decisive, "{r:?}");
                break;
            }
        }
        last
    }

    #[test]
    fn the_test_holds_the_numbers_of_its_spec() {
        let g = gate(seq());
        let GateKind::Sequential { test, .. } = g.kind else {
            panic!("{g:?}")
        };
        assert_eq!((test.tolerance, test.alpha, test.beta), (0.5, 0.02, 0.1));
        assert_eq!(test.test().ratio, 1.5);
    }

    #[test]
    fn harm_rolls_back_and_a_healthy_primary_is_certified() {
        let harmful = counted((300.0, 30.0), (700.0, 7.0));
        assert_eq!(feed(&harmful, 40, 100), GateStatus::Fail);
        let healthy = counted((500.0, 5.0), (500.0, 5.0));
        assert_eq!(feed(&healthy, 200, 100), GateStatus::Pass);
        // Certified, but with fewer primary requests over the stage than min_requests.
        assert_eq!(feed(&healthy, 200, 1_000_000), GateStatus::Undecided);
    }

    /// Harm at a stage where DR serves nothing says what it cannot rule out; harm against
    /// concurrent DR traffic does not.
    #[test]
    fn harm_without_concurrent_dr_names_the_common_cause_it_cannot_rule_out() {
        let g = gate(seq());
        let at = |i: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(15 * i);
        let mut ep = EProcess::default();
        let full = counted((1000.0, 50.0), (0.0, 0.0));
        let r = (1..=40)
            .map(|i| g.evaluate_sequential(&full, at(i), &mut ep, Some(0.01)))
            .find(|r| r.status == GateStatus::Fail)
            .expect("5 % against DR's earlier 1 % is harm");
        assert!(
            r.reason.contains("common to both sites")
                && r.reason.contains("final_holdout")
                && r.reason.contains("(earlier stages)"),
            "{}",
            r.reason
        );
        let mut ep = EProcess::default();
        let both = counted((300.0, 30.0), (700.0, 7.0));
        let r = (1..=40)
            .map(|i| g.evaluate_sequential(&both, at(i), &mut ep, None))
            .find(|r| r.status == GateStatus::Fail)
            .expect("harm against concurrent DR");
        assert!(!r.reason.contains("common to both sites"), "{}", r.reason);
    }

    #[test]
    fn failed_or_missing_counts_are_errors() {
        let g = gate(seq());
        let mut ep = EProcess::default();
        let at = SystemTime::UNIX_EPOCH;
        let none = m(Reading::Empty, Reading::Empty, Reading::Empty);
        let r = g.evaluate_sequential(&none, at, &mut ep, None);
        assert_eq!(r.status, GateStatus::Error);
        let mut x = counted((1.0, 0.0), (1.0, 0.0));
        x.counts.as_mut().unwrap().dr = CountReading::Error("down".into());
        let r = g.evaluate_sequential(&x, at, &mut ep, None);
        assert_eq!(r.status, GateStatus::Error);
        assert!(r.reason.starts_with("counting at DR failed: down"), "{r:?}");
        let r = g.evaluate_sequential(&counted((-1.0, 0.0), (1.0, 0.0)), at, &mut ep, None);
        assert_eq!(r.status, GateStatus::Error);
        let bounds = gate(serde_json::json!({"name": "g", "error_rate": {"max": "1%"}}));
        let r = bounds.evaluate_sequential(&x, at, &mut ep, None);
        assert_eq!(r.reason, "not a sequential gate");
    }

    #[test]
    fn problems_name_the_test_field_and_the_window_comes_last() {
        let fields = |j| -> Vec<String> { problems(j).into_iter().map(|p| p.field).collect() };
        assert_eq!(
            fields(serde_json::json!({"name": "g", "error_rate": {"vs_dr": {
                "tolerance": "0%", "alpha": 0.7, "beta": 0, "absolute_tolerance": "100%"}}})),
            [
                "error_rate.vs_dr.tolerance",
                "error_rate.vs_dr.alpha",
                "error_rate.vs_dr.beta",
                "error_rate.vs_dr.absolute_tolerance"
            ]
        );
        let e = problems(
            serde_json::json!({"name": "g", "window": "1m", "error_rate": {"vs_dr": {"tolerance": "50%"}}}),
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "window");
        assert!(e[0].message.contains("no window"));
        // As before the gates were split: a window is reported only once the test's own
        // numbers are valid.
        assert_eq!(
            fields(
                serde_json::json!({"name": "g", "window": "1m", "error_rate": {"vs_dr": {"tolerance": "50%", "alpha": 0.9}}})
            ),
            ["error_rate.vs_dr.alpha"]
        );
    }
}
