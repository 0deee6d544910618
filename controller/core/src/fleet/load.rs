//! Reading a fleet file: screened like a policy, deserialized with the field path of any
//! error, every service's policy loaded, and the order checked (unknown, duplicate and
//! self references, cycles, an `after` in a later layer, two services on one object).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::*;
use crate::policy::backend::Backend;
use crate::policy::{self, LoadedPolicy, PolicyError, PolicyErrors};

/// One service of a checked fleet.
#[derive(Debug, Clone)]
pub struct FleetService {
    /// Its name.
    pub name: String,
    /// Its policy file as the fleet names it, resolved against the fleet file's folder.
    pub policy_path: PathBuf,
    /// Its policy, loaded.
    pub policy: LoadedPolicy,
    /// Its layer.
    pub layer: u32,
    /// Indices of the services it waits for (its `after`).
    pub after: Vec<usize>,
}

/// A checked fleet: the services in a dependency order, and the timings.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// The fleet file.
    pub path: PathBuf,
    /// What was read.
    pub spec: FleetSpec,
    /// The services, in a dependency order (layer, then `after`, then file order).
    pub services: Vec<FleetService>,
    /// The soak after each layer.
    pub soak: BTreeMap<u32, Duration>,
}

impl FleetPlan {
    /// The layers, ascending.
    pub fn layers(&self) -> Vec<u32> {
        self.services
            .iter()
            .map(|s| s.layer)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Index of a service by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

/// What one run writes: the object and the part of it (route, rule, record set).
pub fn object_key(b: &Backend) -> String {
    match b {
        Backend::Istio(c) => format!(
            "VirtualService {}/{} route {}",
            c.namespace, c.virtual_service, c.route
        ),
        Backend::GatewayApi(c) => format!(
            "HTTPRoute {}/{} rule {}",
            c.namespace,
            c.http_route,
            c.rule
                .clone()
                .or(c.rule_index.map(|i| format!("#{i}")))
                .unwrap_or_else(|| "#0".into())
        ),
        Backend::Route53(c) => format!(
            "Route 53 {} {} {}",
            c.hosted_zone_id,
            c.record_name.trim_end_matches('.').to_ascii_lowercase(),
            c.record_type
        ),
        Backend::File(c) => format!(
            "file {}",
            std::fs::canonicalize(&c.path)
                .unwrap_or_else(|_| c.path.clone())
                .display()
        ),
    }
}

/// Loads and checks a fleet file; every problem is reported, each with its field.
pub fn load(path: &Path) -> Result<FleetPlan, PolicyErrors> {
    let file = path.display().to_string();
    let err = |field: &str, message: String| PolicyError {
        file: file.clone(),
        field: field.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| PolicyErrors(vec![err("", format!("cannot read the fleet file: {e}"))]))?;
    let spec = parse_spec(&file, &text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    if !crate::policy::validate::is_dns_label(&spec.fleet) {
        out.push(err(
            "fleet",
            format!(
                "`{}` is not a DNS label; use lowercase letters, digits and dashes, e.g. eu-west-failback",
                spec.fleet
            ),
        ));
    }
    if !(1..=100).contains(&spec.max_parallel) {
        out.push(err(
            "max_parallel",
            format!("{} is not 1 to 100", spec.max_parallel),
        ));
    }
    if spec.global_incident.failures == 0 {
        out.push(err(
            "global_incident.failures",
            "0 would freeze the fleet before anything fails; write e.g. 3".into(),
        ));
    }
    if spec.services.is_empty() {
        out.push(err(
            "services",
            "no services; list each service's name and policy file".into(),
        ));
    }
    // Names: unique DNS labels.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in spec.services.iter().enumerate() {
        if !crate::policy::validate::is_dns_label(&s.name) {
            out.push(err(
                &format!("services[{i}].name"),
                format!("`{}` is not a DNS label", s.name),
            ));
        }
        if let Some(j) = index.insert(s.name.as_str(), i) {
            out.push(err(
                &format!("services[{i}].name"),
                format!(
                    "`{}` is listed twice (also services[{j}]); a service is failed back once",
                    s.name
                ),
            ));
        }
    }
    // Policies: each loads, names this service, and writes its own object.
    let mut policies: Vec<Option<LoadedPolicy>> = Vec::new();
    let mut objects: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in spec.services.iter().enumerate() {
        let field = format!("services[{i}].policy");
        let p = dir.join(&s.policy);
        match policy::load(&p) {
            Err(errors) => {
                for e in errors.0 {
                    out.push(err(&field, format!("{e}")));
                }
                policies.push(None);
            }
            Ok(lp) => {
                if lp.policy.service != s.name {
                    out.push(err(
                        &field,
                        format!(
                            "{} is the policy of service `{}`, not `{}`; point services[{i}] at its own policy",
                            p.display(),
                            lp.policy.service,
                            s.name
                        ),
                    ));
                }
                let key = object_key(&lp.backend);
                if let Some(j) = objects.insert(key.clone(), i) {
                    out.push(err(
                        &field,
                        format!(
                            "`{}` and `{}` both write {key}; two cutovers would fight over one object: give each service its own",
                            spec.services[j].name, s.name
                        ),
                    ));
                }
                policies.push(Some(lp));
            }
        }
    }
    // Order: known, not self, not in a later layer, no cycles.
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); spec.services.len()];
    for (i, s) in spec.services.iter().enumerate() {
        for (k, a) in s.after.iter().enumerate() {
            let field = format!("services[{i}].after[{k}]");
            match index.get(a.as_str()) {
                None => out.push(err(
                    &field,
                    format!("`{a}` is not a service of this fleet; add it to `services` or remove it"),
                )),
                Some(&j) if j == i => {
                    out.push(err(&field, format!("`{a}` waits for itself")))
                }
                Some(&j) if spec.services[j].layer > s.layer => out.push(err(
                    &field,
                    format!(
                        "`{a}` is in layer {}, after this service's layer {}: it could never start first; move one of them",
                        spec.services[j].layer, s.layer
                    ),
                )),
                Some(&j) => after[i].push(j),
            }
        }
    }
    let order = match topological(&spec.services, &after) {
        Ok(o) => o,
        Err(cycle) => {
            out.push(err(
                "services",
                format!(
                    "the `after` lists form a cycle: {}; no service of it could ever start",
                    cycle.join(" -> ")
                ),
            ));
            Vec::new()
        }
    };
    let used: BTreeSet<u32> = spec.services.iter().map(|s| s.layer).collect();
    let mut soak = BTreeMap::new();
    for l in &used {
        soak.insert(*l, spec.soak.map(|s| s.get()).unwrap_or_default());
    }
    let mut seen = BTreeSet::new();
    for (k, l) in spec.layers.iter().enumerate() {
        if !used.contains(&l.layer) {
            out.push(err(
                &format!("layers[{k}].layer"),
                format!("no service is in layer {}", l.layer),
            ));
        }
        if !seen.insert(l.layer) {
            out.push(err(
                &format!("layers[{k}].layer"),
                format!("layer {} is listed twice", l.layer),
            ));
        }
        soak.insert(l.layer, l.soak.get());
    }
    if let Some(k) = &spec.kubernetes {
        if !crate::policy::validate::is_dns_label(&k.namespace) {
            out.push(err(
                "kubernetes.namespace",
                format!("`{}` is not a namespace name", k.namespace),
            ));
        }
        if k.image.trim().is_empty() || k.image.contains(char::is_whitespace) {
            out.push(err(
                "kubernetes.image",
                format!("`{}` is not an image reference", k.image),
            ));
        }
        if !crate::policy::validate::is_dns_label(&k.service_account) {
            out.push(err(
                "kubernetes.service_account",
                format!("`{}` is not a ServiceAccount name", k.service_account),
            ));
        }
        if !crate::policy::validate::is_dns_label(&k.policy_configmap.replace("{service}", "x")) {
            out.push(err(
                "kubernetes.policy_configmap",
                format!(
                    "`{}` does not make a ConfigMap name; write e.g. cutover-{{service}}-policy",
                    k.policy_configmap
                ),
            ));
        }
    }
    if !out.is_empty() {
        return Err(PolicyErrors(out));
    }
    let position: BTreeMap<usize, usize> = order.iter().enumerate().map(|(k, i)| (*i, k)).collect();
    let services = order
        .iter()
        .map(|&i| {
            let s = &spec.services[i];
            FleetService {
                name: s.name.clone(),
                policy_path: dir.join(&s.policy),
                policy: policies[i].clone().expect("loaded: no problems"),
                layer: s.layer,
                after: after[i].iter().map(|j| position[j]).collect(),
            }
        })
        .collect();
    Ok(FleetPlan {
        path: path.to_path_buf(),
        spec,
        services,
        soak,
    })
}

