//! Detection content: the rule bundles and indicators agents scan with.
//!
//! - Rule bundles: every uploaded bundle is kept; the current one is the
//!   most recently activated (uploading a bundle again re-activates it).
//! - Indicators: one row per SHA-256, `block` or `allow`, optional expiry.

use std::collections::BTreeMap;

use picket_common::detection::{IndicatorAction, RuleFile, Severity};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    pub sha256: String,
    pub action: IndicatorAction,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

pub struct NewBundle<'a> {
    pub version: &'a str,
    pub files: &'a [RuleFile],
    pub rule_count: i64,
    /// `namespace:rule` → severity, as the coordinator's check compiled them.
    pub severities: &'a BTreeMap<String, Severity>,
    /// JSON array of `{file, error}`.
    pub errors: &'a serde_json::Value,
    pub created_by: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub version: String,
    pub file_count: i64,
    pub rule_count: i64,
    pub errors: serde_json::Value,
    pub created_by: String,
    pub created_at: i64,
    pub activated_at: i64,
    #[serde(skip)]
    pub files: Vec<RuleFile>,
    /// `namespace:rule` → severity (empty for bundles stored before the
    /// coordinator kept them).
    #[serde(skip)]
    pub severities: BTreeMap<String, Severity>,
}

fn indicator_from_row(row: &sqlx::any::AnyRow) -> Result<Indicator, StoreError> {
    let action: String = row.try_get("action")?;
    Ok(Indicator {
        sha256: row.try_get("sha256")?,
        action: IndicatorAction::parse(&action)
            .ok_or_else(|| StoreError::corrupt("indicators", format!("action {action:?}")))?,
        comment: row.try_get("comment")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn bundle_from_row(row: &sqlx::any::AnyRow, with_files: bool) -> Result<Bundle, StoreError> {
    let errors: String = row.try_get("errors")?;
    let (files, severities) = if with_files {
        let text: String = row.try_get("files")?;
        let sev: String = row.try_get("severities")?;
        (
            serde_json::from_str(&text).map_err(|e| StoreError::corrupt("rule_bundles", format!("files: {e}")))?,
            serde_json::from_str(&sev).map_err(|e| StoreError::corrupt("rule_bundles", format!("severities: {e}")))?,
        )
    } else {
        (Vec::new(), BTreeMap::new())
    };
    Ok(Bundle {
        version: row.try_get("version")?,
        file_count: row.try_get("file_count")?,
        rule_count: row.try_get("rule_count")?,
        errors: serde_json::from_str(&errors)
            .map_err(|e| StoreError::corrupt("rule_bundles", format!("errors: {e}")))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        activated_at: row.try_get("activated_at")?,
        files,
        severities,
    })
}

impl Store {
    /// Add or replace the indicator for `sha256`.
    pub async fn put_indicator(&self, i: &Indicator) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO indicators (sha256, action, comment, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO UPDATE SET action = excluded.action, \
             comment = excluded.comment, created_by = excluded.created_by, created_at = excluded.created_at, \
             expires_at = excluded.expires_at",
        )
        .bind(&i.sha256)
        .bind(i.action.as_str())
        .bind(&i.comment)
        .bind(&i.created_by)
        .bind(i.created_at)
        .bind(i.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_indicator(&self, sha256: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM indicators WHERE sha256 = $1").bind(sha256).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Indicators in force at `now` (or every one, expired too, with `None`).
    pub async fn indicators(&self, now: Option<i64>) -> Result<Vec<Indicator>, StoreError> {
        let rows = sqlx::query(
            "SELECT sha256, action, comment, created_by, created_at, expires_at FROM indicators \
             WHERE $1 = 0 OR expires_at IS NULL OR expires_at > $2 ORDER BY sha256",
        )
        .bind(i64::from(now.is_some()))
        .bind(now.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(indicator_from_row).collect()
    }

    /// Store a bundle and make it current (re-activating it if it exists).
    pub async fn put_bundle(&self, b: &NewBundle<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        let files = serde_json::to_string(b.files).map_err(|e| StoreError::corrupt("rule_bundles", e.to_string()))?;
        let severities =
            serde_json::to_string(b.severities).map_err(|e| StoreError::corrupt("rule_bundles", e.to_string()))?;
        sqlx::query(
            "INSERT INTO rule_bundles (version, files, file_count, rule_count, errors, created_by, created_at, \
             activated_at, severities) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             ON CONFLICT (version) DO UPDATE SET activated_at = excluded.activated_at, severities = excluded.severities",
        )
        .bind(b.version)
        .bind(files)
        .bind(b.files.len() as i64)
        .bind(b.rule_count)
        .bind(b.errors.to_string())
        .bind(b.created_by)
        .bind(now)
        .bind(severities)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record the rule severities of a bundle stored without them.
    pub async fn set_bundle_severities(
        &self,
        version: &str,
        severities: &BTreeMap<String, Severity>,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(severities).map_err(|e| StoreError::corrupt("rule_bundles", e.to_string()))?;
        sqlx::query("UPDATE rule_bundles SET severities = $1 WHERE version = $2")
            .bind(text)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The bundle agents should hold, with its files.
    pub async fn current_bundle(&self) -> Result<Option<Bundle>, StoreError> {
        let row = sqlx::query(
            "SELECT version, files, file_count, rule_count, errors, created_by, created_at, activated_at, severities \
             FROM rule_bundles ORDER BY activated_at DESC, version LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| bundle_from_row(r, true)).transpose()
    }

    /// Every bundle (without files), most recently activated first.
    pub async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, file_count, rule_count, errors, created_by, created_at, activated_at \
             FROM rule_bundles ORDER BY activated_at DESC, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| bundle_from_row(r, false)).collect()
    }

    /// What content a device reported holding.
    pub async fn record_content_state(
        &self,
        device: Uuid,
        rules_version: &str,
        indicators_version: &str,
        rules_error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET rules_version = $1, indicators_version = $2, rules_error = $3 WHERE id = $4")
            .bind(rules_version)
            .bind(indicators_version)
            .bind(rules_error)
            .bind(device.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
