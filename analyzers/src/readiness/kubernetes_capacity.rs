//! `kubernetes_capacity`: the primary site's ready replicas against DR's (or an absolute
//! number), read as raw JSON (`apps/v1` Deployments, `status.readyReplicas`). The finding
//! says which share of traffic the primary's ready capacity covers: `ready primary /
//! ready DR / headroom` (capped at 100 %); the run writes no stage weight above it.

use std::time::SystemTime;

use async_trait::async_trait;
use cutover_core::readiness::{CapacityCheck, SiteDeployments};
use kube::core::Request;
use kube::core::params::GetParams;
use serde_json::Value;

use super::{Finding, ReadinessCheck};

/// A `kubernetes_capacity` check.
pub struct Capacity<'a>(pub &'a CapacityCheck);

async fn client(context: Option<&str>) -> Result<kube::Client, String> {
    let config = match context {
        Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(ctx.to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("kubeconfig context {ctx}: {e}"))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// The ready replicas of a site's Deployments, added up.
async fn ready(site: &SiteDeployments) -> Result<u64, String> {
    let c = client(site.context.as_deref()).await?;
    let mut total = 0;
    for name in &site.deployments {
        let req = Request::new(format!(
            "/apis/apps/v1/namespaces/{}/deployments",
            site.namespace
        ))
        .get(name, &GetParams::default())
        .map_err(|e| e.to_string())?;
        let v: Value = c
            .request(req)
            .await
            .map_err(|e| format!("Deployment {}/{name}: {e}", site.namespace))?;
        total += v
            .pointer("/status/readyReplicas")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    }
    Ok(total)
}

fn names(s: &SiteDeployments) -> String {
    format!("{}/{}", s.namespace, s.deployments.join(","))
}

#[async_trait]
impl ReadinessCheck for Capacity<'_> {
    fn asked(&self) -> String {
        let k = self.0;
        match (&k.dr, k.replicas) {
            (Some(dr), _) => format!(
                "ready replicas of Deployments {} (primary) against {} (DR)",
                names(&k.primary),
                names(dr)
            ),
            (None, n) => format!(
                "ready replicas of Deployments {} (primary) against {} serving all traffic",
                names(&k.primary),
                n.unwrap_or_default()
            ),
        }
    }

    async fn check(&self, _now: SystemTime) -> Finding {
        let k = self.0;
        let primary = match ready(&k.primary).await {
            Ok(n) => n,
            Err(e) => return Finding::fail(format!("primary: {e}")),
        };
        let (full, what) = match (&k.dr, k.replicas) {
            (Some(dr), _) => match ready(dr).await {
                Ok(n) => (n, "DR's ready replicas"),
                Err(e) => return Finding::fail(format!("DR: {e}")),
            },
            (None, n) => (u64::from(n.unwrap_or(1)), "replicas"),
        };
        if full == 0 {
            return Finding::fail(format!(
                "{what} are 0: nothing to compare the primary's {primary} with"
            ));
        }
        let headroom = k.headroom.unwrap_or(1.0);
        let ratio = primary as f64 / full as f64;
        let covers = (ratio / headroom * 100.0).min(100.0);
        Finding {
            ok: primary > 0,
            value: Some(ratio),
            covers: Some(covers),
            detail: format!(
                "primary ready {primary} of {what} {full} ({:.0}%): covers {covers:.0}% of traffic at headroom {headroom}",
                ratio * 100.0
            ),
        }
    }
}
