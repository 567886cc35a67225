//! Installed packages: which one owns a file (dpkg, else rpm), and the
//! merged-/usr aliases both package managers and restrict_code need.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// On a merged-/usr system each of these legacy directories is a link to
/// its `/usr` twin, and dpkg may record either spelling of a file.
pub const MERGED_USR: [(&str, &str); 4] =
    [("/usr/bin", "/bin"), ("/usr/sbin", "/sbin"), ("/usr/lib", "/lib"), ("/usr/lib64", "/lib64")];

/// The other spelling of `path` on a merged-/usr system, if it has one.
pub fn merged_usr_alias(path: &Path) -> Option<PathBuf> {
    MERGED_USR.iter().find_map(|(merged, legacy)| {
        let swap = |from: &str, to: &str| path.strip_prefix(from).ok().map(|rest| Path::new(to).join(rest));
        swap(merged, legacy).or_else(|| swap(legacy, merged))
    })
}

/// How long a package manager may take to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The package that owns `path` (dpkg, else rpm), if any; both spellings of
/// a merged-/usr path are asked.
pub fn package_owner(path: &Path) -> Option<String> {
    std::iter::once(path.to_path_buf()).chain(merged_usr_alias(path)).find_map(|p| owner_of(&p))
}

fn owner_of(path: &Path) -> Option<String> {
    let path = path.to_str()?;
    let ask = |argv: &[&str]| -> Option<String> {
        let out = super::command::run(argv, QUERY_TIMEOUT).ok()?;
        let out = String::from_utf8_lossy(&out);
        // dpkg-query -S: "pkg[, pkg]: /path", after "diversion by pkg
        // from|to: /path" lines for a diverted file; rpm -qf: "pkg-version".
        let line = out.lines().find(|l| !l.starts_with("diversion by "))?;
        Some(line.split(": ").next()?.trim().to_string()).filter(|s| !s.is_empty())
    };
    ask(&["dpkg-query", "-S", path]).or_else(|| ask(&["rpm", "-qf", path]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_merged_directory_has_one_alias_both_ways() {
        for (path, alias) in [
            ("/bin/sh", "/usr/bin/sh"),
            ("/usr/sbin/init", "/sbin/init"),
            ("/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"),
            ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
        ] {
            assert_eq!(merged_usr_alias(Path::new(path)).as_deref(), Some(Path::new(alias)), "{path}");
        }
        assert_eq!(merged_usr_alias(Path::new("/opt/app/run")), None);
        assert_eq!(merged_usr_alias(Path::new("/binary")), None, "whole components only");
    }

    #[test]
    fn a_packaged_file_has_its_owner_and_a_temp_file_none() {
        if Path::new("/usr/bin/dpkg-query").exists() {
            assert_eq!(package_owner(Path::new("/usr/bin/ls")).as_deref(), Some("coreutils"));
            // Diverted by dash: dpkg-query prints the diversion first.
            assert_eq!(package_owner(Path::new("/bin/sh")).as_deref(), Some("dash"));
        }
        let t = tempfile::NamedTempFile::new().expect("temp");
        assert_eq!(package_owner(t.path()), None);
    }
}
