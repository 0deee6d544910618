//! `cutover pause | resume | promote | abort | approve`: commands on a live (or held) run,
//! posted beside its state in the run's state store and acknowledged by the run within
//! one analysis interval; each waits for that acknowledgement and says what the run did.

use std::time::{Duration, SystemTime};

use cutover::lock::hostname;
use cutover_core::Span;
use cutover_core::policy::LoadedPolicy;
use cutover_core::run::{Action, Command, Phase, RunState};

use super::common::Common;
use super::output::LogFormat;
use super::run::{Begin, drive_locked};
use super::{EXIT_USAGE, LOG_TARGET};

/// Exit code of a command the run did not acknowledge in time (it stays posted).
pub(crate) const EXIT_NOT_ACKNOWLEDGED: u8 = 3;

/// The options every operator command has.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct OperatorArgs {
    /// Who you are, recorded with the command and counted for two-person approvals
    /// (default: $CUTOVER_ACTOR, else user@host).
    #[arg(long = "as", value_name = "NAME", env = "CUTOVER_ACTOR")]
    pub actor: Option<String>,
    /// Why: a ticket, a runbook step. Recorded in the run's events and report.
    #[arg(long)]
    pub reason: Option<String>,
    /// How long to wait for the run's acknowledgement (default: two of the plan's longest
    /// analysis intervals plus 30s).
    #[arg(long)]
    pub timeout: Option<Span>,
}

/// An operator command's arguments: the policy, who and why, where the run's state is.
#[derive(clap::Args)]
pub(crate) struct Operate {
    /// The policy file.
    policy: std::path::PathBuf,
    #[command(flatten)]
    op: OperatorArgs,
    #[command(flatten)]
    common: Common,
}

/// An operator command on the policy's run: loads the policy (exit 2 if it does not load).
pub(crate) async fn command(on: Operate, verb: Verb, format: LogFormat) -> anyhow::Result<u8> {
    match super::load_or_report(&on.policy) {
        Some(p) => operate(p, on.common, on.op, verb, format).await,
        None => Ok(EXIT_USAGE),
    }
}

/// Who is acting: `--as`, else `$USER@host`.
fn actor(op: &OperatorArgs) -> String {
    op.actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "someone".into());
            format!("{user}@{}", hostname())
        })
}

/// What the operator typed: an [`Action`], with `approve`'s stage still optional.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verb {
    /// An action as it is.
    Do(Action),
    /// `approve [--stage N]` (1-based; default: the stage waiting).
    Approve(Option<usize>),
}

