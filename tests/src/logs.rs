//! What a test's child processes print: written to files, shown only when the test fails.
//!
//! A passing test prints nothing of its children; a failing one prints the tail of every
//! child's output under a heading naming the process, after its own panic message.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use crate::TempDir;

/// How many lines of one log a failing test shows (the last ones).
pub const TAIL: usize = 400;

/// Where a test's child processes write stdout and stderr, one file a process; every file
/// is printed when the test fails (this guard is dropped while the test panics).
pub struct Logs {
    files: Mutex<Vec<(String, PathBuf)>>,
    dir: TempDir,
}

impl Logs {
    /// An empty set of logs in a folder of its own.
    pub fn new(name: &str) -> Logs {
        Logs {
            files: Mutex::new(Vec::new()),
            dir: TempDir::new(&format!("{name}-logs")),
        }
    }

    /// A fresh log file for the process `label`: its path, and stdout and stderr handles
    /// that both append to it (so the two streams keep their order).
    pub fn sink(&self, label: &str) -> (PathBuf, Stdio, Stdio) {
        let mut files = self.files.lock().unwrap();
        let word: String = label
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join("-")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = self
            .dir
            .path()
            .join(format!("{:02}-{word}.log", files.len()));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("a log file");
        let err = out.try_clone().expect("a second handle on the log file");
        files.push((label.to_string(), path.clone()));
        (path, Stdio::from(out), Stdio::from(err))
    }

    /// Starts a helper program (not `cutover`) with its output in these logs; it is killed
    /// when the returned guard drops.
    pub fn daemon(&self, label: &str, cmd: &mut std::process::Command) -> Daemon {
        let (_, out, err) = self.sink(label);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{label} does not start: {e}"));
        Daemon { child }
    }

    /// Prints the tail of every log, in the order the processes started.
    pub fn print(&self) {
        for (label, path) in self.files.lock().unwrap().iter() {
            print_tail(label, path);
        }
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print();
        }
    }
}

/// Prints the last [`TAIL`] lines of the log at `path` under a heading naming `label`.
pub fn print_tail(label: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(TAIL);
    let note = if skipped > 0 {
        format!(", its first {skipped} lines left out")
    } else {
        String::new()
    };
    eprintln!("---- output of {label} ({} lines{note}) ----", lines.len());
    for l in &lines[skipped..] {
        eprintln!("{l}");
    }
    eprintln!("---- end of {label} ----");
}

/// A helper program started by a test; killed (and reaped) when dropped.
pub struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    /// Kills it now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
