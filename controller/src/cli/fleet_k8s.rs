//! `cutover fleet run|status|abort --executor kubernetes`: the fleet's state in the
//! ConfigMap `<namespace>/cutover-fleet-<fleet>`, written only by the orchestrator that
//! holds the Lease of the same name; each service's cutover a Job, its run state in the
//! ConfigMap `cutover-<service>-run`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cutover::fleet::driver::drive_with;
use cutover::fleet::kubernetes::{KubernetesExecutor, Setup, fleet_configmap, run_configmap};
use cutover::fleet::store::{ConfigMapFleetStore, FleetStore};
use cutover::lock::{Ownership, hostname};
use cutover_backends::ConnectOptions;
use cutover_backends::objects::{Cluster, object};
use cutover_core::fleet::{Fleet, FleetPlan, KubernetesExecutor as Template};
use cutover_core::lock::LockHolder;
use cutover_core::store::StateStore;

use super::EXIT_USAGE;
use super::common::signals;
use super::fleet::FleetOpts;

/// The fleet's `kubernetes:` section, or says it is missing.
fn template(p: &FleetPlan) -> Option<Template> {
    let t = p.spec.kubernetes.clone();
    if t.is_none() {
        super::out::err(&format!(
            "{}: kubernetes: missing; --executor kubernetes needs the Jobs' namespace, image and service_account",
            p.path.display()
        ));
    }
    t
}

async fn connect(opts: &FleetOpts) -> anyhow::Result<Cluster> {
    Ok(Cluster::connect(&ConnectOptions {
        kubeconfig: opts.kubeconfig.clone(),
        context: opts.context.clone(),
        aws_endpoint_url: None,
    })
    .await?)
}

/// `--kubeconfig K --context C` as given, for the `cutover rollback` the orchestrator runs.
fn connect_args(opts: &FleetOpts) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(k) = &opts.kubeconfig {
        a.extend(["--kubeconfig".to_string(), k.display().to_string()]);
    }
    if let Some(c) = &opts.context {
        a.extend(["--context".to_string(), c.clone()]);
    }
    a
}

/// `cutover fleet run --executor kubernetes`.
pub(crate) async fn run(
    p: FleetPlan,
    opts: &FleetOpts,
    fresh: bool,
    cutover_args: Vec<String>,
    watching: super::fleet_watch::Watching,
) -> anyhow::Result<u8> {
    let Some(t) = template(&p) else {
        return Ok(EXIT_USAGE);
    };
    let cluster = connect(opts).await?;
    let cm = fleet_configmap(&p.spec.fleet);
    let reader = ConfigMapFleetStore::new(cluster.configmap(&t.namespace, &cm), None);
    let saved = if fresh {
        None
    } else {
        reader.load().await.map_err(anyhow::Error::msg)?
    };
    let resumed = saved.filter(|s| s.outcome.is_none());
    let run_id = match &resumed {
        Some(s) => s.run_id.clone(),
        None => {
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            format!("{}-{t}", p.spec.fleet)
        }
    };
    // One orchestrator per fleet: the Lease, held for the fleet run. A restarted
    // orchestrator of the same run takes it once its predecessor is gone (or expired).
    let lease = cluster.lease(
        &t.namespace,
        &cm,
        &format!("fleet {}/{}", t.namespace, p.spec.fleet),
    );
    let me = LockHolder {
        run_id: run_id.clone(),
        host: hostname(),
        pid: std::process::id(),
        state: format!("ConfigMap {}/{cm}", t.namespace),
        acquired: 0,
        renewed: 0,
        ttl: opts.lease_ttl.map(|s| s.get().as_secs()).unwrap_or(30),
    };
    let owner = match Ownership::acquire(Arc::new(lease), me).await {
        Ok(o) => o,
        Err(e) => {
            super::out::err(&format!("cutover fleet run: {e}"));
            return Ok(EXIT_USAGE);
        }
    };
    let store = ConfigMapFleetStore::new(cluster.configmap(&t.namespace, &cm), Some(owner));
    // Read again under the Lease: what the last holder saved is what this one resumes.
    let resumed = match store.load().await.map_err(anyhow::Error::msg)? {
        Some(s) if s.outcome.is_none() && s.run_id == run_id => Some(s),
        _ => None,
    };
    let mut f = match resumed {
        Some(s) => match Fleet::resume(p.clone(), s) {
            Some(f) => {
                super::out::line(&format!("fleet {}: resuming run {run_id}", p.spec.fleet));
                f
            }
            None => {
                super::out::err(&format!(
                    "cutover fleet run: ConfigMap {}/{cm} holds an unfinished run of other services; pass --fresh",
                    t.namespace
                ));
                store.release().await;
                return Ok(EXIT_USAGE);
            }
        },
        None => Fleet::new(p.clone(), run_id.clone(), SystemTime::now()),
    };
    store.save(f.state()).await.map_err(anyhow::Error::msg)?;
    // The Jobs are owned by the fleet's state ConfigMap: deleting it collects them.
    let uid = cluster
        .get(&object(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            &t.namespace,
            &cm,
        ))
        .await?
        .and_then(|c| c["metadata"]["uid"].as_str().map(str::to_string));
    let (cluster_for_watch, watch_ns, watch_cm) =
        (cluster.clone(), t.namespace.clone(), cm.clone());
    let executor = KubernetesExecutor::new(Setup {
        cluster,
        template: t,
        fleet: p.spec.fleet.clone(),
        fleet_run: run_id,
        owner: uid.map(|u| (cm, u)),
        args: cutover_args,
        bin: std::env::current_exe()?,
        connect: connect_args(opts),
    });
    let reader: Arc<dyn FleetStore> = Arc::new(ConfigMapFleetStore::new(
        cluster_for_watch.configmap(&watch_ns, &watch_cm),
        None,
    ));
    let watcher = super::fleet_watch::watch(&p, reader.clone(), watching.metrics_addr).await?;
    let o = drive_with(&mut f, &executor, &store, signals()).await;
    watcher
        .finish(&p, reader.as_ref(), None, watching.report.as_deref())
        .await;
    store.release().await;
    if o.exit == 10 {
        super::out::err(&format!("cutover fleet: PAGE NOW: {}", o.reason));
    }
    Ok(o.exit.clamp(0, 255) as u8)
}

