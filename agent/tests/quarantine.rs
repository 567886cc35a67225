//! Quarantine and release on the real filesystem and processes, in a test
//! root (never the host's /etc): a running copy of `sleep` with a cron line
//! and a systemd unit pointing at it; and a crash injected at every step,
//! after which the file is in place or in the vault — never lost.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use picket_agent::platform::{linux::Linux, Platform};
use picket_agent::protected::Protected;
use picket_agent::quarantine::{self, EntryState, Request, Vault};

struct Lab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    sha256: String,
}

impl Lab {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn crontab(&self) -> String {
        std::fs::read_to_string(self.root().join("etc/crontab")).expect("crontab")
    }
    fn unit(&self) -> PathBuf {
        self.root().join("etc/systemd/system/evil.service")
    }
    fn protected(&self) -> Protected {
        Protected::new(&self.state())
    }
}

/// A copy of sleep made unique (a trailer after the ELF image), mode 0750,
/// an old mtime, and persistence pointing at it.
fn lab() -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("opt/evil-sleep");
    std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    let mut bytes = std::fs::read("/bin/sleep").expect("sleep");
    bytes.extend_from_slice(format!("picket-test-{}", uuid::Uuid::new_v4()).as_bytes());
    std::fs::write(&bin, &bytes).expect("write");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let old = nix::sys::time::TimeSpec::new(1_600_000_000, 123_456_789);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &bin, &old, &old, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .expect("utimensat");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/systemd/system/multi-user.target.wants")).expect("mkdir");
    std::fs::write(root.join("etc/crontab"), format!("SHELL=/bin/sh\n*/5 * * * * root {} 60\n", bin.display()))
        .expect("crontab");
    std::fs::write(
        root.join("etc/systemd/system/evil.service"),
        format!("[Service]\nExecStart={} 600\n", bin.display()),
    )
    .expect("unit");
    std::os::unix::fs::symlink("../evil.service", root.join("etc/systemd/system/multi-user.target.wants/evil.service"))
        .expect("link");
    let sha256 = picket_agent::fsutil::hash::sha256_path(&bin).expect("hash");
    Lab { dir, bin, sha256 }
}

fn run(bin: &Path) -> Child {
    let child = Command::new(bin).arg("600").stdin(Stdio::null()).spawn().expect("spawn the copy");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{}/exe", child.id())).map(|p| p != bin).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the copy did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn request<'a>(lab: &'a Lab, root: &'a Path, protected: &'a Protected) -> Request<'a> {
    Request { path: &lab.bin, root, kill: true, force: false, protected, expected_sha256: None, action_id: None }
}

