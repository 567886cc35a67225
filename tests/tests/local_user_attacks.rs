//! A local unprivileged user against the agent's root-side file work,
//! mounted for real: `nobody` (uid 65534, through `setpriv`) plants
//! symlinks and swaps its own directories for links to a root-owned
//! directory while the agent — root, this test process — removes
//! persistence from the user's `~/.bashrc` and unit directory, quarantines
//! the user's file and releases it. Races are made deterministic with a
//! pause point (`PICKET_PAUSE_AT`) in a helper process: the attacker moves
//! exactly in the window between the agent's check and its action.
//!
//! Everything lives in a test root under a temp dir (`root/etc` stands for
//! /etc); nothing of the host is touched. Needs root (CI is root); skipped
//! with a note elsewhere.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use picket_agent::fsutil::Dir;
use picket_agent::platform::linux::Linux;
use picket_agent::protected::Protected;
use picket_agent::quarantine::{self, EntryState, Request, Vault};
use picket_e2e::attacker::{as_nobody, can_switch_users, give_to_nobody, NOBODY};

/// A test root with a root-owned `etc/` and `nobody`'s home holding a file
/// (`bin/evil`) that `.bashrc` and a user unit start.
struct Lab {
    dir: PathBuf,
    /// Removes the lab at the end (the helper process borrows its parent's).
    _owned: Option<tempfile::TempDir>,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The user must be able to reach its home inside the temp dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let lab = Self { dir: dir.path().to_path_buf(), _owned: Some(dir) };
        std::fs::create_dir_all(lab.etc().join("systemd/system")).expect("etc");
        std::fs::write(lab.etc().join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        std::fs::write(lab.etc().join("systemd/system/evil.service"), "[Service]\nExecStart=/usr/sbin/real\n")
            .expect("root's unit");
        std::fs::create_dir_all(lab.home().join("bin")).expect("home");
        std::fs::create_dir_all(lab.home().join(".config/systemd/user")).expect("units");
        std::fs::write(lab.evil(), b"#!/bin/sh\necho evil\n").expect("evil");
        std::fs::write(lab.home().join(".bashrc"), format!("alias ll='ls -l'\n{} &\n", lab.evil().display()))
            .expect(".bashrc");
        std::fs::write(
            lab.home().join(".config/systemd/user/evil.service"),
            format!("[Service]\nExecStart={}\n", lab.evil().display()),
        )
        .expect("user unit");
        give_to_nobody(&lab.home());
        lab
    }
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    fn etc(&self) -> PathBuf {
        self.root().join("etc")
    }
    fn home(&self) -> PathBuf {
        self.root().join("home/mallory")
    }
    fn evil(&self) -> PathBuf {
        self.home().join("bin/evil")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn vault(&self) -> Vault {
        Vault::open(&self.state()).expect("vault")
    }
    /// Everything under `etc/` with its owner and content.
    fn etc_snapshot(&self) -> Vec<(PathBuf, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for e in ignore::WalkBuilder::new(self.etc()).standard_filters(false).build().flatten() {
            let m = std::fs::symlink_metadata(e.path()).expect("meta");
            let data = if m.is_file() { std::fs::read(e.path()).expect("read") } else { Vec::new() };
            out.push((e.path().to_path_buf(), m.uid(), data));
        }
        out.sort();
        out
    }
}

fn quarantine_in(lab: &Lab, path: &Path) -> Result<quarantine::Entry, quarantine::QuarantineError> {
    let protected = Protected::new(&lab.state());
    let root = lab.root();
    let req = Request {
        path,
        root: &root,
        kill: false,
        force: false,
        protected: &protected,
        expected_sha256: None,
        action_id: None,
    };
    quarantine::quarantine(&lab.vault(), &Linux, &req)
}

#[test]
fn removing_persistence_from_a_users_bashrc_never_writes_through_a_planted_temp_symlink() {
    if !can_switch_users() {
        return;
    }
    let lab = Lab::new();
    let before = lab.etc_snapshot();
    // The attacker points every temp name the agent could use at /etc:
    // the one write_atomic used to use and the one it uses now.
    let new_tmp = Dir::temp_name(std::ffi::OsStr::new(".bashrc")).to_string_lossy().into_owned();
    let etc = lab.etc();
    as_nobody(
        &lab.home(),
        &format!(
            "ln -s {etc}/owned-by-mallory ..bashrc.tmp && ln -s {etc}/owned-by-mallory-2 {new_tmp}",
            etc = etc.display()
        ),
    );

    let entry = quarantine_in(&lab, &lab.evil()).expect("quarantine");
    assert_eq!(entry.persistence.len(), 2, "the .bashrc line and the user unit: {:?}", entry.persistence);

    assert_eq!(lab.etc_snapshot(), before, "nothing was created or changed under etc/");
    let bashrc = lab.home().join(".bashrc");
    let meta = std::fs::symlink_metadata(&bashrc).expect(".bashrc");
    assert!(meta.is_file(), ".bashrc is still a regular file, not the planted link");
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (NOBODY, NOBODY, 0o644));
    assert_eq!(std::fs::read_to_string(&bashrc).expect("read"), "alias ll='ls -l'\n");

