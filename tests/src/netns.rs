//! Network namespaces a test creates and owns: nothing here touches the
//! host's own network. Each namespace is deleted when dropped; code runs
//! in one through a tokio runtime whose every thread entered it, or on a
//! plain thread that entered it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use picket_coordinator::{Config, Coordinator};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

pub struct Netns(pub String);

impl Netns {
    /// `pk-{tag}-{id}`, with its loopback up.
    pub fn new(tag: &str, id: &str) -> Self {
        let name = format!("pk-{tag}-{id}");
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }

    pub fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.0)).expect("netns file").ino()
    }

    /// A tokio runtime whose threads all live in this namespace: the
    /// workers are spawned from a thread that entered it, and every later
    /// blocking thread is spawned from a worker.
    pub fn runtime(&self) -> Runtime {
        self.run(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
        })
    }

    /// Runs `f` on a new thread that first enters this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// The command prefix that runs a program in this namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.0.clone()]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs a command; its stdout, or a panic with its stderr.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ok(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).output().is_ok_and(|o| o.status.success())
}

/// Run `fut` on a worker of `rt` (never on the calling thread, which is in
/// the host's namespace).
pub fn on<T: Send + 'static>(rt: &Runtime, fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    rt.block_on(rt.spawn(fut)).expect("task")
}

/// The network namespace inode of a worker thread and of a blocking thread.
pub fn thread_netns(rt: &Runtime) -> (u64, u64) {
    let ino = || std::fs::metadata("/proc/thread-self/ns/net").expect("ns").ino();
    on(rt, async move {
        let worker = ino();
        let blocking = tokio::task::spawn_blocking(ino).await.expect("blocking");
        (worker, blocking)
    })
}

/// Polls `cond` every 100 ms for up to `secs`.
pub fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Why namespace and nftables tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<&'static str> {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Some("needs root (network namespaces, nftables)");
    }
    if !ok(&["ip", "-V"]) {
        return Some("needs iproute2 (`ip`)");
    }
    if picket_agent::platform::linux::isolation::find_nft().is_none() {
        return Some("needs nftables (`nft`)");
    }
    None
}

/// Skips (prints why) outside CI when [`skip_reason`] says so; in CI such
/// a test must run, so it fails instead. True when the test should go on.
pub fn can_run(test: &str) -> bool {
    match skip_reason() {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => panic!("CI must run {test}: {why}"),
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// A short id for namespace names, different per run and process.
pub fn rand_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// A coordinator started on `rt` (so in that runtime's namespace), until
/// `shutdown`: its API URL, the first admin token and its CA's PEM.
pub fn start_coordinator(rt: &Runtime, config: Config, shutdown: CancellationToken) -> (String, String, Vec<u8>) {
    let ca_path = config.data_dir.join("pki/ca.pem");
    let (url, token) = on(rt, async move {
        let c = Coordinator::start(config, shutdown).await.expect("coordinator");
        let token = std::fs::read_to_string(&c.admin_token_path).expect("token").trim().to_string();
        let url = c.api_url();
        tokio::spawn(async move { c.join().await });
        (url, token)
    });
    (url, token, std::fs::read(&ca_path).expect("the coordinator's CA"))
}
