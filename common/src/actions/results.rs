//! What each action kind reports when it succeeds: one type per kind, the
//! agent's `output_json` and the coordinator's reading of it, so a renamed
//! field fails to compile instead of turning into "nothing found".
//!
//! Unknown fields are ignored (a newer agent may add some). Fields that
//! every supported agent sends are required where a missing one would read
//! as "nothing found" (evidence, quarantine ids): the coordinator then
//! reports the result unreadable instead. Elsewhere missing fields default,
//! so results an older agent stored still read.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::params::{Exclusion, IsolationMode, QuarantineIds};
use crate::detection::Detection;
use crate::persistence::Removal;

/// One process signalled by `kill_process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Killed {
    pub pid: i32,
    pub executable: String,
    pub executable_sha256: Option<String>,
    /// `SIGTERM`, `SIGKILL`, in the order sent.
    pub signals: Vec<String>,
    /// Whether the process was gone when the action ended.
    pub exited: bool,
}

/// `kill_process`: one process (by pid), or every one running an executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KillProcessOutput {
    BySha256 {
        sha256: String,
        killed: Vec<Killed>,
        #[serde(default)]
        errors: Vec<String>,
    },
    One(Killed),
}

/// `isolate`: the isolation as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolateOutput {
    pub mode: IsolationMode,
    /// The coordinator's endpoints kept reachable.
    #[serde(default)]
    pub coordinator: Vec<SocketAddr>,
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
    /// The firewall rules, as applied.
    #[serde(default)]
    pub rules: String,
}

/// `release_isolation`, `release_code`: whether there was something to release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Released {
    pub released: bool,
}

/// What `restrict_code` lets run besides unchanged packaged executables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestrictPolicy {
    /// SHA-256 (hex) of executables allowed anyway.
    pub allow_sha256: Vec<String>,
    /// Path prefixes whose executables are allowed.
    pub allow_paths: Vec<PathBuf>,
    /// Mount points watched; empty: every local file system.
    pub scope: Vec<PathBuf>,
}

/// `restrict_code`: what was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestrictOutput {
    /// How the restriction was applied (the marks set).
    pub applied: String,
    pub policy: RestrictPolicy,
}

/// What a walk over files found (a scan's, or `picket-agent scan`'s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanSummary {
    pub files: u64,
    pub bytes: u64,
    pub detections: Vec<Detection>,
    pub errors: u64,
    /// Special files, symlinks and files over the size cap.
    pub skipped: u64,
    pub seconds: f64,
    /// The first few errors.
    pub error_samples: Vec<String>,
}

/// `scan`: the summary, and what it ran with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanOutput {
    #[serde(flatten)]
    pub summary: ScanSummary,
    /// `quick`, `full` or `paths`.
    pub mode: String,
    pub rules_loaded: usize,
    pub rules_version: String,
}

/// `request_sample`: the file sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleOutput {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// `collect_package`: the package sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageOutput {
    pub sha256: String,
    pub size: u64,
    /// Items in the package, and how many failed.
    pub items: usize,
    pub errors: usize,
    pub bytes_uncompressed: u64,
    pub seconds: f64,
}

/// One file moved into the vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantinedFile {
    pub quarantine_id: Uuid,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub killed_pids: Vec<i32>,
    pub persistence_removed: Vec<String>,
}

/// A copy that could not be quarantined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathError {
    pub path: PathBuf,
    pub error: String,
}

/// `stop_and_quarantine`, `delete_file`: what went into the vault. With one
/// file its fields are also given at the top level (as results always had).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineOutput {
    /// What `release_from_quarantine` takes to undo it.
    pub quarantine_id: QuarantineIds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_pids: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_removed: Option<Vec<String>>,
    #[serde(default)]
    pub files: Vec<QuarantinedFile>,
    #[serde(default)]
    pub errors: Vec<PathError>,
}

impl QuarantineOutput {
    /// The output for `files` (at least one) and the copies that failed.
    pub fn new(files: Vec<QuarantinedFile>, errors: Vec<PathError>) -> Self {
        let one = (files.len() == 1).then(|| files[0].clone());
        let quarantine_id = match &one {
            Some(f) => QuarantineIds::One(f.quarantine_id),
            None => QuarantineIds::Many(files.iter().map(|f| f.quarantine_id).collect()),
        };
        Self {
            quarantine_id,
            path: one.as_ref().map(|f| f.path.clone()),
            sha256: one.as_ref().map(|f| f.sha256.clone()),
            size: one.as_ref().map(|f| f.size),
            killed_pids: one.as_ref().map(|f| f.killed_pids.clone()),
            persistence_removed: one.as_ref().map(|f| f.persistence_removed.clone()),
            files,
            errors,
        }
    }
}

/// One file put back by `release_from_quarantine`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReleasedFile {
    pub quarantine_id: Uuid,
    pub path: PathBuf,
    pub sha256: String,
    pub persistence_restored: Vec<String>,
}

/// `release_from_quarantine`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReleaseOutput {
    pub released: Vec<ReleasedFile>,
    pub undo_of: Option<String>,
}

/// `remove_persistence`: what was removed, exactly enough to put it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistenceOutput {
    pub path: PathBuf,
    /// In words.
    pub removed: Vec<String>,
    pub removals: Vec<Removal>,
    /// The agent's own record of the removal, which `restore_persistence`
    /// puts back (absent from agents before Picket 0.2: no undo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<Uuid>,
}

/// `restore_persistence`: what was put back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreOutput {
    pub record_id: Uuid,
    /// In words.
    pub restored: Vec<String>,
    pub undo_of: Option<String>,
}

