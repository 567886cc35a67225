//! Small file helpers for secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Write `data` to `path` with mode 0600, replacing it atomically
/// (write to a temporary file, fsync, rename).
pub fn write_file_0600(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Read a secret file as text.
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}
