//! `remove_persistence {path}`: only the persistence that references `path`
//! (cron, systemd, rc.local, profiles, ld.so.preload, autostart,
//! authorized_keys `command=`). What is removed is recorded in the vault
//! first (fsync), so `restore_persistence` can put it back exactly; a
//! removal that fails part way is put back at once.

use picket_common::actions::params;
use picket_common::actions::results::PersistenceOutput;
use picket_common::actions::ActionKind;
use uuid::Uuid;

use super::{Action, ActionFailure, Run};
use crate::platform::linux::persistence;
use crate::platform::Feature;
use crate::quarantine::PersistenceRecord;

pub struct RemovePersistence;

impl Action for RemovePersistence {
    const KIND: ActionKind = ActionKind::RemovePersistence;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::RemovePersistence;
    type Output = PersistenceOutput;

    fn run(&self, p: params::RemovePersistence, run: &Run<'_>) -> Result<PersistenceOutput, ActionFailure> {
        let found = persistence::find(&run.ctx.persistence_root, &p.path);
        let record = PersistenceRecord {
            id: Uuid::new_v4(),
            path: p.path.clone(),
            removals: found.clone(),
            restored: false,
            action_id: Some(run.progress.action_id()),
            removed_at: crate::clock::now_rfc3339(),
        };
        let vault = &run.ctx.vault;
        vault.save_record(&record).map_err(|e| ActionFailure::error(e.to_string()))?;
        if let Err(error) = persistence::remove(&found) {
            if let Err(e) = persistence::restore(&found) {
                tracing::error!(error = %e, "could not put persistence back after a failed removal");
            }
            vault.remove_record(record.id);
            return Err(ActionFailure::error(error));
        }
        tracing::warn!(record = %record.id, removed = found.len(), "persistence removed");
        Ok(PersistenceOutput {
            path: p.path,
            removed: found.iter().map(|r| r.describe()).collect(),
            removals: found,
            record_id: Some(record.id),
        })
    }
}
