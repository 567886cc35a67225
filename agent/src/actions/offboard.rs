//! `offboard`: release isolation and code restriction and report it; once
//! the coordinator has the result the session wipes the identity and state
//! (`crate::offboard`).

use picket_common::actions::params;
use picket_common::actions::results::OffboardOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::Feature;

pub struct Offboard;

impl Action for Offboard {
    const KIND: ActionKind = ActionKind::Offboard;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::Nothing;
    type Output = OffboardOutput;

    fn run(&self, _: params::Nothing, run: &Run<'_>) -> Result<OffboardOutput, ActionFailure> {
        crate::offboard::release_all(run.platform, &run.ctx.state_dir).map_err(|e| ActionFailure::error(e.to_string()))
    }
}
