//! `backend:` in a policy: exactly one of `istio`, `gateway_api`, `route53` or `file`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::backend_file::FileBackendConfig;
pub use super::backend_route53::Route53Config;

/// A destination of an Istio route: a host and an optional subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IstioDestination {
    /// `destination.host`, e.g. `checkout.production.svc.cluster.local`.
    pub host: String,
    /// `destination.subset`, e.g. `primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

/// `backend.istio`: the two destinations of one http route of a VirtualService.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IstioConfig {
    /// Namespace of the VirtualService.
    pub namespace: String,
    /// Name of the VirtualService.
    pub virtual_service: String,
    /// Name of the http route inside it (`spec.http[].name`).
    pub route: String,
    /// The primary site's destination.
    pub primary: IstioDestination,
    /// The DR site's destination.
    pub dr: IstioDestination,
}

/// A backend of a Gateway API rule: a Service name and optional port/namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendRefSpec {
    /// `backendRefs[].name`.
    pub name: String,
    /// `backendRefs[].namespace`, when it differs from the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `backendRefs[].port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `backend.gateway_api`: the two backendRefs of one rule of an HTTPRoute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayApiConfig {
    /// Namespace of the HTTPRoute.
    pub namespace: String,
    /// Name of the HTTPRoute.
    pub http_route: String,
    /// The rule, by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The rule, by index, when rules have no names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    /// The primary site's backendRef.
    pub primary: BackendRefSpec,
    /// The DR site's backendRef.
    pub dr: BackendRefSpec,
}

/// `backend:` — exactly one must be set; [`BackendSpec::kind`] checks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// An Istio VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioConfig>,
    /// A Gateway API HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiConfig>,
    /// Route 53 weighted records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Config>,
    /// A local JSON file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileBackendConfig>,
}

/// Which backend a policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `istio`
    Istio,
    /// `gateway_api`
    GatewayApi,
    /// `route53`
    Route53,
    /// `file`
    File,
}

impl BackendSpec {
    /// The one backend set, or a message saying how many were set.
    pub fn kind(&self) -> Result<BackendKind, String> {
        let set: Vec<(BackendKind, &str)> = [
            (self.istio.is_some(), BackendKind::Istio, "istio"),
            (
                self.gateway_api.is_some(),
                BackendKind::GatewayApi,
                "gateway_api",
            ),
            (self.route53.is_some(), BackendKind::Route53, "route53"),
            (self.file.is_some(), BackendKind::File, "file"),
        ]
        .into_iter()
        .filter(|(s, _, _)| *s)
        .map(|(_, k, n)| (k, n))
        .collect();
        match set.as_slice() {
            [(k, _)] => Ok(*k),
            [] => Err(
                "no backend is set; give exactly one of istio, gateway_api, route53, file".into(),
            ),
            many => Err(format!(
                "{} backends are set ({}); give exactly one",
                many.len(),
                many.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}
