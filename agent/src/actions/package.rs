//! `collect_package`: build the investigation package (see `crate::collect`)
//! and upload it (chunked, resumable). The built archive is kept under
//! `<state dir>/packages/` until the coordinator has it, so a re-run after a
//! restart uploads the same file and resumes instead of collecting again.

use serde_json::{json, Value};

use super::{ActionFailure, Context, Progress};
use crate::collect::{Caps, Collector};
use crate::fsutil::create_private_dir;

pub fn run(ctx: &Context, params: &str, progress: &Progress) -> Result<Value, ActionFailure> {
    let _: picket_common::actions::params::Nothing =
        picket_common::actions::params::parse(picket_common::actions::ActionKind::CollectPackage, params)
            .map_err(ActionFailure::invalid)?;
    let dir = ctx.state_dir.join("packages");
    create_private_dir(&dir).map_err(|e| ActionFailure::error(format!("{}: {e}", dir.display())))?;
    let id = progress.action_id();
    let archive = dir.join(format!("{id}.tar.gz"));
    let done = dir.join(format!("{id}.done.json"));
    let info: Value = match std::fs::read(&done).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        Some(info) if archive.is_file() => info,
        _ => {
            progress.report("collecting", 5);
            let collector = Collector::new(&archive, Caps::default(), &ctx.state_dir, &ctx.persistence_root)
                .map_err(|e| ActionFailure::error(format!("cannot write the package: {e}")))?;
            let info = collector
                .collect_all(&picket_files(ctx))
                .map_err(|e| ActionFailure::error(format!("cannot write the package: {e}")))?;
            let info = serde_json::to_value(&info).map_err(|e| ActionFailure::error(e.to_string()))?;
            crate::fsutil::write_atomic(&done, info.to_string().as_bytes())
                .map_err(|e| ActionFailure::error(format!("cannot record the package: {e}")))?;
            info
        }
    };
    let file =
        std::fs::File::open(&archive).map_err(|e| ActionFailure::error(format!("{}: {e}", archive.display())))?;
    let size = file.metadata().map_err(|e| ActionFailure::error(e.to_string()))?.len();
    let sha256 = crate::quarantine::hash_file(&archive).map_err(|e| ActionFailure::error(e.to_string()))?;
    let report = |held: u64| {
        let pct = 50 + held.saturating_mul(50).checked_div(size).unwrap_or(50);
        progress.report(&format!("uploaded {} of {} KiB", held / 1024, size / 1024), u8::try_from(pct).unwrap_or(100));
    };
    ctx.uploader.upload(id, &file, size, &sha256, &report).map_err(ActionFailure::error)?;
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&done);
    let mut out = json!({ "sha256": sha256, "size": size });
    if let Value::Object(m) = info {
        for (k, v) in m {
            out[k] = v;
        }
    }
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
