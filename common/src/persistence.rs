//! Persistence (no I/O): whether a line of a crontab, unit, profile or
//! `authorized_keys` runs or names a file, which absolute paths it names,
//! folder matching with `*` components, and [`Removal`], the record of one
//! removed piece (enough to put it back exactly). The agent reads and
//! writes the files; this module only looks at text and data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One removed piece of persistence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Removal {
    /// A line taken out of a file (0-based line number at removal).
    Line { file: PathBuf, line_no: usize, line: String },
    /// A whole file removed (unit, timer, autostart entry, cron script).
    File { path: PathBuf, content: String, mode: u32, uid: u32, gid: u32 },
    /// A symlink removed (a unit's `*.wants/` link).
    Symlink { path: PathBuf, target: PathBuf },
}

impl Removal {
    pub fn describe(&self) -> String {
        match self {
            Self::Line { file, line, .. } => format!("line {:?} of {}", line, file.display()),
            Self::File { path, .. } => format!("file {}", path.display()),
            Self::Symlink { path, .. } => format!("link {}", path.display()),
        }
    }
}

/// Whether `line` runs or names `target` as a whole path: preceded by the
/// start or a non-alphanumeric byte, followed by the end, whitespace, a
/// quote, `;`, `&`, `|` or `)`. Comment lines (`#`) name nothing.
pub fn references(line: &str, target: &str) -> bool {
    if target.is_empty() || line.trim_start().starts_with('#') {
        return false;
    }
    let mut from = 0;
    while let Some(i) = line.get(from..).and_then(|rest| rest.find(target)) {
        let start = from + i;
        let end = start + target.len();
        let before_ok = start == 0 || !line.as_bytes()[start - 1].is_ascii_alphanumeric();
        let after_ok = line[end..].chars().next().is_none_or(|c| c.is_whitespace() || "\"';&|)".contains(c));
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// The absolute paths a (non-comment) line names: its words starting with
/// `/`, split at whitespace, quotes, `=`, `;`, `&`, `|` and parentheses.
pub fn named_paths(line: &str) -> impl Iterator<Item = &str> {
    let comment = line.trim_start().starts_with('#');
    line.split(|c: char| c.is_whitespace() || "\"'=;&|()".contains(c)).filter(move |t| !comment && t.starts_with('/'))
}

/// Whether `path` is inside `folder` (a `*` component matches any one name;
/// the folder itself is not inside itself).
pub fn inside(path: &str, folder: &str) -> bool {
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let f: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
    p.len() > f.len() && f.iter().zip(&p).all(|(a, b)| *a == "*" || a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_whole_paths_only() {
        assert!(references("* * * * * root /opt/evil/run --now", "/opt/evil/run"));
        assert!(references("ExecStart=/opt/evil/run", "/opt/evil/run"));
        assert!(references("command=\"/opt/evil/run\" ssh-ed25519 AAAA", "/opt/evil/run"));
        assert!(references("a /opt/evil/runner; /opt/evil/run", "/opt/evil/run"));
        assert!(!references("* * * * * root /opt/evil/runner", "/opt/evil/run"));
        assert!(!references("# /opt/evil/run", "/opt/evil/run"));
        assert!(!references("anything", ""), "an empty target names nothing (and does not loop)");
        assert!(!references("é/opt/x", "/opt/y"));
    }

    #[test]
    fn paths_and_folders() {
        let named: Vec<&str> = named_paths("*/5 * * * * root /tmp/x --out=/var/tmp/y;/z").collect();
        assert_eq!(named, ["/tmp/x", "/var/tmp/y", "/z"]);
        assert_eq!(named_paths("# /tmp/x").count(), 0);
        assert!(inside("/home/ann/Downloads/x", "/home/*/Downloads"));
        assert!(!inside("/home/ann/Downloads", "/home/*/Downloads"));
        assert!(!inside("/usrlocal/x", "/usr"));
    }
}