fn parse_spec(file: &str, text: &str) -> Result<FleetSpec, PolicyErrors> {
    let one = |field: String, message: String| {
        PolicyErrors(vec![PolicyError {
            file: file.to_string(),
            field,
            message,
        }])
    };
    let text = crate::policy::screen::screen(text).map_err(|(f, m)| one(f, m))?;
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .build()
        .map_err(|e| one(String::new(), format!("not valid YAML: {e}")))?;
    let value: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| one(String::new(), format!("cannot read the fleet file: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let msg = e.into_inner().to_string();
        let msg = if msg.starts_with("unknown field") {
            format!(
                "{msg}; remove it or fix its spelling (`cutover fleet schema` lists every field)"
            )
        } else {
            msg
        };
        one(field, msg)
    })
}

/// A dependency order: by layer, then each service after those in its `after`, then file
/// order; or the names of a cycle.
fn topological(services: &[ServiceEntry], after: &[Vec<usize>]) -> Result<Vec<usize>, Vec<String>> {
    let n = services.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        // The lowest layer with a service left; in it, the first whose `after` are done.
        let next = (0..n)
            .filter(|&i| !done[i])
            .filter(|&i| after[i].iter().all(|&j| done[j]))
            .min_by_key(|&i| (services[i].layer, i));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => return Err(cycle(services, after, &done)),
        }
    }
    Ok(order)
}

fn cycle(services: &[ServiceEntry], after: &[Vec<usize>], done: &[bool]) -> Vec<String> {
    // Walk `after` edges among the services left until one repeats.
    let start = (0..services.len()).find(|&i| !done[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut at = start;
    for _ in 0..=services.len() {
        let Some(&next) = after[at].iter().find(|&&j| !done[j]) else {
            break;
        };
        if let Some(k) = path.iter().position(|&p| p == next) {
            let mut names: Vec<String> = path[k..]
                .iter()
                .map(|&i| services[i].name.clone())
                .collect();
            names.push(services[next].name.clone());
            return names;
        }
        path.push(next);
        at = next;
    }
    path.iter().map(|&i| services[i].name.clone()).collect()
}
