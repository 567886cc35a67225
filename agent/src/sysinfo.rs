//! Host and process facts from the `sysinfo` crate: the host name
//! (gethostname), kernel release (uname) and OS name and version
//! (os-release) the agent tells the coordinator, and the running processes
//! an investigation package and `collect_evidence` report. A host fact it
//! cannot read is an empty string (the OS: "Linux"), never an error.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use ::sysinfo::{CpuRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System, UpdateKind};

pub fn hostname() -> String {
    System::host_name().unwrap_or_default()
}

pub fn kernel() -> String {
    System::kernel_version().unwrap_or_default()
}

/// os-release's `NAME VERSION_ID` (e.g. "Debian GNU/Linux 12").
pub fn os() -> String {
    match (System::name(), System::os_version()) {
        (Ok(name), Ok(version)) => format!("{name} {version}"),
        (Ok(name), Err(_)) => name,
        (Err(_), _) => "Linux".to_string(),
    }
}

/// Seconds since boot.
pub fn uptime_secs() -> Option<u64> {
    System::uptime().ok()
}

/// When the machine booted, in seconds since the epoch.
pub fn boot_time_unix() -> Option<u64> {
    System::boot_time().ok()
}

/// Each logical CPU's model name.
pub fn cpus() -> Vec<String> {
    let what = RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing());
    System::new_with_specifics(what)
        .map(|system| system.cpus().iter().map(|c| c.brand().to_string()).collect())
        .unwrap_or_default()
}

/// A running process.
#[derive(Debug, Clone)]
pub struct ProcessFacts {
    pub pid: i32,
    pub ppid: Option<i32>,
    pub name: String,
    pub uid: Option<u32>,
    /// What it runs (without the kernel's " (deleted)").
    pub exe: Option<PathBuf>,
    /// Its executable has no name left on disk.
    pub exe_deleted: bool,
    pub cmdline: Vec<String>,
    pub rss_bytes: u64,
    /// Seconds since the epoch (sysinfo rounds to the second: the kill
    /// path's pid-reuse check reads clock ticks itself).
    pub start_time_unix: u64,
}

impl ProcessFacts {
    /// The executable as the kernel names it, " (deleted)" included.
    pub fn executable(&self) -> Option<String> {
        let exe = self.exe.as_ref()?.display().to_string();
        Some(if self.exe_deleted { format!("{exe} (deleted)") } else { exe })
    }
}

/// Every process (threads are not listed), by pid. Whether an executable
/// was deleted is the one fact sysinfo drops (it strips the kernel's
/// " (deleted)"): it is read from the link count of the file behind
/// `/proc/<pid>/exe`, which a file name cannot imitate the way it can
/// imitate the suffix.
pub fn processes() -> Vec<ProcessFacts> {
    let mut system = match System::new() {
        Ok(system) => system,
        Err(error) => {
            tracing::warn!(%error, "cannot list processes");
            return Vec::new();
        }
    };
    let what = ProcessRefreshKind::nothing()
        .without_tasks()
        .with_memory()
        .with_exe(UpdateKind::Always)
        .with_cmd(UpdateKind::Always)
        .with_user(UpdateKind::Always);
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, what);
    let mut out: Vec<ProcessFacts> = system
        .processes()
        .iter()
        .filter_map(|(pid, p)| {
            let pid = i32::try_from(pid.as_u32()).ok()?;
            let exe_deleted =
                p.exe().is_some() && std::fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| m.nlink() == 0);
            Some(ProcessFacts {
                pid,
                ppid: p.parent().and_then(|pp| i32::try_from(pp.as_u32()).ok()),
                name: p.name().to_string_lossy().into_owned(),
                uid: p.user_id().map(|u| **u),
                exe: p.exe().map(PathBuf::from),
                exe_deleted,
                cmdline: p.cmd().iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                rss_bytes: p.memory(),
                start_time_unix: p.start_time(),
            })
        })
        .collect();
    out.sort_unstable_by_key(|p| p.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_match_the_kernels_own() {
        let proc = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).expect("procfs");
        assert_eq!(hostname(), proc("/proc/sys/kernel/hostname"));
        assert_eq!(kernel(), proc("/proc/sys/kernel/osrelease"));
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |k: &str| {
            os_release
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
        };
        if let (Some(name), Some(version)) = (field("NAME"), field("VERSION_ID")) {
            assert_eq!(os(), format!("{name} {version}"));
        }
        let cpuinfo = proc("/proc/cpuinfo");
        assert_eq!(cpus().len(), cpuinfo.lines().filter(|l| l.starts_with("processor")).count());
        assert!(uptime_secs().is_some_and(|u| u > 0));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        assert!(boot_time_unix().is_some_and(|b| b > 0 && b < now));
    }

    #[test]
    fn processes_are_listed_with_what_they_run_and_a_deleted_executable_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("sleeper");
        std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
        let mut child = std::process::Command::new(&exe).arg("30").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        let find = || processes().into_iter().find(|p| p.pid == pid).expect("the child is listed");
        let p = find();
        assert_eq!(p.ppid, Some(i32::try_from(std::process::id()).expect("own pid")));
        assert_eq!(p.exe.as_deref(), Some(exe.as_path()));
        assert!(!p.exe_deleted);
        assert_eq!(p.cmdline, [exe.display().to_string(), "30".to_string()]);
        assert_eq!(p.uid, Some(nix::unistd::getuid().as_raw()));
        std::fs::remove_file(&exe).expect("delete the executable");
        let p = find();
        assert!(p.exe_deleted);
        assert_eq!(p.executable(), Some(format!("{} (deleted)", exe.display())));
        let own = i32::try_from(std::process::id()).expect("own pid");
        let threads: Vec<i32> = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|tid| *tid != own)
            .collect();
        assert!(processes().iter().all(|q| !threads.contains(&q.pid)), "threads are not listed as processes");
        let _ = child.kill();
        let _ = child.wait();
    }
}
