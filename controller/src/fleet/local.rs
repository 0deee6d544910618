//! The embedded executor: each service's cutover is a `cutover run` child process on this
//! machine, its state in `<state dir>/<service>.state.json` and its output in
//! `<state dir>/<service>.log`. For laptops, CI and game days.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use cutover_core::fleet::FleetService;
use cutover_core::run::RunState;
use tokio::process::{Child, Command};

use super::executor::{Ended, Executor};

/// Runs cutovers as child processes of this one.
pub struct LocalExecutor {
    bin: PathBuf,
    dir: PathBuf,
    /// Extra arguments for every `cutover` child (e.g. `--lock-ttl`).
    args: Vec<String>,
    children: Mutex<BTreeMap<String, Child>>,
}

impl LocalExecutor {
    /// Children of `bin` (this program), their state and logs in `dir`.
    pub fn new(bin: PathBuf, dir: PathBuf, args: Vec<String>) -> LocalExecutor {
        LocalExecutor {
            bin,
            dir,
            args,
            children: Mutex::new(BTreeMap::new()),
        }
    }

    /// A service's state file.
    pub fn state_file(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.state.json"))
    }

    fn record(&self, service: &str) -> Option<RunState> {
        std::fs::read(self.state_file(service))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn command(&self, sub: &str, s: &FleetService) -> Result<Command, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", s.name)))
            .map_err(|e| format!("cannot open the log of {}: {e}", s.name))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open the log of {}: {e}", s.name))?;
        let mut c = Command::new(&self.bin);
        c.arg(sub)
            .arg(&s.policy_path)
            .arg("--state-file")
            .arg(self.state_file(&s.name))
            .args(&self.args)
            .env("CUTOVER_ACTOR", "fleet")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err);
        Ok(c)
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn start(&self, s: &FleetService, run_id: &str) -> Result<(), String> {
        let mut c = self.command("run", s)?;
        c.args(["--log-format", "json"])
            .env("CUTOVER_RUN_ID", run_id);
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start `cutover run` for {}: {e}", s.name))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.name.clone(), child);
        Ok(())
    }

    async fn poll(&self) -> Vec<Ended> {
        let mut ended = Vec::new();
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = Vec::new();
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let exit = status.code().unwrap_or(-1);
                done.push(name.clone());
                let reason = self
                    .record(name)
                    .and_then(|r| r.outcome)
                    .map(|o| o.reason)
                    .unwrap_or_else(|| match status.code() {
                        Some(c) => format!("exit {c} (no outcome recorded)"),
                        None => "killed by a signal".into(),
                    });
                ended.push(Ended {
                    service: name.clone(),
                    exit,
                    reason,
                });
            }
        }
        for n in done {
            children.remove(&n);
        }
        ended
    }

    async fn abort(&self, s: &FleetService) -> Result<(), String> {
        let out = self
            .command("abort", s)?
            .args(["--reason", "the fleet is aborted"])
            .status()
            .await
            .map_err(|e| e.to_string())?;
        match out.code() {
            Some(0) => Ok(()),
            c => Err(format!("`cutover abort` for {} exited {c:?}", s.name)),
        }
    }

    async fn rollback(&self, s: &FleetService) -> Result<String, String> {
        let out = self
            .command("rollback", s)?
            .args(["--watch", "5s"])
            .status()
            .await
            .map_err(|e| e.to_string())?;
        match out.code() {
            Some(0) => Ok(format!("{}: all traffic on DR, verified", s.name)),
            c => Err(format!(
                "{}: `cutover rollback` exited {c:?}; see {}",
                s.name,
                self.dir.join(format!("{}.log", s.name)).display()
            )),
        }
    }

    async fn finished(&self, s: &FleetService, run_id: &str) -> Option<Ended> {
        let r = self.record(&s.name).filter(|r| r.run_id == run_id)?;
        let o = r.outcome.filter(|_| r.phase.is_terminal())?;
        Some(Ended {
            service: s.name.clone(),
            exit: o.exit_code(),
            reason: o.reason,
        })
    }

    async fn driven_elsewhere(&self, s: &FleetService, run_id: &str) -> bool {
        self.record(&s.name)
            .is_some_and(|r| r.run_id == run_id && !r.phase.is_terminal())
    }

    fn describe(&self) -> String {
        format!(
            "local child processes (state and logs in {})",
            self.dir.display()
        )
    }
}
