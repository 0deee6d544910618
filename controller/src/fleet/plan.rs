//! `cutover fleet plan`: the services by layer with their order, the fleet's best and worst
//! duration (its schedule played in virtual time with every cutover at its best, then at
//! its worst), and the load its analyses put on Prometheus.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use cutover_analyzers::analysis::reads_per_analysis;
use cutover_core::fleet::{Fleet, FleetAction, FleetPlan};
use cutover_core::run::fmt_d;

/// The fleet's schedule played with each service taking `took(i)`: the total, and the
/// most reads per second the running cutovers make of Prometheus at once.
fn play(plan: &FleetPlan, took: impl Fn(usize) -> Duration) -> (Duration, f64, usize) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut f = Fleet::new(plan.clone(), "plan".into(), t0);
    let mut now = Duration::ZERO;
    let mut running: Vec<(usize, Duration)> = Vec::new();
    let (mut peak_rate, mut peak_running) = (0.0f64, 0usize);
    for _ in 0..1_000_000 {
        for a in f.next(t0 + now) {
            match a {
                FleetAction::Start(i) => {
                    running.push((i, now + took(i)));
                    let rate: f64 = running
                        .iter()
                        .map(|(j, _)| reads_per_second(plan, *j))
                        .sum();
                    peak_rate = peak_rate.max(rate);
                    peak_running = peak_running.max(running.len());
                }
                FleetAction::Wait(d) => {
                    // Jump to the next end (or the wait), whichever is first.
                    let next_end = running.iter().map(|(_, e)| *e).min();
                    let step = d.max(Duration::from_secs(1));
                    now = match next_end {
                        Some(e) if e > now => e.min(now + step),
                        Some(_) => now,
                        None => now + step,
                    };
                    let (done, left): (Vec<_>, Vec<_>) =
                        running.iter().partition(|(_, e)| *e <= now);
                    running = left;
                    for (i, _) in done {
                        f.ended(i, 0, String::new(), t0 + now);
                    }
                }
                FleetAction::Finish(_) => return (now, peak_rate, peak_running),
                FleetAction::Rollback(_) | FleetAction::Abort(_) => {}
            }
        }
    }
    (now, peak_rate, peak_running)
}

/// Reads per second one service's analyses make (at its shortest interval).
fn reads_per_second(plan: &FleetPlan, i: usize) -> f64 {
    let p = &plan.services[i].policy.plan;
    let interval = p
        .stages
        .iter()
        .map(|s| s.interval)
        .min()
        .unwrap_or(Duration::from_secs(30));
    reads_per_analysis(&p.gates, interval) as f64 / interval.as_secs_f64().max(1.0)
}

/// The plan as text.
pub fn render(plan: &FleetPlan) -> String {
    let spec = &plan.spec;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Fleet {} ({}): {} services in {} layers, at most {} cutovers at once, on_failure {}, \
         frozen after {} failures within {}",
        spec.fleet,
        plan.path.display(),
        plan.services.len(),
        plan.layers().len(),
        spec.max_parallel,
        match spec.on_failure {
            cutover_core::fleet::OnFailure::Stop => "stop",
            cutover_core::fleet::OnFailure::RollbackFleet => "rollback_fleet",
        },
        spec.global_incident.failures,
        spec.global_incident.within
    );
    for layer in plan.layers() {
        let soak = plan.soak.get(&layer).copied().unwrap_or_default();
        let _ = writeln!(s, "\nLayer {layer} (then soak {}):", fmt_d(soak));
        for svc in plan.services.iter().filter(|x| x.layer == layer) {
            let (best, worst) = svc.policy.plan.duration_bounds();
            let after: Vec<&str> = svc
                .after
                .iter()
                .map(|&j| plan.services[j].name.as_str())
                .collect();
            let stages: Vec<String> = svc
                .policy
                .plan
                .stages
                .iter()
                .map(|st| format!("{}%", st.weight))
                .collect();
            let _ = writeln!(
                s,
                "  {:<24} {:<22} best {:>9}  worst {:>9}  after: {}",
                svc.name,
                stages.join(" "),
                fmt_d(best),
                fmt_d(worst),
                if after.is_empty() {
                    "-".into()
                } else {
                    after.join(", ")
                }
            );
        }
    }
    let (best, _, _) = play(plan, |i| plan.services[i].policy.plan.duration_bounds().0);
    let (worst, peak, most) = play(plan, |i| plan.services[i].policy.plan.duration_bounds().1);
    let total: usize = (0..plan.services.len())
        .map(|i| {
            let p = &plan.services[i].policy.plan;
            let (_, w) = p.duration_bounds();
            (reads_per_second(plan, i) * w.as_secs_f64()) as usize
        })
        .sum();
    let _ = writeln!(
        s,
        "\nDuration: at best about {}, at worst {} (soaks included; every service promoted).",
        fmt_d(best),
        fmt_d(worst)
    );
    let _ = writeln!(
        s,
        "Prometheus load: at most {peak:.1} reads/s with {most} cutover(s) at once; at most {total} reads in all \
         (each analysis reads both sites' request rates, the primary's request count and each gate at each site)."
    );
    s
}
