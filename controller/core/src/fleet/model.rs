//! The fleet file's model: the services of a site, their order, how many run at once, and
//! what a failure does. What serde reads; [`super::load::load`] reads and checks it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Span;

/// A fleet: the services of a site failed back in dependency order, one cutover each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The fleet's name: lowercase letters, digits and dashes (a DNS label).
    pub fleet: String,
    /// Cutovers running at once, at most. Default 5.
    #[serde(default = "d_parallel")]
    pub max_parallel: u32,
    /// After every service of a layer is promoted, wait this long before the next layer
    /// starts (watching the layer at 100 %). Default `0s`.
    #[serde(default)]
    pub soak: Option<Span>,
    /// Per-layer soak, overriding `soak`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// What a service that does not promote does to the fleet. Default `stop`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Several services failing close together is a common cause (DR, the network, a
    /// shared dependency) more likely than several broken primaries: the fleet freezes
    /// (nothing starts, nothing is rolled back by the fleet, exit 5) instead of rolling
    /// everything back into it. Default: 3 failures within 10 minutes.
    #[serde(default)]
    pub global_incident: GlobalIncident,
    /// The services.
    pub services: Vec<ServiceEntry>,
    /// Webhooks told when the fleet starts, a layer is promoted, a service does not promote,
    /// and the fleet ends (Slack-compatible, as a policy's `notify:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::policy::NotifySpec>,
    /// The Job template of `--executor kubernetes` (and of `fleet export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesExecutor>,
}

fn d_parallel() -> u32 {
    5
}

/// One service of a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The service: its policy's `service`.
    pub name: String,
    /// Its policy file, relative to the fleet file.
    pub policy: String,
    /// Services that must be promoted before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Its layer: every service of a lower layer is promoted (and the layer soaked) before
    /// it starts. Default 0.
    #[serde(default)]
    pub layer: u32,
}

/// A layer's own soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// The layer.
    pub layer: u32,
    /// Its soak.
    pub soak: Span,
}

/// What a failed service does to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Start nothing more; cutovers under way finish; promoted services stay promoted.
    #[default]
    Stop,
    /// Stop, then roll back every promoted service (and any held one), in reverse
    /// dependency order, each verified.
    RollbackFleet,
}

/// When failures are a global incident.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalIncident {
    /// Failures (rolled back, held, aborted, preflight failed) that freeze the fleet.
    pub failures: u32,
    /// Within this long of each other.
    pub within: Span,
}

impl Default for GlobalIncident {
    fn default() -> Self {
        GlobalIncident {
            failures: 3,
            within: Span::secs(600),
        }
    }
}

/// How `--executor kubernetes` runs each service: one `batch/v1` Job from this template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesExecutor {
    /// Namespace of the Jobs, their ConfigMaps and the fleet's state.
    pub namespace: String,
    /// The cutover image.
    pub image: String,
    /// The Jobs' ServiceAccount.
    pub service_account: String,
    /// The ConfigMap holding each service's policy as `policy.yaml`; `{service}` is
    /// replaced. Default `cutover-{service}-policy`.
    #[serde(default = "d_policy_cm")]
    pub policy_configmap: String,
}

fn d_policy_cm() -> String {
    "cutover-{service}-policy".into()
}
