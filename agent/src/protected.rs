//! Files the agent never hands out (samples, investigation packages) or
//! moves (quarantine, deletion): its own state — private key, certificate,
//! vault key, journal —, its configuration, the host's password shadows and
//! private keys.
//!
//! Checked on the *opened* file, never on the requested path: its real path
//! as the kernel reports it (`/proc/self/fd/N`) and its device and inode
//! (so a hard link or a symlinked parent cannot lead to a secret under
//! another name).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::fsutil::dir::real_path;

/// Single files refused wherever they are reached from.
const SECRET_FILES: [&str; 5] =
    ["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/security/opasswd"];
/// Directories whose whole content is refused.
const SECRET_DIRS: [&str; 3] = ["/etc/picket", "/etc/ssl/private", "/etc/ssh/keys"];

#[derive(Debug, Clone)]
pub struct Protected {
    /// The agent's state dir (as configured; resolved when checking).
    state_dir: PathBuf,
    /// More files or directories refused (the agent's binary for quarantine).
    extra: Vec<PathBuf>,
}

impl Protected {
    pub fn new(state_dir: &Path) -> Self {
        Self { state_dir: state_dir.to_path_buf(), extra: Vec::new() }
    }

    /// Also refuse `path` (a file, or a directory and all under it).
    pub fn with(mut self, path: PathBuf) -> Self {
        self.extra.push(path);
        self
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = SECRET_DIRS.iter().map(PathBuf::from).collect();
        out.push(self.state_dir.clone());
        out.extend(self.extra.iter().cloned());
        // The real location too, when a configured path goes through a link.
        let resolved: Vec<PathBuf> = out.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        out.extend(resolved);
        out
    }

    /// The agent's secrets by inode: a hard link to one is refused too.
    fn secret_inodes(&self) -> Vec<(u64, u64)> {
        let mut files: Vec<PathBuf> = SECRET_FILES.iter().map(PathBuf::from).collect();
        for name in ["device.key", "device.pem", "vault/key", "enrollment.json"] {
            files.push(self.state_dir.join(name));
        }
        files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| (m.dev(), m.ino())).collect()
    }

    /// Why the open file `file` must not be read out or moved, if so.
    pub fn refusal(&self, file: &(impl AsFd + ?Sized)) -> Option<String> {
        let Some(real) = real_path(&file.as_fd()) else {
            return Some("its real location cannot be established".into());
        };
        if let Some(why) = self.refusal_for_path(&real) {
            return Some(why);
        }
        let Ok(st) = nix::sys::stat::fstat(file.as_fd()) else {
            return Some("it cannot be examined".into());
        };
        if self.secret_inodes().contains(&(st.st_dev, st.st_ino)) {
            return Some(format!("{} is another name of a protected secret", real.display()));
        }
        None
    }

    /// Why a file at the real path `real` is protected, if it is.
    pub fn refusal_for_path(&self, real: &Path) -> Option<String> {
        if let Some(d) = self.dirs().into_iter().find(|d| real.starts_with(d)) {
            return Some(format!("{} is protected: it is under {}", real.display(), d.display()));
        }
        if SECRET_FILES.iter().any(|f| real == Path::new(f)) {
            return Some(format!("{} holds password hashes or privileges and is protected", real.display()));
        }
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = real.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let private_key = (real.starts_with("/etc/ssh") && name.starts_with("ssh_host_") && name.ends_with("_key"))
            || (parent.as_deref() == Some(".ssh") && name.starts_with("id_") && !name.ends_with(".pub"))
            || real.components().any(|c| c.as_os_str() == "private-keys-v1.d");
        if private_key {
            return Some(format!("{} is a private key and is protected", real.display()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_refused_by_real_path_and_by_inode() {
        let t = tempfile::tempdir().expect("tempdir");
        let state = t.path().join("state");
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::write(state.join("device.key"), b"key").expect("key");
        let p = Protected::new(&state);
        let key = std::fs::File::open(state.join("device.key")).expect("open");
        assert!(p.refusal(&key).is_some());
        // A hard link elsewhere is the same inode.
        std::fs::hard_link(state.join("device.key"), t.path().join("innocent.txt")).expect("link");
        let linked = std::fs::File::open(t.path().join("innocent.txt")).expect("open");
        assert!(p.refusal(&linked).is_some_and(|w| w.contains("another name")), "{:?}", p.refusal(&linked));
        std::fs::write(t.path().join("sample.bin"), b"x").expect("write");
        let ok = std::fs::File::open(t.path().join("sample.bin")).expect("open");
        assert_eq!(p.refusal(&ok), None);
        for path in
            ["/etc/shadow", "/etc/ssh/ssh_host_ed25519_key", "/home/ann/.ssh/id_ed25519", "/etc/picket/agent.toml"]
        {
            assert!(p.refusal_for_path(Path::new(path)).is_some(), "{path}");
        }
        for path in ["/etc/ssh/ssh_host_ed25519_key.pub", "/home/ann/.ssh/id_ed25519.pub", "/etc/passwd"] {
            assert!(p.refusal_for_path(Path::new(path)).is_none(), "{path}");
        }
    }
}