    // Release puts the line back, again without following anything.
    quarantine::release(&lab.vault(), entry.id).expect("release");
    assert_eq!(lab.etc_snapshot(), before);
    assert!(std::fs::read_to_string(&bashrc).expect("read").contains("bin/evil &"));
    assert_eq!(std::fs::metadata(lab.evil()).expect("back").uid(), NOBODY);
}

#[test]
fn release_refuses_a_parent_swapped_for_a_symlink_or_owned_by_another_user_and_keeps_the_file() {
    if !can_switch_users() {
        return;
    }
    let lab = Lab::new();
    let entry = quarantine_in(&lab, &lab.evil()).expect("quarantine");
    let before = lab.etc_snapshot();
    // ~/bin becomes a link to etc/: the release would land in /etc.
    as_nobody(&lab.home(), &format!("mv bin bin.old && ln -s {} bin", lab.etc().display()));
    let err = quarantine::release(&lab.vault(), entry.id).expect_err("refused");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(err.to_string().contains("stays in the vault"), "{err}");
    assert_eq!(lab.vault().load(entry.id).expect("load").expect("entry").state, EntryState::Quarantined);
    assert_eq!(lab.etc_snapshot(), before, "nothing written to etc/");

    // A directory on the way that belongs to another (non-root) user.
    as_nobody(&lab.home(), "rm bin && mv bin.old bin");
    std::os::unix::fs::chown(lab.home().join("bin"), Some(NOBODY - 1), Some(NOBODY - 1)).expect("chown");
    let err = quarantine::release(&lab.vault(), entry.id).expect_err("refused");
    assert!(err.to_string().contains("belongs to uid 65533"), "{err}");
    assert!(!lab.evil().exists());

    // Put right, the release goes through.
    std::os::unix::fs::chown(lab.home().join("bin"), Some(NOBODY), Some(NOBODY)).expect("chown");
    quarantine::release(&lab.vault(), entry.id).expect("release");
    assert_eq!(std::fs::read(lab.evil()).expect("back"), b"#!/bin/sh\necho evil\n");
}

/// Helper process: quarantine the lab's file, pausing where the test says;
/// writes the outcome to `<lab>/outcome`.
#[test]
#[ignore = "a helper process entry point, started by the race tests"]
fn race_helper() {
    let lab = Lab { dir: PathBuf::from(std::env::var("PICKET_RACE_LAB").expect("PICKET_RACE_LAB")), _owned: None };
    let target = PathBuf::from(std::env::var("PICKET_RACE_TARGET").expect("target"));
    let outcome = match quarantine_in(&lab, &target) {
        Ok(e) => format!("quarantined {}", e.path.display()),
        Err(e) => format!("refused: {e}"),
    };
    std::fs::write(lab.dir.join("outcome"), outcome).expect("outcome");
}

/// Run the quarantine of `target` in a helper process that pauses at
/// `point`; `attack` runs (as the attacker) in the pause.
fn race(lab: &Lab, target: &Path, point: &str, attack: impl FnOnce()) -> String {
    let pause = lab.dir.join("pause");
    std::fs::create_dir_all(&pause).expect("pause dir");
    let mut helper = Command::new(std::env::current_exe().expect("test binary"))
        .args(["race_helper", "--exact", "--ignored", "--nocapture"])
        .env("PICKET_RACE_LAB", &lab.dir)
        .env("PICKET_RACE_TARGET", target)
        .env("PICKET_PAUSE_AT", point)
        .env("PICKET_PAUSE_DIR", &pause)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("helper");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pause.join("reached").exists() {
        assert!(Instant::now() < deadline, "the helper never reached {point}");
        assert!(helper.try_wait().expect("wait").is_none(), "the helper ended before {point}");
        std::thread::sleep(Duration::from_millis(10));
    }
    attack();
    std::fs::write(pause.join("go"), b"").expect("go");
    assert!(helper.wait().expect("helper").success(), "helper failed");
    std::fs::read_to_string(lab.dir.join("outcome")).expect("outcome")
}

