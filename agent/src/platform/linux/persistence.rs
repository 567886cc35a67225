//! Persistence that references a file, found, removed and put back.
//!
//! Places (from `../shared/corpus/persistence/linux_persistence_locations.md`),
//! all under a root (`/` in production, a test tree in tests):
//! - lines: cron tables (`/etc/crontab`, `/etc/cron.d/*`, `/etc/anacrontab`,
//!   `/var/spool/cron/*`, `/var/spool/cron/crontabs/*`), `/etc/rc.local`,
//!   shell profiles (`/etc/profile`, `/etc/profile.d/*`, `/etc/bash.bashrc`,
//!   each home's `.bashrc`, `.profile`, `.bash_profile`, `.bash_login`,
//!   `.zshrc`), `/etc/ld.so.preload`, and `authorized_keys` entries whose
//!   `command=` runs the file — the line is removed;
//! - files: systemd units and timers (`/etc/systemd/system`,
//!   `/usr/local/lib/systemd/system`, each home's `~/.config/systemd/user`)
//!   and XDG autostart entries (`/etc/xdg/autostart`,
//!   `~/.config/autostart`) that mention the file — the unit is removed, with
//!   its `*.wants/` links and a timer of the same name;
//!   `/etc/cron.{hourly,daily,weekly,monthly}` scripts that mention it.
//!
//! A reference is the file's absolute path as a whole word (followed by
//! whitespace, a quote, `;`, `&`, `|`, `)` or the end of the line). Each
//! removal is recorded with what is needed to restore it exactly; restoring
//! is idempotent (a line already present is not added twice).
//!
//! Many of these files belong to users (`~/.bashrc`, user crontabs, user
//! units), so every read and write goes through `fsutil::dir`: no symlink
//! is followed into or out of a user's directory, a rewritten file is a new
//! file made with `O_EXCL` in the same directory, given the old file's
//! owner and mode on its descriptor and renamed over it; a directory that
//! belongs to someone other than root and the file's owner is refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::fsutil::dir::EntryStat;
use crate::fsutil::{Dir, Owners, SafeError};

/// Largest persistence file read (a user could point us at a huge one).
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Edits are read-modify-write of shared files (one crontab may hold lines
/// of two files quarantined at once): one at a time in this process.
static EDITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub use picket_common::persistence::Removal;

/// `root` joined with an absolute path.
fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn is_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

/// Home directories (not through symlinks).
fn homes(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![under(root, "/root")];
    if let Ok(rd) = std::fs::read_dir(under(root, "/home")) {
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| is_dir(p)));
    }
    out
}

/// Regular files directly in `dir` (links are not followed).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    if !is_dir(dir) {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| is_file(p)).collect();
    out.sort();
    out
}

/// A persistence file's text and metadata, read without following links.
fn read_text(path: &Path) -> Option<(String, EntryStat)> {
    let (dir, name) = Dir::open_parent(path, Owners::Any).ok()?;
    let (data, st) = dir.read(&name, MAX_FILE).ok()?;
    Some((String::from_utf8(data).ok()?, st))
}

/// Files whose matching lines are removed.
fn line_files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        ["/etc/crontab", "/etc/anacrontab", "/etc/rc.local", "/etc/profile", "/etc/bash.bashrc", "/etc/ld.so.preload"]
            .iter()
            .map(|p| under(root, p))
            .collect();
    for dir in ["/etc/cron.d", "/var/spool/cron", "/var/spool/cron/crontabs", "/etc/profile.d"] {
        out.extend(files_in(&under(root, dir)));
    }
    for home in homes(root) {
        for name in [".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc", ".ssh/authorized_keys"] {
            out.push(home.join(name));
        }
    }
    out.retain(|p| is_file(p));
    out
}

/// Directories whose matching files are removed whole.
fn file_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        "/etc/systemd/system",
        "/usr/local/lib/systemd/system",
        "/etc/xdg/autostart",
        "/etc/cron.hourly",
        "/etc/cron.daily",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
    ]
    .iter()
    .map(|p| under(root, p))
    .collect();
    for home in homes(root) {
        out.push(home.join(".config/systemd/user"));
        out.push(home.join(".config/autostart"));
    }
    out
}

pub use picket_common::persistence::references;

/// Absolute paths inside one of `folders` (`*` matches one component) that
/// persistence under `root` runs or names: `(path, where it is named)`.
pub fn pointing_into(root: &Path, folders: &[String]) -> Vec<(String, String)> {
    let inside = |p: &str| folders.iter().any(|f| picket_common::persistence::inside(p, f));
    let mut out = Vec::new();
    let mut files = line_files(root);
    for dir in file_dirs(root) {
        files.extend(files_in(&dir));
    }
    for file in files {
        let Some((text, _)) = read_text(&file) else { continue };
        for line in text.lines() {
            for token in picket_common::persistence::named_paths(line) {
                if inside(token) && !out.iter().any(|(p, _): &(String, String)| p == token) {
                    out.push((token.to_string(), file.display().to_string()));
                }
            }
        }
    }
    out
}

