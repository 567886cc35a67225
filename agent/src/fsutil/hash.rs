//! SHA-256 of a file: the one helper every part of the agent uses.
//!
//! Reads go through an open descriptor at explicit offsets (`pread`), so
//! the hash is of the file the caller checked and opened, from its first
//! byte, whatever else holds the descriptor.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use sha2::Digest;

/// Read size per call.
const CHUNK: usize = 256 * 1024;

/// Feed the whole content of `f` (from offset 0) to `each`, in order.
/// Returns the number of bytes read.
pub fn read_all(f: &std::fs::File, mut each: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = match f.read_at(&mut buf, at) {
            Ok(0) => return Ok(at),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
        at += n as u64;
    }
}

/// SHA-256 (lowercase hex) and size of an open file's whole content.
pub fn sha256_open(f: &std::fs::File) -> std::io::Result<(String, u64)> {
    let mut h = sha2::Sha256::new();
    let size = read_all(f, |b| h.update(b))?;
    Ok((hex::encode(h.finalize()), size))
}

/// SHA-256 of the file at `path`, not followed through a symlink at the
/// end (and not blocking on a FIFO).
pub fn sha256_path(path: &Path) -> std::io::Result<String> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    sha256_open(&f).map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_whole_files_from_the_start_and_refuses_a_final_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 7)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).expect("write");
        let want = hex::encode(sha2::Sha256::digest(&data));
        let mut f = std::fs::File::open(&p).expect("open");
        std::io::Read::read_exact(&mut f, &mut [0u8; 10]).expect("move the file offset");
        assert_eq!(sha256_open(&f).expect("hash"), (want.clone(), data.len() as u64));
        assert_eq!(sha256_path(&p).expect("hash"), want);
        std::os::unix::fs::symlink(&p, dir.path().join("l")).expect("link");
        assert!(sha256_path(&dir.path().join("l")).is_err());
        assert_eq!(sha256_path(&dir.path().join("empty")).map_err(|e| e.kind()), Err(std::io::ErrorKind::NotFound));
    }
}
