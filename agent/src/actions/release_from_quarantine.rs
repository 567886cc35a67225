//! `release_from_quarantine {quarantine_id}`: one id or a list (the undo of
//! a quarantine of several copies). Each file goes back with its bytes,
//! owner, mode, timestamps and persistence (see `crate::quarantine`).

use picket_common::actions::params;
use picket_common::actions::results::{ReleaseOutput, ReleasedFile};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::Feature;
use crate::quarantine;

pub struct ReleaseFromQuarantine;

impl Action for ReleaseFromQuarantine {
    const KIND: ActionKind = ActionKind::ReleaseFromQuarantine;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::ReleaseFromQuarantine;
    type Output = ReleaseOutput;

    fn run(&self, p: params::ReleaseFromQuarantine, run: &Run<'_>) -> Result<ReleaseOutput, ActionFailure> {
        let mut released = Vec::new();
        for id in p.quarantine_id.ids() {
            let e = quarantine::release(&run.ctx.vault, id)?;
            released.push(ReleasedFile {
                quarantine_id: e.id,
                path: e.path,
                sha256: e.sha256,
                persistence_restored: e.persistence.iter().map(|r| r.describe()).collect(),
            });
        }
        Ok(ReleaseOutput { released, undo_of: p.undo_of })
    }
}