/// Posts `action` for the policy's run and waits for the run's answer. `resume` on a held
/// run continues that run in this process instead (as `cutover run` would).
pub(crate) async fn operate(
    p: LoadedPolicy,
    common: Common,
    op: OperatorArgs,
    verb: Verb,
    format: LogFormat,
) -> anyhow::Result<u8> {
    let service = p.policy.service.clone();
    let store = common.store(&service).await?;
    let mut name = match verb {
        Verb::Do(a) => a.describe(),
        Verb::Approve(_) => "approve".into(),
    };
    let say = |msg: String| {
        super::out::err(&format!("cutover {name}: {service}: {msg}"));
        Ok(EXIT_USAGE)
    };
    let state = match store.load().await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return say(format!(
                "no run is recorded in {}; nothing to {name} (start one with `cutover run`)",
                store.describe()
            ));
        }
        Err(e) => return say(format!("{e}; nothing was posted")),
    };
    if state.service != service {
        return say(format!(
            "{} holds runs of service `{}`, not `{service}`; is this the right policy and --state-file/--state-configmap?",
            store.describe(),
            state.service
        ));
    }
    let action = match verb {
        Verb::Do(a) => a,
        Verb::Approve(stage) => {
            match approve_stage(
                stage,
                state
                    .awaiting
                    .filter(|_| !state.phase.is_terminal())
                    .map(|a| a.stage),
            ) {
                Ok(stage) => Action::Approve { stage },
                Err(why) => return say(why),
            }
        }
    };
    name = action.describe();
    let say = |msg: String| {
        super::out::err(&format!("cutover {name}: {service}: {msg}"));
        Ok(EXIT_USAGE)
    };
    let by = actor(&op);
    let command = Command {
        id: format!(
            "{}-{}-{}",
            name.split_whitespace().next().unwrap_or("cmd"),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            std::process::id()
        ),
        run_id: state.run_id.clone(),
        action,
        by: by.clone(),
        reason: op.reason.clone(),
        at: SystemTime::now(),
    };
    if state.phase.is_terminal() {
        if action == Action::Resume && state.phase == Phase::Held {
            super::out::err(&format!(
                "cutover resume: {service}: continuing held run {} at its weight (by {by})",
                state.run_id
            ));
            return drive_locked(
                p,
                common,
                format,
                store,
                Begin::ContinueHeld(state, command),
            )
            .await;
        }
        let hint = if state.phase == Phase::Held {
            "`cutover resume` continues it at its weight, `cutover rollback` puts all traffic on DR"
        } else {
            "`cutover run` starts a new run"
        };
        let o = state.outcome.clone();
        return say(format!(
            "run {} is over: {} (exit {}){}; nothing to {name}. {hint}",
            state.run_id,
            state.display_phase(),
            o.as_ref().map_or(10, |o| o.exit_code()),
            o.map(|o| format!(": {}", o.reason)).unwrap_or_default()
        ));
    }
    if state.dry_run {
        return say("the record is a dry run's; there is nothing to command".into());
    }
    if let Err(why) = precheck(&state, &command, &p) {
        return say(why);
    }
    store.post_command(&command).await?;
    tracing::info!(target: LOG_TARGET, id = %command.id, run_id = %command.run_id, "posted `{name}`");
    let timeout = op.timeout.map(Span::get).unwrap_or_else(|| {
        let longest = p
            .plan
            .stages
            .iter()
            .map(|s| s.interval)
            .max()
            .unwrap_or(Duration::from_secs(30));
        longest * 2 + Duration::from_secs(30)
    });
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(s)) = store.load().await
            && let Some(a) = s.operator.iter().find(|a| a.command.id == command.id)
        {
            let waited = started.elapsed().as_secs_f64();
            if a.accepted {
                super::out::line(&format!(
                    "{name}: run {} acknowledged after {waited:.1}s: {}",
                    s.run_id, a.result
                ));
                return Ok(0);
            }
            super::out::err(&format!(
                "cutover {name}: run {} refused: {}",
                s.run_id, a.result
            ));
            return Ok(EXIT_USAGE);
        }
        if started.elapsed() >= timeout {
            super::out::err(&format!(
                "cutover {name}: {service}: run {} did not acknowledge within {}; is its process (pod) running? \
                 The command stays posted in {} and is applied when the run picks it up",
                command.run_id,
                humantime::format_duration(timeout),
                store.describe()
            ));
            return Ok(EXIT_NOT_ACKNOWLEDGED);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What can be refused before posting, from the record and the policy (the run checks
/// again, and has the last word).
fn precheck(state: &RunState, command: &Command, p: &LoadedPolicy) -> Result<(), String> {
    match command.action {
        Action::Approve { stage } => {
            let n = p.plan.stages.len();
            if stage >= n {
                return Err(format!(
                    "the plan has {n} stages; there is no stage {}",
                    stage + 1
                ));
            }
            if !p.plan.approvals.contains_key(&stage) {
                return Err(format!(
                    "stage {} ({}%) needs no approval in {}",
                    stage + 1,
                    p.plan.stages[stage].weight,
                    p.path.display()
                ));
            }
            if state
                .approvals
                .get(&stage)
                .is_some_and(|g| g.iter().any(|a| a.by == command.by))
            {
                return Err(format!(
                    "{} already approved stage {}; the next approval must come from someone else (--as NAME)",
                    command.by,
                    stage + 1
                ));
            }
            Ok(())
        }
        Action::Resume if state.paused.is_none() => Err(format!(
            "run {} is {}, not paused; nothing to resume",
            state.run_id,
            state.display_phase()
        )),
        _ => Ok(()),
    }
}

/// The stage `approve` is about: `--stage N` (1-based), else the one waiting.
pub(crate) fn approve_stage(stage: Option<usize>, waiting: Option<usize>) -> Result<usize, String> {
    match (stage, waiting) {
        (Some(0), _) => Err("--stage counts from 1".into()),
        (Some(n), _) => Ok(n - 1),
        (None, Some(i)) => Ok(i),
        (None, None) => Err(
            "no stage is waiting for approval; name the stage to approve ahead with --stage N"
                .into(),
        ),
    }
}
