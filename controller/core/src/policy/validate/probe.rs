//! `analysis.probe` and `analysis.probe_weight`: the probe of the last judged stage.

use super::{Problems, SpanBounds, secs};
use crate::policy::model::Policy;
use crate::policy::plan::Stage;
use crate::weights::StageWeight;

/// `analysis.probe`: off, or long enough for a few analyses and short enough that a
/// regression is not served at the probe's weight for long.
const PROBE: SpanBounds = SpanBounds {
    min: secs(0),
    max: secs(1800),
    why: "how long a probe judges the primary against DR's concurrent traffic",
    example: "2m",
};
/// `analysis.probe` and `analysis.probe_weight` against the resolved stages: the probe of
/// the last judged stage (100 %, where DR serves nothing, or a final holdout's), or `None`
/// when there is none (`probe: 0s`, or no judged stage below it).
pub fn probe(
    p: &Policy,
    stages: Option<&[Stage]>,
    out: &mut Problems,
) -> Option<crate::policy::plan::ProbePlan> {
    let a = &p.analysis;
    out.span("analysis.probe", a.probe, &PROBE);
    let stages = stages?;
    let last = stages.iter().rev().find(|s| s.judged)?;
    let below: Vec<StageWeight> = stages
        .iter()
        .filter(|s| s.judged && s.weight < last.weight)
        .map(|s| s.weight)
        .collect();
    let weight = match a.probe_weight {
        Some(w) => {
            let points = w.fraction() * 100.0;
            let found = below
                .iter()
                .copied()
                .find(|s| (f64::from(s.get()) - points).abs() < 1e-9);
            if found.is_none() {
                let names: Vec<String> = below.iter().map(|s| format!("{}%", s.get())).collect();
                out.push(
                    "analysis.probe_weight",
                    format!(
                        "{w} is not the weight of a judged stage below the last one ({}%; stages below: {}); a probe writes a weight the plan names, so that a run killed during it resumes at a stage; write one of them",
                        last.weight,
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
                return None;
            }
            found
        }
        // Nearest 50 %, the higher on a tie.
        None => below.iter().copied().min_by_key(|s| {
            let d = (i32::from(s.get()) - 50).abs();
            (d, std::cmp::Reverse(s.get()))
        }),
    }?;
    if a.probe.0.is_zero() {
        return None;
    }
    if a.probe.0 < 2 * last.interval {
        out.push(
            "analysis.probe",
            format!(
                "{} is shorter than two analyses at the last stage ({}%, interval {}); a probe must see DR's concurrent traffic more than once; write e.g. 2m, or 0s to roll back without probing",
                a.probe,
                last.weight,
                crate::units::Span(last.interval)
            ),
        );
        return None;
    }
    Some(crate::policy::plan::ProbePlan {
        weight,
        duration: a.probe.0,
    })
}
