//! Running a system tool (dpkg-query, rpm, ss, journalctl, …) with a
//! deadline: the one way the agent does it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `argv` (no shell) with stdin closed; its stdout if it exits 0
/// within `timeout`, else why not (its stderr, or that it was killed).
/// Both outputs are drained while it runs, so a chatty tool never stalls
/// on a full pipe.
pub fn run(argv: &[&str], timeout: Duration) -> Result<Vec<u8>, String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program}: no answer within {} s; killed", timeout.as_secs_f32()));
            }
        }
    };
    let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    if !status.success() {
        return Err(format!("{program} exited with {status}: {}", String::from_utf8_lossy(&err).trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_larger_than_a_pipe_is_read_and_slow_tools_are_killed() {
        // 1 MiB on each pipe: a tool that is read only after it exits would
        // block on the full pipe and be killed at the deadline.
        let big =
            run(&["sh", "-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"], Duration::from_secs(20))
                .expect("big output");
        assert_eq!(big.len(), 1 << 20);
        let slow = run(&["sleep", "5"], Duration::from_millis(200)).expect_err("killed");
        assert!(slow.contains("killed"), "{slow}");
        let failed = run(&["sh", "-c", "echo nope >&2; exit 3"], Duration::from_secs(5)).expect_err("exit 3");
        assert!(failed.contains("nope"), "{failed}");
        assert!(run(&["/nonexistent/tool"], Duration::from_secs(1)).expect_err("missing").contains("cannot run"));
    }
}
