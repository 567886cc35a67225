//! Alerts: one per (device, SHA-256, rule). A report seen again bumps
//! `count` and `last_seen`. Every path the detection was seen at is kept
//! (`alert_paths`), each with the investigation that handles it: a path
//! seen for the first time, or again after its investigation ended, needs a
//! new one (a resolved alert is reopened for it), so the same malware
//! dropped at another path is never merged away. Reports are recorded by
//! id, so a report the agent resends (it resends until acknowledged) is
//! counted once.

use picket_common::detection::{AlertReport, Severity};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Page, Store, StoreError};
use crate::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    New,
    InProgress,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InProgress => "in_progress",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(Self::New),
            "in_progress" => Some(Self::InProgress),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: Uuid,
    pub device_id: Uuid,
    pub sha256: String,
    pub rule: String,
    pub namespace: String,
    pub severity: Severity,
    /// Where the file was last seen.
    pub path: String,
    pub size: i64,
    /// What raised it last: `realtime` or `scan:<action id>`.
    pub source: String,
    pub status: AlertStatus,
    /// Reports that carried this detection.
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub alert_id: Uuid,
    /// `created`, `reopened` or `status`.
    pub kind: String,
    pub status: String,
    pub at: i64,
    pub actor: String,
    pub comment: String,
}

#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    /// Only alerts not resolved.
    pub open: bool,
    pub device: Option<Uuid>,
    pub severity: Option<Severity>,
    pub sha256: Option<String>,
}

/// One path an alert covers, and the investigation handling it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertPath {
    pub path: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// `None`: waits for one; empty: none needed (informational).
    pub investigation_id: Option<String>,
}

const ALERT_COLUMNS: &str =
    "id, device_id, sha256, rule, namespace, severity, path, size, source, status, count, first_seen, last_seen";

fn alert_from_row(row: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
    let uuid = |col: &str| -> Result<Uuid, StoreError> {
        let s: String = row.try_get(col)?;
        s.parse().map_err(|_| StoreError::corrupt("alerts", format!("{col} {s:?}")))
    };
    let severity: String = row.try_get("severity")?;
    let status: String = row.try_get("status")?;
    Ok(Alert {
        id: uuid("id")?,
        device_id: uuid("device_id")?,
        sha256: row.try_get("sha256")?,
        rule: row.try_get("rule")?,
        namespace: row.try_get("namespace")?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::corrupt("alerts", format!("severity {severity:?}")))?,
        path: row.try_get("path")?,
        size: row.try_get("size")?,
        source: row.try_get("source")?,
        status: AlertStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("alerts", format!("status {status:?}")))?,
        count: row.try_get("count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
    })
}

fn alert_event_from_row(row: &sqlx::any::AnyRow) -> Result<AlertEvent, StoreError> {
    let alert_id: String = row.try_get("alert_id")?;
    Ok(AlertEvent {
        id: row.try_get("id")?,
        alert_id: alert_id
            .parse()
            .map_err(|_| StoreError::corrupt("alert_events", format!("alert_id {alert_id:?}")))?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        comment: row.try_get("comment")?,
    })
}

