//! The audit trail: every mutating API call, who made it, and its outcome.

use sqlx::Row;

use super::{Page, Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub detail: String,
}

pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub result: &'a str,
    pub detail: &'a str,
}

/// What [`Store::audit_search`] keeps; empty fields keep everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditFilter<'a> {
    pub actor: &'a str,
    pub text: &'a str,
}

impl Store {
    pub async fn audit(&self, e: &NewAudit<'_>) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (at, actor, action, target, result, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now_ms())
            .bind(e.actor)
            .bind(e.action)
            .bind(e.target)
            .bind(e.result)
            .bind(e.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Audit entries, newest first; `cursor` is the id of the last entry seen.
    pub async fn audit_entries(&self, cursor: Option<i64>, limit: u32) -> Result<Page<AuditEntry>, StoreError> {
        self.audit_search(&AuditFilter::default(), cursor, limit).await
    }

    /// [`Store::audit_entries`] of one actor and / or containing a text in
    /// the action, target, result or detail (any case, taken literally).
    pub async fn audit_search(
        &self,
        f: &AuditFilter<'_>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let literal = f.text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").to_lowercase();
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, result, detail FROM audit WHERE id < $1 \
             AND ($3 = '' OR actor = $3) \
             AND ($4 = '' OR LOWER(action) LIKE $5 ESCAPE '\\' OR LOWER(target) LIKE $5 ESCAPE '\\' \
                  OR LOWER(result) LIKE $5 ESCAPE '\\' OR LOWER(detail) LIKE $5 ESCAPE '\\') \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(cursor.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .bind(f.actor)
        .bind(f.text)
        .bind(format!("%{literal}%"))
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    result: row.try_get("result")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
