//! `cutover fleet validate|plan|run|status|abort|export|schema FLEET`: a site failed back
//! as a fleet of cutovers in dependency order.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cutover::fleet::driver::{abort_file, drive, load_state};
use cutover::fleet::local::LocalExecutor;
use cutover::fleet::store::FolderStore;
use cutover_core::fleet::{Fleet, FleetPlan, FleetState, SvcStatus};
use cutover_core::run::RunState;

use super::EXIT_USAGE;
use super::common::{signals, state_dir};
use super::fleet_watch::{Watching, watch};

/// `cutover fleet`'s subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum FleetCommand {
    /// Check a fleet file and every policy it names; every problem with its field. Exit 0 or 2.
    Validate {
        /// The fleet file.
        fleet: PathBuf,
    },
    /// The services by layer, the fleet's best and worst duration and its Prometheus load.
    Plan {
        /// The fleet file.
        fleet: PathBuf,
    },
    /// Fail back the fleet: each service's cutover in dependency order, at most
    /// `max_parallel` at once. Exit 0 all promoted, 1 a service did not promote (the fleet
    /// stopped or rolled back), 4 aborted, 5 frozen by a global incident, 10 page now.
    Run {
        /// The fleet file.
        fleet: PathBuf,
        #[command(flatten)]
        opts: FleetOpts,
        /// How each cutover runs: `local` (child processes on this machine) or
        /// `kubernetes` (one Job each, from the fleet's `kubernetes:` template).
        #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
        executor: ExecutorKind,
        /// Start a new fleet run even if the last one did not finish.
        #[arg(long)]
        fresh: bool,
        /// Extra arguments for every service's `cutover` (e.g. `--lock-ttl 6s`).
        #[arg(long = "cutover-arg", allow_hyphen_values = true)]
        cutover_args: Vec<String>,
        /// Serve the fleet's metrics (`cutover_fleet_*`) on this address.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Also write the fleet report (fleet-report.json, fleet-report.md) into this folder
        /// (it is always written into the state folder).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Every service's phase, weight and exit, from the fleet's state.
    Status {
        /// The fleet file.
        fleet: PathBuf,
        #[command(flatten)]
        opts: FleetOpts,
        /// Where the fleet runs (`kubernetes`: its state is a ConfigMap).
        #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
        executor: ExecutorKind,
    },
    /// Abort a running fleet: its running cutovers roll back now, nothing more starts.
    Abort {
        /// The fleet file.
        fleet: PathBuf,
        #[command(flatten)]
        opts: FleetOpts,
        /// Who, recorded (default: $CUTOVER_ACTOR, else user@host).
        #[arg(long = "as", value_name = "NAME", env = "CUTOVER_ACTOR")]
        actor: Option<String>,
        /// Where the fleet runs (`kubernetes`: the abort is posted in its ConfigMap).
        #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
        executor: ExecutorKind,
    },
    /// The fleet's DAG in another engine's format.
    Export {
        /// The fleet file.
        fleet: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value_t = ExportFormat::ArgoWorkflow)]
        format: ExportFormat,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Print the fleet file's JSON Schema.
    Schema,
}

/// Where a fleet's state lives.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct FleetOpts {
    /// The fleet's state folder (default: <state dir>/fleet-<name>): its state and, with the
    /// local executor, each service's run state and log.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Kubeconfig of `--executor kubernetes` (default: in-cluster, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context of `--executor kubernetes`.
    #[arg(long)]
    pub context: Option<String>,
    /// How long the fleet's Lease lives without renewal (`--executor kubernetes`; 30s).
    #[arg(long, hide = true)]
    pub lease_ttl: Option<cutover_core::Span>,
}

/// How each cutover of a fleet runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExecutorKind {
    /// As child processes of this one.
    Local,
    /// As one Kubernetes Job per service.
    Kubernetes,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// An Argo Workflows `Workflow`.
    ArgoWorkflow,
}