async fn insert_alert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    alert: Uuid,
    kind: &str,
    status: AlertStatus,
    at: i64,
    actor: &str,
    comment: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_events (alert_id, kind, status, at, actor, comment) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(alert.to_string())
    .bind(kind)
    .bind(status.as_str())
    .bind(at)
    .bind(actor)
    .bind(comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Record an agent's alert report. Returns the alerts it created or
    /// reopened (empty when the report was already recorded).
    pub async fn record_alert_report(&self, device: Uuid, report: &AlertReport) -> Result<Vec<Uuid>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let fresh = sqlx::query(
            "INSERT INTO alert_reports (report_id, device_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (report_id) DO NOTHING",
        )
        .bind(report.report_id.to_string())
        .bind(device.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut raised = Vec::new();
        for d in &report.detections {
            // A detection a person classified as a false positive stays quiet.
            let suppressed = sqlx::query("SELECT 1 AS x FROM suppressions WHERE sha256 = $1 AND rule = $2")
                .bind(&d.sha256)
                .bind(&d.rule)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if suppressed {
                continue;
            }
            let existing =
                sqlx::query("SELECT id, status FROM alerts WHERE device_id = $1 AND sha256 = $2 AND rule = $3")
                    .bind(device.to_string())
                    .bind(&d.sha256)
                    .bind(&d.rule)
                    .fetch_optional(&mut *tx)
                    .await?;
            let size = i64::try_from(d.size).unwrap_or(i64::MAX);
            let id = match existing {
                None => {
                    let id = Uuid::new_v4();
                    sqlx::query(&format!(
                        "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'new', 1, $10, $10)"
                    ))
                    .bind(id.to_string())
                    .bind(device.to_string())
                    .bind(&d.sha256)
                    .bind(&d.rule)
                    .bind(&d.namespace)
                    .bind(d.severity.as_str())
                    .bind(&d.path)
                    .bind(size)
                    .bind(&report.source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    insert_alert_event(&mut tx, id, "created", AlertStatus::New, now, "agent", &report.source).await?;
                    raised.push(id);
                    id
                }
                Some(row) => {
                    let id: String = row.try_get("id")?;
                    let id: Uuid = id.parse().map_err(|_| StoreError::corrupt("alerts", format!("id {id:?}")))?;
                    sqlx::query(
                        "UPDATE alerts SET count = count + 1, last_seen = $1, path = $2, size = $3, source = $4, \
                         severity = $5 WHERE id = $6",
                    )
                    .bind(now)
                    .bind(&d.path)
                    .bind(size)
                    .bind(&report.source)
                    .bind(d.severity.as_str())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    id
                }
            };
            // The path: new, or seen again after its investigation ended,
            // needs an investigation of its own.
            sqlx::query(
                "INSERT INTO alert_paths (alert_id, path, first_seen, last_seen) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (alert_id, path) DO UPDATE SET last_seen = excluded.last_seen, \
                 investigation_id = CASE WHEN EXISTS (SELECT 1 FROM investigations i \
                   WHERE i.id = alert_paths.investigation_id AND i.status IN ('running', 'pending_approval')) \
                 THEN alert_paths.investigation_id ELSE NULL END",
            )
            .bind(id.to_string())
            .bind(&d.path)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let pending = sqlx::query(
                "SELECT 1 AS x FROM alert_paths WHERE alert_id = $1 AND path = $2 AND investigation_id IS NULL",
            )
            .bind(id.to_string())
            .bind(&d.path)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if pending {
                let reopened = sqlx::query("UPDATE alerts SET status = 'new' WHERE id = $1 AND status = 'resolved'")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if reopened > 0 {
                    let why = format!("{} at {}", report.source, d.path);
                    insert_alert_event(&mut tx, id, "reopened", AlertStatus::New, now, "agent", &why).await?;
                    raised.push(id);
                }
            }
        }
        self.commit_logged(tx).await?;
        Ok(raised)
    }

    /// Alert paths no investigation handles yet, oldest first, of alerts
    /// not resolved.
    pub async fn uninvestigated_alert_paths(&self, limit: u32) -> Result<Vec<(Alert, String)>, StoreError> {
        let columns: Vec<String> = ALERT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect();
        let rows = sqlx::query(&format!(
            "SELECT {}, p.path AS covered_path FROM alert_paths p JOIN alerts a ON a.id = p.alert_id \
             WHERE p.investigation_id IS NULL AND a.status <> 'resolved' \
             ORDER BY p.first_seen, p.alert_id LIMIT $1",
            columns.join(", ")
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((alert_from_row(r)?, r.try_get("covered_path")?))).collect()
    }

    /// Record that an alert's path needs no investigation (informational).
    pub async fn skip_alert_path(&self, alert: Uuid, path: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE alert_paths SET investigation_id = '' WHERE alert_id = $1 AND path = $2")
            .bind(alert.to_string())
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record which investigation handles an alert's path; the alert is in
    /// progress from then on.
    pub async fn assign_alert_path(&self, alert: Uuid, path: &str, investigation: Uuid) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE alert_paths SET investigation_id = $1 WHERE alert_id = $2 AND path = $3")
            .bind(investigation.to_string())
            .bind(alert.to_string())
            .bind(path)
            .execute(&mut *tx)
            .await?;
        let moved = sqlx::query("UPDATE alerts SET status = 'in_progress' WHERE id = $1 AND status <> 'in_progress'")
            .bind(alert.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved > 0 {
            let why = format!("investigation {investigation} of {path}");
            insert_alert_event(&mut tx, alert, "status", AlertStatus::InProgress, now, "automation", &why).await?;
        }
        self.commit_logged(tx).await?;
        Ok(())
    }

    /// Every path an alert covers.
    pub async fn alert_paths(&self, alert: Uuid) -> Result<Vec<AlertPath>, StoreError> {
        let rows = sqlx::query(
            "SELECT path, first_seen, last_seen, investigation_id FROM alert_paths WHERE alert_id = $1 \
             ORDER BY first_seen, path",
        )
        .bind(alert.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertPath {
                    path: r.try_get("path")?,
                    first_seen: r.try_get("first_seen")?,
                    last_seen: r.try_get("last_seen")?,
                    investigation_id: r.try_get("investigation_id")?,
                })
            })
            .collect()
    }

    /// Count detections a device sent past its rate (not stored).
    pub async fn add_alerts_dropped(&self, device: Uuid, n: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET alerts_dropped = alerts_dropped + $1 WHERE id = $2")
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .bind(device.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// Alerts, most recently seen first; `cursor` is `last_seen:id` of the
    /// previous page's last item.
    pub async fn alerts(&self, f: &AlertFilter, cursor: Option<&str>, limit: u32) -> Result<Page<Alert>, StoreError> {
        let (c_at, c_id) = super::time_cursor("alerts", cursor)?;
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1 = '' OR status = $1) AND ($2 = '' OR device_id = $2) \
             AND ($3 = '' OR severity = $3) AND ($4 = '' OR sha256 = $4) \
             AND (last_seen < $5 OR (last_seen = $5 AND ($6 = '' OR id < $6))) \
             AND ($8 = 0 OR status <> 'resolved') \
             ORDER BY last_seen DESC, id DESC LIMIT $7"
        ))
        .bind(f.status.map(|s| s.as_str()).unwrap_or_default())
        .bind(f.device.map(|d| d.to_string()).unwrap_or_default())
        .bind(f.severity.map(|s| s.as_str()).unwrap_or_default())
        .bind(f.sha256.clone().unwrap_or_default())
        .bind(c_at)
        .bind(c_id)
        .bind(i64::from(limit) + 1)
        .bind(i64::from(f.open))
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(alert_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(items, limit, |a| format!("{}:{}", a.last_seen, a.id)))
    }

    /// Set an alert's status; returns the updated alert (None: no such alert).
    pub async fn set_alert_status(
        &self,
        id: Uuid,
        status: AlertStatus,
        actor: &str,
        comment: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alerts SET status = $1 WHERE id = $2 AND status <> $1")
            .bind(status.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done > 0 {
            insert_alert_event(&mut tx, id, "status", status, now_ms(), actor, comment).await?;
        }
        self.commit_logged(tx).await?;
        self.alert(id).await
    }

    pub async fn alert_history(&self, id: Uuid) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, kind, status, at, actor, comment FROM alert_events WHERE alert_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_event_from_row).collect()
    }

    pub async fn alert_events_after(&self, after: i64, limit: u32) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, kind, status, at, actor, comment FROM alert_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_event_from_row).collect()
    }

    pub async fn last_alert_event_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS n FROM alert_events").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Record a classification; for a false positive, also suppress the
    /// (SHA-256, rule) and resolve the alert — one transaction.
    pub async fn classify_alert(
        &self,
        alert: &Alert,
        classification: &str,
        actor: &str,
        comment: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE alerts SET classification = $1, status = 'resolved' WHERE id = $2")
            .bind(classification)
            .bind(alert.id.to_string())
            .execute(&mut *tx)
            .await?;
        if classification == "false_positive" {
            sqlx::query(
                "INSERT INTO suppressions (sha256, rule, alert_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5)                  ON CONFLICT (sha256, rule) DO NOTHING",
            )
            .bind(&alert.sha256)
            .bind(&alert.rule)
            .bind(alert.id.to_string())
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let detail =
            if comment.is_empty() { classification.to_string() } else { format!("{classification}: {comment}") };
        insert_alert_event(&mut tx, alert.id, "classified", AlertStatus::Resolved, now, actor, &detail).await?;
        self.commit_logged(tx).await?;
        Ok(())
    }

    /// Open alerts (not resolved) by severity.
    pub async fn open_alert_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT severity, COUNT(*) AS n FROM alerts WHERE status <> 'resolved' GROUP BY severity")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("severity")?, r.try_get("n")?))).collect()
    }

    pub async fn alert_classification(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT classification FROM alerts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("classification")).transpose()?.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::stores;
    use picket_common::detection::Detection;

    fn detection(sha: &str, rule: &str) -> Detection {
        Detection {
            path: "/tmp/x".into(),
            sha256: sha.into(),
            size: 68,
            rule: rule.into(),
            namespace: "builtin".into(),
            severity: Severity::Malicious,
        }
    }

    #[tokio::test]
    async fn alerts_dedupe_by_device_hash_and_rule_and_reports_count_once() {
        for (store, _dir) in stores().await {
            let device = store.test_device().await;
            let report = |dets: Vec<Detection>| AlertReport {
                report_id: Uuid::new_v4(),
                source: "realtime".into(),
                observed_ms: 0,
                detections: dets,
            };
            let first = report(vec![detection("aa", "r1"), detection("aa", "r2")]);
            assert_eq!(store.record_alert_report(device, &first).await.expect("record").len(), 2);
            assert!(store.record_alert_report(device, &first).await.expect("resend").is_empty());
            let again = report(vec![detection("aa", "r1")]);
            assert!(store.record_alert_report(device, &again).await.expect("again").is_empty());
            let page = store.alerts(&AlertFilter::default(), None, 10).await.expect("list");
            assert_eq!(page.items.len(), 2);
            let r1 = page.items.iter().find(|a| a.rule == "r1").expect("r1");
            assert_eq!(r1.count, 2);
            store.set_alert_status(r1.id, AlertStatus::Resolved, "admin", "done").await.expect("resolve");
            let reopened = store.record_alert_report(device, &report(vec![detection("aa", "r1")])).await.expect("re");
            assert_eq!(reopened, vec![r1.id]);
            let kinds: Vec<String> =
                store.alert_history(r1.id).await.expect("history").into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["created", "status", "reopened"]);
            let f = AlertFilter { status: Some(AlertStatus::New), ..Default::default() };
            let first = store.alerts(&f, None, 1).await.expect("page");
            let cursor = first.next_cursor.expect("a second page");
            let second = store.alerts(&f, Some(&cursor), 1).await.expect("page 2");
            assert_eq!(second.items.len(), 1);
            assert_ne!(second.items[0].id, first.items[0].id);
            assert!(second.next_cursor.is_none());
        }
    }
}
