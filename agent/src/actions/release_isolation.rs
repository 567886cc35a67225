//! `release_isolation`: remove Picket's isolation table (only Picket's) and
//! the persisted policy. Re-runnable.

use picket_common::actions::params;
use picket_common::actions::results::Released;
use picket_common::actions::ActionKind;

use super::isolate::POLICY;
use super::{Action, ActionFailure, Run};
use crate::platform::Feature;

pub struct ReleaseIsolation;

impl Action for ReleaseIsolation {
    const KIND: ActionKind = ActionKind::ReleaseIsolation;
    const NEEDS: &'static [Feature] = &[Feature::Firewall];
    type Params = params::Release;
    type Output = Released;

    fn run(&self, _: params::Release, run: &Run<'_>) -> Result<Released, ActionFailure> {
        let released = run.platform.release_isolation()?;
        POLICY
            .forget(&run.ctx.state_dir)
            .map_err(|e| ActionFailure::error(format!("released, but cannot clear the persisted isolation: {e}")))?;
        Ok(Released { released })
    }
}
