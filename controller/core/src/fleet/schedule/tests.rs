//! The fleet's schedule, on plans written to a temporary folder.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::fleet::load::load;

const POLICY: &str = include_str!("../../../../../policies/batch-file.yaml");

/// A folder with a fleet file of `services` (name, layer, after) and one policy each.
fn fleet_dir(name: &str, header: &str, services: &[(&str, u32, &[&str])]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut fleet = format!("fleet: {name}\n{header}\nservices:\n");
    for (s, layer, after) in services {
        let text = POLICY
            .replace("service: batch-api", &format!("service: {s}"))
            .replace(
                "/var/run/cutover/batch-api-weights.json",
                &dir.join(format!("{s}.json")).display().to_string(),
            );
        std::fs::write(dir.join(format!("{s}.yaml")), text).unwrap();
        fleet.push_str(&format!(
            "  - {{ name: {s}, policy: {s}.yaml, layer: {layer}, after: [{}] }}\n",
            after.join(", ")
        ));
    }
    std::fs::write(dir.join("fleet.yaml"), fleet).unwrap();
    dir
}

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

/// Runs the fleet with `exit(name)` as each service's exit code, every cutover taking
/// 10 s; returns the outcome, the start order and the most at once.
fn simulate(
    plan: FleetPlan,
    exit: impl Fn(&str) -> i32,
) -> (FleetOutcome, Vec<String>, usize, Vec<String>, Fleet) {
    let mut f = Fleet::new(plan, "r".into(), t(0));
    let mut now = 0u64;
    let mut running: Vec<(usize, u64)> = Vec::new();
    let (mut started, mut rolled) = (Vec::new(), Vec::new());
    let mut most = 0;
    for _ in 0..10_000 {
        let actions = f.next(t(now));
        for a in actions {
            match a {
                FleetAction::Start(i) => {
                    started.push(f.plan().services[i].name.clone());
                    running.push((i, now + 10));
                    most = most.max(running.len());
                }
                FleetAction::Rollback(i) => {
                    rolled.push(f.plan().services[i].name.clone());
                    f.rolled_back(i, true, "verified".into(), t(now));
                }
                FleetAction::Abort(_) => {}
                FleetAction::Wait(d) => {
                    let step = d.as_secs().max(1);
                    let next_end = running.iter().map(|(_, e)| *e).min();
                    now = next_end
                        .filter(|e| *e > now)
                        .map_or(now + step, |e| e.min(now + step));
                    let (done, left): (Vec<_>, Vec<_>) =
                        running.iter().partition(|(_, end)| *end <= now);
                    running = left;
                    for (i, _) in done {
                        let name = f.plan().services[i].name.clone();
                        f.ended(i, exit(&name), "test".into(), t(now));
                    }
                }
                FleetAction::Finish(o) => return (o, started, most, rolled, f),
            }
        }
    }
    panic!("the fleet did not end");
}

fn twenty() -> Vec<(String, u32, Vec<String>)> {
    (0..20)
        .map(|i| {
            let layer = i / 5;
            let after = if layer > 0 && i % 5 == 0 {
                vec![format!("s{}", i - 5)]
            } else {
                Vec::new()
            };
            (format!("s{i}"), layer as u32, after)
        })
        .collect()
}

fn plan_of(name: &str, header: &str, svc: &[(String, u32, Vec<String>)]) -> FleetPlan {
    let afters: Vec<Vec<&str>> = svc
        .iter()
        .map(|(_, _, a)| a.iter().map(String::as_str).collect())
        .collect();
    let list: Vec<(&str, u32, &[&str])> = svc
        .iter()
        .zip(&afters)
        .map(|((n, l, _), a)| (n.as_str(), *l, a.as_slice()))
        .collect();
    let dir = fleet_dir(name, header, &list);
    load(&dir.join("fleet.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn twenty_services_in_four_layers_start_in_order_never_more_than_max_parallel() {
    let plan = plan_of("order", "max_parallel: 3\nsoak: 30s", &twenty());
    let (o, started, most, _, f) = simulate(plan, |_| 0);
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(started.len(), 20);
    assert!(most <= 3, "{most} at once");
    // Every layer-k service starts after every layer-(k-1) service ended and soaked.
    let layer = |n: &str| n[1..].parse::<u32>().unwrap() / 5;
    for w in started.windows(2) {
        assert!(layer(&w[0]) <= layer(&w[1]), "{started:?}");
    }
    assert_eq!(f.state().layer_done.len(), 4);
    let gaps: Vec<u64> = f
        .state()
        .layer_done
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1).unwrap().as_secs())
        .collect();
    assert!(gaps.iter().all(|g| *g >= 30), "soak not kept: {gaps:?}");
}

#[test]
fn a_failure_stops_the_fleet_and_nothing_later_starts() {
    let plan = plan_of("stop", "max_parallel: 5", &twenty());
    let (o, started, _, rolled, _) = simulate(plan, |n| if n == "s7" { 1 } else { 0 });
    assert_eq!(o.exit, 1, "{o:?}");
    assert!(o.reason.contains("`s7` did not promote"), "{}", o.reason);
    assert!(
        started.iter().all(|s| s[1..].parse::<u32>().unwrap() < 10),
        "{started:?}"
    );
    assert!(rolled.is_empty());
}

