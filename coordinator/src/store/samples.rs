//! Samples (files uploaded by `request_sample`), by SHA-256.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub sha256: String,
    pub size: i64,
    /// The device and path it was first collected from.
    pub device_id: String,
    pub path: String,
    pub action_id: String,
    pub created_at: i64,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Sample, StoreError> {
    Ok(Sample {
        sha256: row.try_get("sha256")?,
        size: row.try_get("size")?,
        device_id: row.try_get("device_id")?,
        path: row.try_get("path")?,
        action_id: row.try_get("action_id")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Record a sample; a hash already known keeps its first record.
    pub async fn put_sample(
        &self,
        sha256: &str,
        size: u64,
        device: Uuid,
        path: &str,
        action: Uuid,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO samples (sha256, size, device_id, path, action_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(device.to_string())
        .bind(path)
        .bind(action.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn sample(&self, sha256: &str) -> Result<Option<Sample>, StoreError> {
        let row =
            sqlx::query("SELECT sha256, size, device_id, path, action_id, created_at FROM samples WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest samples first.
    pub async fn samples(&self, limit: u32) -> Result<Vec<Sample>, StoreError> {
        let rows = sqlx::query(
            "SELECT sha256, size, device_id, path, action_id, created_at FROM samples \
             ORDER BY created_at DESC, sha256 LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}
