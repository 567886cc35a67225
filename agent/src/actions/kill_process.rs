//! `kill_process {pid?, sha256?, grace_secs?}`: terminate one process (by
//! pid, optionally checked against the executable's SHA-256), or every
//! process running an executable with that SHA-256 (sha256 alone).
//! Not re-runnable after a crash: the pid may belong to another process by then.

use std::time::Duration;

use picket_common::actions::params;
use picket_common::actions::results::{KillProcessOutput, Killed};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::{Feature, KillReport, KillRequest};

pub struct KillProcess;

fn killed(r: KillReport) -> Killed {
    Killed {
        pid: r.pid,
        executable: r.executable,
        executable_sha256: r.executable_sha256,
        signals: r.signals.iter().map(|s| s.to_string()).collect(),
        exited: r.exited,
    }
}

impl Action for KillProcess {
    const KIND: ActionKind = ActionKind::KillProcess;
    const NEEDS: &'static [Feature] = &[Feature::Processes];
    type Params = params::KillProcess;
    type Output = KillProcessOutput;

    fn run(&self, p: params::KillProcess, run: &Run<'_>) -> Result<KillProcessOutput, ActionFailure> {
        let grace = Duration::from_secs(p.grace_secs);
        match (p.pid, p.sha256) {
            (Some(pid), sha256) => {
                let report = run.platform.kill_process(&KillRequest { pid, sha256, grace })?;
                Ok(KillProcessOutput::One(killed(report)))
            }
            (None, Some(sha256)) => {
                let pids = run.platform.processes_running(&sha256)?;
                let mut done = Vec::new();
                let mut errors = Vec::new();
                for pid in pids {
                    // The hash is checked again right before each signal.
                    match run.platform.kill_process(&KillRequest { pid, sha256: Some(sha256.clone()), grace }) {
                        Ok(r) => done.push(killed(r)),
                        Err(e) => errors.push(format!("pid {pid}: {e}")),
                    }
                }
                if done.is_empty() && !errors.is_empty() {
                    return Err(ActionFailure::error(errors.join("; ")));
                }
                Ok(KillProcessOutput::BySha256 { sha256, killed: done, errors })
            }
            (None, None) => Err(ActionFailure::invalid("kill_process needs pid or sha256")),
        }
    }
}
