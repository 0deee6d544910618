//! The `gateway_api` backend: the weights of two `backendRefs` of one rule of an HTTPRoute
//! (`gateway.networking.k8s.io/v1`), the rule chosen by name or index. Everything else is
//! written back exactly as read. An absent weight means 1, as the Gateway API defines.

use serde_json::Value;

use crate::traffic::k8s::{Located, ObjectRef, RoutedObject};
use cutover_core::BackendError;
use cutover_core::policy::backend::{BackendRefSpec, GatewayApiConfig};

use crate::ConnectOptions;

fn matches(r: &Value, want: &BackendRefSpec) -> bool {
    r["name"].as_str() == Some(want.name.as_str())
        && (want.namespace.is_none() || r["namespace"].as_str() == want.namespace.as_deref())
        && (want.port.is_none() || r["port"].as_u64() == want.port.map(u64::from))
}

/// Finds the rule and its two backendRefs in an HTTPRoute.
pub fn locate(route: &Value, cfg: &GatewayApiConfig) -> Result<Located, BackendError> {
    let rules = route["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ri = match (&cfg.rule, cfg.rule_index) {
        (Some(name), _) => rules
            .iter()
            .position(|r| r["name"].as_str() == Some(name.as_str())),
        (None, Some(i)) => (i < rules.len()).then_some(i),
        (None, None) if rules.len() == 1 => Some(0),
        (None, None) => None,
    };
    let Some(ri) = ri else {
        let names: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("#{i} {}", r["name"].as_str().unwrap_or("(unnamed)")))
            .collect();
        return Err(BackendError::NotFound {
            what: format!("the rule in HTTPRoute {}/{}", cfg.namespace, cfg.http_route),
            hint: format!(
                "its rules are: {}; set backend.gateway_api.rule or rule_index",
                names.join(", ")
            ),
        });
    };
    let refs = rules[ri]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list = || {
        refs.iter()
            .map(|r| r["name"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |want: &BackendRefSpec, field: &str| {
        refs.iter()
            .position(|r| matches(r, want))
            .ok_or_else(|| BackendError::NotFound {
                what: format!("backendRef `{}` in rule #{ri}", want.name),
                hint: format!(
                    "the rule's backendRefs are: {}; fix backend.gateway_api.{field}",
                    list()
                ),
            })
    };
    let (p, d) = (find(&cfg.primary, "primary")?, find(&cfg.dr, "dr")?);
    Ok(Located {
        primary: format!("/spec/rules/{ri}/backendRefs/{p}/weight"),
        dr: format!("/spec/rules/{ri}/backendRefs/{d}/weight"),
        absent: 1,
    })
}

/// Connects to the HTTPRoute named by `cfg`.
pub async fn connect(
    cfg: &GatewayApiConfig,
    options: &ConnectOptions,
) -> Result<RoutedObject, BackendError> {
    let client = crate::traffic::k8s::client(options).await?;
    let obj = ObjectRef {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        plural: "httproutes".into(),
        kind: "HTTPRoute".into(),
        namespace: cfg.namespace.clone(),
        name: cfg.http_route.clone(),
    };
    let c = cfg.clone();
    Ok(RoutedObject::new(
        client,
        obj,
        &gateway_part(cfg),
        vec!["v1".into()],
        Box::new(move |v| locate(v, &c)),
    ))
}

/// The rule a policy names, for the lock's identity: `rule NAME` or `rule #INDEX`.
pub(crate) fn gateway_part(cfg: &GatewayApiConfig) -> String {
    match (&cfg.rule, cfg.rule_index) {
        (Some(name), _) => format!("rule {name}"),
        (None, Some(i)) => format!("rule #{i}"),
        (None, None) => "rule #0".into(),
    }
}
