//! Code restriction (fanotify FAN_OPEN_EXEC_PERM) for real, inside a
//! private mount namespace (`unshare --mount --propagation private`) so the
//! host is never touched: a tmpfs holds a copied binary, and /usr/bin is
//! bind-mounted onto itself *in that namespace only* so package binaries are
//! on a marked mount too. Needs root (CI is root).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use picket_agent::platform::linux::restrict;
use picket_agent::platform::{BlockedExec, RestrictPolicy};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|v| v.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn only_packaged_or_allowed_executables_run_while_restricted() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: this test must not be skipped there");
        eprintln!("skipped: needs root (fanotify, mounts)");
        return;
    }
    let lab = tempfile::tempdir().expect("tempdir");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().expect("test binary"))
        .args(["restrict_helper", "--exact", "--ignored", "--nocapture"])
        .env("PICKET_RESTRICT_LAB", lab.path())
        .output()
        .expect("unshare (util-linux)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the helper failed:\n{text}");
    assert!(text.contains("restriction checks passed"), "{text}");
}

fn run(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(path).status()
}

fn refused(path: &Path) -> bool {
    matches!(run(path), Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

/// The report is made just after the kernel has the answer: wait for it.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn mount(args: &[&str]) {
    let status = Command::new("mount").args(args).status().expect("mount");
    assert!(status.success(), "mount {args:?}");
}

/// Runs inside the private mount namespace.
#[test]
#[ignore = "a helper process entry point, started by the restriction test"]
fn restrict_helper() {
    let lab = PathBuf::from(std::env::var("PICKET_RESTRICT_LAB").expect("lab"));
    let mnt = lab.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    mount(&["-t", "tmpfs", "picket-test", mnt.to_str().expect("utf-8")]);
    mount(&["--bind", "/usr/bin", "/usr/bin"]);
    let copy = mnt.join("true-copy");
    std::fs::copy("/usr/bin/true", &copy).expect("copy");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(run(&copy).expect("runs before").success());

    let blocked: Arc<Mutex<Vec<BlockedExec>>> = Arc::default();
    let sink = blocked.clone();
    let on_block = Arc::new(move |b: BlockedExec| sink.lock().expect("lock").push(b));
    let scope = vec![mnt.clone(), PathBuf::from("/usr/bin")];
    let policy = RestrictPolicy { scope: scope.clone(), ..RestrictPolicy::default() };
    restrict::apply(&policy, on_block.clone()).expect("restrict");

    assert!(refused(&copy), "a copied binary is refused with EPERM");
    assert!(run(Path::new("/usr/bin/true")).expect("package binary").success(), "a package binary runs");
    assert!(refused(&copy), "still refused (cached decision)");
    wait_for("both refusals reported", || blocked.lock().expect("lock").len() == 2);
    {
        let b = blocked.lock().expect("lock");
        assert_eq!(b[0].path, copy);
        assert_eq!(b[0].uid, Some(0));
        assert_eq!(b[0].sha256, picket_agent::fsutil::hash::sha256_path(&copy).expect("hash"));
    }

    // An allowed hash runs; a changed file is judged again.
    let sha = picket_agent::fsutil::hash::sha256_path(&copy).expect("hash");
    let allowed = RestrictPolicy { allow_sha256: vec![sha], scope: scope.clone(), ..RestrictPolicy::default() };
    restrict::apply(&allowed, on_block.clone()).expect("restrict with an allowed hash");
    assert!(run(&copy).expect("allowed").success());
    let mut bytes = std::fs::read(&copy).expect("read");
    bytes.extend_from_slice(b"changed");
    std::fs::write(&copy, bytes).expect("change");
    assert!(refused(&copy), "a changed file is no longer the allowed one");

    // Release: everything runs again.
    assert!(restrict::release());
    assert!(run(&copy).expect("released").success(), "after release the copy runs");
    assert!(!restrict::release(), "nothing left to release");

    // A restarted agent re-applies the persisted policy.
    let state = lab.join("state");
    std::fs::create_dir_all(&state).expect("state");
    std::fs::write(state.join("restriction.json"), serde_json::to_vec(&policy).expect("json")).expect("persist");
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let alerts = Arc::new(picket_agent::alerts::AlertQueue::open(&state, tx).expect("alerts"));
    let platform = picket_agent::platform::linux::Linux;
    assert!(picket_agent::actions::restrict_code::reapply(&platform, &state, alerts.clone()).expect("reapply"));
    assert!(refused(&copy), "restricted again after a restart");
    wait_for("the refusal became an alert", || alerts.pending() == 1);
    assert!(restrict::release());
    println!("restriction checks passed");
}
