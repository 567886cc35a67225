//! `remove_persistence {path}`: only the persistence that references `path`
//! (cron, systemd, rc.local, profiles, ld.so.preload, autostart,
//! authorized_keys `command=`); the removals, exact enough to put back, are
//! in the result.

use picket_common::actions::params;
use picket_common::actions::results::PersistenceOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::Feature;
use crate::quarantine::persistence;

pub struct RemovePersistence;

impl Action for RemovePersistence {
    const KIND: ActionKind = ActionKind::RemovePersistence;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::RemovePersistence;
    type Output = PersistenceOutput;

    fn run(&self, p: params::RemovePersistence, run: &Run<'_>) -> Result<PersistenceOutput, ActionFailure> {
        let found = persistence::find(&run.ctx.persistence_root, &p.path);
        persistence::remove(&found).map_err(ActionFailure::error)?;
        Ok(PersistenceOutput { path: p.path, removed: found.iter().map(|r| r.describe()).collect(), removals: found })
    }
}
