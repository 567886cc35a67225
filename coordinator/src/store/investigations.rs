//! Device groups and investigations.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, Serialize)]
pub struct DeviceGroup {
    pub name: String,
    pub automation_level: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Investigation {
    pub id: Uuid,
    pub device_id: Uuid,
    pub alert_id: Option<String>,
    pub status: String,
    pub title: String,
    /// What is investigated: `{"path", "sha256", "verdict"}`.
    pub subject: serde_json::Value,
    /// Evidence with verdicts and the remediation decided (null until evaluated).
    pub evidence: serde_json::Value,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvestigationEvent {
    pub at: i64,
    pub actor: String,
    pub event: String,
    pub detail: String,
}

const COLUMNS: &str = "id, device_id, alert_id, status, title, subject, evidence, created_by, created_at, updated_at";

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { table: "investigations", detail }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Investigation, StoreError> {
    let id: String = row.try_get("id")?;
    let device: String = row.try_get("device_id")?;
    let subject: String = row.try_get("subject")?;
    let evidence: String = row.try_get("evidence")?;
    Ok(Investigation {
        id: id.parse().map_err(|_| corrupt(format!("id {id:?}")))?,
        device_id: device.parse().map_err(|_| corrupt(format!("device {device:?}")))?,
        alert_id: row.try_get("alert_id")?,
        status: row.try_get("status")?,
        title: row.try_get("title")?,
        subject: serde_json::from_str(&subject).map_err(|e| corrupt(e.to_string()))?,
        evidence: serde_json::from_str(&evidence).map_err(|e| corrupt(e.to_string()))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn device_groups(&self) -> Result<Vec<DeviceGroup>, StoreError> {
        let rows =
            sqlx::query("SELECT name, automation_level, description, created_at FROM device_groups ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceGroup {
                    name: r.try_get("name")?,
                    automation_level: r.try_get("automation_level")?,
                    description: r.try_get("description")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn device_group(&self, name: &str) -> Result<Option<DeviceGroup>, StoreError> {
        Ok(self.device_groups().await?.into_iter().find(|g| g.name == name))
    }

    /// Create or change a group. Returns false when `create` is set and it exists.
    pub async fn put_device_group(
        &self,
        name: &str,
        level: &str,
        description: &str,
        create: bool,
    ) -> Result<bool, StoreError> {
        let done = if create {
            sqlx::query(
                "INSERT INTO device_groups (name, automation_level, description, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(level)
            .bind(description)
            .bind(now_ms())
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query("UPDATE device_groups SET automation_level = $1, description = $2 WHERE name = $3")
                .bind(level)
                .bind(description)
                .bind(name)
                .execute(&self.pool)
                .await?
        };
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_device_group(&self, device: Uuid, group: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE devices SET group_name = $1 WHERE id = $2")
            .bind(group)
            .bind(device.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_investigation(&self, inv: &Investigation) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO investigations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(inv.id.to_string())
        .bind(inv.device_id.to_string())
        .bind(inv.alert_id.clone())
        .bind(&inv.status)
        .bind(&inv.title)
        .bind(inv.subject.to_string())
        .bind(inv.evidence.to_string())
        .bind(&inv.created_by)
        .bind(inv.created_at)
        .bind(inv.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Change status and/or evidence; only from one of `from` (empty: any).
    pub async fn update_investigation(
        &self,
        id: Uuid,
        from: &[&str],
        status: &str,
        evidence: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let allowed = if from.is_empty() {
            "1 = 1".to_string()
        } else {
            format!("status IN ({})", from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "))
        };
        let done = sqlx::query(&format!(
            "UPDATE investigations SET status = $1, evidence = COALESCE($2, evidence), updated_at = $3 \
             WHERE id = $4 AND {allowed}"
        ))
        .bind(status)
        .bind(evidence.map(|e| e.to_string()))
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn investigation(&self, id: Uuid) -> Result<Option<Investigation>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM investigations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Newest first, optionally by status and device.
    pub async fn investigations(
        &self,
        status: Option<&str>,
        device: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Investigation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM investigations WHERE ($1 = '' OR status = $1) AND ($2 = '' OR device_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(status.unwrap_or_default())
        .bind(device.map(|d| d.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The investigations an alert opened.
    /// How many investigations are in each status.
    pub async fn investigation_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM investigations GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }

    pub async fn investigations_of_alert(&self, alert: Uuid) -> Result<Vec<Investigation>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM investigations WHERE alert_id = $1 ORDER BY created_at"))
                .bind(alert.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn investigation_event(
        &self,
        id: Uuid,
        actor: &str,
        event: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO investigation_events (investigation_id, at, actor, event, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(now_ms())
        .bind(actor)
        .bind(event)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn investigation_events(&self, id: Uuid) -> Result<Vec<InvestigationEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, event, detail FROM investigation_events WHERE investigation_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InvestigationEvent {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    event: r.try_get("event")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Actions an investigation created, oldest first.
    pub async fn investigation_actions(&self, id: Uuid) -> Result<Vec<super::Action>, StoreError> {
        let f = super::ActionFilter { investigation: Some(id.to_string()), ..Default::default() };
        let mut page = self.actions(&f, None, 1000).await?.items;
        page.reverse();
        Ok(page)
    }
}