/// `fleet status`'s lines: the fleet's phase, then each service's layer, weights (from its
/// run record, if found) and status, then the outcome.
pub(crate) fn print_status(p: &FleetPlan, s: &FleetState, records: &[Option<RunState>]) {
    super::out::line(&format!(
        "fleet {} run {}: {:?}{}",
        s.fleet,
        s.run_id,
        s.phase,
        s.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    for (i, (name, st)) in s.services.iter().enumerate() {
        let record = records.get(i).and_then(Option::as_ref);
        let weights = record
            .and_then(|r| r.weights)
            .map(|w| w.to_string())
            .unwrap_or_else(|| "-".into());
        let what = match st {
            SvcStatus::Waiting => "waiting".to_string(),
            SvcStatus::Running { .. } => format!(
                "running ({})",
                record
                    .map(RunState::display_phase)
                    .unwrap_or_else(|| "starting".into())
            ),
            SvcStatus::Ended { exit, reason, .. } => format!("exit {exit}: {reason}"),
            SvcStatus::RolledBack { ok, detail, .. } => format!(
                "rolled back by the fleet ({}): {detail}",
                if *ok { "verified" } else { "NOT VERIFIED" }
            ),
        };
        let layer = p.services.get(i).map(|x| x.layer).unwrap_or_default();
        super::out::line(&format!("  L{layer} {name:<24} {weights:<24} {what}"));
    }
    if let Some(o) = &s.outcome {
        super::out::line(&format!("outcome: exit {}: {}", o.exit, o.reason));
    }
}

fn load(path: &Path) -> Option<FleetPlan> {
    match cutover_core::fleet::load(path) {
        Ok(p) => Some(p),
        Err(e) => {
            super::out::err(&format!("{e}"));
            None
        }
    }
}

fn dir_of(plan: &FleetPlan, opts: &FleetOpts) -> PathBuf {
    opts.state_dir
        .clone()
        .unwrap_or_else(|| state_dir().join(format!("fleet-{}", plan.spec.fleet)))
}

/// Who aborts: `--as`, else user@host.
fn actor_or_me(actor: Option<String>) -> String {
    actor.unwrap_or_else(|| {
        format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "someone".into()),
            cutover::lock::hostname()
        )
    })
}

