//! Bulk loading of devices and finished actions, many rows a transaction:
//! how the console benchmark (`bench/run-console.sh`) builds a fleet of
//! 10,000 devices with 100,000 actions of history in seconds. Rows go in as
//! given; nothing is dispatched, audited or pushed to agents; the
//! database's statistics are refreshed at the end.

use picket_common::actions::ActionKind;
use uuid::Uuid;

use super::{ActionSource, ActionStatus, NewDevice, Store, StoreError};

/// A finished action of a device's history.
pub struct ImportedAction<'a> {
    pub kind: ActionKind,
    pub params: &'a str,
    pub device_id: Uuid,
    pub source: ActionSource,
    pub requestor: &'a str,
    pub comment: &'a str,
    pub status: ActionStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Rows a transaction.
const BATCH: usize = 1000;

impl Store {
    /// Loads `devices`, then `actions`, `BATCH` rows a transaction.
    pub async fn import(&self, devices: &[NewDevice<'_>], actions: &[ImportedAction<'_>]) -> Result<(), StoreError> {
        for chunk in devices.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for d in chunk {
                Self::insert_device(&mut *tx, d).await?;
            }
            tx.commit().await?;
        }
        for chunk in actions.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for a in chunk {
                let id = Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO actions (id, kind, params, device_id, source, requestor, comment, status, \
                     dedupe_key, created_at, updated_at, requestor_identity) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $1, $9, $10, '')",
                )
                .bind(&id)
                .bind(a.kind.as_str())
                .bind(a.params)
                .bind(a.device_id.to_string())
                .bind(a.source.as_str())
                .bind(a.requestor)
                .bind(a.comment)
                .bind(a.status.as_str())
                .bind(a.created_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        // Fresh statistics, as after any bulk load: without them the
        // planner takes the tables for empty and sorts 100,000 rows where
        // an index would read fifty.
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }
}
