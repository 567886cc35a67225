//! A thin wrapper over fanotify(7) for exec permission events — one of the
//! small modules allowed to call libc directly.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One `FAN_OPEN_EXEC_PERM` event: the file being executed (an fd the
/// kernel opened for us) and the process asking.
pub struct ExecEvent {
    pub file: OwnedFd,
    pub pid: i32,
}

pub struct Fanotify {
    fd: OwnedFd,
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Fanotify {
    /// A notification group that receives permission events (needs
    /// CAP_SYS_ADMIN). Reads block until an event arrives.
    pub fn new() -> std::io::Result<Self> {
        let flags = libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_UNLIMITED_QUEUE;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: plain syscall with flag arguments; a negative result is an error.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: fanotify_init returned a new descriptor that nothing else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Ask for exec permission events on the mount that holds `path`.
    pub fn mark_mount(&self, path: &Path) -> std::io::Result<()> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                libc::FAN_OPEN_EXEC_PERM,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r < 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Wait up to `timeout_ms` for events; returns those read (maybe none).
    pub fn read(&self, timeout_ms: i32) -> std::io::Result<Vec<ExecEvent>> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if ready < 0 {
            let e = last_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(Vec::new()) } else { Err(e) };
        }
        if ready == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: the buffer is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last_error();
            return if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        let size = std::mem::size_of::<libc::fanotify_event_metadata>();
        let mut events = Vec::new();
        let mut at = 0;
        while at + size <= n {
            // SAFETY: at least `size` bytes remain at `at`; read_unaligned copes with alignment.
            let meta: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
            if meta.vers != libc::FANOTIFY_METADATA_VERSION || (meta.event_len as usize) < size {
                return Err(std::io::Error::other("unexpected fanotify metadata version"));
            }
            if meta.fd >= 0 {
                // SAFETY: the kernel opened this descriptor for us; we own it from here on.
                let file = unsafe { OwnedFd::from_raw_fd(meta.fd) };
                events.push(ExecEvent { file, pid: meta.pid });
            }
            at += meta.event_len as usize;
        }
        Ok(events)
    }

    /// Answer a permission event.
    pub fn respond(&self, event: &ExecEvent, allow: bool) -> std::io::Result<()> {
        let response = libc::fanotify_response {
            fd: event.file.as_raw_fd(),
            response: if allow { libc::FAN_ALLOW } else { libc::FAN_DENY },
        };
        let size = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: writes `size` bytes from a live, initialised struct.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&response as *const libc::fanotify_response).cast(), size) };
        if n < 0 {
            return Err(last_error());
        }
        Ok(())
    }
}
