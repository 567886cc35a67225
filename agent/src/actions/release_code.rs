//! `release_code`: lift the code restriction and forget its policy.
//! Re-runnable.

use picket_common::actions::params;
use picket_common::actions::results::Released;
use picket_common::actions::ActionKind;

use super::restrict_code::POLICY;
use super::{Action, ActionFailure, Run};
use crate::platform::Feature;

pub struct ReleaseCode;

impl Action for ReleaseCode {
    const KIND: ActionKind = ActionKind::ReleaseCode;
    const NEEDS: &'static [Feature] = &[Feature::ExecControl];
    type Params = params::Release;
    type Output = Released;

    fn run(&self, _: params::Release, run: &Run<'_>) -> Result<Released, ActionFailure> {
        let released = run.platform.release_code()?;
        POLICY
            .forget(&run.ctx.state_dir)
            .map_err(|e| ActionFailure::error(format!("released, but cannot clear the persisted policy: {e}")))?;
        Ok(Released { released })
    }
}
