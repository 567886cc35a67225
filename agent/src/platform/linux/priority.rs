//! Lower a thread's CPU and I/O priority, as background scans should
//! (the field runs scheduled scans at low priority so users do not notice).
//! One of the small modules allowed to call libc directly.
#![allow(unsafe_code)]

/// Nice value for background work (0 normal … 19 lowest).
const NICE: libc::c_int = 10;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_BE: libc::c_int = 2;
const IOPRIO_CLASS_SHIFT: libc::c_int = 13;

/// Give the calling thread nice 10 and best-effort I/O priority 7 (the
/// lowest of its class). Linux applies both per thread. Failures are
/// logged: the work still runs, at normal priority.
pub fn lower_current_thread() {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on our own thread id; no pointers are passed.
    let cpu = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
    let io_prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7;
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, tid, prio) takes three integers.
    let io = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, io_prio) };
    if cpu != 0 || io != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower this thread's priority");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_can_lower_itself_and_the_others_keep_theirs() {
        let before = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let lowered = std::thread::spawn(|| {
            super::lower_current_thread();
            std::fs::read_to_string("/proc/thread-self/stat").expect("stat")
        })
        .join()
        .expect("thread");
        // Field 19 of stat is the nice value (after the parenthesised name).
        let nice = |stat: &str| -> i64 {
            let rest = &stat[stat.rfind(')').expect("comm") + 2..];
            rest.split(' ').nth(16).expect("nice").parse().expect("number")
        };
        assert_eq!(nice(&lowered), 10);
        assert_eq!(nice(&before), nice(&std::fs::read_to_string("/proc/thread-self/stat").expect("stat")));
    }
}