/// Runs a `cutover fleet` subcommand; its exit code.
pub(crate) async fn fleet(cmd: FleetCommand) -> anyhow::Result<u8> {
    match cmd {
        FleetCommand::Schema => {
            let schema = schemars::schema_for!(cutover_core::fleet::FleetSpec);
            super::out::line(&serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
        FleetCommand::Validate { fleet } => Ok(match load(&fleet) {
            Some(p) => {
                super::out::line(&format!(
                    "{}: ok ({} services in {} layers)",
                    fleet.display(),
                    p.services.len(),
                    p.layers().len()
                ));
                0
            }
            None => EXIT_USAGE,
        }),
        FleetCommand::Plan { fleet } => Ok(match load(&fleet) {
            Some(p) => {
                super::out::print(&cutover::fleet::plan::render(&p));
                0
            }
            None => EXIT_USAGE,
        }),
        FleetCommand::Export {
            fleet,
            format,
            json,
        } => {
            let Some(p) = load(&fleet) else {
                return Ok(EXIT_USAGE);
            };
            match format {
                ExportFormat::ArgoWorkflow => match cutover::fleet::argo::workflow(&p) {
                    Ok(w) if json => {
                        super::out::line(&serde_json::to_string_pretty(&w)?);
                        Ok(0)
                    }
                    Ok(w) => {
                        super::out::print(&super::status::to_yaml(&w));
                        Ok(0)
                    }
                    Err(e) => {
                        super::out::err(&format!("cutover fleet export: {e}"));
                        Ok(EXIT_USAGE)
                    }
                },
            }
        }
        FleetCommand::Run {
            fleet,
            opts,
            executor: ExecutorKind::Kubernetes,
            fresh,
            cutover_args,
            metrics_addr,
            report,
        } => match load(&fleet) {
            Some(p) => {
                let watching = Watching {
                    metrics_addr,
                    report,
                };
                super::fleet_k8s::run(p, &opts, fresh, cutover_args, watching).await
            }
            None => Ok(EXIT_USAGE),
        },
        FleetCommand::Status {
            fleet,
            opts,
            executor: ExecutorKind::Kubernetes,
        } => match load(&fleet) {
            Some(p) => super::fleet_k8s::status(p, &opts).await,
            None => Ok(EXIT_USAGE),
        },
        FleetCommand::Abort {
            fleet,
            opts,
            actor,
            executor: ExecutorKind::Kubernetes,
        } => match load(&fleet) {
            Some(p) => super::fleet_k8s::abort(p, &opts, actor_or_me(actor)).await,
            None => Ok(EXIT_USAGE),
        },
        FleetCommand::Run {
            fleet,
            opts,
            executor: ExecutorKind::Local,
            fresh,
            cutover_args,
            metrics_addr,
            report,
        } => {
            let Some(p) = load(&fleet) else {
                return Ok(EXIT_USAGE);
            };
            let dir = dir_of(&p, &opts);
            std::fs::create_dir_all(&dir)?;
            if fresh {
                // An abort posted for an earlier fleet run is not this one's.
                let _ = std::fs::remove_file(abort_file(&dir));
            }
            let saved = if fresh {
                None
            } else {
                load_state(&dir).map_err(anyhow::Error::msg)?
            };
            let mut f = match saved {
                Some(s) if s.outcome.is_none() => match Fleet::resume(p.clone(), s) {
                    Some(f) => {
                        super::out::line(&format!(
                            "fleet {}: resuming run {}",
                            p.spec.fleet,
                            f.state().run_id
                        ));
                        f
                    }
                    None => {
                        super::out::err(&format!(
                            "cutover fleet run: {} holds an unfinished run of other services; pass --fresh or another --state-dir",
                            dir.display()
                        ));
                        return Ok(EXIT_USAGE);
                    }
                },
                _ => {
                    let t = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs();
                    Fleet::new(
                        p.clone(),
                        format!("{}-{t}", p.spec.fleet),
                        SystemTime::now(),
                    )
                }
            };
            let exe = std::env::current_exe()?;
            let executor = LocalExecutor::new(exe, dir.clone(), cutover_args);
            let reader = std::sync::Arc::new(FolderStore::new(&dir));
            let watcher = watch(&p, reader.clone(), metrics_addr).await?;
            let o = drive(&mut f, &executor, &dir, signals()).await;
            watcher
                .finish(&p, reader.as_ref(), Some(&dir), report.as_deref())
                .await;
            if o.exit == 10 {
                super::out::err(&format!("cutover fleet: PAGE NOW: {}", o.reason));
            }
            Ok(o.exit.clamp(0, 255) as u8)
        }
        FleetCommand::Status { fleet, opts, .. } => {
            let Some(p) = load(&fleet) else {
                return Ok(EXIT_USAGE);
            };
            let dir = dir_of(&p, &opts);
            let Some(s) = load_state(&dir).map_err(anyhow::Error::msg)? else {
                super::out::err(&format!(
                    "cutover fleet status: no fleet run recorded in {}",
                    dir.display()
                ));
                return Ok(EXIT_USAGE);
            };
            let records: Vec<Option<RunState>> = s
                .services
                .iter()
                .map(|(name, _)| {
                    std::fs::read(dir.join(format!("{name}.state.json")))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                })
                .collect();
            print_status(&p, &s, &records);
            Ok(0)
        }
        FleetCommand::Abort {
            fleet, opts, actor, ..
        } => {
            let Some(p) = load(&fleet) else {
                return Ok(EXIT_USAGE);
            };
            let dir = dir_of(&p, &opts);
            match load_state(&dir).map_err(anyhow::Error::msg)? {
                Some(s) if s.outcome.is_none() => {
                    let by = actor.unwrap_or_else(|| {
                        format!(
                            "{}@{}",
                            std::env::var("USER").unwrap_or_else(|_| "someone".into()),
                            cutover::lock::hostname()
                        )
                    });
                    std::fs::write(abort_file(&dir), &by)?;
                    // Acknowledged once the fleet says it is stopping (or over).
                    for _ in 0..60 {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        if let Ok(Some(s)) = load_state(&dir)
                            && (s.reason.as_deref().is_some_and(|r| r.contains(&by))
                                || s.outcome.is_some())
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
                        abort_file(&dir).display()
                    ));
                    Ok(3)
                }
                _ => {
                    super::out::err(&format!(
                        "cutover fleet abort: no running fleet recorded in {}; nothing to abort",
                        dir.display()
                    ));
                    Ok(EXIT_USAGE)
                }
            }
        }
    }
}
