//! The `istio` backend: the weights of two destinations of one named http route of a
//! VirtualService (`networking.istio.io/v1`, falling back to `v1beta1`). Every other route,
//! match, header, retry, timeout, mirror and field is written back exactly as read.

use serde_json::Value;

use crate::traffic::k8s::{Located, ObjectRef, RoutedObject};
use cutover_core::BackendError;
use cutover_core::policy::backend::{IstioConfig, IstioDestination};

use crate::ConnectOptions;

fn matches(dest: &Value, want: &IstioDestination) -> bool {
    dest["host"].as_str() == Some(want.host.as_str())
        && dest["subset"].as_str() == want.subset.as_deref()
}

fn describe_dest(d: &Value) -> String {
    format!(
        "{}{}",
        d["host"].as_str().unwrap_or("?"),
        d["subset"]
            .as_str()
            .map(|s| format!(" subset {s}"))
            .unwrap_or_default()
    )
}

/// Finds the route and its two destinations in a VirtualService.
pub fn locate(vs: &Value, cfg: &IstioConfig) -> Result<Located, BackendError> {
    let routes = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = routes
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("(unnamed)").to_string())
        .collect();
    let Some(ri) = routes
        .iter()
        .position(|r| r["name"].as_str() == Some(cfg.route.as_str()))
    else {
        return Err(BackendError::NotFound {
            what: format!(
                "http route `{}` in VirtualService {}/{}",
                cfg.route, cfg.namespace, cfg.virtual_service
            ),
            hint: format!(
                "its http routes are: {}; fix backend.istio.route",
                names.join(", ")
            ),
        });
    };
    let dests = routes[ri]["route"].as_array().cloned().unwrap_or_default();
    let list = || {
        dests
            .iter()
            .map(|d| describe_dest(&d["destination"]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |want: &IstioDestination, field: &str| {
        dests
            .iter()
            .position(|d| matches(&d["destination"], want))
            .ok_or_else(|| BackendError::NotFound {
                what: format!(
                    "destination {} in http route `{}`",
                    describe_dest(&serde_json::json!({"host": want.host, "subset": want.subset})),
                    cfg.route
                ),
                hint: format!(
                    "the route's destinations are: {}; fix backend.istio.{field}",
                    list()
                ),
            })
    };
    let (p, d) = (find(&cfg.primary, "primary")?, find(&cfg.dr, "dr")?);
    for (i, other) in dests.iter().enumerate() {
        if i != p && i != d && other["weight"].as_u64().unwrap_or(0) > 0 {
            return Err(BackendError::Invalid(format!(
                "http route `{}` also sends traffic to {}; cutover manages routes with exactly the primary and DR destinations",
                cfg.route,
                describe_dest(&other["destination"])
            )));
        }
    }
    Ok(Located {
        primary: format!("/spec/http/{ri}/route/{p}/weight"),
        dr: format!("/spec/http/{ri}/route/{d}/weight"),
        absent: 0,
    })
}

/// Connects to the VirtualService named by `cfg`.
pub async fn connect(
    cfg: &IstioConfig,
    options: &ConnectOptions,
) -> Result<RoutedObject, BackendError> {
    let client = crate::traffic::k8s::client(options).await?;
    let obj = ObjectRef {
        group: "networking.istio.io".into(),
        version: "v1".into(),
        plural: "virtualservices".into(),
        kind: "VirtualService".into(),
        namespace: cfg.namespace.clone(),
        name: cfg.virtual_service.clone(),
    };
    let c = cfg.clone();
    Ok(RoutedObject::new(
        client,
        obj,
        &format!("route {}", cfg.route),
        vec!["v1".into(), "v1beta1".into()],
        Box::new(move |v| locate(v, &c)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IstioConfig {
        IstioConfig {
            namespace: "prod".into(),
            virtual_service: "checkout".into(),
            route: "primary-dr".into(),
            primary: IstioDestination {
                host: "checkout".into(),
                subset: Some("primary".into()),
            },
            dr: IstioDestination {
                host: "checkout".into(),
                subset: Some("dr".into()),
            },
        }
    }

    #[test]
    fn finds_the_route_and_says_what_is_there_when_not() {
        let vs = serde_json::json!({"spec": {"http": [
            {"name": "canary", "route": [{"destination": {"host": "x"}}]},
            {"name": "primary-dr", "route": [
                {"destination": {"host": "checkout", "subset": "dr"}, "weight": 100},
                {"destination": {"host": "checkout", "subset": "primary"}}]}]}});
        let at = locate(&vs, &cfg()).unwrap();
        assert_eq!(at.primary, "/spec/http/1/route/1/weight");
        assert_eq!(at.dr, "/spec/http/1/route/0/weight");
        let mut c = cfg();
        c.route = "nope".into();
        let e = locate(&vs, &c).unwrap_err().to_string();
        assert!(e.contains("canary, primary-dr"), "{e}");
        let mut c = cfg();
        c.primary.subset = Some("blue".into());
        let e = locate(&vs, &c).unwrap_err().to_string();
        assert!(
            e.contains("checkout subset dr, checkout subset primary"),
            "{e}"
        );
    }
}
