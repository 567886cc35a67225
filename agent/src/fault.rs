//! Fault injection for crash tests: `PICKET_FAULT_AT=<point>` makes the
//! process abort (no unwinding, no cleanup — like `kill -9` or a power cut
//! for everything not yet fsync'd) when it reaches that point. Read once;
//! without the variable every point is a no-op.

use std::sync::OnceLock;

pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var("PICKET_FAULT_AT").ok()).as_deref() == Some(name) {
        eprintln!("fault injected at {name}: aborting");
        std::process::abort();
    }
}
