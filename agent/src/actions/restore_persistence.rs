//! `restore_persistence {record_id}`: the undo of `remove_persistence`.
//! What goes back is the agent's own record of the removal — lines at
//! their places, files with their owner and mode, links — never anything
//! the parameters carry. Putting back is idempotent (a line or file already
//! there is kept), and each record is put back once.

use picket_common::actions::params;
use picket_common::actions::results::RestoreOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::linux::persistence;
use crate::platform::Feature;

pub struct RestorePersistence;

impl Action for RestorePersistence {
    const KIND: ActionKind = ActionKind::RestorePersistence;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::RestorePersistence;
    type Output = RestoreOutput;

    fn run(&self, p: params::RestorePersistence, run: &Run<'_>) -> Result<RestoreOutput, ActionFailure> {
        let vault = &run.ctx.vault;
        let failed = |e: crate::quarantine::vault::VaultError| ActionFailure::error(e.to_string());
        let mut record = vault
            .load_record(p.record_id)
            .map_err(failed)?
            .ok_or_else(|| ActionFailure::invalid(format!("this device has no persistence record {}", p.record_id)))?;
        if record.restored {
            return Err(ActionFailure::invalid(format!(
                "the persistence of record {} was put back already",
                record.id
            )));
        }
        persistence::restore(&record.removals).map_err(ActionFailure::error)?;
        record.restored = true;
        vault.save_record(&record).map_err(failed)?;
        tracing::warn!(record = %record.id, restored = record.removals.len(), "persistence put back");
        Ok(RestoreOutput {
            record_id: record.id,
            restored: record.removals.iter().map(|r| r.describe()).collect(),
            undo_of: p.undo_of,
        })
    }
}