#[test]
fn rollback_fleet_rolls_back_every_promoted_service_in_reverse_order() {
    let plan = plan_of(
        "rb",
        "max_parallel: 5\non_failure: rollback_fleet",
        &twenty(),
    );
    let (o, started, _, rolled, f) = simulate(plan, |n| if n == "s7" { 1 } else { 0 });
    assert_eq!(o.exit, 1, "{o:?}");
    let promoted: Vec<String> = started.iter().filter(|s| *s != "s7").cloned().collect();
    let mut expect = promoted.clone();
    expect.reverse();
    // Reverse of the plan's (dependency) order: the layer-1 services first, then layer 0.
    let layer = |n: &str| n[1..].parse::<u32>().unwrap() / 5;
    assert_eq!(rolled.len(), promoted.len(), "{rolled:?}");
    assert!(
        rolled.windows(2).all(|w| layer(&w[0]) >= layer(&w[1])),
        "{rolled:?}"
    );
    assert!(
        f.state().services.iter().all(|(n, s)| n == "s7"
            || !started.contains(n)
            || matches!(s, SvcStatus::RolledBack { ok: true, .. })),
        "{:?}",
        f.state().services
    );
}

#[test]
fn three_failures_close_together_freeze_the_fleet_instead_of_rolling_it_back() {
    let plan = plan_of(
        "freeze",
        "max_parallel: 5\non_failure: rollback_fleet",
        &twenty(),
    );
    let (o, _, _, rolled, f) = simulate(plan, |n| {
        if ["s0", "s1", "s2"].contains(&n) {
            5
        } else {
            0
        }
    });
    assert_eq!(o.exit, 5, "{o:?}");
    assert!(o.reason.contains("global incident"), "{}", o.reason);
    assert!(
        rolled.is_empty(),
        "rolled back into a broken DR: {rolled:?}"
    );
    assert_eq!(f.state().phase, FleetPhase::Done);
}

#[test]
fn an_exit_10_pages_and_stops() {
    let plan = plan_of(
        "page",
        "max_parallel: 2\non_failure: rollback_fleet",
        &twenty(),
    );
    let (o, _, _, rolled, _) = simulate(plan, |n| if n == "s3" { 10 } else { 0 });
    assert_eq!(o.exit, 10, "{o:?}");
    assert!(o.reason.contains("page now"), "{}", o.reason);
    assert!(rolled.is_empty());
}

#[test]
fn fleet_files_with_cycles_unknown_duplicate_or_shared_objects_are_refused_naming_the_field() {
    let dir = fleet_dir(
        "bad",
        "",
        &[("a", 0, &["b"]), ("b", 0, &["c"]), ("c", 0, &["a"])],
    );
    let e = load(&dir.join("fleet.yaml")).unwrap_err().to_string();
    assert!(
        e.contains("cycle: a -> b -> c -> a") || e.contains("cycle"),
        "{e}"
    );

    let dir = fleet_dir(
        "bad2",
        "",
        &[("a", 0, &["zz"]), ("b", 1, &[]), ("c", 0, &["b"])],
    );
    let e = load(&dir.join("fleet.yaml")).unwrap_err().to_string();
    assert!(
        e.contains("services[0].after[0]") && e.contains("`zz` is not a service"),
        "{e}"
    );
    assert!(
        e.contains("services[2].after[0]") && e.contains("layer 1"),
        "{e}"
    );

    let dir = fleet_dir("bad3", "max_parallel: 0", &[("a", 0, &[]), ("b", 0, &[])]);
    let text = std::fs::read_to_string(dir.join("fleet.yaml")).unwrap()
        + "  - { name: a, policy: a.yaml }\n  - { name: c, policy: b.yaml }\n";
    std::fs::write(dir.join("fleet.yaml"), text).unwrap();
    let e = load(&dir.join("fleet.yaml")).unwrap_err().to_string();
    assert!(e.contains("max_parallel: 0 is not 1 to 100"), "{e}");
    assert!(e.contains("`a` is listed twice"), "{e}");
    assert!(e.contains("policy of service `b`, not `c`"), "{e}");
    assert!(e.contains("both write file"), "{e}");

    std::fs::write(
        dir.join("fleet.yaml"),
        "fleet: x\nservices: []\nmax_paralel: 3\n",
    )
    .unwrap();
    let e = load(&dir.join("fleet.yaml")).unwrap_err().to_string();
    assert!(
        e.contains("max_paralel") && e.contains("unknown field"),
        "{e}"
    );
}

#[test]
fn two_hundred_services_plan_in_well_under_a_second() {
    let svc: Vec<(String, u32, Vec<String>)> = (0..200)
        .map(|i| {
            let after = if i >= 10 {
                vec![format!("s{}", i - 10)]
            } else {
                Vec::new()
            };
            (format!("s{i}"), (i / 50) as u32, after)
        })
        .collect();
    let dir_plan = std::time::Instant::now();
    let plan = plan_of("big", "max_parallel: 20", &svc);
    let took = dir_plan.elapsed();
    assert_eq!(plan.services.len(), 200);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (o, _, most, _, _) = simulate(plan, |_| 0);
    assert_eq!(o.exit, 0);
    assert!(most <= 20);
}