/// `cutover fleet status --executor kubernetes`.
pub(crate) async fn status(p: FleetPlan, opts: &FleetOpts) -> anyhow::Result<u8> {
    let Some(t) = template(&p) else {
        return Ok(EXIT_USAGE);
    };
    let cluster = connect(opts).await?;
    let cm = fleet_configmap(&p.spec.fleet);
    let store = ConfigMapFleetStore::new(cluster.configmap(&t.namespace, &cm), None);
    let Some(s) = store.load().await.map_err(anyhow::Error::msg)? else {
        super::out::err(&format!(
            "cutover fleet status: no fleet run recorded in {}",
            store.describe()
        ));
        return Ok(EXIT_USAGE);
    };
    let mut records = Vec::new();
    for (name, _) in &s.services {
        records.push(
            cluster
                .run_store(&t.namespace, &run_configmap(name))
                .load()
                .await
                .ok()
                .flatten()
                .filter(|r| r.run_id == format!("{}-{name}", s.run_id)),
        );
    }
    super::fleet::print_status(&p, &s, &records);
    Ok(0)
}

/// `cutover fleet abort --executor kubernetes`: posts the abort in the fleet's ConfigMap
/// and waits (bounded) for the orchestrator to acknowledge it.
pub(crate) async fn abort(p: FleetPlan, opts: &FleetOpts, by: String) -> anyhow::Result<u8> {
    let Some(t) = template(&p) else {
        return Ok(EXIT_USAGE);
    };
    let cluster = connect(opts).await?;
    let cm = fleet_configmap(&p.spec.fleet);
    let store = ConfigMapFleetStore::new(cluster.configmap(&t.namespace, &cm), None);
    match store.load().await.map_err(anyhow::Error::msg)? {
        Some(s) if s.outcome.is_none() => {
            store.post_abort(&by).await.map_err(anyhow::Error::msg)?;
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(Some(s)) = store.load().await
                    && (s.reason.as_deref().is_some_and(|r| r.contains(&by)) || s.outcome.is_some())
                {
                    super::out::line(&format!(
                        "fleet {}: aborted by {by}; running cutovers roll back",
                        s.fleet
                    ));
                    return Ok(0);
                }
            }
            super::out::err(&format!(
                "cutover fleet abort: the fleet did not acknowledge within 30s; is its orchestrator running? The abort stays posted in {}",
                store.describe()
            ));
            Ok(3)
        }
        _ => {
            super::out::err(&format!(
                "cutover fleet abort: no running fleet recorded in {}; nothing to abort",
                store.describe()
            ));
            Ok(EXIT_USAGE)
        }
    }
}