/// Find what references `target` under `root`, without changing anything.
pub fn find(root: &Path, target: &Path) -> Vec<Removal> {
    let t = target.display().to_string();
    let mut out = Vec::new();
    for file in line_files(root) {
        let Some((text, _)) = read_text(&file) else { continue };
        for (line_no, line) in text.lines().enumerate() {
            if references(line, &t) {
                out.push(Removal::Line { file: file.clone(), line_no, line: line.to_string() });
            }
        }
    }
    for dir in file_dirs(root) {
        for file in files_in(&dir) {
            let Some((text, meta)) = read_text(&file) else { continue };
            if !text.lines().any(|l| references(l, &t)) {
                continue;
            }
            // The unit's enablement links and a timer that starts it.
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(stem) = name.strip_suffix(".service") {
                let timer = dir.join(format!("{stem}.timer"));
                if let Some((content, m)) = read_text(&timer) {
                    out.extend(links_to(&dir, &format!("{stem}.timer")));
                    out.push(file_removal(&timer, content, &m));
                }
            }
            out.extend(links_to(&dir, &name));
            out.push(file_removal(&file, text, &meta));
        }
    }
    out
}

fn file_removal(path: &Path, content: String, meta: &EntryStat) -> Removal {
    Removal::File { path: path.to_path_buf(), content, mode: meta.mode(), uid: meta.uid(), gid: meta.gid() }
}

/// `*.wants/` / `*.requires/` links in `dir` to the unit `name`.
fn links_to(dir: &Path, name: &str) -> Vec<Removal> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for sub in rd.flatten().map(|e| e.path()).filter(|p| is_dir(p)) {
        let link = sub.join(name);
        if let Ok(target) = std::fs::read_link(&link) {
            out.push(Removal::Symlink { path: link, target });
        }
    }
    out
}

/// Apply removals found by [`find`]. Lines are removed by content (the
/// file may have changed since), files and links only if still present.
pub fn remove(removals: &[Removal]) -> Result<(), String> {
    use std::collections::BTreeMap;
    let _one_at_a_time = EDITS.lock().unwrap_or_else(|p| p.into_inner());
    let mut lines: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for r in removals {
        match r {
            Removal::Line { file, line, .. } => lines.entry(file.as_path()).or_default().push(line),
            Removal::File { path, .. } | Removal::Symlink { path, .. } => {
                let gone = Dir::open_parent(path, Owners::Any).and_then(|(dir, name)| {
                    dir.unlink(&name, None)?;
                    dir.sync()
                });
                match gone {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
                }
            }
        }
    }
    for (file, drop) in lines {
        edit_lines(file, |all| {
            let before = all.len();
            all.retain(|l| !drop.contains(&l.as_str()));
            all.len() != before
        })?;
    }
    Ok(())
}

/// Put removals back as they were.
pub fn restore(removals: &[Removal]) -> Result<(), String> {
    let _one_at_a_time = EDITS.lock().unwrap_or_else(|p| p.into_inner());
    for r in removals {
        match r {
            Removal::File { path, content, mode, uid, gid } => {
                restore_file(path, content.as_bytes(), *mode, *uid, *gid)
                    .map_err(|e| format!("cannot restore {}: {e}", path.display()))?;
            }
            Removal::Symlink { path, target } => {
                let made = Dir::open_parent(path, Owners::Any).and_then(|(dir, name)| match dir.stat(&name)? {
                    Some(_) => Ok(()),
                    None => dir.symlink(target, &name).and_then(|()| dir.sync()),
                });
                made.map_err(|e| format!("cannot restore the link {}: {e}", path.display()))?;
            }
            Removal::Line { .. } => {}
        }
    }
    // Lines in their original order, so earlier line numbers stay right.
    let mut lines: Vec<(&PathBuf, usize, &String)> = removals
        .iter()
        .filter_map(|r| match r {
            Removal::Line { file, line_no, line } => Some((file, *line_no, line)),
            _ => None,
        })
        .collect();
    lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (file, line_no, line) in lines {
        edit_lines(file, |all| {
            if all.iter().any(|l| l == line) {
                return false;
            }
            all.insert(line_no.min(all.len()), line.clone());
            true
        })?;
    }
    Ok(())
}

/// Put a removed file back unless something is at its name: created with
/// `O_EXCL` in its directory (reached safely, root's or the owner's), owner
/// and mode set on the descriptor.
fn restore_file(path: &Path, content: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), SafeError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let (dir, name) = Dir::open_parent(path, Owners::RootOr(uid))?;
    if dir.stat(&name)?.is_some() {
        return Ok(());
    }
    let (mut f, tmp) = dir.create_temp(&name)?;
    let written = (|| -> std::io::Result<()> {
        f.write_all(content)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()
    })();
    let placed = written
        .map_err(|source| SafeError::Io { path: path.to_path_buf(), source })
        .and_then(|()| dir.rename(&tmp, &name, false));
    if placed.is_err() {
        let _ = dir.unlink(&tmp, None);
    }
    placed?;
    dir.sync()
}

