//! The action event log: one row per status change (written by
//! [`Store::transition`] in the transition's own transaction), read by the
//! API's timelines and, in order, by the event sinks, each with its cursor.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};

/// One transition in the event log.
#[derive(Debug, Clone)]
pub struct ActionEvent {
    pub id: i64,
    pub action_id: Uuid,
    pub from_status: Option<String>,
    pub status: String,
    pub at: i64,
    pub actor: String,
    pub comment: String,
}

impl Store {
    /// The transitions of one action, oldest first.
    pub async fn action_events(&self, id: Uuid) -> Result<Vec<ActionEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, action_id, from_status, status, at, actor, comment FROM action_events \
             WHERE action_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Events after `after`, oldest first (what a sink has not delivered yet).
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ActionEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, action_id, from_status, status, at, actor, comment FROM action_events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub async fn sink_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT last_event FROM sink_cursors WHERE sink = $1")
            .bind(sink)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("last_event")).transpose()?)
    }

    pub async fn set_sink_cursor(&self, sink: &str, last_event: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sink_cursors (sink, last_event) VALUES ($1, $2) \
             ON CONFLICT (sink) DO UPDATE SET last_event = excluded.last_event",
        )
        .bind(sink)
        .bind(last_event)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS n FROM action_events").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<ActionEvent, StoreError> {
    Ok(ActionEvent {
        id: row.try_get("id")?,
        action_id: super::actions::uuid_col(row, "action_id")?,
        from_status: row.try_get("from_status")?,
        status: row.try_get("status")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        comment: row.try_get("comment")?,
    })
}
