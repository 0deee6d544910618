//! What several commands share: the `run`/`status`/`rollback` options, where run state is
//! kept, how the backend is reached, and termination signals.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cutover::driver::Shutdown;
use cutover_backends::ConnectOptions;
use cutover_backends::state::{ConfigMapStore, FileStore};
use cutover_core::Span;
use cutover_core::TrafficBackend;
use cutover_core::policy::LoadedPolicy;
use cutover_core::store::StateStore;
use tokio::sync::watch;

use super::LOG_TARGET;

/// The options of the commands that act on a policy's live traffic (`run`, `status`,
/// `rollback`).
#[derive(clap::Args)]
pub(crate) struct Common {
    /// Where the run state is kept (default: <state dir>/<service>.state.json, where the
    /// state dir is $CUTOVER_STATE_DIR, else $XDG_STATE_HOME/cutover, else
    /// ~/.local/state/cutover, else /var/lib/cutover — never relative to the working directory).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Kubeconfig for the istio and gateway_api backends (default: in-cluster, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// AWS endpoint override for the route53 backend (emulators).
    #[arg(long)]
    pub aws_endpoint_url: Option<String>,
    /// Keep the run state in this ConfigMap (NAMESPACE/NAME) instead of a state file (for Jobs).
    /// The run's lock is the traffic object's own, whatever the state store.
    #[arg(long, conflicts_with = "state_file")]
    pub state_configmap: Option<String>,
    /// How long a run lock lives without renewal (default 30s).
    #[arg(long, hide = true)]
    pub lock_ttl: Option<Span>,
    /// Ignore a persisted unfinished run and start over (`run` only).
    #[arg(long)]
    pub fresh: bool,
    /// Serve Prometheus metrics on this address (default in a pod: 0.0.0.0:9102; else off).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push metrics to this Pushgateway at every transition and at exit.
    #[arg(long)]
    pub pushgateway_url: Option<String>,
    /// Write report.json, report.md and chart.svg into this folder at the end.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl Common {
    /// How to reach the backend: kubeconfig, context, AWS endpoint.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            aws_endpoint_url: self.aws_endpoint_url.clone(),
        }
    }

    /// The state file: `--state-file`, else `<state dir>/<service>.state.json`.
    pub(crate) fn file_store(&self, service: &str) -> FileStore {
        FileStore::new(
            self.state_file
                .clone()
                .unwrap_or_else(|| state_dir().join(format!("{service}.state.json"))),
        )
    }

    /// `--state-configmap` as (namespace, name), if given.
    pub(crate) fn configmap(&self) -> anyhow::Result<Option<(&str, &str)>> {
        match &self.state_configmap {
            None => Ok(None),
            Some(at) => at.split_once('/').map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "--state-configmap `{at}`: write NAMESPACE/NAME, e.g. cutover/checkout-run"
                )
            }),
        }
    }

    /// The state store: the ConfigMap of `--state-configmap`, else the state file.
    pub(crate) async fn store(&self, service: &str) -> anyhow::Result<Box<dyn StateStore>> {
        Ok(match self.configmap()? {
            Some((ns, name)) => {
                let client =
                    cutover_backends::traffic::k8s::client(&self.connect_options()).await?;
                Box::new(ConfigMapStore::new(
                    cutover_backends::state::ConfigMapBlob::new(client, ns, name),
                ))
            }
            None => Box::new(self.file_store(service)),
        })
    }
}

/// The default folder of run state files: absolute, the same for every working directory.
pub(crate) fn state_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CUTOVER_STATE_DIR")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("cutover")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/cutover")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/cutover"))
}

/// The policy's traffic backend, connected.
pub(crate) async fn connect(
    p: &LoadedPolicy,
    common: &Common,
) -> anyhow::Result<Arc<dyn TrafficBackend>> {
    cutover_backends::connect(&p.backend, &common.connect_options())
        .await
        .with_context(|| format!("{}: backend", p.path.display()))
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere), told once to whoever watches the receiver.
pub(crate) fn signals() -> Shutdown {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!(target: LOG_TARGET, "cannot install signal handlers");
                return;
            };
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            let _ = tx.send(Some(name.to_string()));
            // Keep the sender alive so receivers never see a closed channel.
            std::future::pending::<()>().await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(Some("Ctrl-C".to_string()));
            std::future::pending::<()>().await;
        }
    });
    rx
}
