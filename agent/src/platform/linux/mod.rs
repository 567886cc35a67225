//! The Linux platform adapter.
//!
//! - [`collect`]: the investigation package of collect_package (tar.gz, manifest, summary).
//! - [`command`]: run a system tool with a deadline.
//! - [`packages`]: which installed package owns a file; the merged-/usr aliases.
//! - `process`: terminate processes (kill_process); an executable's hash.
//! - [`isolation`]: the `inet picket` nftables table (isolate, release_isolation).
//! - [`procfs`]: the socket tables with the process holding each socket.
//! - [`persistence`]: the persistence places (cron, shell profiles, systemd
//!   units, autostart, `ld.so.preload`, `authorized_keys`): what references
//!   a file, removed and put back symlink-safely.
//! - [`priority`]: lower a thread's CPU and I/O priority (background scans).
//! - [`restrict`]: fanotify exec permission (restrict_code, release_code).
//! - [`users`]: local account names by uid.

pub mod collect;
pub mod command;
mod fanotify;
pub mod isolation;
pub mod packages;
pub mod persistence;
pub mod priority;
mod process;
pub mod procfs;
pub mod restrict;
pub mod users;

pub use process::exe_sha256;

use super::{Feature, IsolationPolicy, KillReport, KillRequest, Platform, PlatformError};

#[derive(Default)]
pub struct Linux;

impl Platform for Linux {
    fn features(&self) -> Vec<Feature> {
        let mut features = vec![Feature::Processes, Feature::Files, Feature::ExecControl];
        if isolation::find_nft().is_some() {
            features.push(Feature::Firewall);
        }
        features
    }

    fn kill_process(&self, req: &KillRequest) -> Result<KillReport, PlatformError> {
        process::kill(req)
    }

    fn restrict_code(
        &self,
        policy: &super::RestrictPolicy,
        on_block: std::sync::Arc<dyn Fn(super::BlockedExec) + Send + Sync>,
    ) -> Result<String, PlatformError> {
        restrict::apply(policy, on_block)
    }

    fn release_code(&self) -> Result<bool, PlatformError> {
        Ok(restrict::release())
    }

    fn kill_executable(&self, dev: u64, ino: u64) -> Result<Vec<i32>, PlatformError> {
        process::kill_executable(dev, ino)
    }

    fn package_owner(&self, path: &std::path::Path) -> Result<Option<String>, PlatformError> {
        Ok(packages::package_owner(path))
    }

    fn processes_running(&self, sha256: &str) -> Result<Vec<i32>, PlatformError> {
        Ok(process::running(sha256))
    }

    fn isolate(&self, policy: &IsolationPolicy) -> Result<String, PlatformError> {
        isolation::apply(policy)
    }

    fn release_isolation(&self) -> Result<bool, PlatformError> {
        isolation::release()
    }
}
