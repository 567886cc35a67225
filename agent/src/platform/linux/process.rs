//! Terminating a process on Linux.
//!
//! The process is identified by pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`), re-read before every signal: if the start time
//! changes, the pid was reused and nothing more is sent. Optionally the
//! executable's SHA-256 must match too.

use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::platform::{KillReport, KillRequest, PlatformError};

pub fn kill(req: &KillRequest) -> Result<KillReport, PlatformError> {
    if req.pid <= 1 {
        return Err(PlatformError::Invalid(format!("pid {} cannot be killed", req.pid)));
    }
    if req.pid as u32 == std::process::id() {
        return Err(PlatformError::Invalid("refusing to kill the agent itself".into()));
    }
    let started = start_time(req.pid).ok_or_else(|| PlatformError::Failed(format!("no process {}", req.pid)))?;
    let exe = std::fs::read_link(format!("/proc/{}/exe", req.pid)).map(|p| p.to_string_lossy().into_owned()).map_err(
        |e| PlatformError::Failed(format!("cannot read the executable of {}: {e} (kernel thread?)", req.pid)),
    )?;
    let exe_hash = exe_sha256(req.pid);
    if let Some(want) = &req.sha256 {
        match &exe_hash {
            Some(h) if h.eq_ignore_ascii_case(want) => {}
            Some(h) => {
                return Err(PlatformError::Failed(format!("pid {} runs {exe} with SHA-256 {h}, not {want}", req.pid)))
            }
            None => return Err(PlatformError::Failed(format!("cannot hash the executable of {}", req.pid))),
        }
    }
    let pid = Pid::from_raw(req.pid);
    let same = || start_time(req.pid) == Some(started) && !is_zombie(req.pid);
    let mut signals = Vec::new();
    if !req.grace.is_zero() {
        signal::kill(pid, Signal::SIGTERM).map_err(|e| PlatformError::Failed(format!("SIGTERM {}: {e}", req.pid)))?;
        signals.push("SIGTERM");
        let deadline = Instant::now() + req.grace;
        while same() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if same() {
        signal::kill(pid, Signal::SIGKILL).map_err(|e| PlatformError::Failed(format!("SIGKILL {}: {e}", req.pid)))?;
        signals.push("SIGKILL");
        let deadline = Instant::now() + Duration::from_secs(5);
        while same() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(KillReport { pid: req.pid, executable: exe, executable_sha256: exe_hash, signals, exited: !same() })
}

/// Pids whose executable (even a deleted one, through /proc/<pid>/exe) has
/// this SHA-256. Each distinct executable (device, inode) is hashed once.
pub fn running(sha256: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let mut hashes: std::collections::HashMap<(u64, u64), Option<String>> = std::collections::HashMap::new();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid as u32 == std::process::id() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/exe")) else { continue };
        let hash = hashes.entry((meta.dev(), meta.ino())).or_insert_with(|| exe_sha256(pid));
        if hash.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(sha256)) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// SIGKILL every process whose executable is the file (`dev`, `ino`) —
/// also one running it after it was deleted (`/proc/<pid>/exe` still leads
/// to the inode) — and wait for them to go. Returns the pids killed.
pub fn kill_executable(dev: u64, ino: u64) -> Result<Vec<i32>, PlatformError> {
    use std::os::unix::fs::MetadataExt;
    let rd = std::fs::read_dir("/proc").map_err(|e| PlatformError::Failed(format!("/proc: {e}")))?;
    let mut killed = Vec::new();
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid <= 1 || pid as u32 == std::process::id() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/exe")) else { continue };
        if (meta.dev(), meta.ino()) != (dev, ino) {
            continue;
        }
        match signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => killed.push(pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(PlatformError::Failed(format!("SIGKILL {pid}: {e}"))),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while killed.iter().any(|p| start_time(*p).is_some() && !is_zombie(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.sort_unstable();
    Ok(killed)
}

/// Start time in clock ticks since boot (field 22 of /proc/<pid>/stat).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s.get(i + 2..i + 3)).map(|state| state == "Z"))
        .unwrap_or(false)
}

/// SHA-256 of what process `pid` runs (through `/proc/<pid>/exe`, which
/// reaches the executable even when it was deleted or replaced).
pub fn exe_sha256(pid: i32) -> Option<String> {
    let f = std::fs::File::open(format!("/proc/{pid}/exe")).ok()?;
    crate::fsutil::hash::sha256_open(&f).ok().map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh")
    }

    #[test]
    fn sigterm_then_sigkill_for_a_process_that_ignores_term() {
        let mut child = spawn("trap '' TERM; while :; do sleep 1; done");
        std::thread::sleep(Duration::from_millis(100)); // let the trap be set
        let pid = child.id() as i32;
        let report = kill(&KillRequest { pid, sha256: None, grace: Duration::from_millis(300) }).expect("kill");
        let _ = child.wait();
        assert_eq!(report.signals, vec!["SIGTERM", "SIGKILL"]);
        assert!(report.exited);
        assert!(
            report.executable.ends_with("sh")
                || report.executable.contains("dash")
                || report.executable.contains("bash")
        );
    }

    #[test]
    fn a_wrong_hash_protects_the_process() {
        let mut child = spawn("sleep 30");
        let pid = child.id() as i32;
        let err = kill(&KillRequest { pid, sha256: Some("00".repeat(32)), grace: Duration::ZERO })
            .expect_err("hash mismatch");
        assert!(err.to_string().contains("not"), "{err}");
        assert!(start_time(pid).is_some(), "still alive");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn processes_are_found_by_the_hash_of_their_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("sleeper");
        std::fs::copy("/bin/sleep", &copy).expect("copy sleep");
        let mut child = std::process::Command::new(&copy).arg("30").spawn().expect("spawn copy");
        let sha = exe_sha256(child.id() as i32).expect("hash");
        assert!(running(&sha).contains(&(child.id() as i32)));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!running(&sha).contains(&(child.id() as i32)));
    }

    #[test]
    fn init_and_self_are_refused() {
        assert!(matches!(
            kill(&KillRequest { pid: 1, sha256: None, grace: Duration::ZERO }),
            Err(PlatformError::Invalid(_))
        ));
        let me = std::process::id() as i32;
        assert!(matches!(
            kill(&KillRequest { pid: me, sha256: None, grace: Duration::ZERO }),
            Err(PlatformError::Invalid(_))
        ));
    }

    #[test]
    fn start_time_parses_names_with_spaces_and_parens() {
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