#[test]
fn a_directory_swapped_between_check_and_removal_cannot_redirect_the_removal() {
    if !can_switch_users() {
        return;
    }
    // The user's file is called `passwd`; between the agent's last check and
    // the removal, ~/drop becomes a link to etc/, where root's passwd is.
    let lab = Lab::new();
    let drop = lab.home().join("drop");
    std::fs::create_dir(&drop).expect("mkdir");
    std::fs::write(drop.join("passwd"), b"not root's").expect("write");
    std::os::unix::fs::chown(&drop, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::os::unix::fs::chown(drop.join("passwd"), Some(NOBODY), Some(NOBODY)).expect("chown");
    let before = lab.etc_snapshot();
    let home = lab.home();
    let etc = lab.etc();
    let outcome = race(&lab, &drop.join("passwd"), "quarantine.checked_before_unlink", || {
        as_nobody(&home, &format!("mv drop drop.old && ln -s {} drop", etc.display()));
    });
    assert_eq!(lab.etc_snapshot(), before, "root's passwd is untouched ({outcome})");
    // The removal acted on the directory it had checked: the user's file is
    // the one that went into the vault.
    assert!(outcome.starts_with("quarantined"), "{outcome}");
    assert!(!home.join("drop.old/passwd").exists());
}

#[test]
fn a_unit_directory_swapped_before_persistence_removal_fails_the_quarantine_and_removes_nothing_of_root() {
    if !can_switch_users() {
        return;
    }
    let lab = Lab::new();
    let before = lab.etc_snapshot();
    let home = lab.home();
    let etc = lab.etc();
    let outcome = race(&lab, &lab.evil(), "quarantine.after_record", || {
        // ~/.config/systemd/user → etc/systemd/system, which has root's
        // evil.service: the removal of the user's unit would take root's.
        as_nobody(
            &home,
            &format!(
                "mv .config/systemd/user .config/systemd/user.old && ln -s {}/systemd/system .config/systemd/user",
                etc.display()
            ),
        );
    });
    assert!(outcome.starts_with("refused") && outcome.contains("symbolic link"), "{outcome}");
    assert_eq!(lab.etc_snapshot(), before, "root's unit is still there");
    // Rolled back: the file and the user's .bashrc line are as they were.
    assert!(lab.evil().exists());
    assert!(std::fs::read_to_string(home.join(".bashrc")).expect("read").contains("bin/evil &"));
    assert!(lab.vault().entries().is_empty());
}

/// The undo of `remove_persistence` writes as root into the user's places:
/// between the removal and the undo, the user swaps her unit directory for
/// a link to root's (which holds a unit of the same name) and her
/// `.bashrc` for a link to root's `passwd`. Putting each back is refused;
/// nothing of root's is written, and the record stays unrestored.
#[test]
fn restoring_removed_persistence_into_places_swapped_for_symlinks_writes_nothing_of_roots() {
    use picket_agent::platform::linux::persistence;
    use picket_agent::quarantine::PersistenceRecord;
    if !can_switch_users() {
        return;
    }
    let lab = Lab::new();
    let found = persistence::find(&lab.root(), &lab.evil());
    assert_eq!(found.len(), 2, "the .bashrc line and the user unit: {found:?}");
    persistence::remove(&found).expect("remove");
    // What remove_persistence keeps, and restore_persistence reads back.
    let record = PersistenceRecord {
        id: uuid::Uuid::new_v4(),
        path: lab.evil(),
        removals: found,
        restored: false,
        action_id: None,
        removed_at: "2026-12-02T00:00:00Z".into(),
    };
    lab.vault().save_record(&record).expect("save record");

    let before = lab.etc_snapshot();
    let etc = lab.etc();
    as_nobody(
        &lab.home(),
        &format!(
            "mv .config/systemd/user .config/systemd/user.mine && ln -s {etc}/systemd/system .config/systemd/user \
             && rm .bashrc && ln -s {etc}/passwd .bashrc",
            etc = etc.display()
        ),
    );
    let record = lab.vault().load_record(record.id).expect("load").expect("record");
    for removal in &record.removals {
        let refused = persistence::restore(std::slice::from_ref(removal));
        let error = refused.expect_err(&format!("{} was put back through the link", removal.describe()));
        assert!(error.contains("symbolic link"), "{error}");
    }
    assert_eq!(lab.etc_snapshot(), before, "root's passwd and unit are untouched");
    assert!(std::fs::symlink_metadata(lab.home().join(".bashrc")).expect("link").file_type().is_symlink());
    assert!(!lab.home().join(".config/systemd/user.mine/evil.service").exists(), "nothing went astray either");
}