/// Change the lines of `file` with `edit` (which says whether it changed
/// anything) and write it back in place of the old file, with its owner and
/// mode. A file that is gone, a symlink, or in a directory of another user
/// is left alone with an error; a missing file is no error.
fn edit_lines(file: &Path, edit: impl FnOnce(&mut Vec<String>) -> bool) -> Result<(), String> {
    let fail = |e: SafeError| format!("cannot rewrite {}: {e}", file.display());
    let (dir, name) = match Dir::open_parent(file, Owners::Any) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    let owner = match dir.stat(&name).map_err(fail)? {
        None => return Ok(()),
        Some(st) => st.uid(),
    };
    // Writing for this owner: no directory on the way may be another user's.
    let (dir, name) = Dir::open_parent(file, Owners::RootOr(owner)).map_err(fail)?;
    let (data, st) = dir.read(&name, MAX_FILE).map_err(fail)?;
    let text = String::from_utf8(data).map_err(|_| format!("{} is not text; left alone", file.display()))?;
    let trailing_newline = text.ends_with('\n') || text.is_empty();
    let mut all: Vec<String> = text.lines().map(str::to_string).collect();
    if !edit(&mut all) {
        return Ok(());
    }
    let mut out = all.join("\n");
    if trailing_newline && !out.is_empty() {
        out.push('\n');
    }
    replace_same(&dir, &name, out.as_bytes(), &st).map_err(fail)
}

/// Replace `name` with `data`, keeping the owner and mode `st` had.
fn replace_same(dir: &Dir, name: &OsStr, data: &[u8], st: &EntryStat) -> Result<(), SafeError> {
    dir.replace(name, data, Some((st.uid(), st.gid())), st.mode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn lines_units_and_links_are_removed_and_restored_exactly() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let target = Path::new("/opt/evil/run");
        std::fs::create_dir_all(r.join("etc/systemd/system/multi-user.target.wants")).expect("mkdir");
        std::fs::create_dir_all(r.join("home/ann/.ssh")).expect("mkdir");
        let crontab = "SHELL=/bin/sh\n*/5 * * * * root /opt/evil/run\n0 3 * * * root /usr/bin/backup\n";
        std::fs::write(r.join("etc/crontab"), crontab).expect("crontab");
        std::fs::set_permissions(r.join("etc/crontab"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let unit = "[Service]\nExecStart=/opt/evil/run\n";
        std::fs::write(r.join("etc/systemd/system/evil.service"), unit).expect("unit");
        std::fs::write(r.join("etc/systemd/system/evil.timer"), "[Timer]\nOnBootSec=1\n").expect("timer");
        std::fs::write(r.join("etc/systemd/system/good.service"), "[Service]\nExecStart=/usr/bin/true\n")
            .expect("unit");
        std::os::unix::fs::symlink(
            "../evil.service",
            r.join("etc/systemd/system/multi-user.target.wants/evil.service"),
        )
        .expect("link");
        let keys = "command=\"/opt/evil/run\" ssh-ed25519 AAAAevil\nssh-ed25519 AAAAgood ann@laptop\n";
        std::fs::write(r.join("home/ann/.ssh/authorized_keys"), keys).expect("keys");

        let found = find(r, target);
        assert_eq!(found.len(), 5, "{found:#?}");
        remove(&found).expect("remove");
        let left = std::fs::read_to_string(r.join("etc/crontab")).expect("crontab");
        assert_eq!(left, "SHELL=/bin/sh\n0 3 * * * root /usr/bin/backup\n");
        assert!(!r.join("etc/systemd/system/evil.service").exists());
        assert!(!r.join("etc/systemd/system/evil.timer").exists());
        assert!(r.join("etc/systemd/system/good.service").exists());
        assert!(std::fs::symlink_metadata(r.join("etc/systemd/system/multi-user.target.wants/evil.service")).is_err());
        assert_eq!(
            std::fs::read_to_string(r.join("home/ann/.ssh/authorized_keys")).expect("keys"),
            "ssh-ed25519 AAAAgood ann@laptop\n"
        );
        assert!(find(r, target).is_empty());

        restore(&found).expect("restore");
        restore(&found).expect("restoring twice changes nothing");
        assert_eq!(std::fs::read_to_string(r.join("etc/crontab")).expect("crontab"), crontab);
        let mode = std::fs::metadata(r.join("etc/crontab")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_to_string(r.join("etc/systemd/system/evil.service")).expect("unit"), unit);
        assert_eq!(
            std::fs::read_link(r.join("etc/systemd/system/multi-user.target.wants/evil.service")).expect("link"),
            Path::new("../evil.service")
        );
        assert_eq!(std::fs::read_to_string(r.join("home/ann/.ssh/authorized_keys")).expect("keys"), keys);
    }
}
