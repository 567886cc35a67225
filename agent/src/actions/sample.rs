//! `request_sample {path}`: send a copy of one regular file to the
//! coordinator (chunked, resumable; see `upload.rs`). Directories, devices,
//! sockets, fifos and anything under /proc, /sys or /dev are refused, and
//! symlinks are not followed (the file is opened with `O_NOFOLLOW` and its
//! real path checked after opening, so a link in a parent directory cannot
//! lead into /proc either). Re-runnable: a re-run resumes the upload.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ActionFailure, Context, Progress};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    path: PathBuf,
}

const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

pub fn run(ctx: &Context, params: &str, progress: &Progress) -> Result<Value, ActionFailure> {
    let p: Params =
        serde_json::from_str(params).map_err(|e| ActionFailure::invalid(format!("request_sample params: {e}")))?;
    let path = p.path;
    if !path.is_absolute() {
        return Err(ActionFailure::invalid("path must be absolute"));
    }
    if PSEUDO.iter().any(|d| path.starts_with(d)) {
        return Err(ActionFailure::invalid(format!("{} is a pseudo-file, not a file on disk", path.display())));
    }
    let meta =
        std::fs::symlink_metadata(&path).map_err(|e| ActionFailure::invalid(format!("{}: {e}", path.display())))?;
    refuse_non_regular(&path, &meta.file_type())?;
    // O_NONBLOCK: should a fifo be swapped in meanwhile, opening it cannot hang.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| ActionFailure::error(format!("cannot open {}: {e}", path.display())))?;
    let meta = file.metadata().map_err(|e| ActionFailure::error(e.to_string()))?;
    refuse_non_regular(&path, &meta.file_type())?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)))
        .unwrap_or_else(|_| path.clone());
    if PSEUDO.iter().any(|d| real.starts_with(d)) {
        return Err(ActionFailure::invalid(format!("{} leads to {}, a pseudo-file", path.display(), real.display())));
    }
    progress.report("hashing", 0);
    let (sha256, size) = hash(&file).map_err(|e| ActionFailure::error(format!("reading {}: {e}", path.display())))?;
    if size != meta.len() {
        return Err(ActionFailure::error(format!("{} changed while it was read", path.display())));
    }
    let report = |held: u64| {
        let pct = held.saturating_mul(100).checked_div(size).unwrap_or(100);
        progress.report(&format!("uploaded {} of {} KiB", held / 1024, size / 1024), u8::try_from(pct).unwrap_or(100));
    };
    ctx.uploader.upload(progress.action_id(), &file, size, &sha256, &report).map_err(ActionFailure::error)?;
    Ok(json!({ "path": path, "sha256": sha256, "size": size }))
}

fn refuse_non_regular(path: &Path, ft: &std::fs::FileType) -> Result<(), ActionFailure> {
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link (links are not followed)"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(ActionFailure::invalid(format!("{} is {what}", path.display())))
}

fn hash(file: &std::fs::File) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok((hex::encode(h.finalize()), at))
}
