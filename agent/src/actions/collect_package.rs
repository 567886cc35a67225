//! `collect_package`: build the investigation package (see `crate::platform::linux::collect`)
//! and upload it (chunked, resumable). The built archive is kept under
//! `<state dir>/packages/` until the coordinator has it, so a re-run after a
//! restart uploads the same file and resumes instead of collecting again.

use picket_common::actions::params;
use picket_common::actions::results::PackageOutput;
use picket_common::actions::ActionKind;
use serde_json::Value;

use super::{Action, ActionFailure, Context, Run};
use crate::fsutil::create_private_dir;
use crate::platform::linux::collect::{Caps, Collector};
use crate::platform::Feature;

pub struct CollectPackage;

impl Action for CollectPackage {
    const KIND: ActionKind = ActionKind::CollectPackage;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::Nothing;
    type Output = PackageOutput;

    fn run(&self, _: params::Nothing, run: &Run<'_>) -> Result<PackageOutput, ActionFailure> {
        package(run)
    }
}

fn package(run: &Run<'_>) -> Result<PackageOutput, ActionFailure> {
    let (ctx, progress) = (run.ctx, run.progress);
    let dir = ctx.state_dir.join("packages");
    create_private_dir(&dir).map_err(|e| ActionFailure::error(format!("{}: {e}", dir.display())))?;
    let id = progress.action_id();
    let archive = dir.join(format!("{id}.tar.gz"));
    let done = dir.join(format!("{id}.done.json"));
    let mut out: PackageOutput = match std::fs::read(&done).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        Some(info) if archive.is_file() => info,
        _ => {
            progress.report("collecting", 5);
            let collector = Collector::new(&archive, Caps::default(), &ctx.state_dir, &ctx.persistence_root)
                .map_err(|e| ActionFailure::error(format!("cannot write the package: {e}")))?;
            let info = collector
                .collect_all(&picket_files(ctx))
                .map_err(|e| ActionFailure::error(format!("cannot write the package: {e}")))?;
            let info = PackageOutput {
                items: info.items,
                errors: info.errors,
                bytes_uncompressed: info.bytes_uncompressed,
                seconds: info.seconds,
                ..PackageOutput::default()
            };
            let json = serde_json::to_vec(&info).map_err(|e| ActionFailure::error(e.to_string()))?;
            crate::fsutil::write_atomic(&done, &json)
                .map_err(|e| ActionFailure::error(format!("cannot record the package: {e}")))?;
            info
        }
    };
    let file =
        std::fs::File::open(&archive).map_err(|e| ActionFailure::error(format!("{}: {e}", archive.display())))?;
    let size = file.metadata().map_err(|e| ActionFailure::error(e.to_string()))?.len();
    let sha256 = crate::fsutil::hash::sha256_path(&archive).map_err(|e| ActionFailure::error(e.to_string()))?;
    let report = |held: u64| {
        let pct = 50 + held.saturating_mul(50).checked_div(size).unwrap_or(50);
        progress.report(&format!("uploaded {} of {} KiB", held / 1024, size / 1024), u8::try_from(pct).unwrap_or(100));
    };
    ctx.uploader.upload(id, &file, size, &sha256, &report).map_err(ActionFailure::error)?;
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&done);
    out.sha256 = sha256;
    out.size = size;
    Ok(out)
}

/// The agent's own view for `picket/`: status, queued alerts, the vault's
/// inventory and the content in use. Never the key, certificate or journal.
fn picket_files(ctx: &Context) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(status) = std::fs::read(ctx.state_dir.join("status.json")) {
        out.push(("picket/status.json".to_string(), status));
    }
    let mut alerts = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ctx.state_dir.join("alerts")) {
        for e in rd.flatten() {
            if let Some(v) = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                alerts.push(v);
            }
        }
    }
    out.push(("picket/queued_alerts.json".to_string(), serde_json::to_vec_pretty(&alerts).unwrap_or_default()));
    let vault: Vec<Value> = ctx.vault.entries().iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
    out.push(("picket/quarantine_inventory.json".to_string(), serde_json::to_vec_pretty(&vault).unwrap_or_default()));
    let content = serde_json::to_vec_pretty(&ctx.content.state()).unwrap_or_default();
    out.push(("picket/detection_content.json".to_string(), content));
    out
}
