//! File handling: durable writes of the agent's own state, [`dir`], the
//! symlink-safe operations used wherever a local user could interfere, and
//! [`hash`], the one SHA-256-of-a-file helper.

pub mod dir;
pub mod hash;

use std::path::Path;

pub use dir::{Dir, Owners, SafeError};

/// The owners the agent's own files may have on the way to them: root, or
/// the user the agent runs as (tests and `picket-agent scan` as a user).
pub fn own_owners() -> Owners {
    Owners::RootOr(nix::unistd::geteuid().as_raw())
}

/// Write `path` atomically with mode 0600: a temp file beside it created
/// with `O_EXCL`, fsync, rename over `path`, fsync the directory — all
/// through the directory's descriptor (see [`dir`]). A crash leaves the old
/// or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let path = std::path::absolute(path)?;
    let (dir, name) = Dir::open_parent(&path, own_owners())?;
    dir.replace(&name, data, None, 0o600)?;
    Ok(())
}

/// Create `dir` (and parents) with mode 0700 where it is created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
