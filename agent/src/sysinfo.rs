//! What the agent tells the coordinator about its host: the `sysinfo`
//! crate's host name (gethostname), kernel release (uname) and OS name and
//! version (os-release). A fact it cannot read is an empty string (the OS:
//! "Linux"), never an error.

use ::sysinfo::System;

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
    }
}
