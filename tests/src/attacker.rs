//! The attackers the security tests play, for real:
//! - a local unprivileged user: `nobody` (uid 65534) through `setpriv`.

use std::path::Path;
use std::process::Command;

/// The unprivileged user's uid (and gid).
pub const NOBODY: u32 = 65534;

/// Whether the test can play a second user (it must be root, as the agent
/// is; CI is). Says why it skips when not.
pub fn can_switch_users() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: this attack needs root (the agent's privilege) to play an unprivileged user; CI runs as root");
    false
}

/// Run `script` with `sh -c` as the unprivileged user, in `dir`; panics if
/// it fails.
pub fn as_nobody(dir: &Path, script: &str) {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script])
        .current_dir(dir)
        .status()
        .expect("setpriv");
    assert!(status.success(), "the attacker's script failed: {script}");
}

/// Give `path` (recursively) to the unprivileged user.
pub fn give_to_nobody(path: &Path) {
    let status = Command::new("chown").arg("-R").arg("65534:65534").arg(path).status().expect("chown");
    assert!(status.success(), "chown {}", path.display());
}
