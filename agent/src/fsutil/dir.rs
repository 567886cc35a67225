//! Root-side file operations in places a local user may control.
//!
//! The agent runs as root and edits, moves and reads files in directories
//! users can write to (`~/.bashrc`, `/tmp`, crontabs). A path handed to
//! `open(2)` is resolved again at every call, so a user who swaps a
//! directory for a symlink between two calls redirects root's write. Every
//! operation here goes through a [`Dir`]: a directory file descriptor reached
//! from `/` one component at a time with `O_NOFOLLOW` (the discipline of
//! systemd's `chase()`):
//! - a symlink on the way is followed only when root owns it and it sits in
//!   a directory only root can write (`/bin → usr/bin`, `/var/run → /run`);
//!   any other symlink is refused;
//! - every directory reached must belong to an allowed owner ([`Owners`]);
//! - files are opened relative to that descriptor with `O_NOFOLLOW`, created
//!   with `O_EXCL`, given their owner and mode with `fchown`/`fchmod` on the
//!   open file, renamed with `renameat` and removed with `unlinkat` inside
//!   the same directory.
//!
//! What a user can still do to a directory they own is what they could do
//! anyway: rename or delete entries in it. They cannot make root write,
//! chown or delete anything outside it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

/// Symlinks followed in one walk before giving up.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SafeError {
    /// The path is not safe to act on (a symlink on the way, a directory of
    /// another user, not a directory, …).
    #[error("{path}: {why}")]
    Refused { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl SafeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    fn io(path: impl Into<PathBuf>, e: Errno) -> Self {
        Self::Io { path: path.into(), source: std::io::Error::from(e) }
    }

    fn refused(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Self::Refused { path: path.into(), why: why.into() }
    }
}

impl From<SafeError> for std::io::Error {
    fn from(e: SafeError) -> Self {
        match e {
            SafeError::Io { source, .. } => source,
            refused @ SafeError::Refused { .. } => std::io::Error::other(refused.to_string()),
        }
    }
}

/// Who may own the directories on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Anyone (reading, or removing a file wherever it is).
    Any,
    /// Root or this user (writing on behalf of a file this user owns).
    RootOr(u32),
}

impl Owners {
    fn allows(self, uid: u32) -> bool {
        match self {
            Self::Any => true,
            Self::RootOr(u) => uid == 0 || uid == u,
        }
    }
}

/// An open directory reached without untrusted symlinks.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The path it was reached by (trusted symlinks resolved).
    path: PathBuf,
    stat: FileStat,
}

fn is(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

/// Metadata of an entry, not followed through a symlink.
#[derive(Debug, Clone, Copy)]
pub struct EntryStat(pub FileStat);

impl EntryStat {
    pub fn is_file(&self) -> bool {
        is(&self.0, SFlag::S_IFREG)
    }
    pub fn is_dir(&self) -> bool {
        is(&self.0, SFlag::S_IFDIR)
    }
    pub fn is_symlink(&self) -> bool {
        is(&self.0, SFlag::S_IFLNK)
    }
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.0.st_dev, self.0.st_ino)
    }
    /// What kind of entry this is, in words ("a directory", "a fifo", …).
    pub fn kind(&self) -> &'static str {
        match SFlag::from_bits_truncate(self.0.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => "a regular file",
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFLNK => "a symbolic link (links are not followed)",
            SFlag::S_IFIFO => "a fifo",
            SFlag::S_IFSOCK => "a socket",
            SFlag::S_IFBLK | SFlag::S_IFCHR => "a device",
            _ => "not a regular file",
        }
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid
    }
    pub fn mode(&self) -> u32 {
        self.0.st_mode & 0o7777
    }
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

impl Dir {
    fn root() -> Result<Self, SafeError> {
        let fd = nix::fcntl::open("/", DIR_FLAGS, Mode::empty()).map_err(|e| SafeError::io("/", e))?;
        let stat = fstat(&fd).map_err(|e| SafeError::io("/", e))?;
        Ok(Self { fd, path: PathBuf::from("/"), stat })
    }