/// `offboard`: what the agent released before it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffboardOutput {
    pub isolation_released: bool,
    pub restriction_released: bool,
}

/// A TCP or UDP socket and the process holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Socket {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub protocol: String,
    pub local: String,
    pub remote: String,
    pub state: String,
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

/// The investigated file as the device sees it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceFile {
    pub path: PathBuf,
    pub exists: bool,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub uid: Option<u32>,
    /// Octal.
    pub mode: Option<String>,
    pub mtime: Option<i64>,
    /// The installed package that owns it.
    pub package: Option<String>,
}

/// A process running the investigated file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceProcess {
    pub pid: i32,
    pub executable: Option<String>,
    pub ppid: Option<i32>,
    pub parent_executable: Option<String>,
    pub connections: Vec<Socket>,
}

/// Persistence that names the investigated file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidencePersistence {
    /// In words.
    pub what: String,
    pub removal: Removal,
}

/// How far the search for copies went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CopiesSearch {
    pub paths: Vec<PathBuf>,
    /// Regular files looked at.
    pub files_seen: u64,
    /// Files read and hashed (those of the right size).
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Every place was searched.
    pub complete: bool,
    /// Why the search stopped early, when it did.
    pub stopped: Option<String>,
    pub seconds: f64,
}

/// A non-package program in a temp folder holding sockets (a heuristic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempProcess {
    pub pid: i32,
    pub executable: String,
    pub sha256: Option<String>,
    pub connections: Vec<Socket>,
}

/// Persistence naming something in a temp folder (a heuristic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempPersistence {
    pub path: String,
    /// The file that names it.
    pub named_in: String,
}

/// `collect_evidence`: what an investigation needs to know. Every field
/// is required (but `copies_search`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvidenceOutput {
    pub file: EvidenceFile,
    pub processes: Vec<EvidenceProcess>,
    pub persistence: Vec<EvidencePersistence>,
    /// Other files with the same SHA-256.
    pub copies: Vec<PathBuf>,
    /// Absent when no search was asked for.
    #[serde(default)]
    pub copies_search: Option<CopiesSearch>,
    pub temp_processes: Vec<TempProcess>,
    pub temp_persistence: Vec<TempPersistence>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results as agents of the previous version stored them (before these
    /// types existed): every one reads into its type.
    #[test]
    fn results_of_the_previous_agent_version_still_read() {
        let quarantine = r#"{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a","path":"/tmp/x","sha256":"ab","size":5,
            "killed_pids":[42],"persistence_removed":["line \"x\" of /etc/crontab"],
            "files":[{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a","path":"/tmp/x","sha256":"ab","size":5,
            "killed_pids":[42],"persistence_removed":[]}],"errors":[]}"#;
        let q: QuarantineOutput = serde_json::from_str(quarantine).expect("quarantine");
        assert_eq!(q.quarantine_id.ids().len(), 1);
        let many = r#"{"quarantine_id":["6b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a","7b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a"],
            "files":[],"errors":[{"path":"/y","error":"gone"}]}"#;
        let q: QuarantineOutput = serde_json::from_str(many).expect("many");
        assert_eq!((q.quarantine_id.ids().len(), q.path), (2, None));
        let evidence = r#"{"file":{"path":"/tmp/x","exists":true,"sha256":"ab","size":5,"uid":0,"mode":"755","mtime":1,"package":null},
            "processes":[{"pid":7,"executable":"/tmp/x","ppid":1,"parent_executable":"/sbin/init",
              "connections":[{"protocol":"tcp","local":"127.0.0.1:1","remote":"0.0.0.0:0","state":"LISTEN","uid":0,"pid":7}]}],
            "persistence":[{"what":"line","removal":{"kind":"line","file":"/etc/crontab","line_no":1,"line":"* * * * * /tmp/x"}}],
            "copies":["/tmp/y"],"temp_processes":[],"temp_persistence":[{"path":"/tmp/z","named_in":"/etc/crontab"}]}"#;
        let e: EvidenceOutput = serde_json::from_str(evidence).expect("evidence");
        assert_eq!((e.copies.len(), e.processes[0].connections.len(), e.copies_search), (1, 1, None));
        // A renamed field is an error, never "no copies".
        let renamed = evidence.replace("\"copies\"", "\"copy\"");
        let err = serde_json::from_str::<EvidenceOutput>(&renamed).expect_err("renamed");
        assert!(err.to_string().contains("copies"), "{err}");
        let kill =
            r#"{"pid":7,"executable":"/usr/bin/sleep","executable_sha256":null,"signals":["SIGKILL"],"exited":true}"#;
        assert!(matches!(serde_json::from_str::<KillProcessOutput>(kill).expect("kill"), KillProcessOutput::One(_)));
        let kill = r#"{"sha256":"ab","killed":[],"errors":["pid 1: gone"]}"#;
        assert!(matches!(
            serde_json::from_str::<KillProcessOutput>(kill).expect("kill"),
            KillProcessOutput::BySha256 { .. }
        ));
    }

    #[test]
    fn one_quarantined_file_is_also_given_at_the_top_level() {
        let f = QuarantinedFile {
            quarantine_id: Uuid::nil(),
            path: "/tmp/x".into(),
            sha256: "ab".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(QuarantineOutput::new(vec![f], Vec::new())).expect("json");
        assert_eq!(json["quarantine_id"], Uuid::nil().to_string());
        assert_eq!((json["path"].as_str(), json["files"].as_array().map(Vec::len)), (Some("/tmp/x"), Some(1)));
    }
}