#[test]
fn a_running_copy_is_stopped_quarantined_and_released_exactly_as_it_was() {
    let lab = lab();
    let vault = Vault::open(&lab.state()).expect("vault");
    let before = std::fs::metadata(&lab.bin).expect("meta");
    let mut child = run(&lab.bin);
    let root = lab.root();
    let entry = quarantine::quarantine(&vault, &Linux, &request(&lab, &root, &lab.protected())).expect("quarantine");

    assert_eq!(entry.killed_pids, vec![child.id() as i32]);
    let status = child.wait().expect("wait");
    assert!(!status.success(), "killed: {status:?}");
    assert!(!lab.bin.exists(), "the file is gone");
    assert_eq!(entry.state, EntryState::Quarantined);
    assert_eq!(entry.sha256, lab.sha256);
    let blob = std::fs::read(vault.blob_path(entry.id)).expect("blob");
    assert!(!blob.windows(4).any(|w| w == b"\x7fELF"), "the vault copy is not an ELF file any more");
    assert!(!lab.crontab().contains("evil-sleep"), "cron line removed");
    assert!(!lab.unit().exists(), "unit removed");
    assert_eq!(entry.persistence.len(), 3, "{:?}", entry.persistence);

    let released = quarantine::release(&vault, entry.id).expect("release");
    assert_eq!(released.state, EntryState::Released);
    let after = std::fs::metadata(&lab.bin).expect("back");
    assert_eq!(picket_agent::fsutil::hash::sha256_path(&lab.bin).expect("hash"), lab.sha256);
    assert_eq!((after.mode() & 0o7777, after.uid(), after.gid()), (0o750, before.uid(), before.gid()));
    assert_eq!((after.mtime(), after.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert!(lab.crontab().contains(&format!("root {} 60", lab.bin.display())), "cron line back");
    assert!(std::fs::read_to_string(lab.unit()).expect("unit").contains("ExecStart="));
    assert!(std::fs::read_link(lab.root().join("etc/systemd/system/multi-user.target.wants/evil.service")).is_ok());
    assert!(!vault.blob_path(entry.id).exists());
    assert!(quarantine::release(&vault, entry.id).is_err(), "released once only");

    // A different file at the path is never overwritten.
    let again =
        quarantine::quarantine(&vault, &Linux, &request(&lab, &root, &lab.protected())).expect("quarantine again");
    std::fs::write(&lab.bin, b"someone else's file").expect("write");
    let err = quarantine::release(&vault, again.id).expect_err("refused");
    assert!(err.to_string().contains("a different file"), "{err}");
    assert_eq!(std::fs::read(&lab.bin).expect("kept"), b"someone else's file");
    assert_eq!(vault.load(again.id).expect("load").expect("entry").state, EntryState::Quarantined);
}

#[test]
fn the_agent_s_own_files_pseudo_files_and_links_are_refused() {
    let lab = lab();
    let vault = Vault::open(&lab.state()).expect("vault");
    let root = lab.root();
    let protected = lab.protected().with(lab.dir.path().join("opt"));
    let err = quarantine::quarantine(&vault, &Linux, &request(&lab, &root, &protected)).expect_err("own");
    assert!(err.to_string().contains("agent itself"), "{err}");
    // The agent's own key, reached through a hard link, is refused too.
    std::fs::write(lab.state().join("device.key"), b"not really a key").expect("key");
    let alias = lab.dir.path().join("opt/innocent");
    std::fs::hard_link(lab.state().join("device.key"), &alias).expect("link");
    let own = lab.protected();
    let req = Request { path: &alias, ..request(&lab, &root, &own) };
    let err = quarantine::quarantine(&vault, &Linux, &req).expect_err("key");
    assert!(err.to_string().contains("protected"), "{err}");
    assert!(lab.state().join("device.key").exists());
    std::fs::remove_file(&alias).expect("unlink");
    let link = lab.dir.path().join("link");
    std::os::unix::fs::symlink(&lab.bin, &link).expect("symlink");
    for (path, why) in [(link.as_path(), "not a regular file"), (Path::new("/proc/self/status"), "pseudo-file")] {
        let req = Request { path, ..request(&lab, &root, &own) };
        let err = quarantine::quarantine(&vault, &Linux, &req).expect_err("refused");
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(lab.bin.exists() && vault.entries().is_empty());
    // Package files are recognised (and refused unless forced).
    if Path::new("/usr/bin/dpkg-query").exists() {
        assert_eq!(Linux.package_owner(Path::new("/usr/bin/sleep")).expect("lookup").as_deref(), Some("coreutils"));
        assert_eq!(Linux.package_owner(&lab.bin).expect("lookup"), None);
    }
}

/// Helper entry point: quarantine or release in a process that aborts at
/// `PICKET_FAULT_AT`.
#[test]
#[ignore = "a helper process entry point, started by the crash test"]
fn fault_helper() {
    let dir = PathBuf::from(std::env::var("PICKET_FAULT_LAB").expect("PICKET_FAULT_LAB"));
    let vault = Vault::open(&dir.join("state")).expect("vault");
    let bin = dir.join("opt/evil-sleep");
    match std::env::var("PICKET_FAULT_MODE").expect("mode").as_str() {
        "quarantine" => {
            let root = dir.join("root");
            let protected = Protected::new(&dir.join("state"));
            let req = Request {
                path: &bin,
                root: &root,
                kill: true,
                force: false,
                protected: &protected,
                expected_sha256: None,
                action_id: None,
            };
            quarantine::quarantine(&vault, &Linux, &req).expect("quarantine");
        }
        _ => {
            let id = vault.entries()[0].id;
            quarantine::release(&vault, id).expect("release");
        }
    }
}

fn crash_at(lab: &Lab, mode: &str, point: &str) {
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["fault_helper", "--exact", "--ignored", "--nocapture"])
        .env("PICKET_FAULT_LAB", lab.dir.path())
        .env("PICKET_FAULT_MODE", mode)
        .env("PICKET_FAULT_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("helper");
    assert!(!status.success(), "{mode} did not stop at {point}");
}

/// The file is at its path (with its persistence) or in the vault (without
/// it) — exactly one of the two.
fn assert_never_lost(lab: &Lab, vault: &Vault, point: &str) {
    let at_path = lab.bin.exists() && picket_agent::fsutil::hash::sha256_path(&lab.bin).is_ok_and(|h| h == lab.sha256);
    let vaulted: Vec<_> = vault.entries().into_iter().filter(|e| e.state == EntryState::Quarantined).collect();
    let in_vault = vaulted.iter().any(|e| {
        let mut sink = std::io::sink();
        vault.open_blob(e.id, &mut sink).is_ok_and(|(sha, _)| sha == lab.sha256)
    });
    assert!(at_path ^ in_vault, "{point}: at path {at_path}, in vault {in_vault}");
    assert_eq!(lab.crontab().contains("evil-sleep"), at_path, "{point}: persistence follows the file");
    assert_eq!(lab.unit().exists(), at_path, "{point}: unit follows the file");
    let leftovers: Vec<_> = std::fs::read_dir(lab.bin.parent().expect("dir"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".picket-"))
        .collect();
    assert!(leftovers.is_empty(), "{point}: temp files left");
}

#[test]
fn a_crash_at_any_step_leaves_the_file_in_place_or_in_the_vault() {
    for point in [
        "quarantine.after_kill",
        "quarantine.after_record",
        "quarantine.after_persistence",
        "quarantine.after_copy",
        "quarantine.before_unlink",
        "quarantine.after_unlink",
    ] {
        let lab = lab();
        crash_at(&lab, "quarantine", point);
        let vault = Vault::open(&lab.state()).expect("vault");
        quarantine::recover(&vault);
        assert_never_lost(&lab, &vault, point);
        // And the survivor can go on: released or quarantined as asked.
        if lab.bin.exists() {
            let root = lab.root();
            quarantine::quarantine(&vault, &Linux, &request(&lab, &root, &lab.protected()))
                .expect("quarantine after recovery");
        }
        let id = vault.entries().into_iter().find(|e| e.state == EntryState::Quarantined).expect("entry").id;
        quarantine::release(&vault, id).expect("release after recovery");
        assert_eq!(picket_agent::fsutil::hash::sha256_path(&lab.bin).expect("hash"), lab.sha256, "{point}");
    }
    for point in ["release.after_write", "release.after_rename"] {
        let lab = lab();
        {
            let vault = Vault::open(&lab.state()).expect("vault");
            let root = lab.root();
            quarantine::quarantine(&vault, &Linux, &request(&lab, &root, &lab.protected())).expect("quarantine");
        }
        crash_at(&lab, "release", point);
        let vault = Vault::open(&lab.state()).expect("vault");
        quarantine::recover(&vault);
        assert_never_lost(&lab, &vault, point);
    }
}

#[test]
fn a_quarantine_for_another_hash_changes_nothing() {
    // The coordinator decided on one content; the file at the path now has
    // another (replaced since the detection, or another device's file).
    let lab = lab();
    let vault = Vault::open(&lab.state()).expect("vault");
    let root = lab.root();
    let own = lab.protected();
    let mut child = run(&lab.bin);
    let other = "0".repeat(64);
    let req = Request { expected_sha256: Some(&other), ..request(&lab, &root, &own) };
    let err = quarantine::quarantine(&vault, &Linux, &req).expect_err("refused");
    assert!(err.to_string().contains("not the expected"), "{err}");
    assert!(child.try_wait().expect("wait").is_none(), "nothing was killed");
    assert!(lab.bin.exists() && lab.unit().exists() && lab.crontab().contains("evil-sleep"), "nothing was removed");
    assert!(vault.entries().is_empty());
    let req = Request { expected_sha256: Some(&lab.sha256), ..request(&lab, &root, &own) };
    quarantine::quarantine(&vault, &Linux, &req).expect("the right hash goes through");
    let _ = child.wait();
}

#[test]
fn persistence_naming_the_file_through_a_root_owned_link_is_removed_too() {
    // /bin/x and /usr/bin/x are one file: a crontab may name either.
    let lab = lab();
    let link = lab.dir.path().join("optlink");
    std::os::unix::fs::symlink(lab.dir.path().join("opt"), &link).expect("link");
    let via_link = link.join("evil-sleep");
    std::fs::write(lab.root().join("etc/crontab"), format!("*/5 * * * * root {} 60\n", via_link.display()))
        .expect("crontab");
    let vault = Vault::open(&lab.state()).expect("vault");
    let root = lab.root();
    let own = lab.protected();
    let req = Request { path: &via_link, ..request(&lab, &root, &own) };
    let entry = quarantine::quarantine(&vault, &Linux, &req).expect("quarantine");
    assert_eq!(entry.path, lab.bin, "recorded at its real path");
    assert!(!lab.crontab().contains("evil-sleep"), "the line naming the link path is gone");
    assert!(!lab.unit().exists(), "and the unit naming the real path");
    quarantine::release(&vault, entry.id).expect("release");
    assert!(lab.crontab().contains(&via_link.display().to_string()));
}
