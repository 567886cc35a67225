//! Fault injection for crash and race tests, off unless the environment
//! asks (read once; without the variables every point is a no-op):
//! - `PICKET_FAULT_AT=<point>`: abort the process (no unwinding, no cleanup —
//!   like `kill -9` or a power cut for everything not yet fsync'd) there;
//! - `PICKET_PAUSE_AT=<point>` with `PICKET_PAUSE_DIR=<dir>`: at that point,
//!   create `<dir>/reached` and wait (up to 60 s) until `<dir>/go` exists —
//!   so a test can act, as an attacker would, in the window between two
//!   steps.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Faults {
    abort_at: Option<String>,
    pause_at: Option<(String, PathBuf)>,
}

pub fn point(name: &str) {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    let f = FAULTS.get_or_init(|| Faults {
        abort_at: std::env::var("PICKET_FAULT_AT").ok(),
        pause_at: std::env::var("PICKET_PAUSE_AT").ok().zip(std::env::var("PICKET_PAUSE_DIR").ok().map(PathBuf::from)),
    });
    if f.abort_at.as_deref() == Some(name) {
        eprintln!("fault injected at {name}: aborting");
        std::process::abort();
    }
    if let Some((at, dir)) = &f.pause_at {
        if at == name {
            eprintln!("paused at {name}");
            let _ = std::fs::write(dir.join("reached"), name);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !dir.join("go").exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