    /// Open the directory `path` (absolute). Symlinks on the way are refused
    /// unless root owns them and their directory is writable by root only;
    /// each directory reached must have an owner `owners` allows.
    pub fn open(path: &Path, owners: Owners) -> Result<Self, SafeError> {
        if !path.is_absolute() {
            return Err(SafeError::refused(path, "not an absolute path"));
        }
        let mut stack = vec![Self::root()?];
        let mut pending: VecDeque<OsString> = components(path);
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let cur = stack.last().ok_or_else(|| SafeError::refused(path, "walk lost its root"))?;
            let here = cur.path.join(&name);
            let st = fstatat(&cur.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| SafeError::io(&here, e))?;
            if is(&st, SFlag::S_IFLNK) {
                if st.st_uid != 0 || !cur.root_only() {
                    return Err(SafeError::refused(
                        &here,
                        "is a symbolic link in a directory others can change; links are not followed here",
                    ));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(SafeError::refused(path, "too many symbolic links"));
                }
                let target = readlinkat(&cur.fd, name.as_os_str()).map_err(|e| SafeError::io(&here, e))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                let mut next = components(&target);
                next.extend(pending);
                pending = next;
                continue;
            }
            if !is(&st, SFlag::S_IFDIR) {
                return Err(SafeError::refused(&here, "is not a directory"));
            }
            let fd = openat(&cur.fd, name.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => SafeError::refused(&here, "was replaced while it was opened"),
                e => SafeError::io(&here, e),
            })?;
            let stat = fstat(&fd).map_err(|e| SafeError::io(&here, e))?;
            if !owners.allows(stat.st_uid) {
                return Err(SafeError::refused(
                    &here,
                    format!("belongs to uid {}, neither root nor the owner of the file acted on", stat.st_uid),
                ));
            }
            stack.push(Self { fd, path: here, stat });
        }
        stack.pop().ok_or_else(|| SafeError::refused(path, "walk lost its root"))
    }

    /// Open the directory of `path` and return it with the file name.
    pub fn open_parent(path: &Path, owners: Owners) -> Result<(Self, OsString), SafeError> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => return Err(SafeError::refused(path, "does not end in a file name")),
        };
        let parent = path.parent().ok_or_else(|| SafeError::refused(path, "has no directory"))?;
        Ok((Self::open(parent, owners)?, name))
    }

    /// Whether only root can change this directory's entries.
    pub fn root_only(&self) -> bool {
        self.stat.st_uid == 0 && self.stat.st_mode & 0o022 == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn owner(&self) -> u32 {
        self.stat.st_uid
    }

    pub fn dev_ino(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }

    fn at(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// An entry's metadata (not followed); `None` when there is none.
    pub fn stat(&self, name: &OsStr) -> Result<Option<EntryStat>, SafeError> {
        check_name(&self.path, name)?;
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(EntryStat(st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(SafeError::io(self.at(name), e)),
        }
    }

    /// Open a regular file for reading (never through a symlink; a fifo or
    /// device swapped in cannot block the open).
    pub fn open_file(&self, name: &OsStr) -> Result<File, SafeError> {
        check_name(&self.path, name)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP => SafeError::refused(self.at(name), "is a symbolic link (links are not followed)"),
            e => SafeError::io(self.at(name), e),
        })?;
        let st = fstat(&fd).map_err(|e| SafeError::io(self.at(name), e))?;
        if !is(&st, SFlag::S_IFREG) {
            return Err(SafeError::refused(self.at(name), "is not a regular file"));
        }
        Ok(File::from(fd))
    }

    /// Read a whole regular file of at most `cap` bytes (larger: refused).
    pub fn read(&self, name: &OsStr, cap: u64) -> Result<(Vec<u8>, EntryStat), SafeError> {
        use std::io::Read;
        let f = self.open_file(name)?;
        let st = fstat(&f).map_err(|e| SafeError::io(self.at(name), e))?;
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > cap {
            return Err(SafeError::refused(self.at(name), format!("is larger than {cap} bytes")));
        }
        let mut data = Vec::new();
        f.take(cap).read_to_end(&mut data).map_err(|source| SafeError::Io { path: self.at(name), source })?;
        Ok((data, EntryStat(st)))
    }

    /// Create `name` for writing; fails if anything (even a dangling
    /// symlink) is there.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> Result<File, SafeError> {
        check_name(&self.path, name)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| SafeError::io(self.at(name), e))?;
        Ok(File::from(fd))
    }

    /// The temp name used to replace `name` (fixed per name, so a crash's
    /// leftover is found and replaced, and short whatever `name`'s length).
    pub fn temp_name(name: &OsStr) -> OsString {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        OsString::from(format!(".picket-{}.tmp", hex::encode(&digest[..8])))
    }

    /// Create the temp file for replacing `name` (a stale one is removed
    /// first; whatever it was, only its directory entry goes).
    pub fn create_temp(&self, name: &OsStr) -> Result<(File, OsString), SafeError> {
        let tmp = Self::temp_name(name);
        self.unlink(&tmp, None)?;
        Ok((self.create_new(&tmp, 0o600)?, tmp))
    }

    /// Rename within this directory. Without `replace`, an existing `to`
    /// makes it fail instead of being overwritten.
    pub fn rename(&self, from: &OsStr, to: &OsStr, replace: bool) -> Result<(), SafeError> {
        check_name(&self.path, from)?;
        check_name(&self.path, to)?;
        let done = if replace {
            renameat(&self.fd, from, &self.fd, to)
        } else {
            renameat2(&self.fd, from, &self.fd, to, RenameFlags::RENAME_NOREPLACE)
        };
        done.map_err(|e| SafeError::io(self.at(to), e))
    }

    /// Remove the entry `name` (a file or a symlink, never followed). With
    /// `expect`, only if it is still that (device, inode). `Ok(false)` when
    /// nothing was there.
    pub fn unlink(&self, name: &OsStr, expect: Option<(u64, u64)>) -> Result<bool, SafeError> {
        let Some(st) = self.stat(name)? else { return Ok(false) };
        if let Some(want) = expect {
            if st.dev_ino() != want {
                return Err(SafeError::refused(self.at(name), "was replaced by another file; it is left alone"));
            }
        }
        if st.is_dir() {
            return Err(SafeError::refused(self.at(name), "is a directory"));
        }
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(SafeError::io(self.at(name), e)),
        }
    }

    /// Make the symlink `name → target` (fails if `name` exists).
    pub fn symlink(&self, target: &Path, name: &OsStr) -> Result<(), SafeError> {
        check_name(&self.path, name)?;
        symlinkat(target, &self.fd, name).map_err(|e| SafeError::io(self.at(name), e))
    }

    pub fn read_link(&self, name: &OsStr) -> Result<PathBuf, SafeError> {
        check_name(&self.path, name)?;
        readlinkat(&self.fd, name).map(PathBuf::from).map_err(|e| SafeError::io(self.at(name), e))
    }

    /// A subdirectory, not through a symlink, with an owner `owners` allows.
    pub fn subdir(&self, name: &OsStr, owners: Owners) -> Result<Self, SafeError> {
        check_name(&self.path, name)?;
        let here = self.at(name);
        let fd = openat(&self.fd, name, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP => SafeError::refused(&here, "is a symbolic link (links are not followed)"),
            Errno::ENOTDIR => SafeError::refused(&here, "is not a directory"),
            e => SafeError::io(&here, e),
        })?;
        let stat = fstat(&fd).map_err(|e| SafeError::io(&here, e))?;
        if !owners.allows(stat.st_uid) {
            return Err(SafeError::refused(&here, format!("belongs to uid {}", stat.st_uid)));
        }
        Ok(Self { fd, path: here, stat })
    }

    /// The names in this directory, sorted (without `.` and `..`).
    pub fn entries(&self) -> Result<Vec<OsString>, SafeError> {
        let fd = self.fd.try_clone().map_err(|source| SafeError::Io { path: self.path.clone(), source })?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| SafeError::io(&self.path, e))?;
        let mut out: Vec<OsString> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
            .filter(|n| n != "." && n != "..")
            .collect();
        out.sort();
        Ok(out)
    }

    /// fsync the directory (makes renames and unlinks in it durable).
    pub fn sync(&self) -> Result<(), SafeError> {
        let fd = self.fd.try_clone().map_err(|source| SafeError::Io { path: self.path.clone(), source })?;
        File::from(fd).sync_all().map_err(|source| SafeError::Io { path: self.path.clone(), source })
    }

    /// Replace `name` with `data` atomically: a temp file (`O_EXCL`), its
    /// owner and mode set on the open file, fsync, `renameat` over `name`,
    /// fsync the directory. A crash leaves the old or the new content.
    pub fn replace(&self, name: &OsStr, data: &[u8], owner: Option<(u32, u32)>, mode: u32) -> Result<(), SafeError> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let (mut f, tmp) = self.create_temp(name)?;
        let written = (|| -> std::io::Result<()> {
            f.write_all(data)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            // After fchown, which clears set-id bits.
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            f.sync_all()
        })();
        if let Err(source) = written {
            let _ = self.unlink(&tmp, None);
            return Err(SafeError::Io { path: self.at(name), source });
        }
        if let Err(e) = self.rename(&tmp, name, true) {
            let _ = self.unlink(&tmp, None);
            return Err(e);
        }
        self.sync()
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One path component: no separators, not `.` or `..`, not empty.
fn check_name(dir: &Path, name: &OsStr) -> Result<(), SafeError> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(SafeError::refused(dir.join(name), "is not a single file name"));
    }
    Ok(())
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The path the kernel gives for an open file (its real location now).
pub fn real_path(file: &impl AsFd) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_fd().as_raw_fd())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_in_user_directories_are_refused_and_root_ones_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let base = t.path();
        std::fs::create_dir_all(base.join("real/sub")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).expect("symlink");
        // The temp dir is root's and 0700 here (tests run as root): root's
        // link in it is trusted, as /bin → usr/bin is.
        let d = Dir::open(&base.join("link/sub"), Owners::Any).expect("trusted link");
        assert_eq!(d.path(), base.join("real/sub"));
        // The same link in a world-writable directory is not followed.
        std::fs::create_dir(base.join("open")).expect("mkdir");
        std::fs::set_permissions(base.join("open"), std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("chmod");
        std::os::unix::fs::symlink(base.join("real"), base.join("open/link")).expect("symlink");
        let err = Dir::open(&base.join("open/link/sub"), Owners::Any).expect_err("untrusted link");
        assert!(matches!(err, SafeError::Refused { .. }), "{err}");
        // A file is not a directory; a missing one is NotFound.
        std::fs::write(base.join("real/file"), b"x").expect("write");
        assert!(matches!(Dir::open(&base.join("real/file"), Owners::Any), Err(SafeError::Refused { .. })));
        assert!(Dir::open(&base.join("nope"), Owners::Any).expect_err("missing").is_not_found());
    }

    #[test]
    fn replace_keeps_owner_and_mode_and_never_follows_the_temp_name() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = Dir::open(t.path(), Owners::RootOr(0)).expect("dir");
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"untouched").expect("write");
        // A planted symlink at the temp name is removed, not written through.
        std::os::unix::fs::symlink(&victim, t.path().join(Dir::temp_name(OsStr::new("f")))).expect("plant");
        d.replace(OsStr::new("f"), b"new", Some((1234, 5678)), 0o640).expect("replace");
        assert_eq!(std::fs::read(&victim).expect("read"), b"untouched");
        let meta = std::fs::symlink_metadata(t.path().join("f")).expect("meta");
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 5678, 0o640));
        assert_eq!(std::fs::read(t.path().join("f")).expect("read"), b"new");
        assert_eq!(d.entries().expect("entries"), vec![OsString::from("f"), OsString::from("victim")]);
    }
}
