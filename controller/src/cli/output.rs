//! How the command line reports: the log format, the `tracing` subscriber, and the
//! observers that print a run's progress.

use std::sync::Arc;

use clap::ValueEnum;
use cutover::observe::Observer;
use cutover::observe::console::{Console, LogObserver};

/// The log format of `--log-format`.
// The variants have no `///` docs on purpose: clap would print them in `--help`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Auto,
    Text,
    Json,
}

impl LogFormat {
    /// `Auto` made definite: text in a terminal, JSON otherwise (a pod).
    pub(crate) fn resolve(self) -> LogFormat {
        use std::io::IsTerminal;
        match self {
            LogFormat::Auto if std::io::stdout().is_terminal() => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            f => f,
        }
    }
}

/// Installs the `tracing` subscriber: logs on stderr, filtered by `RUST_LOG` (default: the
/// run's events in JSON mode, warnings only in text mode, where the console prints them).
pub(crate) fn init_logging(format: LogFormat) {
    // In text mode the console prints every event; JSON logs carry them as info events.
    let default = if super::out::quiet() {
        "error"
    } else if format == LogFormat::Json {
        "cutover=info,warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not turn into a panic: tracing would report the failed write
        // with `eprintln!`, which panics when stderr is closed.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder
            .event_format(cutover::observe::jsonlog::JsonLines)
            .init(),
        LogFormat::Text | LogFormat::Auto => builder.init(),
    }
}

/// Progress for people: a live line in a terminal, plain lines otherwise; with `--quiet`,
/// the final outcome line alone.
pub(crate) fn console() -> Arc<dyn Observer> {
    use std::io::IsTerminal;
    if super::out::quiet() {
        Arc::new(cutover::observe::console::FinalLine::new(Box::new(
            std::io::stdout(),
        )))
    } else if std::io::stdout().is_terminal() {
        Arc::new(Console::terminal())
    } else {
        Arc::new(Console::new(Box::new(std::io::stdout())))
    }
}

/// The observers of a `cutover run` that print or log: the console and the log in text
/// mode; the log alone in JSON mode; with `--quiet`, the final outcome line alone.
pub(crate) fn observers(format: LogFormat) -> Vec<Arc<dyn Observer>> {
    if super::out::quiet() {
        return vec![console()];
    }
    match format {
        LogFormat::Text => vec![
            Arc::new(Console::new(Box::new(std::io::stdout()))),
            Arc::new(LogObserver),
        ],
        LogFormat::Json | LogFormat::Auto => vec![Arc::new(LogObserver)],
    }
}
