//! `cutover plan`: the stages, their timings, the worst-case duration, and the exact PromQL
//! each gate and preflight check will run.

use std::fmt::Write;
use std::time::Duration;

use cutover_core::Site;

use cutover_core::policy::LoadedPolicy;
use cutover_core::policy::backend::Backend;
use cutover_core::run::fmt_d;

/// Prints the plan of a loaded policy file, and the predicted time to certify each
/// sequential gate; exit 0.
pub(crate) async fn plan(p: &LoadedPolicy, args: &super::plan_predict::PlanArgs) -> u8 {
    let mut text = render(p, &args.policy.display().to_string());
    text.push_str(&super::plan_predict::render(p, args).await);
    super::out::print(&text);
    0
}

/// Renders the plan of a valid policy as text.
pub(crate) fn render(loaded: &LoadedPolicy, file: &str) -> String {
    let mut s = String::new();
    let policy = &loaded.policy;
    let promql = &loaded.promql;
    let stages = &loaded.plan.stages;
    let _ = writeln!(s, "Plan of {file}: service {}", policy.service);
    let _ = writeln!(s, "backend: {}", backend_line(&loaded.backend));
    let _ = writeln!(
        s,
        "prometheus: {} (timeout {})",
        cutover_core::policy::prometheus::redact_url(&policy.prometheus.url),
        policy.prometheus.timeout
    );
    let _ = writeln!(
        s,
        "\nStages (primary weight; a stage advances when every gate passes after its bake):"
    );
    let _ = writeln!(
        s,
        "  {:>6}  {:>8}  {:>8}  {:>12}",
        "weight", "bake", "interval", "max_duration"
    );
    let (best, worst) = loaded.plan.duration_bounds();
    for st in stages {
        if !st.judged {
            let _ = writeln!(
                s,
                "  {:>5}%  written once the holdout stage passes; not judged",
                st.weight
            );
            continue;
        }
        let _ = writeln!(
            s,
            "  {:>5}%  {:>8}  {:>8}  {:>12}",
            st.weight,
            fmt_d(st.bake),
            fmt_d(st.interval),
            fmt_d(st.max_duration)
        );
    }
    let last = stages
        .iter()
        .rev()
        .find(|s| s.judged)
        .map(|s| s.weight.get());
    if let (Some(probe), Some(last)) = (loaded.plan.probe, last) {
        let at = if last == 100 {
            "At 100 %, where DR serves nothing, a rise above DR's earlier rate".to_string()
        } else {
            format!(
                "At {last}% (the final holdout), a rise above DR's earlier rate that its {}% holdout does not show yet",
                100 - u32::from(last)
            )
        };
        let _ = writeln!(
            s,
            "  {at} is probed: {}% for at least {} against DR's concurrent traffic (analysis.probe).",
            probe.weight,
            fmt_d(probe.duration)
        );
    } else if stages.iter().any(|s| s.judged && s.weight.get() == 100) {
        let _ = writeln!(
            s,
            "  At 100 %, where DR serves nothing, harm against DR's earlier rate rolls back at once (analysis.probe: 0s): a cause common to both sites is not told apart."
        );
    }
    let _ = writeln!(
        s,
        "Duration: at best about {}, at worst {} before the run holds or rolls back.",
        fmt_d(best),
        fmt_d(worst)
    );
    let _ = writeln!(
        s,
        "Analysis: min_requests {}, failure_limit {}, consecutive_error_limit {}, on_inconclusive {:?}; settle within {} points of the target; rollback {:?}.",
        policy.analysis.min_requests,
        policy.analysis.failure_limit,
        policy.analysis.consecutive_error_limit,
        policy.analysis.on_inconclusive,
        policy.settle.tolerance,
        policy.rollback.mode
    );
    let interval = stages
        .first()
        .map(|s| s.interval)
        .unwrap_or(Duration::from_secs(30));
    let _ = writeln!(
        s,
        "\nGates (window = the stage's interval unless the gate sets its own):"
    );
    for g in &loaded.plan.gates {
        let w = g.window(interval);
        let _ = writeln!(s, "  {} — {}", g.name, g.describe_bounds());
        if let Some(counted) = g.counted() {
            // Sequential gates read raw counter samples and difference them per interval.
            for site in [Site::Primary, Site::Dr] {
                for sel in promql.count_selectors(counted, site) {
                    let _ = writeln!(s, "    {site:<7}  {sel}[<since the last analysis + 5m>]");
                }
            }
            continue;
        }
        for site in [Site::Primary, Site::Dr] {
            let q = promql.render(&g.measure(site, w));
            let _ = writeln!(s, "    {site:<7}  {q}");
        }
        let _ = writeln!(s, "    requests {}", promql.request_count(Site::Primary, w));
    }
    let _ = writeln!(s, "\nObserved share (settling):");
    for site in [Site::Primary, Site::Dr] {
        let _ = writeln!(s, "  {site:<7}  {}", promql.request_rate(site, interval));
    }
    let lists = [
        (
            "Preflight (each must hold before any weight changes)",
            &policy.preflight,
        ),
        (
            "Guards (re-checked at every analysis; a failing one holds the run at its weight)",
            &policy.guards,
        ),
    ];
    for (title, checks) in lists.into_iter().filter(|(_, l)| !l.is_empty()) {
        let _ = writeln!(s, "\n{title}:");
        for c in checks {
            let Some(query) = &c.query else {
                // Files and URLs only: a connection string is never read here.
                let _ = writeln!(s, "  {}: {}", c.name, cutover_core::readiness::describe(c));
                continue;
            };
            let bounds = match (c.min, c.max) {
                (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                (Some(lo), None) => format!(">= {lo}"),
                (None, Some(hi)) => format!("<= {hi}"),
                (None, None) => String::new(),
            };
            let q = promql.custom_siteless(query);
            let wait = c
                .wait
                .map(|w| format!(", waits up to {w}"))
                .unwrap_or_default();
            let _ = writeln!(s, "  {} ({bounds}{wait}): {q}", c.name);
        }
    }
    s
}

fn backend_line(b: &Backend) -> String {
    match b {
        Backend::Istio(i) => format!(
            "istio VirtualService {}/{} route {}",
            i.namespace, i.virtual_service, i.route
        ),
        Backend::GatewayApi(g) => {
            format!("gateway_api HTTPRoute {}/{}", g.namespace, g.http_route)
        }
        Backend::Route53(r) => format!(
            "route53 {} {} in zone {}",
            r.record_name, r.record_type, r.hosted_zone_id
        ),
        Backend::File(f) => format!("file {}", f.path.display()),
    }
}
