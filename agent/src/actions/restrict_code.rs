//! `restrict_code {allow_sha256, allow_paths}`: only packaged, unchanged
//! executables (and the allowed ones, and the agent) may run. The policy is
//! persisted in `<state dir>/restriction.json` and re-applied when the agent
//! starts (`release_code` removes both). Each refused exec is raised as an
//! alert (rule `Picket_Restricted_Execution`, suspicious). The watched
//! mounts come from the agent config (`restrict_scope`; empty: every local
//! file system).

use std::path::Path;
use std::sync::Arc;

use picket_common::actions::params;
use picket_common::actions::results::RestrictOutput;
use picket_common::actions::ActionKind;
use picket_common::detection::{Detection, Severity};

use super::{Action, ActionFailure, Run};
use crate::alerts::AlertQueue;
use crate::platform::{BlockedExec, Feature, Platform, RestrictPolicy};

pub(super) static POLICY: super::Persisted<RestrictPolicy> = super::Persisted::new("restriction.json");

fn reporter(alerts: Arc<AlertQueue>) -> Arc<dyn Fn(BlockedExec) + Send + Sync> {
    Arc::new(move |b: BlockedExec| {
        let d = Detection {
            path: b.path.display().to_string(),
            sha256: b.sha256,
            size: b.size,
            rule: "Picket_Restricted_Execution".into(),
            namespace: "restrict_code".into(),
            severity: Severity::Suspicious,
        };
        let uid = b.uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into());
        alerts.raise(&format!("restrict_code pid={} uid={uid}", b.pid), vec![d]);
    })
}

pub struct RestrictCode;

impl Action for RestrictCode {
    const KIND: ActionKind = ActionKind::RestrictCode;
    const NEEDS: &'static [Feature] = &[Feature::ExecControl];
    type Params = params::RestrictCode;
    type Output = RestrictOutput;

    fn run(&self, p: params::RestrictCode, run: &Run<'_>) -> Result<RestrictOutput, ActionFailure> {
        let ctx = run.ctx;
        let policy = RestrictPolicy {
            allow_sha256: p.allow_sha256,
            allow_paths: p.allow_paths,
            scope: ctx.restrict_scope.clone(),
        };
        let applied = run.platform.restrict_code(&policy, reporter(ctx.alerts.clone()))?;
        POLICY
            .save(&ctx.state_dir, &policy)
            .map_err(|e| ActionFailure::error(format!("restricted, but cannot persist it: {e}")))?;
        Ok(RestrictOutput { applied, policy })
    }
}

/// Re-apply a persisted restriction (at agent start). Returns whether code
/// is restricted.
pub fn reapply(platform: &dyn Platform, state_dir: &Path, alerts: Arc<AlertQueue>) -> Result<bool, String> {
    let Some(policy) = POLICY.load(state_dir)? else { return Ok(false) };
    platform.restrict_code(&policy, reporter(alerts)).map_err(|e| e.to_string())?;
    Ok(true)
}
