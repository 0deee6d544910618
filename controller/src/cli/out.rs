//! Writing to stdout and stderr without ever panicking: a closed stdout (`cutover plan P |
//! head -1`, a log shipper that went away) ends the output quietly and the command keeps its
//! own exit code; an error on stderr is ignored (there is nowhere left to say it). Also
//! `--quiet`: only errors and the final outcome line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout could not be written: nothing more is tried.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// `--quiet`.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns `--quiet` on for the whole process.
pub(crate) fn set_quiet(on: bool) {
    QUIET.store(on, Ordering::Relaxed);
}

/// Whether `--quiet` is on.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes `text` to stdout as is: the command's product (a plan, the schema, manifests).
pub(crate) fn print(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            err(&format!("cutover: cannot write to stdout: {e}"));
        }
    }
}

/// Writes one line of the command's product to stdout.
pub(crate) fn line(text: &str) {
    print(&format!("{text}\n"));
}

/// Writes one line of progress to stdout, unless `--quiet`.
pub(crate) fn chatter(text: &str) {
    if !quiet() {
        line(text);
    }
}

/// Writes one line to stderr (errors, warnings); a closed stderr is ignored.
pub(crate) fn err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{text}").and_then(|()| e.flush());
}

/// Makes the `println!`s that remain (and any library's) end the process quietly, exit 0,
/// when the stream they print to is closed, instead of a panic and a backtrace; any other
/// panic is reported as before.
pub(crate) fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to std") {
            std::process::exit(0);
        }
        default(info);
    }));
}
