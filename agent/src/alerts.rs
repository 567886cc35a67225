//! The alert queue: each report is written to `<state dir>/alerts/<id>.json`
//! (fsync'd) before it is sent, resent on every reconnect and whenever it
//! has waited unacknowledged for [`RESEND_AFTER`], and deleted only when the
//! coordinator answers `AlertAck`. The coordinator records reports by id, so
//! a resend is never counted twice. A detection found while offline, or
//! before a crash, is delivered later — never lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use picket_common::detection::{AlertReport, Detection};
use picket_common::proto::AgentMsg;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::fsutil::{create_private_dir, write_atomic};

/// A report not acknowledged after this long is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);

pub struct AlertQueue {
    dir: PathBuf,
    out: mpsc::Sender<AgentMsg>,
}

impl AlertQueue {
    pub fn open(state_dir: &Path, out: mpsc::Sender<AgentMsg>) -> std::io::Result<Self> {
        let dir = state_dir.join("alerts");
        create_private_dir(&dir)?;
        Ok(Self { dir, out })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Queue detections as one report and send it if the session is up.
    pub fn raise(&self, source: &str, detections: Vec<Detection>) {
        if detections.is_empty() {
            return;
        }
        let report = AlertReport {
            report_id: Uuid::new_v4(),
            source: source.to_string(),
            observed_ms: crate::clock::now_ms(),
            detections,
        };
        for d in &report.detections {
            tracing::warn!(path = %d.path, rule = %d.rule, severity = %d.severity, sha256 = %d.sha256, source, "detection");
        }
        match serde_json::to_vec(&report) {
            Ok(bytes) => {
                if let Err(error) = write_atomic(&self.path(report.report_id), &bytes) {
                    tracing::error!(%error, "cannot queue the alert on disk; sending it from memory only");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode the alert"),
        }
        if self.out.try_send(AgentMsg::Alert(report)).is_err() {
            tracing::info!("offline or busy: the alert waits in the queue");
        }
    }

    /// The coordinator stored this report.
    pub fn acked(&self, id: Uuid) {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, report = %id, "cannot drop an acknowledged alert; it may be resent"),
        }
    }

    /// Send queued reports: all of them (`older_than` zero, after a
    /// reconnect) or those waiting longer than `older_than`.
    pub fn resend(&self, older_than: Duration) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
            if age.is_some_and(|a| a < older_than) {
                continue;
            }
            let report = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<AlertReport>(&b).ok());
            match report {
                Some(report) => {
                    if self.out.try_send(AgentMsg::Alert(report)).is_err() {
                        return; // the session is busy; the next round sends the rest
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "unreadable queued alert removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// Reports waiting for acknowledgement.
    pub fn pending(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_common::detection::Severity;

    #[tokio::test]
    async fn reports_persist_until_acked_and_resend_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = mpsc::channel(8);
        let q = AlertQueue::open(dir.path(), tx).expect("open");
        let d = Detection {
            path: "/tmp/e".into(),
            sha256: "00".repeat(32),
            size: 68,
            rule: "EICAR_Test_File".into(),
            namespace: "builtin".into(),
            severity: Severity::Malicious,
        };
        q.raise("realtime", vec![d]);
        let Some(AgentMsg::Alert(sent)) = rx.recv().await else { panic!("no alert sent") };
        assert_eq!(q.pending(), 1);
        // A new process on the same state dir resends it.
        let (tx2, mut rx2) = mpsc::channel(8);
        let q2 = AlertQueue::open(dir.path(), tx2).expect("reopen");
        q2.resend(Duration::ZERO);
        let Some(AgentMsg::Alert(again)) = rx2.recv().await else { panic!("not resent") };
        assert_eq!(again, sent);
        q2.resend(RESEND_AFTER);
        assert!(rx2.try_recv().is_err(), "a fresh report is not resent before its time");
        q2.acked(sent.report_id);
        assert_eq!(q2.pending(), 0);
    }
}
