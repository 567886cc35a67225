//! Forwarding set by the mail host's administrator rather than its users:
//! the global Sieve scripts Dovecot runs before and after each user's
//! (`sieve_before`, `sieve_after` and their numbered siblings, as
//! `doveconf` reports Dovecot's configuration). They are read and listed;
//! `disable_external_forwarding` never changes them — they are the
//! administrator's files, not a user's.

use std::path::{Path, PathBuf};
use std::process::Command;

use picket_common::actions::mail::SieveScript;

use crate::fsutil::dir::{Dir, Owners};

/// Largest global script read.
const MAX_SCRIPT: u64 = 1 << 20;
/// Most scripts read from one directory setting.
const MAX_FILES: usize = 100;

/// The `sieve_before*` / `sieve_after*` settings of the Dovecot whose main
/// configuration file is `conf`, in Dovecot's order: (setting, value).
pub fn settings(conf: &Path) -> Result<Vec<(String, String)>, String> {
    let out =
        Command::new("doveconf").arg("-c").arg(conf).arg("plugin").output().map_err(|e| format!("doveconf: {e}"))?;
    if !out.status.success() {
        return Err(format!("doveconf -c {}: {}", conf.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(parse_settings(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_settings(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().split_once(" = "))
        .filter(|(k, _)| {
            let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
            (base == "sieve_before" || base == "sieve_after") && !k.is_empty()
        })
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    // Before the user's script, then after it; each in its number's order.
    found.sort_by_key(|(k, _)| (k.starts_with("sieve_after"), k.len(), k.clone()));
    found
}

/// The file or directory a setting names (`file:` locations and plain
/// paths); `None` for what depends on the user or is not a file.
fn location(value: &str) -> Option<PathBuf> {
    let path = value.strip_prefix("file:").unwrap_or(value);
    let path = path.split(';').next().unwrap_or_default();
    (path.starts_with('/') && !path.contains('%') && !path.contains('~')).then(|| PathBuf::from(path))
}

/// The global scripts' redirects (and those that could not be read).
pub fn list(conf: &Path, internal: &[String]) -> Result<(u64, Vec<SieveScript>), String> {
    let mut read = 0;
    let mut out = Vec::new();
    for (setting, value) in settings(conf)? {
        let label = format!("({setting})");
        let Some(path) = location(&value) else {
            out.push(failed(&label, &value, "depends on the user or is not a file: not read"));
            continue;
        };
        for (name, text) in files(&path) {
            read += 1;
            let s = super::forwarding::read_script(label.clone(), name, true, text, internal);
            if !s.redirects.is_empty() || s.error.is_some() {
                out.push(s);
            }
        }
    }
    Ok((read, out))
}

fn failed(label: &str, script: &str, why: &str) -> SieveScript {
    SieveScript {
        user: label.into(),
        script: script.into(),
        active: true,
        redirects: Vec::new(),
        error: Some(why.into()),
    }
}

/// The script at `path`, or each `*.sieve` of the directory `path`, by
/// name: (path shown, its text or why not).
fn files(path: &Path) -> Vec<(String, Result<String, String>)> {
    let shown = path.display().to_string();
    let read = |dir: &Dir, name: &std::ffi::OsStr| -> Result<String, String> {
        let (bytes, _) = dir.read(name, MAX_SCRIPT).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
    };
    match Dir::open(path, Owners::Any) {
        Ok(dir) => {
            let mut names: Vec<_> = match dir.entries() {
                Ok(n) => n.into_iter().filter(|n| n.to_string_lossy().ends_with(".sieve")).collect(),
                Err(e) => return vec![(shown, Err(e.to_string()))],
            };
            names.sort();
            names.truncate(MAX_FILES);
            names.iter().map(|n| (path.join(n).display().to_string(), read(&dir, n))).collect()
        }
        Err(_) => match Dir::open_parent(path, Owners::Any) {
            Ok((dir, name)) => vec![(shown, read(&dir, &name))],
            Err(e) => vec![(shown, Err(e.to_string()))],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_in_dovecots_order_and_only_file_locations_are_read() {
        let text = "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  sieve_after = /etc/after.sieve\n  \
                    sieve_before2 = file:/etc/b2.d;bindir=/var/b\n  sieve_before = /etc/before.d\n  sieve_before_x = y\n}\n";
        let got = parse_settings(text);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["sieve_before", "sieve_before2", "sieve_after"]);
        assert_eq!(location("file:/etc/b2.d;bindir=/var/b"), Some(PathBuf::from("/etc/b2.d")));
        assert_eq!(location("/var/sieve/%u.sieve"), None);
        assert_eq!(location("ldap:/etc/x"), None);
    }
}
