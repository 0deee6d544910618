//! The `cutover` command line: parses the arguments (clap) and runs one command of
//! [`cli`], whose exit code becomes the process's.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use cli::EXIT_USAGE;
use cli::common::Common;
use cli::operate::Verb;
use cli::output::LogFormat;
use cutover::demo::DemoScenario;
use cutover_core::Span;
use cutover_core::run::Action;

/// Moves traffic back from the DR site to the repaired primary in stages, judging the
/// primary from Prometheus after each step, and puts everything back on DR on a breach.
///
/// Exit codes: 0 promoted · 1 rolled back on a breach · 2 bad policy or usage ·
/// 3 preflight failed, nothing changed · 4 aborted (a signal, `cutover abort` or
/// `cutover rollback`) · 5 held (inconclusive, approval timeout or global incident) ·
/// 10 rollback could not be applied: page now.
#[derive(Parser)]
#[command(name = "cutover", version, about, long_about)]
struct Cli {
    /// Log format: `text` for people (lines and, in a terminal, a live progress line),
    /// `json` for log pipelines; `auto` is text in a terminal and JSON otherwise (a pod).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Print only errors and the final outcome line (no progress, no info logs).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check policy files; prints every problem found. Exit 0 if all are valid, else 2.
    Validate {
        /// Policy files.
        #[arg(required = true)]
        policies: Vec<PathBuf>,
    },
    /// Show what a run would do: stages, timings, worst-case duration, each gate's PromQL.
    Plan(cli::plan_predict::PlanArgs),
    /// Run a cutover: preflight, then each stage, judged from Prometheus.
    Run {
        /// The policy file.
        policy: PathBuf,
        #[command(flatten)]
        args: cli::run::RunArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Show the live weights, the lock, the current run (phase, approvals, pause) and the
    /// earlier runs.
    Status {
        /// The policy file.
        policy: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = cli::status::Format::Text)]
        output: cli::status::Format,
        #[command(flatten)]
        common: Common,
    },
    /// Hold the live run at its current weight (still judged; a breach still rolls back).
    Pause(cli::operate::Operate),
    /// Lift a pause; on a held run (exit 5), continue it here at its weight.
    Resume(cli::operate::Operate),
    /// Skip the rest of the current stage's bake (never a breach or an approval).
    Promote {
        /// Go to the last stage (still judged) instead of the next.
        #[arg(long, conflicts_with = "to_next")]
        full: bool,
        /// Go to the next stage (the default).
        #[arg(long)]
        to_next: bool,
        #[command(flatten)]
        on: cli::operate::Operate,
    },
    /// Roll the live run back to DR now (the run exits 4).
    Abort(cli::operate::Operate),
    /// Approve a stage that waits for approval (`approval: manual`).
    Approve {
        /// The stage, from 1 (default: the stage waiting now).
        #[arg(long)]
        stage: Option<usize>,
        #[command(flatten)]
        on: cli::operate::Operate,
    },
    /// The emergency brake: stop the run driving this traffic (live, hung or on another
    /// machine: it never writes a forward weight again), put all traffic on DR now and verify
    /// by reading back. Exit 0, or 10 if it did not stick.
    Rollback {
        /// The policy file.
        policy: PathBuf,
        /// How long to watch, after the write, that a braked run does not put traffic back
        /// before it acknowledges the brake.
        #[arg(long, default_value = "90s")]
        watch: Span,
        #[command(flatten)]
        common: Common,
    },
    /// Play a cutover on simulated traffic and the file backend, in accelerated time.
    Demo {
        /// What the simulated primary does.
        #[arg(long, value_enum, default_value_t = DemoScenario::Healthy)]
        scenario: DemoScenario,
        /// Virtual seconds per real second; 0 plays as fast as possible.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Seed of the simulated traffic (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for the demo's weights and state files (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write report.json, report.md and chart.svg into this folder at the end.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Compare four judges (Flagger-, Argo-, Kayenta-style and cutover's sequential gates)
    /// on the same seeded simulated cutovers, in virtual time; prints a Markdown table
    /// (BENCHMARKS.md) and the acceptance checks.
    Bench(cli::bench::BenchArgs),
    /// Replay POLICY over a past window of its Prometheus, in virtual time.
    Backtest(cli::backtest::BacktestArgs),
    /// Suggest POLICY's bounds and settings from the service's own history.
    Tune(cli::tune::TuneArgs),
    /// Print the policy JSON Schema (policies/policy.schema.json).
    Schema,
    /// Print the Kubernetes objects that run POLICY as a Job: policy ConfigMap,
    /// ServiceAccount, least-privilege Roles, state ConfigMap, Lease and the hardened Job.
    Manifests {
        /// The policy file.
        policy: PathBuf,
        /// The container image of the Job.
        #[arg(long, default_value = concat!("cutover:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// The namespace of the Job, its ServiceAccount and its ConfigMaps.
        #[arg(long, default_value = "cutover")]
        namespace: String,
        /// Route 53: the IAM role of the ServiceAccount (IRSA annotation).
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Print a shell completion script, e.g. `cutover completions bash > /etc/bash_completion.d/cutover`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `cutover man | man -l -`.
    Man,
    /// Fail back a whole site: a fleet of cutovers in dependency order.
    #[command(subcommand)]
    Fleet(cli::fleet::FleetCommand),
}

fn main() -> ExitCode {
    cli::out::install_panic_hook();
    let mut args = Cli::parse();
    let asked_json = args.log_format == LogFormat::Json;
    args.log_format = args.log_format.resolve();
    cli::out::set_quiet(args.quiet);
    cli::output::init_logging(args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            cli::out::err(&format!("cutover: cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(dispatch(args, asked_json)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            cli::out::err(&format!("cutover: {e:#}"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs the command; a policy file that does not load is exit 2, its problems printed.
async fn dispatch(args: Cli, asked_json: bool) -> anyhow::Result<u8> {
    use cli::load_or_report as load;
    match args.command {
        Command::Validate { policies } => Ok(cli::validate::validate(&policies)),
        Command::Plan(a) => Ok(match load(&a.policy) {
            Some(p) => cli::plan::plan(&p, &a).await,
            None => EXIT_USAGE,
        }),
        Command::Run {
            policy,
            args: run,
            common,
        } => match load(&policy) {
            Some(p) => cli::run::run(p, common, args.log_format, run).await,
            None => Ok(EXIT_USAGE),
        },
        Command::Status {
            policy,
            output,
            common,
        } => match load(&policy) {
            Some(p) => cli::status::status(p, common, output).await,
            None => Ok(EXIT_USAGE),
        },
        Command::Pause(on) => {
            cli::operate::command(on, Verb::Do(Action::Pause), args.log_format).await
        }
        Command::Resume(on) => {
            cli::operate::command(on, Verb::Do(Action::Resume), args.log_format).await
        }
        Command::Abort(on) => {
            cli::operate::command(on, Verb::Do(Action::Abort), args.log_format).await
        }
        Command::Promote { full, on, .. } => {
            cli::operate::command(on, Verb::Do(Action::Promote { full }), args.log_format).await
        }
        Command::Approve { stage, on } => {
            cli::operate::command(on, Verb::Approve(stage), args.log_format).await
        }
        Command::Rollback {
            policy,
            watch,
            common,
        } => match load(&policy) {
            Some(p) => cli::rollback::rollback(p, common, watch.get()).await,
            None => Ok(EXIT_USAGE),
        },
        Command::Demo {
            scenario,
            speed,
            seed,
            dir,
            report,
        } => cli::demo::demo(scenario, speed, seed, dir, report, asked_json).await,
        Command::Backtest(a) => cli::backtest::backtest(a).await,
        Command::Tune(a) => cli::tune::tune(a).await,
        Command::Schema => Ok(cli::schema::schema()),
        Command::Manifests {
            policy,
            image,
            namespace,
            role_arn,
        } => Ok(match load(&policy) {
            Some(p) => cli::manifests::manifests(
                &p,
                &policy,
                cutover::manifests::Options {
                    image,
                    namespace,
                    role_arn,
                },
            ),
            None => EXIT_USAGE,
        }),
        Command::Completions { shell } => Ok(cli::docs::completions(shell, &mut Cli::command())),
        Command::Man => Ok(cli::docs::man(Cli::command())),
        Command::Fleet(cmd) => cli::fleet::fleet(cmd).await,
        Command::Bench(args) => cli::bench::bench(args).await,
    }
}
