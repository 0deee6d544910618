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

/// `backend:` — exactly one of `istio`, `gateway_api`, `route53` or `file`.
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

/// The one backend a valid policy names, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// `istio`
    Istio(IstioConfig),
    /// `gateway_api`
    GatewayApi(GatewayApiConfig),
    /// `route53`
    Route53(Route53Config),
    /// `file`
    File(FileBackendConfig),
}

impl BackendSpec {
    /// The one backend set, or a message saying how many were set.
    pub fn resolve(&self) -> Result<Backend, String> {
        let mut set: Vec<(Backend, &str)> = Vec::new();
        if let Some(c) = &self.istio {
            set.push((Backend::Istio(c.clone()), "istio"));
        }
        if let Some(c) = &self.gateway_api {
            set.push((Backend::GatewayApi(c.clone()), "gateway_api"));
        }
        if let Some(c) = &self.route53 {
            set.push((Backend::Route53(c.clone()), "route53"));
        }
        if let Some(c) = &self.file {
            set.push((Backend::File(c.clone()), "file"));
        }
        match set.len() {
            1 => Ok(set.remove(0).0),
            0 => Err(
                "no backend is set; give exactly one of istio, gateway_api, route53, file".into(),
            ),
            n => Err(format!(
                "{n} backends are set ({}); give exactly one",
                set.iter()
                    .map(|(_, name)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}
