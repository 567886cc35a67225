//! Persistence lines as the agent reads them from users' files (crontabs,
//! units, `~/.bashrc`, `authorized_keys`): any text and any target path give
//! an answer without a panic or a hang; a match is a real occurrence of the
//! target, every named path is a piece of the line, and folder matching
//! agrees with component prefixes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_common::persistence::{inside, named_paths, references};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (line, target) = text.split_once('\u{1}').unwrap_or((text, "/tmp/x"));
    if references(line, target) {
        assert!(!target.is_empty() && line.contains(target));
        assert!(!line.trim_start().starts_with('#'));
    }
    for path in named_paths(line) {
        assert!(path.starts_with('/') && line.contains(path));
        if inside(path, target) {
            let folder: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
            let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            assert!(parts.len() > folder.len());
        }
    }
});
