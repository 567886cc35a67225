//! `isolate {mode: full|selective, exclusions, allow_dns, allow_dhcp}`.
//! Re-runnable: applying the same table again gives the same state.
//!
//! The applied policy is persisted in `<state dir>/isolation.json` and
//! re-applied when the agent starts, before it connects
//! (`release_isolation` removes both).

use std::net::ToSocketAddrs;
use std::path::Path;

use picket_common::actions::params;
use picket_common::actions::results::IsolateOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::{Feature, IsolationPolicy, Platform};

pub(super) static POLICY: super::Persisted<IsolationPolicy> = super::Persisted::new("isolation.json");

pub struct Isolate;

impl Action for Isolate {
    const KIND: ActionKind = ActionKind::Isolate;
    const NEEDS: &'static [Feature] = &[Feature::Firewall];
    type Params = params::Isolate;
    type Output = IsolateOutput;

    fn run(&self, p: params::Isolate, run: &Run<'_>) -> Result<IsolateOutput, ActionFailure> {
        let ctx = run.ctx;
        let coordinator: Vec<_> = ctx
            .coordinator
            .to_socket_addrs()
            .map_err(|e| ActionFailure::error(format!("cannot resolve the coordinator {}: {e}", ctx.coordinator)))?
            .collect();
        let policy = IsolationPolicy {
            mode: p.mode,
            coordinator,
            exclusions: p.exclusions,
            allow_dns: p.allow_dns,
            allow_dhcp: p.allow_dhcp,
        };
        let rules = run.platform.isolate(&policy)?;
        POLICY
            .save(&ctx.state_dir, &policy)
            .map_err(|e| ActionFailure::error(format!("isolated, but cannot persist it: {e}")))?;
        Ok(IsolateOutput { mode: policy.mode, coordinator: policy.coordinator, exclusions: policy.exclusions, rules })
    }
}

/// Re-apply a persisted isolation (at agent start, before connecting).
/// Returns whether the device is isolated.
pub fn reapply(platform: &dyn Platform, state_dir: &Path) -> Result<bool, String> {
    let Some(policy) = POLICY.load(state_dir)? else { return Ok(false) };
    platform.isolate(&policy).map_err(|e| e.to_string())?;
    Ok(true)
}
