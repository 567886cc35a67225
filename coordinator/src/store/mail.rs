//! Mail explorer searches: which `mail_search` action ran on which host.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone)]
pub struct MailSearchRecord {
    pub id: Uuid,
    pub created_by: String,
    pub created_at: i64,
    /// The criteria, as JSON (`mail_search`'s parameters).
    pub criteria: String,
    /// (device, action) per host asked.
    pub actions: Vec<(Uuid, Uuid)>,
}

impl Store {
    pub async fn put_mail_search(
        &self,
        created_by: &str,
        criteria: &str,
        actions: &[(Uuid, Uuid)],
    ) -> Result<MailSearchRecord, StoreError> {
        let id = Uuid::new_v4();
        let created_at = now_ms();
        let list: Vec<serde_json::Value> = actions
            .iter()
            .map(|(d, a)| serde_json::json!({ "device_id": d.to_string(), "action_id": a.to_string() }))
            .collect();
        sqlx::query(
            "INSERT INTO mail_searches (id, created_by, created_at, criteria, actions) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(created_by)
        .bind(created_at)
        .bind(criteria)
        .bind(serde_json::Value::Array(list).to_string())
        .execute(&self.pool)
        .await?;
        Ok(MailSearchRecord {
            id,
            created_by: created_by.to_string(),
            created_at,
            criteria: criteria.to_string(),
            actions: actions.to_vec(),
        })
    }

    pub async fn mail_search(&self, id: Uuid) -> Result<Option<MailSearchRecord>, StoreError> {
        let row = sqlx::query("SELECT id, created_by, created_at, criteria, actions FROM mail_searches WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let actions: String = row.try_get("actions")?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&actions).unwrap_or_default();
        let uuid = |v: &serde_json::Value, k: &str| v[k].as_str().and_then(|s| Uuid::parse_str(s).ok());
        Ok(Some(MailSearchRecord {
            id,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            criteria: row.try_get("criteria")?,
            actions: list.iter().filter_map(|v| Some((uuid(v, "device_id")?, uuid(v, "action_id")?))).collect(),
        }))
    }
}
